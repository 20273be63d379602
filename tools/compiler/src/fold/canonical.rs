//! Operators that say what another operator says, rewritten to that one so the lowering and
//! the float evaluator need only one form:
//! - a two-input `Sum` (opset < 8 exports of residual adds) is an `Add`;
//! - `ReduceMean` over the spatial axes of a `[1, C, H, W]` map (PyTorch's
//!   `adaptive_avg_pool2d(x, 1)` and `x.mean((2, 3))` through the dynamo exporter) is a
//!   `GlobalAveragePool`, followed by a `Flatten` where it drops the reduced axes;
//! - `Mul(x, Sigmoid(x))` (SiLU, as exporters write `nn.SiLU`) is one element-wise `Silu`.

use std::collections::HashSet;

use anyhow::Result;
use tract_onnx::pb::NodeProto;

use super::{graph_outputs, nodes_mut, Folded};
use crate::lower::{int, ints};
use crate::onnx::OnnxModel;

/// Rewrites every node of the forms above; see the module docs.
pub(super) fn canonicalize(model: &mut OnnxModel, folded: &mut Folded) -> Result<()> {
    let outputs = graph_outputs(model);
    let mut i = 0;
    while i < model.nodes().len() {
        let node = model.nodes()[i].clone();
        match node.op_type.as_str() {
            "Sum" if node.input.len() == 2 => {
                nodes_mut(model)[i].op_type = "Add".into();
                folded.removed.push("Sum".into());
            }
            "ReduceMean" => {
                if let Some(replacement) = global_average(model, &node)? {
                    let n = replacement.len();
                    nodes_mut(model).splice(i..=i, replacement);
                    folded.removed.push("ReduceMean".into());
                    i += n - 1;
                }
            }
            "Mul" => {
                if let Some(at) = sigmoid_of_other_input(model, i, &outputs) {
                    let x = model.nodes()[at].input[0].clone();
                    let nodes = nodes_mut(model);
                    nodes[i].op_type = "Silu".into();
                    nodes[i].input = vec![x];
                    nodes.remove(at);
                    folded.removed.push("Sigmoid".into());
                    continue;
                }
            }
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

/// `ReduceMean` over axes 2 and 3 of a rank-4 map as `GlobalAveragePool` (and `Flatten`).
fn global_average(model: &OnnxModel, node: &NodeProto) -> Result<Option<Vec<NodeProto>>> {
    let axes = match ints(node, "axes")? {
        Some(a) => a,
        None => match model.constant(node, 1) {
            Ok(Some((_, v))) => v.iter().map(|x| *x as i64).collect(),
            _ => return Ok(None),
        },
    };
    let spatial: HashSet<i64> = axes
        .iter()
        .map(|a| if *a < 0 { a + 4 } else { *a })
        .collect();
    if spatial != HashSet::from([2, 3]) || int(node, "noop_with_empty_axes", 0)? != 0 {
        return Ok(None);
    }
    let out = node.output[0].clone();
    let keep = int(node, "keepdims", 1)? != 0;
    let pooled = if keep {
        out.clone()
    } else {
        format!("{out}#pooled")
    };
    let mut nodes = vec![NodeProto {
        name: node.name.clone(),
        op_type: "GlobalAveragePool".into(),
        input: vec![node.input[0].clone()],
        output: vec![pooled.clone()],
        ..Default::default()
    }];
    if !keep {
        nodes.push(NodeProto {
            name: format!("{}#flatten", node.name),
            op_type: "Flatten".into(),
            input: vec![pooled],
            output: vec![out],
            ..Default::default()
        });
    }
    Ok(Some(nodes))
}

/// The index of the `Sigmoid` of Mul node `i`'s other input, when that Sigmoid is read only
/// by this Mul.
fn sigmoid_of_other_input(model: &OnnxModel, i: usize, outputs: &HashSet<String>) -> Option<usize> {
    let nodes = model.nodes();
    let mul = &nodes[i];
    let [a, b] = mul.input.as_slice() else {
        return None;
    };
    nodes.iter().position(|n| {
        n.op_type == "Sigmoid"
            && n.input.len() == 1
            && n.output.len() == 1
            && ((n.output[0] == *b && n.input[0] == *a) || (n.output[0] == *a && n.input[0] == *b))
            && !outputs.contains(&n.output[0])
            && nodes
                .iter()
                .filter(|m| m.input.contains(&n.output[0]))
                .count()
                == 1
    })
}
