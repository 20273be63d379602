//! Convolution and transposed convolution.
//!
//! Every output element is `Σ w·x + b`: the sum starts at 0, adds the products over input
//! channel, kernel row and kernel column in ascending order, skipping taps that fall in the
//! padding, and the bias comes last. Output channels run in parallel; each is one task.

use anyhow::{bail, Result};
use rayon::prelude::*;
use tract_onnx::pb::NodeProto;

use super::window::Window;
use super::{Evaluator, Tensor};
use crate::lower::{err, int, ints};

/// (C, H, W) of a batch-1 NCHW tensor.
pub(super) fn chw(node: &NodeProto, x: &Tensor) -> Result<(usize, usize, usize)> {
    match x.dims.as_slice() {
        [1, c, h, w] => Ok((*c, *h, *w)),
        other => bail!(err(node, format!("input {other:?}: expected [1, C, H, W]"))),
    }
}

/// The weights, bias and groups of a (transposed) convolution, checked against each other.
struct Layer<'m> {
    /// Weight dims: `[O, C/g, kh, kw]` (Conv) or `[C, O/g, kh, kw]` (ConvTranspose).
    dims: [usize; 4],
    w: &'m [f32],
    bias: Option<&'m [f32]>,
    groups: usize,
}

impl<'m> Layer<'m> {
    fn of(
        ev: &Evaluator<'m>,
        node: &NodeProto,
        out_channels: impl Fn(&[usize; 4], usize) -> usize,
    ) -> Result<Layer<'m>> {
        let (dims, w) = ev
            .constant(node, 1)?
            .ok_or_else(|| err(node, "needs constant weights"))?;
        let dims: [usize; 4] = dims
            .as_slice()
            .try_into()
            .map_err(|_| err(node, format!("weights {dims:?}: expected 4-D")))?;
        let groups = int(node, "group", 1)?;
        if groups <= 0 || dims.contains(&0) || w.len() != dims.iter().product::<usize>() {
            bail!(err(node, format!("weights {dims:?} with group {groups}")));
        }
        let groups = groups as usize;
        let bias = ev.constant(node, 2)?.map(|(_, b)| b.as_slice());
        let out = out_channels(&dims, groups);
        if bias.is_some_and(|b| b.len() != out) {
            bail!(err(
                node,
                format!(
                    "a bias of {} values for {out} channels",
                    bias.map_or(0, |b| b.len())
                )
            ));
        }
        Ok(Layer {
            dims,
            w,
            bias,
            groups,
        })
    }
}

/// ONNX Conv (2-D, batch 1).
pub(super) fn conv(ev: &Evaluator, node: &NodeProto, x: &Tensor) -> Result<Tensor> {
    let layer = Layer::of(ev, node, |d, _| d[0])?;
    let [o, cg, kh, kw] = layer.dims;
    let (c, h, w) = chw(node, x)?;
    let g = layer.groups;
    if c != cg * g || !o.is_multiple_of(g) {
        bail!(err(
            node,
            format!(
                "weights {:?} and group {g} do not fit {c} input channels",
                layer.dims
            )
        ));
    }
    let win = Window::of(node, Some((kh, kw)))?;
    if win.kernel != (kh, kw) {
        bail!(err(
            node,
            format!(
                "kernel_shape {:?} is not the weights' {kh}x{kw}",
                win.kernel
            )
        ));
    }
    let (oh, ow) = win.output(node, (h, w), false)?;
    let ((sy, sx), (dy, dx), (by, bx)) = (win.stride, win.dilation, win.begin);
    let per_group = o / g;
    let mut out = vec![0f32; o * oh * ow];
    out.par_chunks_mut(oh * ow)
        .enumerate()
        .for_each(|(oc, acc)| {
            let group = oc / per_group;
            for ic in 0..cg {
                let plane = &x.data[(group * cg + ic) * h * w..][..h * w];
                for ky in 0..kh {
                    let (y_lo, y_hi) = Window::inside(h, oh, ky, sy, dy, by);
                    for kx in 0..kw {
                        let (x_lo, x_hi) = Window::inside(w, ow, kx, sx, dx, bx);
                        if x_lo >= x_hi {
                            continue;
                        }
                        let weight = layer.w[((oc * cg + ic) * kh + ky) * kw + kx];
                        for oy in y_lo..y_hi {
                            let row = &plane[(oy * sy + ky * dy - by) * w..][..w];
                            let taps = row[x_lo * sx + kx * dx - bx..].iter().step_by(sx);
                            for (a, v) in acc[oy * ow + x_lo..oy * ow + x_hi].iter_mut().zip(taps) {
                                *a += weight * v;
                            }
                        }
                    }
                }
            }
            if let Some(b) = layer.bias {
                acc.iter_mut().for_each(|a| *a += b[oc]);
            }
        });
    Tensor::new(vec![1, o, oh, ow], out)
}

/// ONNX ConvTranspose (2-D, batch 1, no `output_shape`).
pub(super) fn conv_transpose(ev: &Evaluator, node: &NodeProto, x: &Tensor) -> Result<Tensor> {
    let layer = Layer::of(ev, node, |d, g| d[1] * g)?;
    let [cin, per_group, kh, kw] = layer.dims;
    let (c, h, w) = chw(node, x)?;
    let g = layer.groups;
    if c != cin || !c.is_multiple_of(g) {
        bail!(err(
            node,
            format!(
                "weights {:?} and group {g} do not fit {c} input channels",
                layer.dims
            )
        ));
    }
    if ints(node, "output_shape")?.is_some() {
        bail!(err(
            node,
            "output_shape is not supported (give pads and output_padding)"
        ));
    }
    let win = Window::of(node, Some((kh, kw)))?;
    let extra = match ints(node, "output_padding")? {
        None => (0, 0),
        Some(v) if v.len() == 2 && v.iter().all(|p| *p >= 0) => (v[0] as usize, v[1] as usize),
        Some(v) => bail!(err(node, format!("output_padding {v:?}"))),
    };
    let ((sy, sx), (dy, dx), (by, bx)) = (win.stride, win.dilation, win.begin);
    let full = |n: usize, s: usize, d: usize, k: usize, extra: usize| {
        (n - 1) * s + d * (k - 1) + 1 + extra
    };
    let (fh, fw) = (full(h, sy, dy, kh, extra.0), full(w, sx, dx, kw, extra.1));
    if fh <= by + win.end.0 || fw <= bx + win.end.1 {
        bail!(err(
            node,
            format!("pads {:?} {:?} leave no output", win.begin, win.end)
        ));
    }
    let (oh, ow) = (fh - by - win.end.0, fw - bx - win.end.1);
    let group_in = c / g;
    let mut out = vec![0f32; per_group * g * oh * ow];
    out.par_chunks_mut(oh * ow)
        .enumerate()
        .for_each(|(oc, acc)| {
            let (group, j) = (oc / per_group, oc % per_group);
            for ic in group * group_in..(group + 1) * group_in {
                let plane = &x.data[ic * h * w..][..h * w];
                for ky in 0..kh {
                    for kx in 0..kw {
                        let weight = layer.w[((ic * per_group + j) * kh + ky) * kw + kx];
                        for iy in 0..h {
                            let Some(oy) = (iy * sy + ky * dy).checked_sub(by).filter(|y| *y < oh)
                            else {
                                continue;
                            };
                            for ix in 0..w {
                                if let Some(ox) =
                                    (ix * sx + kx * dx).checked_sub(bx).filter(|v| *v < ow)
                                {
                                    acc[oy * ow + ox] += weight * plane[iy * w + ix];
                                }
                            }
                        }
                    }
                }
            }
            if let Some(b) = layer.bias {
                acc.iter_mut().for_each(|a| *a += b[oc]);
            }
        });
    Tensor::new(vec![1, per_group * g, oh, ow], out)
}
