//! Element-wise operators, batch normalization and softmax.

use anyhow::{bail, Result};
use tract_onnx::pb::NodeProto;

use super::{Evaluator, Tensor};
use crate::lower::{err, float, int};

/// `f` applied to every element.
pub(super) fn map(x: &Tensor, f: impl Fn(f32) -> f32) -> Tensor {
    Tensor {
        dims: x.dims.clone(),
        data: x.data.iter().map(|v| f(*v)).collect(),
    }
}

/// ONNX Clip: bounds from constant inputs 1 and 2 (opset 11 on) or the `min`/`max` attributes.
pub(super) fn clip(ev: &Evaluator, node: &NodeProto, x: &Tensor) -> Result<Tensor> {
    let bound = |k: usize, attr: &str, default: f32| -> Result<f32> {
        match ev.constant(node, k)? {
            Some((_, v)) => v
                .first()
                .copied()
                .ok_or_else(|| err(node, format!("bound {k} is empty"))),
            None => float(node, attr, default),
        }
    };
    let (lo, hi) = (
        bound(1, "min", f32::NEG_INFINITY)?,
        bound(2, "max", f32::INFINITY)?,
    );
    Ok(map(x, |v| {
        if v < lo {
            lo
        } else if v > hi {
            hi
        } else {
            v
        }
    }))
}

/// ONNX BatchNormalization (inference): `(x − mean) · (scale / sqrt(var + ε)) + B` per
/// channel (dimension 1).
pub(super) fn batch_norm(ev: &Evaluator, node: &NodeProto, x: &Tensor) -> Result<Tensor> {
    let channels = *x
        .dims
        .get(1)
        .ok_or_else(|| err(node, format!("input {:?} has no channel axis", x.dims)))?;
    let param = |k: usize| -> Result<&[f32]> {
        let (_, v) = ev
            .constant(node, k)?
            .ok_or_else(|| err(node, "needs constant parameters"))?;
        if v.len() != channels {
            bail!(err(
                node,
                format!("{} values for {channels} channels", v.len())
            ));
        }
        Ok(v.as_slice())
    };
    let (gamma, beta, mean, var) = (param(1)?, param(2)?, param(3)?, param(4)?);
    let eps = float(node, "epsilon", 1e-5)?;
    let inner: usize = x.dims[2..].iter().product();
    let mut y = x.clone();
    for (at, v) in y.data.iter_mut().enumerate() {
        let ch = at / inner.max(1) % channels;
        let f = gamma[ch] / (var[ch] + eps).sqrt();
        *v = (*v - mean[ch]) * f + beta[ch];
    }
    Ok(y)
}

/// ONNX Softmax. From opset 13 it runs along `axis` (default −1); before, over the input
/// flattened to 2-D at `axis` (default 1). Each slice: `exp(x − max)` with `libm::expf`,
/// summed in index order, each divided by the sum.
pub(super) fn softmax(node: &NodeProto, x: &Tensor, opset: i64) -> Result<Tensor> {
    let rank = x.dims.len() as i64;
    let axis = int(node, "axis", if opset >= 13 { -1 } else { 1 })?;
    let axis = if axis < 0 { axis + rank } else { axis };
    if !(0..rank).contains(&axis) {
        bail!(err(node, format!("axis {axis} for a rank-{rank} input")));
    }
    let axis = axis as usize;
    let (n, inner) = if opset >= 13 {
        (x.dims[axis], x.dims[axis + 1..].iter().product::<usize>())
    } else {
        (x.dims[axis..].iter().product(), 1)
    };
    let mut y = x.clone();
    if n == 0 {
        return Ok(y);
    }
    for block in y.data.chunks_mut(n * inner) {
        for i in 0..inner {
            let at = |j: usize| j * inner + i;
            let top = (0..n).fold(f32::NEG_INFINITY, |m, j| {
                if block[at(j)] > m {
                    block[at(j)]
                } else {
                    m
                }
            });
            let mut sum = 0f32;
            for j in 0..n {
                let e = libm::expf(block[at(j)] - top);
                block[at(j)] = e;
                sum += e;
            }
            for j in 0..n {
                block[at(j)] /= sum;
            }
        }
    }
    Ok(y)
}

/// ONNX Add of two tensors of one size, or of a tensor and a single value.
pub(super) fn add(node: &NodeProto, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let (big, small) = if a.data.len() >= b.data.len() {
        (a, b)
    } else {
        (b, a)
    };
    if small.data.len() != big.data.len() && small.data.len() != 1 {
        bail!(err(
            node,
            format!(
                "operands {:?} and {:?} differ (broadcasting is not supported)",
                a.dims, b.dims
            )
        ));
    }
    let data = big
        .data
        .iter()
        .enumerate()
        .map(|(i, v)| v + small.data[if small.data.len() == 1 { 0 } else { i }])
        .collect();
    Ok(Tensor {
        dims: big.dims.clone(),
        data,
    })
}

/// ONNX Mul of two tensors: equal sizes, a scalar, or one value per channel of a `[1, C, H, W]`
/// map (a squeeze-and-excitation gate).
pub(super) fn mul(node: &NodeProto, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let (big, small) = if a.data.len() >= b.data.len() {
        (a, b)
    } else {
        (b, a)
    };
    let n = small.data.len();
    let per_channel = matches!(big.dims.as_slice(), [1, c, _, _] if *c == n);
    if n != big.data.len() && n != 1 && !per_channel {
        bail!(err(
            node,
            format!(
                "operands {:?} and {:?}: only equal shapes, a scalar or one value per channel",
                a.dims, b.dims
            )
        ));
    }
    let plane = (big.data.len() / n.max(1)).max(1);
    let data = big
        .data
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let k = match n {
                1 => 0,
                _ if n == big.data.len() => i,
                _ => i / plane,
            };
            v * small.data[k]
        })
        .collect();
    Ok(Tensor {
        dims: big.dims.clone(),
        data,
    })
}
