//! Local response normalization across channels (AlexNet, ZFNet, GoogLeNet v1).

use anyhow::{bail, Result};
use tract_onnx::pb::NodeProto;

use super::conv::chw;
use super::Tensor;
use crate::lower::{err, float, int};

/// LRN's attributes.
pub(crate) struct Lrn {
    pub size: usize,
    pub alpha: f32,
    pub beta: f32,
    pub bias: f32,
}

impl Lrn {
    /// Reads `node`'s attributes (ONNX defaults: alpha 1e-4, beta 0.75, bias 1).
    pub fn of(node: &NodeProto) -> Result<Lrn> {
        let size = int(node, "size", 0)?;
        if size <= 0 {
            bail!(err(node, format!("size {size} must be positive")));
        }
        Ok(Lrn {
            size: size as usize,
            alpha: float(node, "alpha", 1e-4)?,
            beta: float(node, "beta", 0.75)?,
            bias: float(node, "bias", 1.0)?,
        })
    }

    /// The channels whose squares channel `c` of `channels` sums: ONNX's
    /// `[c - floor((size - 1) / 2), c + ceil((size - 1) / 2)]`, clipped.
    pub fn window(&self, c: usize, channels: usize) -> std::ops::Range<usize> {
        let below = (self.size - 1) / 2;
        let above = self.size - 1 - below;
        c.saturating_sub(below)..(c + above + 1).min(channels)
    }

    /// `(bias + alpha / size · sum)^-beta`, what each input is multiplied by.
    pub fn factor(&self, sum: f32) -> f32 {
        libm::powf(self.bias + self.alpha / self.size as f32 * sum, -self.beta)
    }
}

/// ONNX LRN (batch 1): each window's squares summed in channel order, then
/// `x · factor(sum)`. `observe` sees the sums and factors under `name#sum` and `name#factor`
/// (the lowering quantizes its inner tensors from them).
pub(super) fn lrn(
    node: &NodeProto,
    x: &Tensor,
    observe: &mut dyn FnMut(&str, &[f32]),
) -> Result<Tensor> {
    let lrn = Lrn::of(node)?;
    let (c, h, w) = chw(node, x)?;
    let plane = h * w;
    let mut sums = vec![0f32; c * plane];
    for ch in 0..c {
        for at in 0..plane {
            sums[ch * plane + at] = lrn.window(ch, c).fold(0f32, |acc, k| {
                acc + x.data[k * plane + at] * x.data[k * plane + at]
            });
        }
    }
    let factors: Vec<f32> = sums.iter().map(|s| lrn.factor(*s)).collect();
    let name = node.output.first().cloned().unwrap_or_default();
    observe(&format!("{name}#sum"), &sums);
    observe(&format!("{name}#factor"), &factors);
    let data = x.data.iter().zip(&factors).map(|(v, f)| v * f).collect();
    Tensor::new(x.dims.clone(), data).map_err(|e| err(node, e))
}
