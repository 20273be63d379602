//! Already-quantized (QDQ) ONNX models, as onnxruntime's `quantize_static` writes them: the
//! `QuantizeLinear` → `DequantizeLinear` pairs on activations carry the scales the model was
//! quantized with, and `DequantizeLinear` on int8 initializers holds the weights.
//!
//! [`fold`] turns such a graph back into the float graph the lowering reads (weights
//! dequantized into float initializers, activation pairs removed) and returns the activations'
//! quantization, which the compiler then uses instead of its own calibration. Symmetric
//! per-channel int8 weights come back bit-exact from the lowering's own per-row quantization.

use std::collections::HashMap;

use anyhow::{anyhow, bail, Result};
use tract_onnx::pb::NodeProto;

use crate::onnx::OnnxModel;
use crate::quant::QParams;

const UINT8: i32 = 2;
const INT8: i32 = 3;

fn node_err(node: &NodeProto, msg: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("node {:?} ({}): {msg}", node.name, node.op_type)
}

/// Scale(s) and zero point(s) of a Q or DQ node, with the zero points shifted to int8.
fn params(model: &OnnxModel, node: &NodeProto) -> Result<(Vec<f32>, Vec<i32>)> {
    let constant = |index: usize| {
        node.input
            .get(index)
            .filter(|name| !name.is_empty())
            .map(|name| {
                model
                    .initializers
                    .get(name)
                    .map(|(_, v)| v.clone())
                    .ok_or_else(|| node_err(node, format!("{name} must be a constant")))
            })
            .transpose()
    };
    let scales = constant(1)?.ok_or_else(|| node_err(node, "needs a scale"))?;
    let zero_type = node
        .input
        .get(2)
        .and_then(|name| model.data_type(name))
        .unwrap_or(UINT8);
    let offset = match zero_type {
        UINT8 => 128,
        INT8 => 0,
        other => bail!(node_err(
            node,
            format!("zero point of data type {other}: only int8 and uint8 are supported")
        )),
    };
    // ONNX's default zero point is 0 of the output type (uint8 when absent).
    let zeros = constant(2)?.unwrap_or_else(|| vec![0.0]);
    Ok((scales, zeros.iter().map(|z| *z as i32 - offset).collect()))
}

/// A constant (weights, bias) dequantized: `(q - zero) · scale`, per `axis` when the scales
/// are a vector. Values and zero points are compared as stored (int8, uint8 or int32).
fn dequantize_constant(model: &OnnxModel, node: &NodeProto) -> Result<(Vec<usize>, Vec<f32>)> {
    let value = |index: usize| {
        node.input
            .get(index)
            .filter(|name| !name.is_empty())
            .and_then(|name| model.initializers.get(name))
    };
    let (dims, q) = value(0).ok_or_else(|| node_err(node, "needs a constant input"))?;
    let scales = &value(1)
        .ok_or_else(|| node_err(node, "needs a constant scale"))?
        .1;
    let zeros = value(2).map_or(vec![0.0], |(_, z)| z.clone());
    let axis = node
        .attribute
        .iter()
        .find(|a| a.name == "axis")
        .map_or(1, |a| a.i);
    let axis = if axis < 0 {
        axis + dims.len() as i64
    } else {
        axis
    };
    let channels = dims.get(axis as usize).copied().unwrap_or(1).max(1);
    let inner: usize = dims
        .iter()
        .skip(axis as usize + 1)
        .product::<usize>()
        .max(1);
    let per_axis = |v: &[f32], c: usize| {
        if v.len() == 1 {
            Some(v[0])
        } else {
            v.get(c).copied()
        }
    };
    let values = q
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let c = (i / inner) % channels;
            match (per_axis(scales, c), per_axis(&zeros, c)) {
                (Some(s), Some(z)) => Ok((v - z) * s),
                _ => Err(node_err(
                    node,
                    "scales match neither the tensor nor its axis",
                )),
            }
        })
        .collect::<Result<Vec<f32>>>()?;
    Ok((dims.clone(), values))
}

/// Removes the graph's Q/DQ nodes as the module docs say; returns the quantization of every
/// activation tensor a pair annotated (by the name of the float tensor it annotates).
pub fn fold(model: &mut OnnxModel) -> Result<HashMap<String, QParams>> {
    let nodes = model.nodes().to_vec();
    let mut fixed = HashMap::new();
    // Tensor renames: a DQ output stands for the float tensor the pair annotated.
    let mut alias: HashMap<String, String> = HashMap::new();
    let mut kept = Vec::new();
    for node in &nodes {
        let is_qdq = matches!(node.op_type.as_str(), "QuantizeLinear" | "DequantizeLinear");
        if is_qdq && (node.input.is_empty() || node.output.is_empty()) {
            bail!(node_err(node, "needs an input and an output"));
        }
        match node.op_type.as_str() {
            "DequantizeLinear" if model.initializers.contains_key(&node.input[0]) => {
                let dequantized = dequantize_constant(model, node)?;
                model
                    .initializers
                    .insert(node.output[0].clone(), dequantized);
            }
            "QuantizeLinear" => {
                let (scales, zeros) = params(model, node)?;
                if scales.len() != 1 || zeros.len() != 1 {
                    bail!(node_err(
                        node,
                        "per-axis activation quantization is not supported"
                    ));
                }
                let source = alias
                    .get(&node.input[0])
                    .cloned()
                    .unwrap_or_else(|| node.input[0].clone());
                fixed.insert(
                    source.clone(),
                    QParams {
                        scale: scales[0],
                        zero_point: zeros[0],
                    },
                );
                alias.insert(node.output[0].clone(), source);
            }
            "DequantizeLinear" => {
                let source = alias.get(&node.input[0]).cloned().ok_or_else(|| {
                    node_err(node, "dequantizes a tensor no QuantizeLinear produced")
                })?;
                alias.insert(node.output[0].clone(), source);
            }
            _ => {
                let mut node = node.clone();
                for input in node.input.iter_mut() {
                    if let Some(source) = alias.get(input) {
                        *input = source.clone();
                    }
                }
                kept.push(node);
            }
        }
    }
    // A graph output that is a dequantized tensor is its float source.
    if let Some(graph) = model.proto.graph.as_mut() {
        for output in graph.output.iter_mut() {
            if let Some(source) = alias.get(&output.name) {
                output.name = source.clone();
            }
        }
        graph.node = kept;
    }
    Ok(fixed)
}
