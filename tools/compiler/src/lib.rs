//! ONNX to SmartVM.
//!
//! `compile` reads a float ONNX model (tract-onnx parses the protobuf), chooses int8 parameters
//! by post-training static quantization (per-tensor asymmetric activations from calibration
//! ranges, per-output-channel symmetric weights), and lowers the graph to SmartVM assembly plus
//! weight blocks sized for chain storage.
//!
//! `compile` is a pure function of the ONNX file, the calibration inputs and the shape: the
//! same bytes on every machine, whatever its CPU or thread count (DESIGN.md invariant 9). The
//! calibration run goes through [`reference`], a float evaluator with one fixed order of
//! arithmetic, not through tract (whose kernels are picked per CPU); tract stays the float
//! reference of the fidelity checks, where a tolerance applies.

pub mod fold;
pub mod lower;
pub mod normalize;
pub mod onnx;
pub mod qdq;
pub mod quant;
pub mod reference;
pub mod unary;

use std::collections::HashMap;
use std::path::Path;

use anyhow::{anyhow, bail, Result};
use rayon::prelude::*;
use smartvm_isa::{asm, Program, Shape};

pub use normalize::Normalization;
pub use onnx::FloatRunner;
pub use quant::QParams;

/// A compiled model.
pub struct Compiled {
    /// The program, manifest filled.
    pub program: Program,
    /// Weight blocks in manifest order.
    pub blocks: Vec<Vec<u8>>,
    /// The assembly the program was assembled from.
    pub source: String,
    /// How the float model's input maps to int8 (after the program's own normalization
    /// where `normalization` is set).
    pub input: QParams,
    /// The input normalization folded into the program; then the program takes raw bytes.
    pub normalization: Option<Normalization>,
    /// How the program's int8 output maps back to floats.
    pub output: QParams,
    /// Input shape with the batch dimension (as the ONNX model takes it).
    pub input_shape: Vec<usize>,
}

impl Compiled {
    /// The program's input for `x`: the float model's input quantized, or, for a program with
    /// its normalization folded in, the raw values `x` as bytes (rounded, clamped to 0..=255).
    pub fn quantize_input(&self, x: &[f32]) -> Vec<i8> {
        encode_input(self.input, self.normalization.as_ref(), x)
    }

    /// The float model's input for `x` (raw values where a normalization is folded in).
    pub fn float_input(&self, x: &[f32]) -> Vec<f32> {
        match &self.normalization {
            Some(n) => n.normalize(x, self.input_shape.get(1).copied().unwrap_or(1)),
            None => x.to_vec(),
        }
    }

    /// Dequantizes the program's output.
    pub fn dequantize_output(&self, q: &[i8]) -> Vec<f32> {
        q.iter().map(|v| self.output.dequantize(*v)).collect()
    }
}

/// A program's input from `values`: raw values as bytes (rounded, clamped to 0..=255, an
/// unsigned byte in each `i8`) for a program with a normalization folded in, else the float
/// model's input quantized with `input`. Compiler, CLI and chain client share it.
pub fn encode_input(
    input: QParams,
    normalization: Option<&Normalization>,
    values: &[f32],
) -> Vec<i8> {
    match normalization {
        Some(_) => values
            .iter()
            .map(|v| v.round().clamp(0.0, 255.0) as u8 as i8)
            .collect(),
        None => values.iter().map(|v| input.quantize(*v)).collect(),
    }
}

/// Reads a float32 `.npy` array: its shape and its values in C order.
pub fn read_npy(path: &Path) -> Result<(Vec<usize>, Vec<f32>)> {
    let file = std::fs::File::open(path).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    let npy = npyz::NpyFile::new(std::io::BufReader::new(file))
        .map_err(|e| anyhow!("{}: not a .npy file: {e}", path.display()))?;
    let shape = npy.shape().iter().map(|d| *d as usize).collect();
    let values = npy
        .into_vec::<f32>()
        .map_err(|e| anyhow!("{}: expected float32 data: {e}", path.display()))?;
    Ok((shape, values))
}

/// Compiles `path` for inputs of `input_shape` (batch first, batch 1), calibrating on `calibration`.
pub fn compile(path: &Path, input_shape: &[usize], calibration: &[Vec<f32>]) -> Result<Compiled> {
    compile_with(path, input_shape, calibration, None)
}

/// [`compile`] with the model's input normalization folded into the program
/// ([`normalize`]): `calibration` then holds raw values, and the program takes raw bytes.
pub fn compile_with(
    path: &Path,
    input_shape: &[usize],
    calibration: &[Vec<f32>],
    normalization: Option<&Normalization>,
) -> Result<Compiled> {
    if calibration.is_empty() {
        bail!("post-training quantization needs at least one calibration input");
    }
    let (c, h, w) = match input_shape {
        [1, c, h, w] => (*c, *h, *w),
        [1, n] => (*n, 1, 1),
        other => bail!("input shape {other:?}: expected [1, C, H, W] or [1, N]"),
    };
    let mut model = onnx::OnnxModel::load(path)?;
    fold::fold(&mut model, input_shape)?;
    let mut fixed = qdq::fold(&mut model)?;
    let input = model.input_name()?;
    // With a normalization: the tensor the program's input table writes, its quantization and
    // the table; the calibration inputs as the (possibly extended) graph takes them.
    let mut table = None;
    let mut program_input = (input.clone(), None);
    let mut calibration = std::borrow::Cow::Borrowed(calibration);
    if let Some(norm) = normalization {
        norm.check(c)?;
        let model_q = norm.model_input_quant(c);
        fixed.insert(input.clone(), model_q);
        if norm.per_tensor() {
            table = Some(norm.table(model_q));
            program_input.1 = Some(model_q);
            calibration = calibration
                .iter()
                .map(|x| norm.normalize(x, c))
                .collect::<Vec<_>>()
                .into();
        } else {
            let raw = normalize::prepend_per_channel(&mut model, norm, c)?;
            fixed.insert(raw.clone(), normalize::SIGNED_PIXEL);
            table = Some(normalize::raw_to_signed());
            program_input = (raw, Some(normalize::SIGNED_PIXEL));
        }
    }
    let ranges = calibrate(&model, input_shape, &calibration)?;
    let input_q = match fixed.get(&input) {
        Some(q) => *q,
        None => {
            let (lo, hi) = ranges
                .get(&input)
                .copied()
                .ok_or_else(|| anyhow!("no calibration range for the input {input}"))?;
            QParams::from_range(lo, hi)
        }
    };
    let shape = Shape::new(c as u32, 1, h as u32, w as u32);
    let (lowered_input, lowered_q) = (program_input.0, program_input.1.unwrap_or(input_q));
    let mut lowering =
        lower::Lowering::new(&model, &ranges, &fixed, lowered_input, shape, lowered_q);
    if let Some(table) = table {
        lowering.input_table(table);
    }
    let lowered = lowering.run()?;
    let mut program =
        asm::assemble(&lowered.source).map_err(|e| anyhow!("generated assembly: {e}"))?;
    program.blocks = Program::manifest_of(&lowered.blocks);
    Ok(Compiled {
        program,
        blocks: lowered.blocks,
        source: lowered.source,
        input: input_q,
        normalization: normalization.cloned(),
        output: lowered.quant,
        input_shape: input_shape.to_vec(),
    })
}

/// Each tensor's (min, max) over `inputs`, by name: the graph's input and node outputs, and the
/// inner tensors of recurrent layers (`node#part`). Inputs run in parallel through the
/// fixed-order [`reference::Evaluator`]; their ranges merge in input order, so neither the
/// thread count nor the CPU changes a bit.
pub fn calibrate(
    model: &onnx::OnnxModel,
    input_shape: &[usize],
    inputs: &[Vec<f32>],
) -> Result<HashMap<String, (f32, f32)>> {
    let evaluator = reference::Evaluator::new(model, input_shape)?;
    let per_input = inputs
        .par_iter()
        .map(|x| {
            let mut ranges = HashMap::new();
            evaluator.run(x, &mut |name, values| widen(&mut ranges, name, values))?;
            Ok(ranges)
        })
        .collect::<Result<Vec<HashMap<String, (f32, f32)>>>>()?;
    let mut ranges: HashMap<String, (f32, f32)> = HashMap::new();
    for one in per_input {
        for (name, (lo, hi)) in one {
            widen(&mut ranges, &name, &[lo, hi]);
        }
    }
    Ok(ranges)
}

/// Widens `name`'s range in `ranges` to cover `values`.
fn widen(ranges: &mut HashMap<String, (f32, f32)>, name: &str, values: &[f32]) {
    let e = match ranges.get_mut(name) {
        Some(e) => e,
        None => ranges
            .entry(name.to_string())
            .or_insert((f32::MAX, f32::MIN)),
    };
    for v in values {
        e.0 = e.0.min(*v);
        e.1 = e.1.max(*v);
    }
}
