//! Operators that say what another operator says, rewritten to that one so the lowering and
//! the float evaluator need only one form:
//! - a two-input `Sum` (opset < 8 exports of residual adds) is an `Add`;
//! - `ReduceMean` over the spatial axes of a `[1, C, H, W]` map (PyTorch's
//!   `adaptive_avg_pool2d(x, 1)` and `x.mean((2, 3))` through the dynamo exporter) is a
//!   `GlobalAveragePool`, followed by a `Flatten` where it drops the reduced axes;
//! - `Squeeze` of axes 2 and 3 (tf2onnx's after a global average) is a `Flatten`;
//! - a zero `Pad` of H and W (Keras' ZeroPadding2D) before a `Conv` is that conv's padding, and
//!   before a `MaxPool` of a ReLU's output (nothing below 0, so a 0 never wins over the
//!   input) the pool's;
//! - `Mul(x, Sigmoid(x))` (SiLU, as exporters write `nn.SiLU`) is one element-wise `Silu`;
//! - `Reshape` to `[1, g, C/g, H, W]` → `Transpose(0, 2, 1, 3, 4)` → `Reshape` to `[1, C, H, W]`
//!   (ShuffleNet's channel shuffle) is one `ChannelShuffle` with attribute `group` = g.
//!
//! `Silu` and `ChannelShuffle` are not ONNX operators; only the lowering and the float
//! evaluator read them.

use std::collections::HashSet;

use anyhow::Result;
use tract_onnx::pb::NodeProto;

use super::{axes, graph_outputs, nodes_mut, shapes_before, Folded};
use crate::lower::{int, ints};
use crate::onnx::{int_attr, ints_attr, OnnxModel};

/// Rewrites every node of the forms above; see the module docs.
pub(super) fn canonicalize(
    model: &mut OnnxModel,
    input_dims: &[usize],
    folded: &mut Folded,
) -> Result<()> {
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
            "Pad" => {
                if let Some((reader, pads)) = pad_into_reader(model, i, &outputs)? {
                    let x = node.input[0].clone();
                    let nodes = nodes_mut(model);
                    let target = &mut nodes[reader];
                    target.input[0] = x;
                    target.attribute.retain(|a| a.name != "pads");
                    target.attribute.push(ints_attr("pads", pads));
                    nodes.remove(i);
                    folded.removed.push("Pad".into());
                    continue;
                }
            }
            "Squeeze" if squeezes_spatial_axes(model, &node)? => {
                let nodes = nodes_mut(model);
                nodes[i].op_type = "Flatten".into();
                nodes[i].input.truncate(1);
                nodes[i].attribute.clear();
                folded.removed.push("Squeeze".into());
            }
            "Transpose" => {
                if let Some((first, group)) = channel_shuffle(model, i, input_dims, &outputs)? {
                    let x = model.nodes()[first].input[0].clone();
                    let out = model.nodes()[i + 1].output[0].clone();
                    let shuffle = NodeProto {
                        name: node.name.clone(),
                        op_type: "ChannelShuffle".into(),
                        input: vec![x],
                        output: vec![out],
                        attribute: vec![int_attr("group", group as i64)],
                        ..Default::default()
                    };
                    let nodes = nodes_mut(model);
                    nodes[i] = shuffle;
                    nodes.remove(i + 1);
                    nodes.remove(first);
                    folded.removed.extend(["Reshape".into(), "Reshape".into()]);
                    continue;
                }
            }
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

/// Whether Transpose node `i` is the middle of a channel shuffle: the index of the Reshape
/// before it (the one after is `i + 1`) and the group count.
fn channel_shuffle(
    model: &OnnxModel,
    i: usize,
    input_dims: &[usize],
    outputs: &HashSet<String>,
) -> Result<Option<(usize, usize)>> {
    let nodes = model.nodes();
    let t = &nodes[i];
    if ints(t, "perm")?.as_deref() != Some(&[0, 2, 1, 3, 4]) {
        return Ok(None);
    }
    let (Some(after), Some(first)) = (
        nodes.get(i + 1),
        nodes
            .iter()
            .position(|n| n.output.first() == t.input.first()),
    ) else {
        return Ok(None);
    };
    let only_reader = |name: &str, reader: usize| {
        !outputs.contains(name)
            && nodes
                .iter()
                .enumerate()
                .all(|(k, n)| k == reader || !n.input.iter().any(|x| x == name))
    };
    if nodes[first].op_type != "Reshape"
        || after.op_type != "Reshape"
        || after.input.first() != t.output.first()
        || !only_reader(&t.input[0], i)
        || !only_reader(&t.output[0], i + 1)
    {
        return Ok(None);
    }
    // One evaluation of the nodes before the Transpose gives both shapes.
    let shapes = shapes_before(model, i, input_dims)?;
    let dims = |name: &str| shapes.get(name).map(Vec::as_slice);
    match (dims(&t.input[0]), dims(&nodes[first].input[0])) {
        (Some([1, g, n, h, w]), Some([1, c, h2, w2])) if g * n == *c && (h, w) == (h2, w2) => {
            // The Reshape after must give back [1, C, H, W].
            let back = model
                .constant(after, 1)
                .ok()
                .flatten()
                .map(|(_, v)| v.clone());
            let restores = back.is_some_and(|v| {
                v.len() == 4
                    && v.iter()
                        .zip([1.0, *c as f32, *h as f32, *w as f32])
                        .enumerate()
                        .all(|(k, (got, want))| {
                            *got == want || (*got == -1.0 && k == 1) || (*got == 0.0 && k == 0)
                        })
            });
            Ok(restores.then_some((first, *g)))
        }
        _ => Ok(None),
    }
}

/// Whether Pad node `i` pads only H and W with zeros and its one reader is a Conv, or a MaxPool
/// of a Relu's output: that reader's index and its padding with the Pad's added.
fn pad_into_reader(
    model: &OnnxModel,
    i: usize,
    outputs: &HashSet<String>,
) -> Result<Option<(usize, Vec<i64>)>> {
    let nodes = model.nodes();
    let pad = &nodes[i];
    let mode_constant = pad
        .get_attr_opt::<&str>("mode")
        .ok()
        .flatten()
        .is_none_or(|m| m == "constant");
    let value_zero = match model.constant(pad, 2) {
        Ok(None) => {
            pad.get_attr_opt::<f32>("value")
                .ok()
                .flatten()
                .unwrap_or(0.0)
                == 0.0
        }
        Ok(Some((_, v))) => v.iter().all(|x| *x == 0.0),
        Err(_) => false,
    };
    let amounts: Option<Vec<i64>> = match ints(pad, "pads")? {
        Some(p) => Some(p),
        None => match model.constant(pad, 1) {
            Ok(Some((_, v))) => Some(v.iter().map(|x| *x as i64).collect()),
            _ => None,
        },
    };
    let Some([0, 0, top, left, 0, 0, bottom, right]) = amounts.as_deref() else {
        return Ok(None);
    };
    let out = &pad.output[0];
    let readers: Vec<usize> = (0..nodes.len())
        .filter(|k| nodes[*k].input.contains(out))
        .collect();
    let [reader] = readers.as_slice() else {
        return Ok(None);
    };
    let target = &nodes[*reader];
    let non_negative = nodes
        .iter()
        .find(|n| n.output.first() == pad.input.first())
        .is_some_and(|n| n.op_type == "Relu");
    let takes_it = target.input.first() == Some(out)
        && (target.op_type == "Conv" || (target.op_type == "MaxPool" && non_negative));
    if !mode_constant || !value_zero || !takes_it || outputs.contains(out) {
        return Ok(None);
    }
    let own = ints(target, "pads")?.unwrap_or_else(|| vec![0; 4]);
    if own.len() != 4 || [top, left, bottom, right].iter().any(|v| **v < 0) {
        return Ok(None);
    }
    let pads = vec![own[0] + top, own[1] + left, own[2] + bottom, own[3] + right];
    Ok(Some((*reader, pads)))
}

/// Whether a Squeeze of a feature map removes exactly axes 2 and 3 (which must then be 1, so
/// `[1, C, 1, 1]` becomes `[1, C]`, as Flatten makes it).
fn squeezes_spatial_axes(model: &OnnxModel, node: &NodeProto) -> Result<bool> {
    if node
        .input
        .first()
        .is_none_or(|x| model.initializers.contains_key(x))
    {
        return Ok(false);
    }
    Ok(reduces_spatial_axes(model, node))
}

/// Whether `node`'s axes (attribute, or constant second input) are exactly 2 and 3 of a rank-4
/// map; `false` where they are absent or computed.
fn reduces_spatial_axes(model: &OnnxModel, node: &NodeProto) -> bool {
    let Ok(Some(axes)) = axes(model, node) else {
        return false;
    };
    let axes: HashSet<i64> = axes
        .iter()
        .map(|a| if *a < 0 { a + 4 } else { *a })
        .collect();
    axes == HashSet::from([2, 3])
}

/// `ReduceMean` over axes 2 and 3 of a rank-4 map as `GlobalAveragePool` (and `Flatten`).
fn global_average(model: &OnnxModel, node: &NodeProto) -> Result<Option<Vec<NodeProto>>> {
    if !reduces_spatial_axes(model, node) || int(node, "noop_with_empty_axes", 0)? != 0 {
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
