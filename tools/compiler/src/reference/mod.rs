//! A float evaluator of the ONNX operators the lowering takes, whose every result is a function
//! of the model and the input alone: the same bits on every machine (DESIGN.md invariant 9).
//!
//! Calibration ranges set every scale, zero point and multiplier of a compiled program, so a
//! program's bytes, and its hash on chain, are only reproducible if the ranges are. tract, which
//! stays the float reference for fidelity figures, picks its kernels per CPU at run time
//! (AVX-512, AVX2+FMA, ...) and so rounds differently from machine to machine. Here:
//! - every operator is IEEE-754 single precision, and each output element is one sum taken in
//!   the order its operator's doc gives (Rust never contracts `a * b + c` into a fused
//!   multiply-add, and never reorders float sums when it vectorizes);
//! - transcendental functions come from the pure-Rust `libm`, never the platform's;
//! - there is no run-time kernel dispatch;
//! - rayon splits work only across independent output elements, so the thread count changes
//!   no bit.
//!
//! Batch size is 1, as in [`crate::compile`].

mod conv;
mod dense;
mod lrn;
mod pointwise;
mod pool;
mod window;

use std::borrow::Cow;
use std::collections::HashMap;

use anyhow::{bail, Result};
use tract_onnx::pb::NodeProto;

use crate::lower::{err, int, Lstm};
use crate::onnx::OnnxModel;
pub(crate) use lrn::Lrn;

/// A dense float tensor in row-major (C) order.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    /// Dimensions, outermost first.
    pub dims: Vec<usize>,
    /// Values, `dims.iter().product()` of them.
    pub data: Vec<f32>,
}

impl Tensor {
    /// A tensor of `dims` holding `data`, refused when the two disagree.
    pub fn new(dims: Vec<usize>, data: Vec<f32>) -> Result<Tensor> {
        if dims.iter().product::<usize>() != data.len() {
            bail!("{} values do not fill dimensions {dims:?}", data.len());
        }
        Ok(Tensor { dims, data })
    }
}

/// The operators [`Evaluator`] computes; any other is refused by name before any work.
pub const OPERATORS: &[&str] = &[
    "AveragePool",
    "BatchNormalization",
    "Clip",
    "Conv",
    "ConvTranspose",
    "Flatten",
    "Gemm",
    "GlobalAveragePool",
    "LSTM",
    "MatMul",
    "MaxPool",
    "Relu",
    "Reshape",
    "Sigmoid",
    "Softmax",
    "Tanh",
    "Add",
    "Mul",
    "Concat",
    "LRN",
    "ChannelShuffle",
    "Split",
];

/// A model prepared for deterministic float runs.
pub struct Evaluator<'m> {
    model: &'m OnnxModel,
    input: String,
    input_dims: Vec<usize>,
    /// The default-domain opset (Softmax's axis rule changed at 13).
    opset: i64,
    /// Recurrent layers, by node index.
    lstms: HashMap<usize, Lstm>,
    /// The last node index that reads each tensor, so tensors are dropped when dead.
    last_use: HashMap<String, usize>,
}

impl<'m> Evaluator<'m> {
    /// Prepares `model` for inputs of `input_dims` (batch first); refuses an operator it does
    /// not compute, naming the node.
    pub fn new(model: &'m OnnxModel, input_dims: &[usize]) -> Result<Evaluator<'m>> {
        let input = model.input_name()?;
        let mut lstms = HashMap::new();
        let mut last_use = HashMap::new();
        for (i, node) in model.nodes().iter().enumerate() {
            let op = node.op_type.as_str();
            if !OPERATORS.contains(&op) && !crate::unary::UNARY.contains(&op) {
                bail!(err(node, crate::lower::unsupported(node)));
            }
            if node.op_type == "LSTM" {
                lstms.insert(i, Lstm::from_node(node, model)?);
            }
            for name in &node.input {
                last_use.insert(name.clone(), i);
            }
        }
        let opset = model
            .proto
            .opset_import
            .iter()
            .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
            .map_or(13, |o| o.version);
        Ok(Evaluator {
            model,
            input,
            input_dims: input_dims.to_vec(),
            opset,
            lstms,
            last_use,
        })
    }

    /// Runs one input (`input_dims` values in C order). `observe` sees every tensor the graph
    /// computes as it is made: the input, then each node's outputs in node order, then the
    /// inner tensors of recurrent layers under their calibration keys (`node#part`).
    pub fn run(&self, x: &[f32], observe: &mut dyn FnMut(&str, &[f32])) -> Result<()> {
        self.run_recording(x, observe, None)
    }

    /// The dims of every tensor the graph computes on input `x`, by name (the graph folding
    /// needs them for `Shape` nodes).
    pub fn shapes(&self, x: &[f32]) -> Result<HashMap<String, Vec<usize>>> {
        let mut shapes = HashMap::new();
        self.run_recording(x, &mut |_, _| {}, Some(&mut shapes))?;
        Ok(shapes)
    }

    fn run_recording(
        &self,
        x: &[f32],
        observe: &mut dyn FnMut(&str, &[f32]),
        mut shapes: Option<&mut HashMap<String, Vec<usize>>>,
    ) -> Result<()> {
        let input = Tensor::new(self.input_dims.clone(), x.to_vec())?;
        if let Some(s) = shapes.as_deref_mut() {
            s.insert(self.input.clone(), input.dims.clone());
        }
        observe(&self.input, &input.data);
        let mut live: HashMap<String, Tensor> = HashMap::new();
        live.insert(self.input.clone(), input);
        for (i, node) in self.model.nodes().iter().enumerate() {
            let outputs = self.node(i, node, &live, observe)?;
            for name in &node.input {
                if self.last_use.get(name) == Some(&i) {
                    live.remove(name);
                }
            }
            for (name, tensor) in node.output.iter().zip(outputs) {
                if name.is_empty() {
                    continue;
                }
                observe(name, &tensor.data);
                if let Some(s) = shapes.as_deref_mut() {
                    s.insert(name.clone(), tensor.dims.clone());
                }
                live.insert(name.clone(), tensor);
            }
        }
        Ok(())
    }

    /// Computes one node's outputs, in the order of `node.output`.
    fn node(
        &self,
        index: usize,
        node: &NodeProto,
        live: &HashMap<String, Tensor>,
        observe: &mut dyn FnMut(&str, &[f32]),
    ) -> Result<Vec<Tensor>> {
        let x = self.value(live, node, 0)?;
        let one = |t: Result<Tensor>| t.map(|t| vec![t]);
        match node.op_type.as_str() {
            "Conv" => one(conv::conv(self, node, &x)),
            "ConvTranspose" => one(conv::conv_transpose(self, node, &x)),
            "Gemm" => one(dense::gemm(self, node, &x)),
            "MatMul" => one(dense::matmul(self, node, &x)),
            "MaxPool" | "AveragePool" => one(pool::window(node, &x)),
            "GlobalAveragePool" => one(pool::global_average(node, &x)),
            "BatchNormalization" => one(pointwise::batch_norm(self, node, &x)),
            "Relu" => one(Ok(pointwise::map(&x, |v| if v > 0.0 { v } else { 0.0 }))),
            "Clip" => one(pointwise::clip(self, node, &x)),
            "Sigmoid" => one(Ok(pointwise::map(&x, crate::lower::sigmoid))),
            "Tanh" => one(Ok(pointwise::map(&x, libm::tanhf))),
            "Softmax" => one(pointwise::softmax(node, &x, self.opset)),
            "Add" => {
                let b = self.value(live, node, 1)?;
                one(pointwise::add(node, &x, &b))
            }
            "LRN" => one(lrn::lrn(node, &x, observe)),
            "ChannelShuffle" => one(channel_shuffle(node, &x)),
            "Split" => self.split(node, &x),
            "Mul" => {
                let b = self.value(live, node, 1)?;
                one(pointwise::mul(node, &x, &b))
            }
            "Concat" => {
                let parts = (0..node.input.len())
                    .map(|k| self.value(live, node, k))
                    .collect::<Result<Vec<_>>>()?;
                one(concat(node, &parts))
            }
            "Flatten" => one(flatten(node, &x)),
            "Reshape" => one(self.reshape(node, &x)),
            "LSTM" => {
                let layer = self
                    .lstms
                    .get(&index)
                    .ok_or_else(|| err(node, "not prepared"))?;
                if x.data.is_empty() || !x.data.len().is_multiple_of(layer.input_len()) {
                    bail!(err(
                        node,
                        format!(
                            "an input of {} values is not a sequence of {}-vectors",
                            x.data.len(),
                            layer.input_len()
                        )
                    ));
                }
                let h = layer.forward(&x.data, observe);
                // Outputs Y, Y_h, Y_c: the layer allows only Y_h to be used.
                let y_h = Tensor::new(vec![1, 1, layer.hidden()], h)?;
                Ok(vec![Tensor::new(vec![0], vec![])?, y_h])
            }
            _ => match crate::unary::unary(node)? {
                Some(f) => one(Ok(pointwise::map(&x, f))),
                None => bail!(err(node, crate::lower::unsupported(node))),
            },
        }
    }

    /// Input `k` of `node`: a tensor computed earlier, or an initializer.
    fn value<'a>(
        &self,
        live: &'a HashMap<String, Tensor>,
        node: &NodeProto,
        k: usize,
    ) -> Result<Cow<'a, Tensor>> {
        let name = node
            .input
            .get(k)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| err(node, format!("input {k} is missing")))?;
        if let Some(t) = live.get(name) {
            return Ok(Cow::Borrowed(t));
        }
        match self.model.initializers.get(name) {
            Some((dims, data)) => Ok(Cow::Owned(Tensor::new(dims.clone(), data.clone())?)),
            None => bail!(err(node, format!("reads {name:?}, which no node computed"))),
        }
    }

    /// Constant input `k` of `node` (weights, bias, bounds), or `None` where it is absent.
    fn constant(&self, node: &NodeProto, k: usize) -> Result<Option<&'m (Vec<usize>, Vec<f32>)>> {
        self.model.constant(node, k)
    }

    /// ONNX Split of a batch-1 map along the channel axis: sizes from the `split` attribute
    /// (opset < 13) or input, else equal parts.
    fn split(&self, node: &NodeProto, x: &Tensor) -> Result<Vec<Tensor>> {
        let sizes = split_sizes(self.model, node, x.dims.get(1).copied().unwrap_or(0))?;
        let plane: usize = x.dims.iter().skip(2).product();
        let mut at = 0;
        sizes
            .iter()
            .map(|c| {
                let mut dims = x.dims.clone();
                dims[1] = *c;
                let part = x.data[at * plane..(at + c) * plane].to_vec();
                at += c;
                Tensor::new(dims, part).map_err(|e| err(node, e))
            })
            .collect()
    }

    /// ONNX Reshape: target dims from a constant, `0` copies the input's dim (unless
    /// `allowzero`), one `-1` takes what is left.
    fn reshape(&self, node: &NodeProto, x: &Tensor) -> Result<Tensor> {
        let (_, target) = self
            .constant(node, 1)?
            .ok_or_else(|| err(node, "needs a constant shape"))?;
        let allow_zero = int(node, "allowzero", 0)? != 0;
        let mut dims = Vec::with_capacity(target.len());
        let mut infer = None;
        for (k, d) in target.iter().enumerate() {
            let d = *d as i64;
            match d {
                -1 if infer.is_none() => {
                    infer = Some(k);
                    dims.push(1);
                }
                0 if !allow_zero => {
                    dims.push(*x.dims.get(k).ok_or_else(|| {
                        err(node, format!("shape {target:?}: no dim {k} to copy"))
                    })?)
                }
                d if d >= 0 => dims.push(d as usize),
                _ => bail!(err(node, format!("shape {target:?} is not a valid target"))),
            }
        }
        let known: usize = dims.iter().product();
        if let Some(k) = infer {
            if known == 0 || !x.data.len().is_multiple_of(known) {
                bail!(err(
                    node,
                    format!("{} values cannot take shape {target:?}", x.data.len())
                ));
            }
            dims[k] = x.data.len() / known;
        }
        Tensor::new(dims, x.data.clone()).map_err(|e| err(node, e))
    }
}

/// ONNX Flatten: dims before `axis` into one, the rest into the other.
fn flatten(node: &NodeProto, x: &Tensor) -> Result<Tensor> {
    let rank = x.dims.len() as i64;
    let axis = int(node, "axis", 1)?;
    let axis = if axis < 0 { axis + rank } else { axis };
    if !(0..=rank).contains(&axis) {
        bail!(err(node, format!("axis {axis} for a rank-{rank} input")));
    }
    let outer = x.dims[..axis as usize].iter().product();
    Tensor::new(vec![outer, x.data.len() / outer.max(1)], x.data.clone()).map_err(|e| err(node, e))
}

/// The channel shuffle the graph folding makes of `Reshape → Transpose → Reshape`: output
/// channel `j·g + i` is input channel `i·(C/g) + j`.
fn channel_shuffle(node: &NodeProto, x: &Tensor) -> Result<Tensor> {
    let g = int(node, "group", 1)? as usize;
    let (c, plane) = match x.dims.as_slice() {
        [1, c, rest @ ..] => (*c, rest.iter().product::<usize>()),
        _ => bail!(err(
            node,
            format!("input {:?} is not a batch-1 map", x.dims)
        )),
    };
    if g == 0 || c % g != 0 {
        bail!(err(node, format!("{c} channels in {g} groups")));
    }
    let n = c / g;
    let data = (0..c)
        .flat_map(|o| {
            let src = (o % g) * n + o / g;
            x.data[src * plane..(src + 1) * plane].iter().copied()
        })
        .collect();
    Tensor::new(x.dims.clone(), data).map_err(|e| err(node, e))
}

/// ONNX Concat: the parts joined along `axis`, each outer slice in input order.
fn concat(node: &NodeProto, parts: &[Cow<'_, Tensor>]) -> Result<Tensor> {
    let first = parts.first().ok_or_else(|| err(node, "has no inputs"))?;
    let rank = first.dims.len() as i64;
    let axis = int(node, "axis", 1)?;
    let axis = if axis < 0 { axis + rank } else { axis };
    if !(0..rank).contains(&axis) {
        bail!(err(node, format!("axis {axis} for rank-{rank} inputs")));
    }
    let axis = axis as usize;
    let mut dims = first.dims.clone();
    dims[axis] = 0;
    for p in parts {
        let same_rest = p.dims.len() == first.dims.len()
            && (0..first.dims.len()).all(|k| k == axis || p.dims[k] == first.dims[k]);
        if !same_rest {
            bail!(err(
                node,
                format!(
                    "cannot join {:?} to {:?} on axis {axis}",
                    p.dims, first.dims
                )
            ));
        }
        dims[axis] += p.dims[axis];
    }
    let outer: usize = first.dims[..axis].iter().product();
    let mut data = Vec::with_capacity(dims.iter().product());
    for o in 0..outer {
        for p in parts {
            let run: usize = p.dims[axis..].iter().product();
            data.extend_from_slice(&p.data[o * run..(o + 1) * run]);
        }
    }
    Tensor::new(dims, data).map_err(|e| err(node, e))
}

/// The channel counts of a Split's outputs over `channels` channels: only the channel axis (1)
/// is taken.
pub(crate) fn split_sizes(
    model: &OnnxModel,
    node: &NodeProto,
    channels: usize,
) -> Result<Vec<usize>> {
    if int(node, "axis", 0)? != 1 {
        bail!(err(
            node,
            "only a split along the channel axis (1) is supported"
        ));
    }
    let given = match crate::lower::ints(node, "split")? {
        Some(v) => Some(v),
        None => model
            .constant(node, 1)?
            .map(|(_, v)| v.iter().map(|x| *x as i64).collect()),
    };
    let sizes: Vec<usize> = match given {
        Some(v) => v.iter().map(|x| (*x).max(0) as usize).collect(),
        None => {
            let n = node.output.len().max(1);
            let each = channels.div_ceil(n);
            (0..n)
                .map(|k| each.min(channels.saturating_sub(k * each)))
                .collect()
        }
    };
    if sizes.iter().sum::<usize>() != channels || sizes.len() != node.output.len() {
        bail!(err(
            node,
            format!(
                "parts {sizes:?} do not split {channels} channels into {} outputs",
                node.output.len()
            )
        ));
    }
    Ok(sizes)
}
