//! `smartvm compile`: float ONNX in, SmartVM program + weight pack + quantization out.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use smartvm_compiler::{compile as compile_model, read_npy, QParams};
use smartvm_isa::pack::encode_pack;

/// Arguments of `smartvm compile`.
#[derive(Args)]
pub struct CompileArgs {
    /// Float ONNX model.
    model: PathBuf,
    /// Calibration inputs: a float32 .npy of shape [N, ...input shape without batch], or IDX
    /// images (.gz or raw), scaled to [0, 1].
    #[arg(long)]
    calibration: PathBuf,
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

/// The quantization parameters written next to a compiled program. Scales are written as the
/// f64 of their f32: serde_json prints an f32 in its own shortest form when a build enables its
/// `arbitrary_precision` feature (the node's dependencies do) and as an f64 otherwise, so the
/// same compiler wrote other bytes depending on what it was built with.
pub fn quant_json(input: QParams, output: QParams, input_shape: &[usize]) -> serde_json::Value {
    serde_json::json!({
        "input_shape": input_shape,
        "input": { "scale": input.scale as f64, "zero_point": input.zero_point },
        "output": { "scale": output.scale as f64, "zero_point": output.zero_point },
    })
}

/// Reads `quant.json` back.
pub fn read_quant(path: &Path) -> Result<(QParams, QParams)> {
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
    Ok((q("input")?, q("output")?))
}

pub fn compile(args: CompileArgs) -> Result<()> {
    let per_input: usize = args.input_shape.iter().product();
    let values = if args.calibration.extension().is_some_and(|e| e == "npy") {
        read_npy(&args.calibration)?.1
    } else {
        let idx = crate::idx::Idx::read(&args.calibration)?;
        idx.data.iter().map(|p| *p as f32 / 255.0).collect()
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
    let compiled = compile_model(&args.model, &args.input_shape, &calibration)?;
    std::fs::create_dir_all(&args.output)
        .with_context(|| format!("creating {}", args.output.display()))?;
    let write = |name: &str, bytes: &[u8]| {
        let path = args.output.join(name);
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))
    };
    write("program.smvm", &compiled.program.encode())?;
    write("program.sasm", compiled.source.as_bytes())?;
    write("weights.smw", &encode_pack(&compiled.blocks))?;
    let quant = quant_json(compiled.input, compiled.output, &args.input_shape);
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
