//! Gemm and MatMul against constant weights.
//!
//! Every output element is `Σ_k a·b`, starting at 0 and adding in ascending `k`; Gemm then
//! takes `alpha · sum + beta · c`. Output elements run in parallel.

use anyhow::{bail, Result};
use rayon::prelude::*;
use tract_onnx::pb::NodeProto;

use super::{Evaluator, Tensor};
use crate::lower::{err, float, int};

/// `[m, k] x [k, n]` with either operand stored transposed; each element's sum in `k` order.
fn product(
    a: &[f32],
    (m, k): (usize, usize),
    trans_a: bool,
    b: &[f32],
    n: usize,
    trans_b: bool,
) -> Vec<f32> {
    let mut out = vec![0f32; m * n];
    out.par_iter_mut().enumerate().for_each(|(at, y)| {
        let (i, j) = (at / n, at % n);
        *y = (0..k).fold(0.0, |acc, t| {
            let x = if trans_a { a[t * m + i] } else { a[i * k + t] };
            let w = if trans_b { b[j * k + t] } else { b[t * n + j] };
            acc + x * w
        });
    });
    out
}

/// ONNX Gemm: `alpha · A'B' + beta · C`, with `C` (constant) of `n`, `m x n` or one value.
pub(super) fn gemm(ev: &Evaluator, node: &NodeProto, a: &Tensor) -> Result<Tensor> {
    let (trans_a, trans_b) = (int(node, "transA", 0)? != 0, int(node, "transB", 0)? != 0);
    let (alpha, beta) = (float(node, "alpha", 1.0)?, float(node, "beta", 1.0)?);
    let [r, c] = a.dims[..] else {
        bail!(err(
            node,
            format!("A of shape {:?} is not a matrix", a.dims)
        ));
    };
    let (m, k) = if trans_a { (c, r) } else { (r, c) };
    let (b_dims, b) = ev
        .constant(node, 1)?
        .ok_or_else(|| err(node, "needs a constant B"))?;
    let n = match (b_dims.as_slice(), trans_b) {
        ([n, kb], true) | ([kb, n], false) if *kb == k => *n,
        (dims, _) => bail!(err(
            node,
            format!("B of shape {dims:?} does not take {k} inputs")
        )),
    };
    let mut y = product(&a.data, (m, k), trans_a, b, n, trans_b);
    if let Some((_, bias)) = ev.constant(node, 2)? {
        let at = |i: usize| match bias.len() {
            1 => Some(bias[0]),
            len if len == n => Some(bias[i % n]),
            len if len == m * n => Some(bias[i]),
            _ => None,
        };
        for (i, v) in y.iter_mut().enumerate() {
            let c = at(i)
                .ok_or_else(|| err(node, format!("C of {} values for {m}x{n}", bias.len())))?;
            *v = alpha * *v + beta * c;
        }
    } else {
        y.iter_mut().for_each(|v| *v *= alpha);
    }
    Tensor::new(vec![m, n], y)
}

/// ONNX MatMul of a live `[..., k]` tensor by a constant `k x n` matrix.
pub(super) fn matmul(ev: &Evaluator, node: &NodeProto, a: &Tensor) -> Result<Tensor> {
    let (b_dims, b) = ev
        .constant(node, 1)?
        .ok_or_else(|| err(node, "needs a constant weight matrix"))?;
    let (Some(&k), [kb, n]) = (a.dims.last(), b_dims.as_slice()) else {
        bail!(err(
            node,
            format!("{:?} x {b_dims:?}: expected [..., k] x [k, n]", a.dims)
        ));
    };
    if k != *kb || k == 0 {
        bail!(err(
            node,
            format!("{:?} x {b_dims:?}: inner sizes differ", a.dims)
        ));
    }
    let m = a.data.len() / k;
    let mut dims = a.dims.clone();
    if let Some(last) = dims.last_mut() {
        *last = *n;
    }
    Tensor::new(dims, product(&a.data, (m, k), false, b, *n, false))
}
