//! ONNX to SmartVM.
//!
//! `compile` reads a float ONNX model (tract-onnx parses the protobuf and runs the float model
//! for calibration), chooses int8 parameters by post-training static quantization (per-tensor
//! asymmetric activations from calibration ranges, per-output-channel symmetric weights), and
//! lowers the graph to SmartVM assembly plus weight blocks sized for chain storage.

pub mod lower;
pub mod onnx;
pub mod qdq;
pub mod quant;

use std::collections::HashMap;
use std::path::Path;

use anyhow::{anyhow, bail, Result};
use smartvm_isa::{asm, Program, Shape};

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
    /// How float inputs map to the program's int8 input.
    pub input: QParams,
    /// How the program's int8 output maps back to floats.
    pub output: QParams,
    /// Input shape with the batch dimension (as the ONNX model takes it).
    pub input_shape: Vec<usize>,
}

impl Compiled {
    /// Quantizes a float input for the program.
    pub fn quantize_input(&self, x: &[f32]) -> Vec<i8> {
        x.iter().map(|v| self.input.quantize(*v)).collect()
    }

    /// Dequantizes the program's output.
    pub fn dequantize_output(&self, q: &[i8]) -> Vec<f32> {
        q.iter().map(|v| self.output.dequantize(*v)).collect()
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
    if calibration.is_empty() {
        bail!("post-training quantization needs at least one calibration input");
    }
    let (c, h, w) = match input_shape {
        [1, c, h, w] => (*c, *h, *w),
        [1, n] => (*n, 1, 1),
        other => bail!("input shape {other:?}: expected [1, C, H, W] or [1, N]"),
    };
    let mut model = onnx::OnnxModel::load(path)?;
    let fixed = qdq::fold(&mut model)?;
    let input = model.input_name()?;
    let mut names = vec![input.clone()];
    names.extend(
        model
            .nodes()
            .iter()
            .flat_map(|n| n.output.iter().filter(|o| !o.is_empty()).cloned()),
    );
    let runner = FloatRunner::new(path, input_shape, &names)?;
    // Recurrent layers also calibrate their inner tensors, from a float run of their own.
    let recurrent = model
        .nodes()
        .iter()
        .filter(|n| n.op_type == "LSTM")
        .map(|n| {
            Ok((
                n.input.first().cloned().unwrap_or_default(),
                lower::Lstm::from_node(n, &model)?,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut ranges: HashMap<String, (f32, f32)> = HashMap::new();
    for x in calibration {
        let values: HashMap<&String, Vec<f32>> = names.iter().zip(runner.run(x)?).collect();
        for (name, values) in &values {
            let e = ranges
                .entry((*name).clone())
                .or_insert((f32::MAX, f32::MIN));
            for v in values {
                e.0 = e.0.min(*v);
                e.1 = e.1.max(*v);
            }
        }
        for (input, layer) in &recurrent {
            if let Some(x) = values.get(input) {
                layer.calibrate(x, &mut ranges);
            }
        }
    }
    let input_q = match fixed.get(&input) {
        Some(q) => *q,
        None => {
            let (lo, hi) = ranges[&input];
            QParams::from_range(lo, hi)
        }
    };
    let shape = Shape::new(c as u32, 1, h as u32, w as u32);
    let lowered = lower::Lowering::new(&model, &ranges, &fixed, input, shape, input_q).run()?;
    let mut program =
        asm::assemble(&lowered.source).map_err(|e| anyhow!("generated assembly: {e}"))?;
    program.blocks = Program::manifest_of(&lowered.blocks);
    Ok(Compiled {
        program,
        blocks: lowered.blocks,
        source: lowered.source,
        input: input_q,
        output: lowered.quant,
        input_shape: input_shape.to_vec(),
    })
}
