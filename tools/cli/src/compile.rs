//! `smartvm compile`: float ONNX in, SmartVM program + weight pack + quantization out.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use smartvm_compiler::{compile_with, encode_input, read_npy, Normalization, QParams};
use smartvm_isa::pack::encode_pack;

/// Arguments of `smartvm compile`.
#[derive(Args)]
pub struct CompileArgs {
    /// Float ONNX model.
    model: PathBuf,
    /// Calibration inputs: a float32 .npy of shape [N, ...input shape without batch], or IDX
    /// images (.gz or raw), scaled to [0, 1] (raw 0-255 with a normalization option).
    #[arg(long)]
    calibration: PathBuf,
    #[command(flatten)]
    normalization: NormalizationArgs,
    /// How many calibration inputs to use from the file.
    #[arg(long, default_value_t = 512)]
    calibration_count: usize,
    /// Input shape with batch 1, e.g. 1,1,32,32.
    #[arg(long, value_delimiter = ',', required = true)]
    input_shape: Vec<usize>,
    /// Output directory: program.smvm, program.sasm, weights.smw, quant.json.
    #[arg(short, long)]
    output: PathBuf,
}

/// The model's input normalization, folded into the program: with any of these the program
/// takes raw bytes (e.g. pixels 0-255) and the model sees `(raw / scale - mean) / std`.
#[derive(Args, Clone, Default)]
pub struct NormalizationArgs {
    /// Raw values are divided by this first (255 for a model trained on pixel / 255; 1 for a
    /// model trained on raw 0-255 pixels).
    #[arg(long)]
    input_scale: Option<f32>,
    /// Subtracted after the scaling: one value, or one per channel (ImageNet:
    /// 0.485,0.456,0.406).
    #[arg(long, value_delimiter = ',')]
    mean: Option<Vec<f32>>,
    /// Divided by last: one value, or one per channel (ImageNet: 0.229,0.224,0.225).
    #[arg(long, value_delimiter = ',')]
    std: Option<Vec<f32>>,
}

impl NormalizationArgs {
    /// The normalization asked for, `None` when no option was given.
    pub fn get(&self) -> Option<Normalization> {
        if self.input_scale.is_none() && self.mean.is_none() && self.std.is_none() {
            return None;
        }
        Some(Normalization {
            scale: self.input_scale.unwrap_or(1.0),
            mean: self.mean.clone().unwrap_or_else(|| vec![0.0]),
            std: self.std.clone().unwrap_or_else(|| vec![1.0]),
        })
    }
}

/// The quantization parameters written next to a compiled program. Scales are written as the
/// f64 of their f32: serde_json prints an f32 in its own shortest form when a build enables its
/// `arbitrary_precision` feature (the node's dependencies do) and as an f64 otherwise, so the
/// same compiler wrote other bytes depending on what it was built with.
pub fn quant_json(
    input: QParams,
    output: QParams,
    input_shape: &[usize],
    normalization: Option<&Normalization>,
) -> serde_json::Value {
    let mut v = serde_json::json!({
        "input_shape": input_shape,
        "input": { "scale": input.scale as f64, "zero_point": input.zero_point },
        "output": { "scale": output.scale as f64, "zero_point": output.zero_point },
    });
    if let Some(n) = normalization {
        let f64s = |v: &[f32]| v.iter().map(|x| *x as f64).collect::<Vec<f64>>();
        v["input_format"] = "u8".into();
        v["normalization"] = serde_json::json!({
            "scale": n.scale as f64, "mean": f64s(&n.mean), "std": f64s(&n.std),
        });
    }
    v
}

/// A compiled model's quant.json: how inputs become the program's bytes and outputs floats.
#[derive(Clone, Debug)]
pub struct ModelQuant {
    /// The float model input's int8 quantization.
    pub input: QParams,
    /// The program output's.
    pub output: QParams,
    /// The normalization folded into the program; then it takes raw bytes (`input_format` u8).
    pub normalization: Option<Normalization>,
}

impl ModelQuant {
    /// The program's input for values as a file holds them: raw values for a program with its
    /// normalization folded in, the float model's input otherwise.
    pub fn encode_values(&self, values: &[f32]) -> Vec<i8> {
        encode_input(self.input, self.normalization.as_ref(), values)
    }

    /// The program's input for pixels 0-255: the bytes themselves where the normalization is
    /// folded in, else pixel / 255 quantized (the convention of programs compiled without one).
    pub fn encode_pixels(&self, pixels: &[f32]) -> Vec<i8> {
        match self.normalization {
            Some(_) => self.encode_values(pixels),
            None => pixels
                .iter()
                .map(|p| self.input.quantize(p / 255.0))
                .collect(),
        }
    }

    /// The float model's input for pixels 0-255 of `channels` planes.
    pub fn float_pixels(&self, pixels: &[f32], channels: usize) -> Vec<f32> {
        match &self.normalization {
            Some(n) => n.normalize(pixels, channels),
            None => pixels.iter().map(|p| p / 255.0).collect(),
        }
    }
}

/// Reads `quant.json` back.
pub fn read_quant(path: &Path) -> Result<ModelQuant> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let q = |k: &str| -> Result<QParams> {
        let scale = v[k]["scale"]
            .as_f64()
            .with_context(|| format!("{}: {k}.scale missing", path.display()))?
            as f32;
        let zero_point = v[k]["zero_point"]
            .as_i64()
            .with_context(|| format!("{}: {k}.zero_point missing", path.display()))?
            as i32;
        Ok(QParams { scale, zero_point })
    };
    let normalization = match v.get("normalization") {
        None => None,
        Some(n) => {
            let list = |k: &str| -> Result<Vec<f32>> {
                n[k].as_array()
                    .and_then(|a| a.iter().map(|x| x.as_f64().map(|f| f as f32)).collect())
                    .with_context(|| format!("{}: normalization.{k} is not a list", path.display()))
            };
            let norm = Normalization {
                scale: n["scale"]
                    .as_f64()
                    .with_context(|| format!("{}: normalization.scale missing", path.display()))?
                    as f32,
                mean: list("mean")?,
                std: list("std")?,
            };
            // The per-channel lists must match the channels of input_shape [1, C, ...]: a list
            // of another length (an empty one included) is refused here, not used.
            let channels = v["input_shape"][1].as_u64().unwrap_or(1) as usize;
            norm.check(channels)
                .with_context(|| format!("{}: normalization", path.display()))?;
            Some(norm)
        }
    };
    Ok(ModelQuant {
        input: q("input")?,
        output: q("output")?,
        normalization,
    })
}

pub fn compile(args: CompileArgs) -> Result<()> {
    let per_input: usize = args.input_shape.iter().product();
    let normalization = args.normalization.get();
    let values = if args.calibration.extension().is_some_and(|e| e == "npy") {
        read_npy(&args.calibration)?.1
    } else {
        let idx = crate::idx::Idx::read(&args.calibration)?;
        let scale = if normalization.is_some() { 1.0 } else { 255.0 };
        idx.data.iter().map(|p| *p as f32 / scale).collect()
    };
    if per_input == 0 || values.len() % per_input != 0 || values.is_empty() {
        bail!(
            "{}: {} values do not make whole inputs of shape {:?}",
            args.calibration.display(),
            values.len(),
            args.input_shape
        );
    }
    let calibration: Vec<Vec<f32>> = values
        .chunks(per_input)
        .take(args.calibration_count.max(1))
        .map(|c| c.to_vec())
        .collect();
    let compiled = compile_with(
        &args.model,
        &args.input_shape,
        &calibration,
        normalization.as_ref(),
    )?;
    std::fs::create_dir_all(&args.output)
        .with_context(|| format!("creating {}", args.output.display()))?;
    let write = |name: &str, bytes: &[u8]| {
        let path = args.output.join(name);
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))
    };
    write("program.smvm", &compiled.program.encode())?;
    write("program.sasm", compiled.source.as_bytes())?;
    write("weights.smw", &encode_pack(&compiled.blocks))?;
    let quant = quant_json(
        compiled.input,
        compiled.output,
        &args.input_shape,
        compiled.normalization.as_ref(),
    );
    write(
        "quant.json",
        serde_json::to_string_pretty(&quant)?.as_bytes(),
    )?;
    let weight_bytes: usize = compiled.blocks.iter().map(|b| b.len()).sum();
    println!(
        "{}: {} instructions, {} weight blocks ({} bytes), calibrated on {} inputs",
        args.output.display(),
        smartvm_isa::decode_instructions(&compiled.program.code).count(),
        compiled.blocks.len(),
        weight_bytes,
        calibration.len()
    );
    Ok(())
}
