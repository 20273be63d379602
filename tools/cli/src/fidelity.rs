//! `smartvm fidelity`: how closely the integer program tracks the float model. Compiles the ONNX
//! file calibrated on the first inputs of a `.npy`, then runs the next ones both ways (tract's
//! float execution as the reference) and reports top-1 agreement, SQNR of the outputs, and the
//! median latency of each, measured in the same run.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, bail, Result};
use clap::Args;
use smartvm_compiler::{compile_with, read_npy, Compiled, FloatRunner, Normalization};
use smartvm_vm::{Executable, WeightPack};

use crate::run::{argmax, execute_with};
use crate::Backend;

/// Arguments of `smartvm fidelity`.
#[derive(Args)]
pub struct FidelityArgs {
    /// Float ONNX model.
    model: PathBuf,
    /// Inputs: float32 .npy of shape [N, ...input shape without batch] (raw values with a
    /// normalization option).
    #[arg(long)]
    inputs: PathBuf,
    #[command(flatten)]
    normalization: crate::compile::NormalizationArgs,
    /// Input shape with batch 1, e.g. 1,3,224,224.
    #[arg(long, value_delimiter = ',', required = true)]
    input_shape: Vec<usize>,
    /// Name of the float model's output to compare with.
    #[arg(long, default_value = "logits")]
    output: String,
    /// Inputs used for calibration (taken first from the file).
    #[arg(long, default_value_t = 8)]
    calibration_count: usize,
    /// Inputs compared (taken after the calibration inputs; fewer if the file ends).
    #[arg(long, default_value_t = 100)]
    count: usize,
    /// Kernel backend of the integer runs.
    #[arg(long, value_enum, default_value_t = Backend::Native)]
    backend: Backend,
    /// Fail unless the SQNR (dB) reaches this.
    #[arg(long)]
    min_sqnr: Option<f64>,
    /// Fail unless this share of top-1 classes agree.
    #[arg(long)]
    min_agreement: Option<f64>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// The median of some samples (NaN for none).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// A model compiled on its calibration inputs, validated, with its float reference beside it.
pub struct Prepared {
    /// The compiler's output.
    pub compiled: Compiled,
    /// The validated program.
    pub exe: Executable,
    /// tract's float execution of the same ONNX file.
    pub float: FloatRunner,
    /// The weight blocks in one allocation.
    pub pack: WeightPack,
    /// Seconds the compilation took.
    pub compile_s: f64,
}

/// Compiles `model` (input shape with batch 1) on `calibration` and loads its float reference,
/// compared on its output `output`; with `normalization` folded into the program, the inputs
/// are raw values.
pub fn prepare(
    model: &Path,
    shape: &[usize],
    calibration: &[Vec<f32>],
    output: &str,
    normalization: Option<&Normalization>,
) -> Result<Prepared> {
    let started = Instant::now();
    let compiled = compile_with(model, shape, calibration, normalization)?;
    let compile_s = started.elapsed().as_secs_f64();
    let exe = Executable::new(compiled.program.clone())
        .map_err(|e| anyhow!("{}: compiled program is invalid: {e:?}", model.display()))?;
    let float = FloatRunner::new(model, shape, &[output.to_string()])?;
    let pack = crate::memory::weight_pack(&compiled.blocks);
    Ok(Prepared {
        compiled,
        exe,
        float,
        pack,
        compile_s,
    })
}

/// The integer program against the float model on the same inputs.
pub struct Comparison {
    /// Share of inputs where both pick the same top-1 class.
    pub agreement: f64,
    /// Signal-to-quantization-noise ratio of the dequantized outputs, in dB.
    pub sqnr: f64,
    /// Median latency of the float model (tract), ms.
    pub float_ms: f64,
    /// Median latency of the integer program, ms.
    pub int_ms: f64,
    /// With labels: top-1 accuracy of the integer program and of the float model.
    pub accuracy: Option<(f64, f64)>,
}

fn float_class(values: &[f32]) -> usize {
    values
        .iter()
        .enumerate()
        .fold(0, |b, (i, v)| if *v > values[b] { i } else { b })
}

/// Runs every test input through the float model and the integer program, timing each.
pub fn compare(
    float: &FloatRunner,
    compiled: &Compiled,
    exe: &Executable,
    weights: &WeightPack,
    tests: &[Vec<f32>],
    labels: Option<&[u8]>,
    backend: Backend,
) -> Result<Comparison> {
    let (mut signal, mut noise, mut agree) = (0f64, 0f64, 0usize);
    let (mut int_ok, mut float_ok) = (0usize, 0usize);
    let (mut t_float, mut t_int) = (Vec::new(), Vec::new());
    for (i, x) in tests.iter().enumerate() {
        let t = Instant::now();
        let reference = float.run(&compiled.float_input(x))?.remove(0);
        t_float.push(t.elapsed().as_secs_f64() * 1e3);
        let q = compiled.quantize_input(x);
        let t = Instant::now();
        let out = execute_with(backend, exe, &q, weights, u64::MAX)?;
        t_int.push(t.elapsed().as_secs_f64() * 1e3);
        let ours = compiled.dequantize_output(&out.output);
        for (a, b) in reference.iter().zip(&ours) {
            signal += (*a as f64).powi(2);
            noise += (*a as f64 - *b as f64).powi(2);
        }
        let (fc, ic) = (float_class(&reference), argmax(&out.output));
        agree += (fc == ic) as usize;
        if let Some(label) = labels.and_then(|l| l.get(i)) {
            int_ok += (ic == *label as usize) as usize;
            float_ok += (fc == *label as usize) as usize;
        }
    }
    let n = tests.len().max(1) as f64;
    Ok(Comparison {
        agreement: agree as f64 / n,
        sqnr: 10.0 * (signal / noise.max(f64::MIN_POSITIVE)).log10(),
        float_ms: median(t_float),
        int_ms: median(t_int),
        accuracy: labels.map(|_| (int_ok as f64 / n, float_ok as f64 / n)),
    })
}

pub fn fidelity(args: FidelityArgs) -> Result<()> {
    let per_input: usize = args.input_shape.iter().product();
    let (shape, values) = read_npy(&args.inputs)?;
    if shape.iter().skip(1).product::<usize>() != per_input {
        bail!(
            "{}: inputs of shape {shape:?} do not match --input-shape {:?}",
            args.inputs.display(),
            args.input_shape
        );
    }
    let inputs: Vec<Vec<f32>> = values.chunks(per_input).map(|c| c.to_vec()).collect();
    if inputs.len() <= args.calibration_count {
        bail!(
            "{} holds only {} inputs",
            args.inputs.display(),
            inputs.len()
        );
    }
    let (calibration, rest) = inputs.split_at(args.calibration_count);
    let tests = &rest[..args.count.min(rest.len())];

    let Prepared {
        compiled,
        exe,
        float,
        pack,
        compile_s,
    } = prepare(
        &args.model,
        &args.input_shape,
        calibration,
        &args.output,
        args.normalization.get().as_ref(),
    )?;
    let Comparison {
        agreement,
        sqnr,
        float_ms,
        int_ms,
        ..
    } = compare(&float, &compiled, &exe, &pack, tests, None, args.backend)?;
    let weight_bytes: usize = compiled.blocks.iter().map(Vec::len).sum();
    if args.json {
        let report = serde_json::json!({
            "model": args.model.display().to_string(), "inputs": tests.len(),
            "calibration_inputs": calibration.len(), "top1_agreement": agreement, "sqnr_db": sqnr,
            "float_ms": float_ms, "int_ms": int_ms, "backend": format!("{:?}", args.backend),
            "instructions": exe.instruction_count(), "weight_blocks": compiled.blocks.len(),
            "weight_bytes": weight_bytes, "compile_s": compile_s,
        });
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "{}: {} inputs (calibrated on {}), top-1 agreement {:.1}%, SQNR {sqnr:.1} dB",
            args.model.display(),
            tests.len(),
            calibration.len(),
            100.0 * agreement
        );
        println!(
            "  program {} instructions, {} weight blocks ({weight_bytes} bytes), compiled in {compile_s:.1} s",
            exe.instruction_count(),
            compiled.blocks.len()
        );
        println!(
            "  median latency: float (tract) {float_ms:.2} ms, integer ({:?} kernels) {int_ms:.2} ms",
            args.backend
        );
    }
    if args.min_sqnr.is_some_and(|min| sqnr < min) {
        bail!(
            "SQNR {sqnr:.1} dB is below the required {:?} dB",
            args.min_sqnr
        );
    }
    if args.min_agreement.is_some_and(|min| agreement < min) {
        bail!(
            "top-1 agreement {agreement:.3} is below the required {:?}",
            args.min_agreement
        );
    }
    Ok(())
}
