//! Graph normalization before lowering: what real exporters put around the layers is folded
//! into constants, so the lowering and the float evaluator see only layers.
//!
//! PyTorch writes `x.view(x.size(0), -1)` as `Shape → Gather → Unsqueeze → Concat → Reshape`,
//! with int64 `Constant` nodes; older exporters reshape or transpose initializers before a
//! `MatMul`; both leave `Identity` and `Dropout` nodes behind. Here, in node order, until
//! nothing changes:
//! - `Constant` nodes become initializers;
//! - `Identity`, and `Dropout` (inference: the identity), are bypassed;
//! - `Shape` of a tensor becomes its dims, which are known: the batch-1 input shape is given
//!   and every node before it is evaluated once on zeros by [`crate::reference::Evaluator`];
//! - `Gather`, `Unsqueeze`, `Squeeze`, `Concat`, `Cast`, `Reshape`, `Flatten`, `Transpose` and
//!   `Slice` whose inputs are all constant are computed;
//! - nodes whose outputs nothing reads are dropped;
//! - a `MatMul`, or a `Conv` without bias, whose only reader is an `Add` of a constant with one
//!   value per output channel takes it as its bias (`MatMul` becomes `Gemm`), as older
//!   exporters write biases;
//! - `ConstantOfShape` of a constant shape is computed (Caffe2 exports fill weights with it);
//! - operators that say what another says (`Sum` of two, `ReduceMean` over H and W,
//!   `Mul(x, Sigmoid(x))`) take that one's form ([`canonical`]);
//! - per-channel affine layers (`BatchNormalization`; `Mul`, `Add`, `Sub`, `Div` by a
//!   constant) fold into the convolution before them, or become a depthwise 1x1 convolution
//!   ([`affine`]).
//!
//! Every fold moves or selects values (int64 shapes are exact in f32 below 2^24; a cast rounds
//! toward zero), so it is the same on every machine (DESIGN.md invariant 9).

mod affine;
mod canonical;

use std::collections::{HashMap, HashSet};

use anyhow::{anyhow, bail, Result};
use tract_onnx::pb::{NodeProto, TensorProto};

use crate::lower::{err, int, ints};
use crate::onnx::{tensor_f32, OnnxModel};
use crate::reference::Evaluator;

/// A constant: dims and values.
type Constant = (Vec<usize>, Vec<f32>);

/// The most values one folded constant may hold (VGG-19's largest weight matrix has 103
/// million); a shape beyond it is an error, not an allocation.
const MAX_FOLDED: usize = 1 << 28;

/// What one run of [`fold`] did, for the CLI's report and the tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Folded {
    /// Nodes replaced by constants, bypassed or dropped, by operator.
    pub removed: Vec<String>,
}

/// Folds `model` for inputs of `input_dims` (batch first); see the module docs.
pub fn fold(model: &mut OnnxModel, input_dims: &[usize]) -> Result<Folded> {
    let mut folded = Folded::default();
    loop {
        let before = folded.removed.len();
        bypass_identities(model, &mut folded);
        canonical::canonicalize(model, input_dims, &mut folded)?;
        fold_constants(model, &mut folded)?;
        fuse_bias_adds(model, &mut folded);
        affine::fold_affines(model, input_dims, &mut folded)?;
        fold_first_shape(model, input_dims, &mut folded)?;
        drop_dead_nodes(model, &mut folded);
        if folded.removed.len() == before {
            return Ok(folded);
        }
    }
}

fn nodes_mut(model: &mut OnnxModel) -> &mut Vec<NodeProto> {
    &mut model.proto.graph.get_or_insert_with(Default::default).node
}

fn graph_outputs(model: &OnnxModel) -> HashSet<String> {
    model
        .proto
        .graph
        .as_ref()
        .map(|g| g.output.iter().map(|o| o.name.clone()).collect())
        .unwrap_or_default()
}

/// Removes `Identity` and inference `Dropout` nodes, reading their input wherever their output
/// was read (a graph output keeps its name through the node instead).
fn bypass_identities(model: &mut OnnxModel, folded: &mut Folded) {
    let outputs = graph_outputs(model);
    let nodes = nodes_mut(model);
    let read: HashSet<String> = nodes.iter().flat_map(|n| n.input.iter().cloned()).collect();
    let mut i = 0;
    while i < nodes.len() {
        let node = &nodes[i];
        let one_input_sum = node.op_type == "Sum" && node.input.len() == 1;
        let passes = (matches!(node.op_type.as_str(), "Identity" | "Dropout") || one_input_sum)
            // A Dropout's mask output may be named, but nothing may read it.
            && node
                .output
                .iter()
                .skip(1)
                .all(|o| o.is_empty() || !read.contains(o) && !outputs.contains(o))
            && !node.output.first().is_some_and(|o| outputs.contains(o));
        if !passes || node.input.is_empty() || node.output.is_empty() {
            i += 1;
            continue;
        }
        let (from, to) = (node.output[0].clone(), node.input[0].clone());
        folded.removed.push(node.op_type.clone());
        nodes.remove(i);
        for n in nodes.iter_mut() {
            for input in n.input.iter_mut().filter(|x| **x == from) {
                *input = to.clone();
            }
        }
    }
}

/// Replaces `Constant` nodes, and nodes of the folded operators whose inputs are all constant,
/// by initializers.
fn fold_constants(model: &mut OnnxModel, folded: &mut Folded) -> Result<()> {
    let mut i = 0;
    while i < model.nodes().len() {
        let node = model.nodes()[i].clone();
        let value = if node.op_type == "Constant" {
            Some(constant_node(&node)?)
        } else if is_foldable(&node.op_type)
            && node
                .input
                .iter()
                .all(|x| x.is_empty() || model.initializers.contains_key(x))
        {
            Some(compute(model, &node)?)
        } else {
            None
        };
        match value {
            Some(value) if node.output.len() == 1 => {
                model.initializers.insert(node.output[0].clone(), value);
                folded.removed.push(node.op_type.clone());
                nodes_mut(model).remove(i);
            }
            _ => i += 1,
        }
    }
    Ok(())
}

fn is_foldable(op: &str) -> bool {
    matches!(
        op,
        "Gather"
            | "Unsqueeze"
            | "Squeeze"
            | "Concat"
            | "Cast"
            | "Reshape"
            | "Flatten"
            | "Transpose"
            | "Slice"
            | "ConstantOfShape"
    )
}

/// The first `Shape` node becomes the dims of its input, found by evaluating every node before
/// it on a zero input. One at a time: folding it may turn later `Shape`s' inputs constant.
fn fold_first_shape(
    model: &mut OnnxModel,
    input_dims: &[usize],
    folded: &mut Folded,
) -> Result<()> {
    let Some(at) = model.nodes().iter().position(|n| n.op_type == "Shape") else {
        return Ok(());
    };
    let node = model.nodes()[at].clone();
    let source = node
        .input
        .first()
        .ok_or_else(|| err(&node, "has no input"))?;
    let dims = match model.initializers.get(source) {
        Some((dims, _)) => dims.clone(),
        None => dims_of(model, at, source, input_dims)?
            .ok_or_else(|| err(&node, format!("reads {source:?}, which no node computed")))?,
    };
    let rank = dims.len() as i64;
    let clamp = |v: i64| (if v < 0 { v + rank } else { v }).clamp(0, rank) as usize;
    let start = clamp(int(&node, "start", 0)?);
    let end = clamp(int(&node, "end", rank)?);
    let values: Vec<f32> = dims[start..end.max(start)]
        .iter()
        .map(|d| *d as f32)
        .collect();
    let output = node
        .output
        .first()
        .ok_or_else(|| err(&node, "has no output"))?;
    model
        .initializers
        .insert(output.clone(), (vec![values.len()], values));
    folded.removed.push("Shape".into());
    nodes_mut(model).remove(at);
    Ok(())
}

/// Drops nodes none of whose outputs is read by a later node or is a graph output.
fn drop_dead_nodes(model: &mut OnnxModel, folded: &mut Folded) {
    let outputs = graph_outputs(model);
    loop {
        let read: HashSet<String> = model
            .nodes()
            .iter()
            .flat_map(|n| n.input.iter().cloned())
            .chain(outputs.iter().cloned())
            .collect();
        let nodes = nodes_mut(model);
        let before = nodes.len();
        nodes.retain(|n| {
            let live = n.output.iter().any(|o| !o.is_empty() && read.contains(o));
            if !live {
                folded.removed.push(n.op_type.clone());
            }
            live
        });
        if nodes.len() == before {
            return;
        }
    }
}

/// Folds `Add(layer, bias)` into the layer: see the module docs.
fn fuse_bias_adds(model: &mut OnnxModel, folded: &mut Folded) {
    let outputs = graph_outputs(model);
    let mut i = 0;
    while i < model.nodes().len() {
        if let Some((add_at, mut node, bias)) = bias_fusion(model, i, &outputs) {
            let bias_name = format!("{}#bias", node.name);
            model.initializers.insert(bias_name.clone(), bias);
            let nodes = nodes_mut(model);
            node.input.push(bias_name);
            nodes[i] = node;
            nodes.remove(add_at);
            folded.removed.push("Add".into());
        }
        i += 1;
    }
}

/// Whether node `i` can take the bias of the one `Add` reading it: the `Add`'s index, the
/// rewritten node (its output renamed to the `Add`'s) and the bias.
fn bias_fusion(
    model: &OnnxModel,
    i: usize,
    outputs: &HashSet<String>,
) -> Option<(usize, NodeProto, Constant)> {
    let nodes = model.nodes();
    let node = &nodes[i];
    let out = node.output.first()?;
    let (wdims, _) = model.initializers.get(node.input.get(1)?)?;
    let channels = match node.op_type.as_str() {
        "MatMul" if wdims.len() == 2 => wdims[1],
        "Conv" if node.input.len() == 2 && !wdims.is_empty() => wdims[0],
        _ => return None,
    };
    if outputs.contains(out) {
        return None;
    }
    let readers: Vec<usize> = (i + 1..nodes.len())
        .filter(|k| nodes[*k].input.contains(out))
        .collect();
    let [add_at] = readers.as_slice() else {
        return None;
    };
    let add = &nodes[*add_at];
    if add.op_type != "Add" || add.input.len() != 2 {
        return None;
    }
    let other = if add.input[0] == *out {
        &add.input[1]
    } else {
        &add.input[0]
    };
    let (bdims, b) = model.initializers.get(other)?;
    // One value per channel, on the channel axis: [n] or [1, n] after a MatMul; [C], [C, 1, 1]
    // or [1, C, 1, 1] after a Conv.
    let per_channel = b.len() == channels
        && match node.op_type.as_str() {
            "MatMul" => bdims.last() == Some(&channels),
            _ => {
                bdims.iter().filter(|d| **d != 1).count() <= 1
                    && matches!(bdims.len(), 1 | 3 | 4)
                    && (bdims.len() != 4 || bdims[1] == channels)
                    && (bdims.len() != 3 || bdims[0] == channels)
            }
        };
    if !per_channel {
        return None;
    }
    let mut fused = node.clone();
    if fused.op_type == "MatMul" {
        fused.op_type = "Gemm".into();
    }
    fused.output = vec![add.output.first()?.clone()];
    Some((*add_at, fused, (vec![channels], b.clone())))
}

/// The value of a `Constant` node (any of its attribute forms).
fn constant_node(node: &NodeProto) -> Result<Constant> {
    let attr = node
        .attribute
        .first()
        .ok_or_else(|| err(node, "has no value"))?;
    Ok(match attr.name.as_str() {
        "value" => {
            let t: &TensorProto = attr.t.as_ref().ok_or_else(|| err(node, "empty value"))?;
            let dims = t.dims.iter().map(|d| *d as usize).collect();
            (dims, tensor_f32(t).map_err(|e| err(node, e))?)
        }
        "value_float" => (vec![], vec![attr.f]),
        "value_floats" => (vec![attr.floats.len()], attr.floats.clone()),
        "value_int" => (vec![], vec![attr.i as f32]),
        "value_ints" => (
            vec![attr.ints.len()],
            attr.ints.iter().map(|v| *v as f32).collect(),
        ),
        other => bail!(err(
            node,
            format!("value attribute {other} is not supported")
        )),
    })
}

/// An input of a node being folded (all are constant by then).
fn input<'a>(model: &'a OnnxModel, node: &NodeProto, k: usize) -> Result<Option<&'a Constant>> {
    model.constant(node, k)
}

fn required<'a>(model: &'a OnnxModel, node: &NodeProto, k: usize) -> Result<&'a Constant> {
    input(model, node, k)?.ok_or_else(|| err(node, format!("input {k} is missing")))
}

/// Axes from the attribute (older opsets) or the second input (opset 13 on).
fn axes(model: &OnnxModel, node: &NodeProto) -> Result<Option<Vec<i64>>> {
    if let Some(a) = ints(node, "axes")? {
        return Ok(Some(a));
    }
    Ok(input(model, node, 1)?.map(|(_, v)| v.iter().map(|x| *x as i64).collect()))
}

fn normalize(axis: i64, rank: usize, node: &NodeProto) -> Result<usize> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if !(0..r.max(1)).contains(&a) {
        bail!(err(node, format!("axis {axis} for rank {rank}")));
    }
    Ok(a as usize)
}

/// Strides of a row-major tensor.
fn strides(dims: &[usize]) -> Vec<usize> {
    let mut s = vec![1; dims.len()];
    for k in (0..dims.len().saturating_sub(1)).rev() {
        s[k] = s[k + 1] * dims[k + 1];
    }
    s
}

/// Computes one folded operator on constant inputs.
fn compute(model: &OnnxModel, node: &NodeProto) -> Result<Constant> {
    let (dims, data) = required(model, node, 0)?;
    match node.op_type.as_str() {
        "ConstantOfShape" => {
            let value = match node.attribute.iter().find(|a| a.name == "value") {
                Some(a) => {
                    let t = a.t.as_ref().ok_or_else(|| err(node, "empty value"))?;
                    let v = tensor_f32(t).map_err(|e| err(node, e))?;
                    *v.first().ok_or_else(|| err(node, "empty value"))?
                }
                None => 0.0,
            };
            let out: Vec<usize> = data.iter().map(|d| *d as usize).collect();
            let n: usize = out.iter().product();
            if n > MAX_FOLDED {
                bail!(err(node, format!("{n} values is past the folding limit")));
            }
            Ok((out, vec![value; n]))
        }
        "Cast" => {
            const FLOAT: i64 = 1;
            const DOUBLE: i64 = 11;
            const FLOAT16: i64 = 10;
            let to = int(node, "to", FLOAT)?;
            let float = matches!(to, FLOAT | DOUBLE | FLOAT16);
            Ok((
                dims.clone(),
                data.iter()
                    .map(|v| if float { *v } else { v.trunc() })
                    .collect(),
            ))
        }
        "Reshape" => {
            let (_, target) = required(model, node, 1)?;
            let allow_zero = int(node, "allowzero", 0)? != 0;
            let mut out = Vec::new();
            let mut infer = None;
            for (k, d) in target.iter().enumerate() {
                match *d as i64 {
                    -1 if infer.is_none() => {
                        infer = Some(k);
                        out.push(1);
                    }
                    0 if !allow_zero => out.push(
                        *dims
                            .get(k)
                            .ok_or_else(|| err(node, format!("no dim {k} to copy")))?,
                    ),
                    d if d >= 0 => out.push(d as usize),
                    _ => bail!(err(node, format!("shape {target:?} is not a valid target"))),
                }
            }
            let known: usize = out.iter().product();
            if let Some(k) = infer {
                if known == 0 || data.len() % known != 0 {
                    bail!(err(
                        node,
                        format!("{} values cannot take shape {target:?}", data.len())
                    ));
                }
                out[k] = data.len() / known;
            }
            if out.iter().product::<usize>() != data.len() {
                bail!(err(
                    node,
                    format!("{} values cannot take shape {out:?}", data.len())
                ));
            }
            Ok((out, data.clone()))
        }
        "Flatten" => {
            let axis = normalize(int(node, "axis", 1)?, dims.len() + 1, node)?;
            let outer: usize = dims[..axis.min(dims.len())].iter().product();
            Ok((vec![outer, data.len() / outer.max(1)], data.clone()))
        }
        "Unsqueeze" => {
            let axes = axes(model, node)?.ok_or_else(|| err(node, "needs axes"))?;
            let rank = dims.len() + axes.len();
            let mut at: Vec<usize> = axes
                .iter()
                .map(|a| normalize(*a, rank, node))
                .collect::<Result<_>>()?;
            at.sort_unstable();
            let mut out = dims.clone();
            for a in at {
                out.insert(a.min(out.len()), 1);
            }
            Ok((out, data.clone()))
        }
        "Squeeze" => {
            let out = match axes(model, node)? {
                None => dims.iter().copied().filter(|d| *d != 1).collect(),
                Some(axes) => {
                    let at: HashSet<usize> = axes
                        .iter()
                        .map(|a| normalize(*a, dims.len(), node))
                        .collect::<Result<_>>()?;
                    dims.iter()
                        .enumerate()
                        .filter(|(k, _)| !at.contains(k))
                        .map(|(_, d)| *d)
                        .collect()
                }
            };
            Ok((out, data.clone()))
        }
        "Concat" => {
            let parts: Vec<&Constant> = (0..node.input.len())
                .map(|k| required(model, node, k))
                .collect::<Result<_>>()?;
            let axis = normalize(int(node, "axis", 0)?, dims.len(), node)?;
            let outer: usize = dims[..axis].iter().product();
            let mut out = dims.clone();
            out[axis] = 0;
            for (d, _) in &parts {
                if d.len() != dims.len()
                    || d.iter()
                        .zip(dims)
                        .enumerate()
                        .any(|(k, (a, b))| k != axis && a != b)
                {
                    bail!(err(
                        node,
                        format!("cannot join {d:?} to {dims:?} on axis {axis}")
                    ));
                }
                out[axis] += d[axis];
            }
            let mut values = Vec::with_capacity(out.iter().product());
            for o in 0..outer {
                for (d, v) in &parts {
                    let run: usize = d[axis..].iter().product();
                    values.extend_from_slice(&v[o * run..(o + 1) * run]);
                }
            }
            Ok((out, values))
        }
        "Gather" => {
            let (idims, indices) = required(model, node, 1)?;
            let axis = normalize(int(node, "axis", 0)?, dims.len(), node)?;
            let n = dims[axis] as i64;
            let outer: usize = dims[..axis].iter().product();
            let inner: usize = dims[axis + 1..].iter().product();
            let mut values = Vec::with_capacity(outer * indices.len() * inner);
            for o in 0..outer {
                for i in indices {
                    let i = *i as i64;
                    let i = if i < 0 { i + n } else { i };
                    if !(0..n).contains(&i) {
                        bail!(err(node, format!("index {i} out of 0..{n}")));
                    }
                    let at = (o * n as usize + i as usize) * inner;
                    values.extend_from_slice(&data[at..at + inner]);
                }
            }
            let mut out = dims[..axis].to_vec();
            out.extend_from_slice(idims);
            out.extend_from_slice(&dims[axis + 1..]);
            Ok((out, values))
        }
        "Transpose" => {
            let rank = dims.len();
            let perm: Vec<usize> = match ints(node, "perm")? {
                Some(p) => p
                    .iter()
                    .map(|a| normalize(*a, rank, node))
                    .collect::<Result<_>>()?,
                None => (0..rank).rev().collect(),
            };
            let mut seen = perm.clone();
            seen.sort_unstable();
            if seen != (0..rank).collect::<Vec<_>>() {
                bail!(err(node, format!("perm {perm:?} for rank {rank}")));
            }
            let out: Vec<usize> = perm.iter().map(|p| dims[*p]).collect();
            let (from, to) = (strides(dims), strides(&out));
            let mut values = vec![0.0; data.len()];
            for (flat, v) in values.iter_mut().enumerate() {
                let src: usize = (0..rank)
                    .map(|k| (flat / to[k]) % out[k] * from[perm[k]])
                    .sum();
                *v = data[src];
            }
            Ok((out, values))
        }
        "Slice" => {
            let list = |k: usize| -> Result<Option<Vec<i64>>> {
                Ok(input(model, node, k)?.map(|(_, v)| v.iter().map(|x| *x as i64).collect()))
            };
            let (starts, ends) = match (ints(node, "starts")?, ints(node, "ends")?) {
                (Some(s), Some(e)) => (s, e),
                _ => (
                    list(1)?.ok_or_else(|| err(node, "needs starts"))?,
                    list(2)?.ok_or_else(|| err(node, "needs ends"))?,
                ),
            };
            let axes = match ints(node, "axes")? {
                Some(a) => a,
                None => list(3)?.unwrap_or_else(|| (0..starts.len() as i64).collect()),
            };
            let steps = list(4)?.unwrap_or_else(|| vec![1; starts.len()]);
            let mut ranges: Vec<Vec<usize>> = dims.iter().map(|d| (0..*d).collect()).collect();
            for (k, a) in axes.iter().enumerate() {
                let a = normalize(*a, dims.len(), node)?;
                let n = dims[a] as i64;
                let step = *steps.get(k).unwrap_or(&1);
                if step != 1 {
                    bail!(err(node, format!("step {step} is not supported")));
                }
                let at = |v: i64| (if v < 0 { v + n } else { v }).clamp(0, n) as usize;
                let (s, e) = (
                    at(starts[k]),
                    at(*ends.get(k).ok_or_else(|| anyhow!("ends"))?),
                );
                ranges[a] = (s..e.max(s)).collect();
            }
            let out: Vec<usize> = ranges.iter().map(Vec::len).collect();
            let (from, to) = (strides(dims), strides(&out));
            let total: usize = out.iter().product();
            let mut values = Vec::with_capacity(total);
            for flat in 0..total {
                let src: usize = (0..dims.len())
                    .map(|k| ranges[k][(flat / to[k]) % out[k]] * from[k])
                    .sum();
                values.push(data[src]);
            }
            Ok((out, values))
        }
        other => bail!(err(node, format!("operator {other} cannot be folded"))),
    }
}

/// The dims of every tensor the nodes before `at` compute (evaluated once on zeros), the
/// graph input's included.
fn shapes_before(
    model: &OnnxModel,
    at: usize,
    input_dims: &[usize],
) -> Result<HashMap<String, Vec<usize>>> {
    let mut prefix = OnnxModel {
        proto: model.proto.clone(),
        initializers: model.initializers.clone(),
    };
    if let Some(g) = prefix.proto.graph.as_mut() {
        g.node.truncate(at);
    }
    let zeros = vec![0.0; input_dims.iter().product()];
    Evaluator::new(&prefix, input_dims)
        .and_then(|e| e.shapes(&zeros))
        .map_err(|e| {
            err(
                &model.nodes()[at],
                format!("the shapes before it are not known: {e}"),
            )
        })
}

/// The dims of `x` as the nodes before `at` compute it.
fn dims_of(
    model: &OnnxModel,
    at: usize,
    x: &str,
    input_dims: &[usize],
) -> Result<Option<Vec<usize>>> {
    Ok(shapes_before(model, at, input_dims)?.get(x).cloned())
}
