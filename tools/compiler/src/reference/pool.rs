//! Max and average pooling.
//!
//! A window visits its taps by row then column, skipping the padding. Max pooling keeps the
//! first of equal values; average pooling sums in that order from 0, then divides once by the
//! number of taps it counts (only those inside the input unless `count_include_pad`).

use anyhow::{bail, Result};
use rayon::prelude::*;
use tract_onnx::pb::NodeProto;

use super::conv::chw;
use super::window::Window;
use super::Tensor;
use crate::lower::{err, int};

/// ONNX MaxPool or AveragePool (2-D, batch 1).
pub(super) fn window(node: &NodeProto, x: &Tensor) -> Result<Tensor> {
    let (c, h, w) = chw(node, x)?;
    let win = Window::of(node, None)?;
    let max = node.op_type == "MaxPool";
    let ceil = int(node, "ceil_mode", 0)? != 0;
    let include_pad = int(node, "count_include_pad", 0)? != 0;
    if !max && win.dilation != (1, 1) {
        bail!(err(node, "dilated average pooling is not supported"));
    }
    let (oh, ow) = win.output(node, (h, w), ceil)?;
    let ((kh, kw), (sy, sx), (dy, dx), (by, bx)) =
        (win.kernel, win.stride, win.dilation, win.begin);
    let mut out = vec![0f32; c * oh * ow];
    out.par_chunks_mut(oh * ow)
        .enumerate()
        .for_each(|(ch, plane_out)| {
            let plane = &x.data[ch * h * w..][..h * w];
            for (at, y) in plane_out.iter_mut().enumerate() {
                let (oy, ox) = (at / ow, at % ow);
                let (mut best, mut sum, mut inside) = (f32::NEG_INFINITY, 0f32, 0usize);
                for ky in 0..kh {
                    let Some(iy) = (oy * sy + ky * dy).checked_sub(by).filter(|v| *v < h) else {
                        continue;
                    };
                    for kx in 0..kw {
                        let Some(ix) = (ox * sx + kx * dx).checked_sub(bx).filter(|v| *v < w)
                        else {
                            continue;
                        };
                        let v = plane[iy * w + ix];
                        if v > best {
                            best = v;
                        }
                        sum += v;
                        inside += 1;
                    }
                }
                *y = if max {
                    best
                } else {
                    // With count_include_pad the window counts its taps inside the padded input.
                    let counted = if include_pad {
                        let span = |o: usize, s: usize, k: usize, b: usize, n: usize, e: usize| {
                            (o * s + k).min(n + b + e) - o * s
                        };
                        span(oy, sy, kh, by, h, win.end.0) * span(ox, sx, kw, bx, w, win.end.1)
                    } else {
                        inside
                    };
                    sum / counted.max(1) as f32
                };
            }
        });
    Tensor::new(vec![1, c, oh, ow], out)
}

/// ONNX GlobalAveragePool (batch 1): each channel's sum in index order, divided once.
pub(super) fn global_average(node: &NodeProto, x: &Tensor) -> Result<Tensor> {
    let (c, h, w) = chw(node, x)?;
    let n = (h * w).max(1);
    let out = x
        .data
        .chunks(n)
        .take(c)
        .map(|plane| plane.iter().fold(0f32, |acc, v| acc + v) / n as f32)
        .collect();
    Tensor::new(vec![1, c, 1, 1], out)
}
