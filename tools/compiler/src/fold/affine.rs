//! Per-channel affine layers: `BatchNormalization`, and `Mul`, `Add`, `Sub` or `Div` of a
//! feature map by a constant holding one value per channel (`[C, 1, 1]`, `[1, C, 1, 1]`) or one
//! for all.
//!
//! Exporters write them after a convolution (Conv → BatchNormalization, Caffe2's
//! BatchNormalization → Mul → Add "scale" layers), and in pre-activation networks (DenseNet:
//! Concat → BatchNormalization → ReLU → Conv) where no convolution precedes them. The first
//! kind folds into the convolution's weights and bias; the second becomes a depthwise 1x1
//! convolution, which the lowering runs with the same exact per-channel requantization as any
//! layer. Either way the lowering and the float evaluator see only convolutions.

use anyhow::Result;
use tract_onnx::pb::NodeProto;

use super::{dims_of, graph_outputs, nodes_mut, Folded};
use crate::lower::float;
use crate::onnx::{int_attr, ints_attr, OnnxModel};

/// `y = (x + pre) · scale + post` per channel (one value each, or one for all channels).
struct Affine {
    pre: Vec<f32>,
    scale: Vec<f32>,
    post: Vec<f32>,
}

impl Affine {
    fn len(&self) -> usize {
        self.pre.len().max(self.scale.len()).max(self.post.len())
    }

    /// The three vectors at `channels` values each, or `None` when one has another length.
    fn widened(&self, channels: usize) -> Option<(Vec<f32>, Vec<f32>, Vec<f32>)> {
        let widen = |v: &[f32]| match v.len() {
            1 => Some(vec![v[0]; channels]),
            n if n == channels => Some(v.to_vec()),
            _ => None,
        };
        Some((widen(&self.pre)?, widen(&self.scale)?, widen(&self.post)?))
    }
}

/// Folds every affine layer into the convolution before it, or makes it a depthwise 1x1
/// convolution; `input_dims` finds the channel count of a feature map when only a scalar says
/// nothing of it.
pub(super) fn fold_affines(
    model: &mut OnnxModel,
    input_dims: &[usize],
    folded: &mut Folded,
) -> Result<()> {
    let outputs = graph_outputs(model);
    let mut i = 0;
    while i < model.nodes().len() {
        let node = model.nodes()[i].clone();
        let Some((x, affine)) = affine_of(model, &node)? else {
            i += 1;
            continue;
        };
        let producer = model
            .nodes()
            .iter()
            .position(|n| n.output.first() == Some(&x));
        let readers = model
            .nodes()
            .iter()
            .filter(|n| n.input.contains(&x))
            .count();
        let into_conv = producer.filter(|p| {
            let conv = &model.nodes()[*p];
            conv.op_type == "Conv"
                && readers == 1
                && !outputs.contains(&x)
                && conv
                    .input
                    .get(1)
                    .is_some_and(|w| model.initializers.contains_key(w))
                && conv
                    .input
                    .get(2)
                    .is_none_or(|b| b.is_empty() || model.initializers.contains_key(b))
        });
        if let Some(p) = into_conv {
            if fuse_into_conv(model, p, &node, &affine)? {
                nodes_mut(model).remove(i);
                folded.removed.push(node.op_type.clone());
                continue;
            }
        }
        if depthwise(model, i, &node, &x, &affine, input_dims)? {
            folded.removed.push(node.op_type.clone());
        }
        i += 1;
    }
    Ok(())
}

/// The feature map `node` reads and the affine map it applies, when it is an affine layer.
fn affine_of(model: &OnnxModel, node: &NodeProto) -> Result<Option<(String, Affine)>> {
    let any = |k: usize| {
        node.input
            .get(k)
            .and_then(|name| model.initializers.get(name))
    };
    let constant = |k: usize| any(k).filter(|(dims, v)| per_channel(dims, v.len()));
    let op = node.op_type.as_str();
    if op == "BatchNormalization" {
        let params: Option<Vec<&Vec<f32>>> = (1..5).map(|k| any(k).map(|(_, v)| v)).collect();
        let Some([gamma, beta, mean, var]) = params.as_deref() else {
            return Ok(None);
        };
        if [beta, mean, var].iter().any(|v| v.len() != gamma.len()) {
            return Ok(None);
        }
        if node.output.iter().skip(1).any(|o| !o.is_empty()) {
            return Ok(None);
        }
        let eps = float(node, "epsilon", 1e-5)?;
        let scale = gamma
            .iter()
            .zip(var.iter())
            .map(|(g, v)| g / (v + eps).sqrt())
            .collect();
        let affine = Affine {
            pre: mean.iter().map(|m| -m).collect(),
            scale,
            post: beta.to_vec(),
        };
        return Ok(Some((node.input[0].clone(), affine)));
    }
    if !matches!(op, "Mul" | "Add" | "Sub" | "Div") || node.input.len() != 2 {
        return Ok(None);
    }
    let live = |k: usize| !model.initializers.contains_key(&node.input[k]);
    let (x, c, constant_first) = match (live(0), live(1), constant(0), constant(1)) {
        (true, false, _, Some((_, c))) => (&node.input[0], c, false),
        (false, true, Some((_, c)), _) => (&node.input[1], c, true),
        _ => return Ok(None),
    };
    let ones = vec![1.0; 1];
    let zeros = vec![0.0; 1];
    let affine = match (op, constant_first) {
        ("Mul", _) => Affine {
            pre: zeros.clone(),
            scale: c.clone(),
            post: zeros,
        },
        ("Add", _) => Affine {
            pre: zeros,
            scale: ones,
            post: c.clone(),
        },
        ("Sub", false) => Affine {
            pre: zeros,
            scale: ones,
            post: c.iter().map(|v| -v).collect(),
        },
        ("Sub", true) => Affine {
            pre: zeros,
            scale: vec![-1.0],
            post: c.clone(),
        },
        ("Div", false) if c.iter().all(|v| *v != 0.0) => Affine {
            pre: zeros.clone(),
            scale: c.iter().map(|v| 1.0 / v).collect(),
            post: zeros,
        },
        _ => return Ok(None),
    };
    Ok(Some((x.clone(), affine)))
}

/// One value for all, or one per channel on the channel axis of a batch-1 `[1, C, H, W]` map
/// (ONNX broadcasts from the last axis, so a plain `[C]` would run along W instead).
fn per_channel(dims: &[usize], len: usize) -> bool {
    len == 1 || matches!(dims, [c, 1, 1] | [1, c, 1, 1] if *c == len)
}

/// Folds `affine` into the weights and bias of Conv node `p`, which takes `node`'s output
/// name; `false` when the channel counts disagree.
fn fuse_into_conv(
    model: &mut OnnxModel,
    p: usize,
    node: &NodeProto,
    affine: &Affine,
) -> Result<bool> {
    let mut conv = model.nodes()[p].clone();
    let (wdims, w) = model.initializers[&conv.input[1]].clone();
    let channels = wdims.first().copied().unwrap_or(0);
    let Some((pre, scale, post)) = affine.widened(channels) else {
        return Ok(false);
    };
    let bias = match conv.input.get(2).filter(|b| !b.is_empty()) {
        Some(b) => model.initializers[b].1.clone(),
        None => vec![0.0; channels],
    };
    if channels == 0 || bias.len() != channels || w.len() % channels != 0 {
        return Ok(false);
    }
    let row = w.len() / channels;
    let mut w = w;
    for (o, f) in scale.iter().enumerate() {
        w[o * row..(o + 1) * row].iter_mut().for_each(|v| *v *= f);
    }
    // (b - mean)·f + beta for a BatchNormalization, as the lowering folded it before.
    let bias: Vec<f32> = (0..channels)
        .map(|o| (bias[o] + pre[o]) * scale[o] + post[o])
        .collect();
    let (wname, bname) = (format!("{}#w", node.name), format!("{}#b", node.name));
    model.initializers.insert(wname.clone(), (wdims, w));
    model
        .initializers
        .insert(bname.clone(), (vec![channels], bias));
    conv.input.truncate(1);
    conv.input.push(wname);
    conv.input.push(bname);
    conv.output = node.output.iter().take(1).cloned().collect();
    nodes_mut(model)[p] = conv;
    Ok(true)
}

/// Replaces node `at` by a depthwise 1x1 Conv of `x`; `false` when `x` is not a `[1, C, H, W]`
/// map whose C fits the affine map.
fn depthwise(
    model: &mut OnnxModel,
    at: usize,
    node: &NodeProto,
    x: &str,
    affine: &Affine,
    input_dims: &[usize],
) -> Result<bool> {
    let channels = match affine.len() {
        1 => match dims_of(model, at, x, input_dims)?.as_deref() {
            Some([1, c, _, _]) => *c,
            _ => return Ok(false),
        },
        n => n,
    };
    let Some((pre, scale, post)) = affine.widened(channels) else {
        return Ok(false);
    };
    let bias: Vec<f32> = (0..channels).map(|o| pre[o] * scale[o] + post[o]).collect();
    let (wname, bname) = (format!("{}#w", node.name), format!("{}#b", node.name));
    model
        .initializers
        .insert(wname.clone(), (vec![channels, 1, 1, 1], scale));
    model
        .initializers
        .insert(bname.clone(), (vec![channels], bias));
    let conv = NodeProto {
        name: node.name.clone(),
        op_type: "Conv".into(),
        input: vec![x.to_string(), wname, bname],
        output: node.output.iter().take(1).cloned().collect(),
        attribute: vec![
            ints_attr("kernel_shape", vec![1, 1]),
            int_attr("group", channels as i64),
        ],
        ..Default::default()
    };
    nodes_mut(model)[at] = conv;
    Ok(true)
}
