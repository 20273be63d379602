//! Reading ONNX models: tract-onnx parses the protobuf; this module reads nodes, attributes and
//! float initializers out of it, and runs the float model for calibration and reference.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use tract_onnx::pb::{AttributeProto, ModelProto, NodeProto, TensorProto};
use tract_onnx::prelude::*;

/// A parsed model: its nodes in order and its float initializers by name.
pub struct OnnxModel {
    /// The protobuf.
    pub proto: ModelProto,
    /// Initializers, converted to f32, with their dims.
    pub initializers: HashMap<String, (Vec<usize>, Vec<f32>)>,
}

/// An initializer's values as f32: float32 weights, the int64/int32 constants (shapes, axes)
/// that Reshape and friends take, and int8/uint8 quantized weights, all exact in f32.
pub(crate) fn tensor_f32(t: &TensorProto) -> Result<Vec<f32>> {
    const FLOAT: i32 = 1;
    const UINT8: i32 = 2;
    const INT8: i32 = 3;
    const INT32: i32 = 6;
    const INT64: i32 = 7;
    let raw = !t.raw_data.is_empty();
    match t.data_type {
        FLOAT if raw => Ok(t
            .raw_data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()),
        FLOAT => Ok(t.float_data.clone()),
        INT64 if raw => Ok(t
            .raw_data
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as f32)
            .collect()),
        INT64 => Ok(t.int64_data.iter().map(|v| *v as f32).collect()),
        INT32 if raw => Ok(t
            .raw_data
            .chunks_exact(4)
            .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32)
            .collect()),
        INT32 => Ok(t.int32_data.iter().map(|v| *v as f32).collect()),
        // Quantized weights and zero points (QDQ models): their raw integer values.
        INT8 if raw => Ok(t.raw_data.iter().map(|b| *b as i8 as f32).collect()),
        UINT8 if raw => Ok(t.raw_data.iter().map(|b| *b as f32).collect()),
        INT8 | UINT8 => Ok(t.int32_data.iter().map(|v| *v as f32).collect()),
        other => bail!(
            "initializer {} has data type {other}; only float32, int8, uint8, int32 and int64 \
             are supported",
            t.name
        ),
    }
}

/// An `INT` attribute, for nodes the graph folding writes.
pub(crate) fn int_attr(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: 2, // INT
        i: value,
        ..Default::default()
    }
}

/// An `INTS` attribute, for nodes the graph folding writes.
pub(crate) fn ints_attr(name: &str, values: Vec<i64>) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: 7, // INTS
        ints: values,
        ..Default::default()
    }
}

impl OnnxModel {
    /// Parses a model file.
    pub fn load(path: &Path) -> Result<OnnxModel> {
        let proto = tract_onnx::onnx()
            .proto_model_for_path(path)
            .map_err(|e| anyhow!("{}: not a readable ONNX model: {e}", path.display()))?;
        let graph = proto
            .graph
            .as_ref()
            .ok_or_else(|| anyhow!("{}: no graph", path.display()))?;
        let mut initializers = HashMap::new();
        for t in &graph.initializer {
            let dims = t.dims.iter().map(|d| *d as usize).collect();
            initializers.insert(t.name.clone(), (dims, tensor_f32(t)?));
        }
        Ok(OnnxModel {
            proto,
            initializers,
        })
    }

    /// The ONNX data type of initializer `name`.
    pub fn data_type(&self, name: &str) -> Option<i32> {
        self.proto
            .graph
            .as_ref()?
            .initializer
            .iter()
            .find(|t| t.name == name)
            .map(|t| t.data_type)
    }

    /// Input `k` of `node` as a constant initializer, `None` where the input is absent, an
    /// error naming the node where it is computed instead.
    pub fn constant(&self, node: &NodeProto, k: usize) -> Result<Option<&(Vec<usize>, Vec<f32>)>> {
        match node.input.get(k) {
            None => Ok(None),
            Some(name) if name.is_empty() => Ok(None),
            Some(name) => self.initializers.get(name).map(Some).ok_or_else(|| {
                crate::lower::err(node, format!("input {name} must be a constant initializer"))
            }),
        }
    }

    /// The graph's nodes in file (topological) order.
    pub fn nodes(&self) -> &[NodeProto] {
        self.proto
            .graph
            .as_ref()
            .map(|g| g.node.as_slice())
            .unwrap_or(&[])
    }

    /// The single graph input that is not an initializer.
    pub fn input_name(&self) -> Result<String> {
        let graph = self
            .proto
            .graph
            .as_ref()
            .ok_or_else(|| anyhow!("no graph"))?;
        let inputs: Vec<_> = graph
            .input
            .iter()
            .filter(|i| !self.initializers.contains_key(&i.name))
            .collect();
        match inputs.as_slice() {
            [one] => Ok(one.name.clone()),
            _ => bail!(
                "the model must have exactly one input, it has {}",
                inputs.len()
            ),
        }
    }
}

/// A float model ready to run, reporting the named tensors.
pub struct FloatRunner {
    plan: std::sync::Arc<TypedSimplePlan>,
    input_shape: Vec<usize>,
}

impl FloatRunner {
    /// Prepares `path` to run on inputs of `input_shape`, returning the tensors named `outputs`.
    pub fn new(path: &Path, input_shape: &[usize], outputs: &[String]) -> Result<FloatRunner> {
        let mut model = tract_onnx::onnx()
            .model_for_path(path)
            .map_err(|e| anyhow!("{e}"))?;
        model
            .set_input_fact(0, f32::fact(input_shape).into())
            .map_err(|e| anyhow!("{e}"))?;
        model
            .select_outputs_by_name(outputs)
            .map_err(|e| anyhow!("{e}"))?;
        let plan = model
            .into_optimized()
            .and_then(|m| m.into_runnable())
            .map_err(|e| anyhow!("tract cannot run {}: {e}", path.display()))?;
        Ok(FloatRunner {
            plan,
            input_shape: input_shape.to_vec(),
        })
    }

    /// Runs one input and returns the requested tensors, flattened.
    pub fn run(&self, input: &[f32]) -> Result<Vec<Vec<f32>>> {
        let tensor = Tensor::from_shape(&self.input_shape, input).map_err(|e| anyhow!("{e}"))?;
        let outputs = self
            .plan
            .run(tvec!(tensor.into()))
            .map_err(|e| anyhow!("{e}"))?;
        outputs
            .iter()
            .map(|t| {
                Ok(t.to_plain_array_view::<f32>()
                    .map_err(|e| anyhow!("{e}"))?
                    .iter()
                    .copied()
                    .collect())
            })
            .collect::<Result<_>>()
            .context("reading float outputs")
    }
}
