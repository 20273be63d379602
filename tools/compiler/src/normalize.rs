//! Input normalization folded into the program, so callers send raw bytes (DESIGN.md: "the
//! on-chain input is raw data as users have it").
//!
//! A model trained on `(pixel / scale - mean[c]) / std[c]` is compiled with those three given;
//! the program then takes the pixels themselves, one unsigned byte each, and its first
//! instruction is a 256-entry table (ACT_LUT indexes by the raw byte):
//! - one mean and one std for every channel: the table maps each byte straight to the
//!   normalized value in the model input's quantization, the only rounding there is;
//! - a mean or std per channel: one table cannot know the channel, so the table makes the
//!   byte a signed `pixel - 128` and a depthwise 1x1 convolution, added in front of the graph,
//!   applies `1 / (scale · std[c])` and `-mean[c] / std[c]` with per-channel requantization.
//!   (Folding it into the first convolution instead would be wrong at its padding, which
//!   stands for a normalized 0, not a pixel.)
//!
//! The model input's quantization covers every value a byte can normalize to, not just the
//! calibration images, so no pixel saturates.

use anyhow::{bail, Result};
use tract_onnx::pb::NodeProto;

use crate::onnx::{int_attr, ints_attr, OnnxModel};
use crate::quant::QParams;

/// `float input = (raw / scale - mean[c]) / std[c]`, one mean and std for all channels or one
/// per channel.
#[derive(Clone, Debug, PartialEq)]
pub struct Normalization {
    /// What raw values are divided by first (255 for pixels the model sees in [0, 1]).
    pub scale: f32,
    /// Subtracted after scaling: one value, or one per channel.
    pub mean: Vec<f32>,
    /// Divided by last: one value, or one per channel.
    pub std: Vec<f32>,
}

impl Normalization {
    /// Refuses values that would divide by zero, or per-channel lists of the wrong length.
    pub fn check(&self, channels: usize) -> Result<()> {
        if !(self.scale.is_finite() && self.scale > 0.0) {
            bail!("input scale {} must be positive", self.scale);
        }
        for (name, v) in [("mean", &self.mean), ("std", &self.std)] {
            if v.len() != 1 && v.len() != channels {
                bail!(
                    "{} {name} values for {channels} input channels: give one, or one per channel",
                    v.len()
                );
            }
            if v.iter().any(|x| !x.is_finite()) {
                bail!("{name} {v:?} must be finite");
            }
        }
        if self.std.contains(&0.0) {
            bail!("std {:?} must not be 0", self.std);
        }
        Ok(())
    }

    /// Whether one mean and one std apply to every channel.
    pub fn per_tensor(&self) -> bool {
        let same = |v: &[f32]| v.iter().all(|x| *x == v[0]);
        same(&self.mean) && same(&self.std)
    }

    fn mean_std(&self, c: usize) -> (f32, f32) {
        (
            self.mean[c.min(self.mean.len() - 1)],
            self.std[c.min(self.std.len() - 1)],
        )
    }

    /// The float model's input for raw value `raw` of channel `c`.
    pub fn apply(&self, raw: f32, c: usize) -> f32 {
        let (mean, std) = self.mean_std(c);
        (raw / self.scale - mean) / std
    }

    /// A whole raw input (C-major, `channels` planes) as the float model takes it.
    pub fn normalize(&self, raw: &[f32], channels: usize) -> Vec<f32> {
        let plane = (raw.len() / channels.max(1)).max(1);
        raw.iter()
            .enumerate()
            .map(|(i, v)| self.apply(*v, i / plane))
            .collect()
    }

    /// The quantization of the model input: every value a byte 0..=255 normalizes to.
    pub fn model_input_quant(&self, channels: usize) -> QParams {
        let (mut lo, mut hi) = (f32::MAX, f32::MIN);
        for c in 0..channels {
            for raw in [0.0, 255.0] {
                let v = self.apply(raw, c);
                lo = lo.min(v);
                hi = hi.max(v);
            }
        }
        QParams::from_range(lo, hi)
    }

    /// The table of a per-tensor normalization: raw byte to the model input's int8.
    pub fn table(&self, model_input: QParams) -> Vec<u8> {
        (0..=255u8)
            .map(|b| model_input.quantize(self.apply(b as f32, 0)) as u8)
            .collect()
    }
}

/// The quantization of `pixel - 128`, which [`raw_to_signed`] makes of a raw byte.
pub const SIGNED_PIXEL: QParams = QParams {
    scale: 1.0,
    zero_point: -128,
};

/// The table making a raw byte `pixel - 128`.
pub fn raw_to_signed() -> Vec<u8> {
    (0..=255u8).map(|b| (b as i32 - 128) as i8 as u8).collect()
}

/// Puts a depthwise 1x1 Conv computing the per-channel normalization in front of `model`,
/// reading a new graph input; returns that input's name.
pub fn prepend_per_channel(
    model: &mut OnnxModel,
    norm: &Normalization,
    channels: usize,
) -> Result<String> {
    let input = model.input_name()?;
    let raw = format!("{input}#raw");
    let (weights, bias): (Vec<f32>, Vec<f32>) = (0..channels)
        .map(|c| {
            let (mean, std) = norm.mean_std(c);
            (1.0 / (norm.scale * std), -mean / std)
        })
        .unzip();
    let (wname, bname) = (format!("{input}#norm_w"), format!("{input}#norm_b"));
    model
        .initializers
        .insert(wname.clone(), (vec![channels, 1, 1, 1], weights));
    model
        .initializers
        .insert(bname.clone(), (vec![channels], bias));
    let conv = NodeProto {
        name: "input normalization".into(),
        op_type: "Conv".into(),
        input: vec![raw.clone(), wname, bname],
        output: vec![input.clone()],
        attribute: vec![
            ints_attr("kernel_shape", vec![1, 1]),
            int_attr("group", channels as i64),
        ],
        ..Default::default()
    };
    let graph = model.proto.graph.get_or_insert_with(Default::default);
    graph.node.insert(0, conv);
    for i in graph.input.iter_mut().filter(|i| i.name == input) {
        i.name = raw.clone();
    }
    Ok(raw)
}
