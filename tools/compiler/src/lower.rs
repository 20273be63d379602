//! Lowering a sequential ONNX graph to SmartVM assembly and weight blocks.

use std::collections::HashMap;
use std::fmt::Write;

use anyhow::{anyhow, bail, Result};
use smartvm_isa::Shape;
use smartvm_kernels::{AddQuant, ChannelQuant, ConvParams, OutputRange, PoolKind, PoolParams};
use tract_onnx::pb::NodeProto;

use crate::onnx::OnnxModel;
use crate::quant::{q31, quantize_rows, QParams};

mod lstm;
pub(crate) use lstm::{sigmoid, Lstm};

/// Largest weight block the compiler writes (the chain's `MaxBlockLen`).
pub const BLOCK_LEN: usize = 64 * 1024;

/// What the lowering has produced so far and where the data flow stands.
pub struct Lowering<'a> {
    model: &'a OnnxModel,
    ranges: &'a HashMap<String, (f32, f32)>,
    /// Quantization a QDQ model prescribes, which wins over the calibrated ranges.
    fixed: &'a HashMap<String, QParams>,
    /// Assembly source.
    pub source: String,
    /// Weight blocks in manifest order.
    pub blocks: Vec<Vec<u8>>,
    /// Name of the tensor on top of the Buffer.
    pub tensor: String,
    /// Its shape.
    pub shape: Shape,
    /// Its quantization.
    pub quant: QParams,
    /// The frames below the top, bottom first: (tensor, shape, quantization).
    below: Vec<(String, Shape, QParams)>,
}

/// An activation folded into the clamp of the layer before it.
enum Fused {
    None,
    Relu,
    Clip(f32, f32),
}

/// A shape as `CxHxW` (or `CxDxHxW` for 3-D data) for comments.
fn shape_text(s: Shape) -> String {
    if s.d == 1 {
        format!("{}x{}x{}", s.c, s.h, s.w)
    } else {
        format!("{}x{}x{}x{}", s.c, s.d, s.h, s.w)
    }
}

/// Why `node`'s operator cannot be compiled, naming what it would need where that is known.
pub(crate) fn unsupported(node: &NodeProto) -> String {
    let op = node.op_type.as_str();
    let why = match op {
        "Div" | "Sub" => " between two feature maps",
        "Transpose" => " of a feature map (e.g. a channel shuffle; no permuting instruction)",
        _ => "",
    };
    format!("operator {op} is not supported{why}")
}

pub(crate) fn err(node: &NodeProto, msg: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("node {:?} ({}): {msg}", node.name, node.op_type)
}

pub(crate) fn ints(node: &NodeProto, name: &str) -> Result<Option<Vec<i64>>> {
    node.get_attr_opt_vec::<i64>(name).map_err(|e| err(node, e))
}

pub(crate) fn int(node: &NodeProto, name: &str, default: i64) -> Result<i64> {
    Ok(node
        .get_attr_opt::<i64>(name)
        .map_err(|e| err(node, e))?
        .unwrap_or(default))
}

pub(crate) fn float(node: &NodeProto, name: &str, default: f32) -> Result<f32> {
    Ok(node
        .get_attr_opt::<f32>(name)
        .map_err(|e| err(node, e))?
        .unwrap_or(default))
}

/// A square window attribute (`kernel_shape`, `strides`, `dilations`): one value for H and W.
fn square(node: &NodeProto, name: &str, default: i64) -> Result<u32> {
    match ints(node, name)? {
        None => Ok(default as u32),
        Some(v) if v.len() == 2 && v[0] == v[1] && v[0] > 0 => Ok(v[0] as u32),
        Some(v) => Err(err(
            node,
            format!("{name} {v:?}: only square 2-D windows are supported"),
        )),
    }
}

/// Padding TensorFlow's `SAME` writes for even inputs and strides: `[b, b, e, e]` with `b != e`.
/// A convolution with it is one with a kernel `|e - b|` larger, zero on the side padded less,
/// and padding `max(b, e)` on every side: `Some((pad, shift))`, where `shift` is the zero rows
/// and columns, positive for the leading side.
fn uneven_pads(node: &NodeProto) -> Result<Option<(u32, Option<i64>)>> {
    match ints(node, "pads")?.as_deref() {
        Some([b, c, e, f]) if b == c && e == f && b != e && *b >= 0 && *e >= 0 => {
            Ok(Some(((*b).max(*e) as u32, Some(e - b))))
        }
        _ => Ok(None),
    }
}

/// `rows` kernels of `k`×`k` widened by `|shift|` zero rows and columns, before them for a
/// positive shift, after for a negative one.
fn widen_kernel(w: &[f32], rows: usize, k: usize, shift: i64) -> (usize, Vec<f32>) {
    let extra = shift.unsigned_abs() as usize;
    let k2 = k + extra;
    let at = if shift > 0 { extra } else { 0 };
    let mut out = vec![0f32; rows * k2 * k2];
    for r in 0..rows {
        for y in 0..k {
            for x in 0..k {
                out[(r * k2 + y + at) * k2 + x + at] = w[(r * k + y) * k + x];
            }
        }
    }
    (k2, out)
}

fn symmetric_pads(node: &NodeProto) -> Result<u32> {
    if let Some(auto) = node
        .get_attr_opt::<&str>("auto_pad")
        .map_err(|e| err(node, e))?
    {
        if auto != "NOTSET" && auto != "VALID" {
            return Err(err(node, format!("auto_pad {auto} is not supported")));
        }
    }
    match ints(node, "pads")? {
        None => Ok(0),
        Some(p) if p.len() == 4 && p.iter().all(|v| *v == p[0] && *v >= 0) => Ok(p[0] as u32),
        Some(p) => Err(err(
            node,
            format!("pads {p:?}: only equal padding on all sides is supported"),
        )),
    }
}

/// Requantization of `a + b` into `out`, clamped to `(lo, hi)`: both operands share the shift
/// of the larger ratio.
fn add_quant(a: QParams, b: QParams, out: QParams, (lo, hi): (i32, i32)) -> AddQuant {
    let (ra, rb) = (
        a.scale as f64 / out.scale as f64,
        b.scale as f64 / out.scale as f64,
    );
    let (m_max, shift) = q31(ra.max(rb));
    let n = 31 + shift;
    let other = |r: f64| (r * 2f64.powi(n)).round().clamp(0.0, i32::MAX as f64) as i32;
    let (a_mult, b_mult) = if ra >= rb {
        (m_max, other(rb))
    } else {
        (other(ra), m_max)
    };
    AddQuant {
        a_zero: a.zero_point,
        b_zero: b.zero_point,
        output: OutputRange {
            zero: out.zero_point,
            lo,
            hi,
        },
        a_mult,
        b_mult,
        shift,
    }
}

impl<'a> Lowering<'a> {
    /// Starts from the graph input of `shape` (C, D, H, W) quantized with `quant`; tensors take
    /// their quantization from `fixed`, else from their calibrated range.
    pub fn new(
        model: &'a OnnxModel,
        ranges: &'a HashMap<String, (f32, f32)>,
        fixed: &'a HashMap<String, QParams>,
        input: String,
        shape: Shape,
        quant: QParams,
    ) -> Self {
        let mut source = String::new();
        let _ = writeln!(source, "; generated by smartvm compile: do not edit");
        let _ = writeln!(
            source,
            ".input {} {} {} {}",
            shape.c, shape.d, shape.h, shape.w
        );
        let _ = writeln!(source, ".output OUTPUT_LEN");
        let len = shape.elements().unwrap_or(0);
        let _ = writeln!(source, "    PUSH 0\n    PUSH {len}\n    MTOB");
        let _ = writeln!(
            source,
            "    PUSH {}\n    PUSH {}\n    PUSH {}\n    PUSH {}\n    BUF_SHAPE",
            shape.c, shape.d, shape.h, shape.w
        );
        Lowering {
            model,
            ranges,
            fixed,
            source,
            blocks: Vec::new(),
            tensor: input,
            shape,
            quant,
            below: Vec::new(),
        }
    }

    /// Makes the program's first step a table from the raw input bytes to the input tensor's
    /// int8 (a folded input normalization); call before [`Self::run`].
    pub fn input_table(&mut self, table: Vec<u8>) {
        let block = self.add_block(table);
        self.push_args("input normalization", &[block as i64], "ACT_LUT");
    }

    fn quant_of(&self, tensor: &str) -> Result<QParams> {
        if let Some(q) = self.fixed.get(tensor) {
            return Ok(*q);
        }
        let (min, max) = self
            .ranges
            .get(tensor)
            .ok_or_else(|| anyhow!("no calibration range for tensor {tensor}"))?;
        Ok(QParams::from_range(*min, *max))
    }

    fn init(&self, node: &NodeProto, index: usize) -> Result<Option<&'a (Vec<usize>, Vec<f32>)>> {
        self.model.constant(node, index)
    }

    /// Appends `; comment` (when not empty), a PUSH per argument and `op` (when not empty).
    fn push_args(&mut self, comment: &str, args: &[i64], op: &str) {
        if !comment.is_empty() {
            let _ = writeln!(self.source, "; {comment}");
        }
        for a in args {
            let _ = writeln!(self.source, "    PUSH {a}");
        }
        if !op.is_empty() {
            let _ = writeln!(self.source, "    {op}");
        }
    }

    /// Stores a layer's weights as blocks of whole rows (one output channel each); returns the first index.
    fn add_weights(&mut self, q: &[i8], row_len: usize) -> u32 {
        let first = self.blocks.len() as u32;
        let rows_per_block = (BLOCK_LEN / row_len.max(1)).max(1);
        let chunk = if row_len > BLOCK_LEN {
            BLOCK_LEN
        } else {
            rows_per_block * row_len
        };
        for part in q.chunks(chunk) {
            self.blocks.push(part.iter().map(|v| *v as u8).collect());
        }
        first
    }

    fn add_block(&mut self, bytes: Vec<u8>) -> u32 {
        self.blocks.push(bytes);
        self.blocks.len() as u32 - 1
    }

    /// The activation following node `i` that can be fused into it, with the tensor it produces.
    fn fusable(&self, nodes: &[NodeProto], i: usize) -> Result<(Fused, String)> {
        let out = nodes[i].output[0].clone();
        let Some(next) = nodes.get(i + 1) else {
            return Ok((Fused::None, out));
        };
        let used_elsewhere = nodes.iter().skip(i + 2).any(|n| n.input.contains(&out));
        if next.input.first() != Some(&out) || used_elsewhere {
            return Ok((Fused::None, out));
        }
        match next.op_type.as_str() {
            "Relu" => Ok((Fused::Relu, next.output[0].clone())),
            "Clip" => {
                let bound = |idx: usize, attr: &str, default: f32| -> Result<f32> {
                    match self.init(next, idx)? {
                        Some((_, v)) if !v.is_empty() => Ok(v[0]),
                        _ => float(next, attr, default),
                    }
                };
                Ok((
                    Fused::Clip(bound(1, "min", f32::MIN)?, bound(2, "max", f32::MAX)?),
                    next.output[0].clone(),
                ))
            }
            _ => Ok((Fused::None, out)),
        }
    }

    /// Bias, Q31 multipliers and clamp for a layer with per-row weight scales reading the live
    /// tensor.
    fn channel_quant(
        &self,
        bias: Option<&[f32]>,
        w_scales: &[f32],
        out: QParams,
        fused: &Fused,
    ) -> ChannelQuant {
        self.channel_quant_from(self.quant, bias, w_scales, out, fused)
    }

    /// [`Self::channel_quant`] for an input quantized with `input`.
    fn channel_quant_from(
        &self,
        input: QParams,
        bias: Option<&[f32]>,
        w_scales: &[f32],
        out: QParams,
        fused: &Fused,
    ) -> ChannelQuant {
        let s_in = input.scale as f64;
        let (lo, hi) = match fused {
            Fused::None => (-128, 127),
            Fused::Relu => (out.zero_point.max(-128), 127),
            Fused::Clip(a, b) => (out.quantize(*a) as i32, out.quantize(*b) as i32),
        };
        let (mult, shift) = w_scales
            .iter()
            .map(|sw| q31(s_in * *sw as f64 / out.scale as f64))
            .unzip();
        ChannelQuant {
            input_zero: input.zero_point,
            output: OutputRange {
                zero: out.zero_point,
                lo,
                hi,
            },
            bias: w_scales
                .iter()
                .enumerate()
                .map(|(o, sw)| {
                    let b = bias.map_or(0.0, |b| b[o]) as f64;
                    (b / (s_in * *sw as f64))
                        .round()
                        .clamp(i32::MIN as f64, i32::MAX as f64) as i32
                })
                .collect(),
            mult,
            shift,
        }
    }

    /// Lowers every node; returns the assembly with the output length filled in.
    pub fn run(mut self) -> Result<Self> {
        let nodes = self.model.nodes();
        let mut i = 0;
        while i < nodes.len() {
            let node = &nodes[i];
            let first = node.input.first().cloned().unwrap_or_default();
            let keep = nodes[i + 1..].iter().any(|n| n.input.contains(&first));
            if !matches!(node.op_type.as_str(), "Add" | "Mul" | "Concat") {
                self.bring_to_top(node, &first, keep)?;
            }
            let mut consumed = 1;
            match node.op_type.as_str() {
                "Conv" => consumed += self.conv(nodes, i)?,
                "Gemm" | "MatMul" => consumed += self.dense(nodes, i)?,
                "ConvTranspose" => consumed += self.conv_transpose(nodes, i)?,
                "Sigmoid" | "Tanh" | "Softmax" => self.activation(node)?,
                "LSTM" => self.lstm(node)?,
                "Add" => consumed += self.add(nodes, i)?,
                "Mul" => consumed += self.mul(nodes, i)?,
                "LRN" => self.lrn(node)?,
                "ChannelShuffle" => self.channel_shuffle(node)?,
                "Split" => self.split(node)?,
                "Concat" => self.concat(nodes, i)?,
                "MaxPool" | "AveragePool" => self.pool(node)?,
                "GlobalAveragePool" => {
                    self.push_args(
                        &format!("{} GlobalAveragePool", node.name),
                        &[],
                        "POOL_GAVG",
                    );
                    self.shape = Shape::flat(self.shape.c);
                }
                "Relu" => self.push_args(
                    &format!("{} Relu", node.name),
                    &[self.quant.zero_point as i64],
                    "ACT_RL",
                ),
                "Flatten" | "Reshape" => {
                    let n = self.shape.elements().unwrap_or(0) as u32;
                    self.push_args(
                        &format!("{} {}", node.name, node.op_type),
                        &[n as i64, 1, 1, 1],
                        "BUF_SHAPE",
                    );
                    self.shape = Shape::flat(n);
                }
                op if crate::unary::UNARY.contains(&op) => self.elementwise(node)?,
                _ => bail!(err(node, unsupported(node))),
            }
            let last = &nodes[i + consumed - 1];
            // An LSTM yields its last hidden state, ONNX's second output; a Split leaves its
            // last part on top.
            let produced = match last.op_type.as_str() {
                "LSTM" => 1,
                "Split" => last.output.len().saturating_sub(1),
                _ => 0,
            };
            self.tensor = last.output.get(produced).cloned().unwrap_or_default();
            i += consumed;
        }
        let n = self.shape.elements().unwrap_or(0);
        let _ = writeln!(
            self.source,
            "; output\n    PUSH 0\n    PUSH {n}\n    BTOS1\n    STOP"
        );
        self.source = self
            .source
            .replace(".output OUTPUT_LEN", &format!(".output {n}"));
        Ok(self)
    }

    fn conv(&mut self, nodes: &[NodeProto], i: usize) -> Result<usize> {
        let node = &nodes[i];
        let (dims, w) = self
            .init(node, 1)?
            .ok_or_else(|| err(node, "needs constant weights"))?;
        let bias = self.init(node, 2)?.map(|(_, b)| b.as_slice());
        let groups = int(node, "group", 1)? as u32;
        let k = square(
            node,
            "kernel_shape",
            dims.get(2).copied().unwrap_or(1) as i64,
        )?;
        let (stride, dilation) = (square(node, "strides", 1)?, square(node, "dilations", 1)?);
        if dims.len() != 4 || dims[2] != dims[3] || dims[2] as u32 != k {
            bail!(err(
                node,
                format!("weights {dims:?}: only square 2-D kernels are supported")
            ));
        }
        let (pad, shift) = match uneven_pads(node)? {
            Some(uneven) => uneven,
            None => (symmetric_pads(node)?, None),
        };
        let (k, w, dims) = match shift {
            Some(_) if dilation != 1 => bail!(err(node, "unequal padding with dilation")),
            Some(shift) => {
                let (k2, w2) = widen_kernel(w, dims[0] * dims[1], k as usize, shift);
                (
                    k2 as u32,
                    std::borrow::Cow::Owned(w2),
                    vec![dims[0], dims[1], k2, k2],
                )
            }
            None => (k, std::borrow::Cow::Borrowed(w), dims.clone()),
        };
        let w: &[f32] = &w;
        let out_c = dims[0] as u32;
        let p = ConvParams::conv2d(self.shape, out_c, k, stride, pad, dilation, groups).map_err(
            |e| {
                err(
                    node,
                    format!("geometry does not fit input {:?}: {e:?}", self.shape),
                )
            },
        )?;
        let row = dims[1] * dims[2] * dims[3];
        let bias: Vec<f32> = bias.map_or_else(|| vec![0.0; out_c as usize], |b| b.to_vec());
        let (fused, out_tensor) = self.fusable(nodes, i)?;
        let out = self.quant_of(&out_tensor)?;
        let (q, scales) = quantize_rows(w, row);
        let cq = self.channel_quant(Some(&bias), &scales, out, &fused);
        let wblock = self.add_weights(&q, row);
        let qblock = self.add_block(cq.encode());
        let args = [
            out_c as i64,
            k as i64,
            stride as i64,
            pad as i64,
            dilation as i64,
            groups as i64,
            wblock as i64,
            qblock as i64,
        ];
        self.push_args(
            &format!(
                "{} Conv {}x{}x{k}x{k} -> {}",
                node.name,
                out_c,
                dims[1],
                shape_text(p.output)
            ),
            &args,
            "CONV_MUL",
        );
        self.shape = p.output;
        self.quant = out;
        Ok(!matches!(fused, Fused::None) as usize)
    }

    /// Makes `tensor` the top frame: copies it there when it is still needed later (or already
    /// on top and needed again), otherwise swaps it up.
    fn bring_to_top(&mut self, node: &NodeProto, tensor: &str, keep: bool) -> Result<()> {
        let top = (self.tensor.clone(), self.shape, self.quant);
        if tensor == self.tensor {
            if keep {
                self.push_args(&format!("keep {tensor} for later"), &[0], "BUF_COPY");
                self.below.push(top);
            }
            return Ok(());
        }
        let Some(idx) = self.below.iter().rposition(|(t, _, _)| t == tensor) else {
            bail!(err(
                node,
                format!("reads {tensor:?}, which is not a live tensor")
            ));
        };
        let depth = (self.below.len() - idx) as i64;
        let (t, shape, quant) = self.below[idx].clone();
        if keep {
            self.push_args(&format!("copy {tensor} to the top"), &[depth], "BUF_COPY");
            self.below.push(top);
        } else {
            self.push_args(&format!("swap {tensor} to the top"), &[depth], "BUF_SWAP");
            self.below[idx] = top;
        }
        self.tensor = t;
        self.shape = shape;
        self.quant = quant;
        Ok(())
    }

    /// Residual add of two live tensors with requantization (ADD_RQ), ReLU fused when it follows.
    fn add(&mut self, nodes: &[NodeProto], i: usize) -> Result<usize> {
        let node = &nodes[i];
        let [a, b] = [0, 1].map(|k| node.input.get(k).cloned().unwrap_or_default());
        let later = |t: &str| {
            nodes[i + 1..]
                .iter()
                .any(|n| n.input.iter().any(|x| x == t))
        };
        let (keep_a, keep_b) = (later(&a), later(&b));
        self.bring_to_top(node, &a, keep_a)?;
        let b_below = self.below.last().is_some_and(|(t, _, _)| *t == b);
        if !b_below || keep_b {
            self.bring_to_top(node, &b, true)?;
        }
        // Now the top two frames are the operands: `lower` below, this top above.
        let (_, lower_shape, lower_q) = self
            .below
            .pop()
            .ok_or_else(|| err(node, "needs two live tensors"))?;
        if lower_shape.elements() != self.shape.elements() {
            bail!(err(
                node,
                format!(
                    "operands {} and {} differ (broadcasting is not supported)",
                    shape_text(lower_shape),
                    shape_text(self.shape)
                )
            ));
        }
        let (fused, out_tensor) = self.fusable(nodes, i)?;
        let out = self.quant_of(&out_tensor)?;
        let clamp = match fused {
            Fused::None => (-128, 127),
            Fused::Relu => (out.zero_point, 127),
            Fused::Clip(a, b) => (out.quantize(a) as i32, out.quantize(b) as i32),
        };
        let q = add_quant(lower_q, self.quant, out, clamp);
        let block = self.add_block(q.encode());
        self.push_args(
            &format!("{} Add -> {}", node.name, shape_text(lower_shape)),
            &[block as i64],
            "ADD_RQ",
        );
        self.shape = lower_shape;
        self.quant = out;
        Ok(!matches!(fused, Fused::None) as usize)
    }

    /// Channel concatenation: a copy of each part, requantized to the output's quantization
    /// through a table where it differs, joined back to back (BUF_CAT; a batch-1 C×D×H×W
    /// frame's channels are contiguous runs), then the parts nothing reads later are dropped.
    fn concat(&mut self, nodes: &[NodeProto], i: usize) -> Result<()> {
        let node = &nodes[i];
        if int(node, "axis", 1)? != 1 {
            bail!(err(
                node,
                "only a join on the channel axis (1) is supported"
            ));
        }
        let out_tensor = node
            .output
            .first()
            .ok_or_else(|| err(node, "has no output"))?;
        let out = self.quant_of(out_tensor)?;
        let mut channels = 0u32;
        let mut plane = None;
        for (k, part) in node.input.iter().enumerate() {
            self.bring_to_top(node, part, true)?;
            let (c, rest) = (self.shape.c, (self.shape.d, self.shape.h, self.shape.w));
            if *plane.get_or_insert(rest) != rest {
                bail!(err(
                    node,
                    format!(
                        "part {part:?} is {}, the first part's planes differ",
                        shape_text(self.shape)
                    )
                ));
            }
            channels += c;
            if self.quant != out {
                let table = self.lut(out, |v| v);
                let block = self.add_block(table);
                self.push_args(&format!("requantize {part}"), &[block as i64], "ACT_LUT");
                self.quant = out;
            }
            // The copy has a name of its own, so later readers of the part still find it.
            self.tensor = format!("{part}#concat{k}");
        }
        let n = node.input.len();
        let (d, h, w) = plane.ok_or_else(|| err(node, "has no inputs"))?;
        let shape = Shape::new(channels, d, h, w);
        self.push_args(
            &format!("{} Concat -> {}", node.name, shape_text(shape)),
            &[n as i64],
            "BUF_CAT",
        );
        self.push_args(
            "",
            &[channels as i64, d as i64, h as i64, w as i64],
            "BUF_SHAPE",
        );
        self.below.truncate(self.below.len() + 1 - n);
        self.tensor = out_tensor.clone();
        self.shape = shape;
        self.quant = out;
        for part in &node.input {
            if !nodes[i + 1..].iter().any(|n| n.input.contains(part)) {
                self.drop_frame(node, part)?;
            }
        }
        // Dropping moved the joined frame down; the next node expects it on top.
        self.bring_to_top(node, out_tensor, false)
    }

    /// Element-wise product of two live tensors (MUL_RQ), ReLU fused when it follows. A
    /// per-channel vector times a C×H×H map (a squeeze-and-excitation gate) is first broadcast
    /// to the map's shape by depthwise transposed convolutions with all-one kernels, exactly.
    fn mul(&mut self, nodes: &[NodeProto], i: usize) -> Result<usize> {
        let node = &nodes[i];
        let later = |t: &str| {
            nodes[i + 1..]
                .iter()
                .any(|n| n.input.iter().any(|x| x == t))
        };
        let [a, b] = [0, 1].map(|k| node.input.get(k).cloned().unwrap_or_default());
        let shape_of = |me: &Self, t: &str| -> Option<Shape> {
            if me.tensor == t {
                return Some(me.shape);
            }
            me.below
                .iter()
                .rfind(|(n, _, _)| n == t)
                .map(|(_, s, _)| *s)
        };
        let (sa, sb) = (
            shape_of(self, &a)
                .ok_or_else(|| err(node, format!("reads {a:?}, which is not a live tensor")))?,
            shape_of(self, &b)
                .ok_or_else(|| err(node, format!("reads {b:?}, which is not a live tensor")))?,
        );
        // The map goes below, the other operand on top.
        let (map, gate) = if sb.elements() > sa.elements() {
            (b, a)
        } else {
            (a, b)
        };
        let (keep_map, keep_gate) = (later(&map), later(&gate));
        self.bring_to_top(node, &map, keep_map)?;
        let gate_below = gate != map && self.below.last().is_some_and(|(t, _, _)| *t == gate);
        let copied_gate = if gate_below && !keep_gate {
            // The operands are the top two already, the wrong way round.
            self.push_args(&format!("swap {gate} to the top"), &[1], "BUF_SWAP");
            let top = (self.tensor.clone(), self.shape, self.quant);
            let (t, shape, quant) = std::mem::replace(
                self.below
                    .last_mut()
                    .ok_or_else(|| err(node, "no frames"))?,
                top,
            );
            (self.tensor, self.shape, self.quant) = (t, shape, quant);
            false
        } else {
            self.bring_to_top(node, &gate, true)?;
            !keep_gate && gate != map
        };
        let (_, map_shape, map_q) = self
            .below
            .last()
            .cloned()
            .ok_or_else(|| err(node, "needs two live tensors"))?;
        if self.shape.elements() != map_shape.elements() {
            self.broadcast(node, map_shape)?;
        }
        self.below.pop();
        let (fused, out_tensor) = self.fusable(nodes, i)?;
        let out = self.quant_of(&out_tensor)?;
        let mut q = lstm::product(map_q, self.quant, out);
        q.output.lo = match fused {
            Fused::None => -128,
            Fused::Relu => out.zero_point,
            Fused::Clip(lo, _) => out.quantize(lo) as i32,
        };
        if let Fused::Clip(_, hi) = fused {
            q.output.hi = out.quantize(hi) as i32;
        }
        let block = self.add_block(q.encode());
        self.push_args(
            &format!("{} Mul -> {}", node.name, shape_text(map_shape)),
            &[block as i64],
            "MUL_RQ",
        );
        self.shape = map_shape;
        self.quant = out;
        self.tensor = out_tensor.clone();
        if copied_gate {
            self.drop_frame(node, &gate)?;
            self.bring_to_top(node, &out_tensor, false)?;
        }
        Ok(!matches!(fused, Fused::None) as usize)
    }

    /// Broadcasts the top frame, one value per channel, to `to` (C×1×H×H): depthwise CONV_TPDs
    /// whose kernels equal their strides (so every output takes exactly one input) and whose
    /// weights are all 127 at scale 1/127, i.e. copies; one per prime factor of H, which keeps
    /// each kernel small.
    fn broadcast(&mut self, node: &NodeProto, to: Shape) -> Result<()> {
        let c = self.shape.elements().unwrap_or(0) as u32;
        if c != to.c || to.h != to.w || to.d != 1 {
            bail!(err(
                node,
                format!(
                    "cannot broadcast {} to {} (only one value per channel to a square map)",
                    shape_text(self.shape),
                    shape_text(to)
                )
            ));
        }
        self.push_args("", &[c as i64, 1, 1, 1], "BUF_SHAPE");
        self.shape = Shape::new(c, 1, 1, 1);
        let mut factors = Vec::new();
        let mut rest = to.h;
        let mut p = 2;
        while rest > 1 {
            if rest.is_multiple_of(p) {
                factors.push(p);
                rest /= p;
            } else {
                p += 1;
            }
        }
        for k in factors {
            let stride = if self.shape.h == 1 { 1 } else { k };
            let p = smartvm_kernels::ConvTransposeParams::new(self.shape, c, k, stride, 0, 0, c)
                .map_err(|e| err(node, format!("broadcast by {k}: {e:?}")))?;
            let kk = (k * k) as usize;
            let wblock = self.add_weights(&vec![127i8; c as usize * kk], kk);
            let cq = self.channel_quant(
                None,
                &vec![1.0 / 127.0; c as usize],
                self.quant,
                &Fused::None,
            );
            let qblock = self.add_block(cq.encode());
            let args = [c, k, stride, 0, 0, c, wblock, qblock].map(|v| v as i64);
            self.push_args(
                &format!("broadcast to {}", shape_text(p.output)),
                &args,
                "CONV_TPD",
            );
            self.shape = p.output;
        }
        Ok(())
    }

    /// Local response normalization from existing instructions: on a copy of the input, a
    /// table squares it, a 1x1 CONV_MUL with a band of ones sums each channel window, a table
    /// gives `(bias + alpha / size · sum)^-beta`, and MUL_RQ multiplies the input by it. The
    /// sums and factors are quantized from their calibrated ranges (`node#sum`, `node#factor`).
    fn lrn(&mut self, node: &NodeProto) -> Result<()> {
        let lrn = crate::reference::Lrn::of(node)?;
        let out_tensor = node
            .output
            .first()
            .ok_or_else(|| err(node, "has no output"))?;
        let (x_q, c) = (self.quant, self.shape.c);
        self.push_args(
            &format!("{} LRN: keep the input", node.name),
            &[0],
            "BUF_COPY",
        );
        self.below
            .push((self.tensor.clone(), self.shape, self.quant));
        let largest = (-128..=127)
            .map(|q| x_q.dequantize(q as i8).powi(2))
            .fold(0f32, f32::max);
        let squares = QParams::from_range(0.0, largest);
        let table = self.lut(squares, |v| v * v);
        let block = self.add_block(table);
        self.push_args("squares", &[block as i64], "ACT_LUT");
        self.quant = squares;
        let sums = self.quant_of(&format!("{out_tensor}#sum"))?;
        let band: Vec<i8> = (0..c as usize)
            .flat_map(|o| {
                let window = lrn.window(o, c as usize);
                (0..c as usize).map(move |k| if window.contains(&k) { 127 } else { 0 })
            })
            .collect();
        let wblock = self.add_weights(&band, c as usize);
        let cq = self.channel_quant(None, &vec![1.0 / 127.0; c as usize], sums, &Fused::None);
        let qblock = self.add_block(cq.encode());
        self.push_args(
            &format!("window sums of {} channels", lrn.size),
            &[c as i64, 1, 1, 0, 1, 1, wblock as i64, qblock as i64],
            "CONV_MUL",
        );
        self.quant = sums;
        let factors = self.quant_of(&format!("{out_tensor}#factor"))?;
        let table = self.lut(factors, |s| lrn.factor(s));
        let block = self.add_block(table);
        self.push_args(
            "(bias + alpha/size * sum)^-beta",
            &[block as i64],
            "ACT_LUT",
        );
        let out = self.quant_of(out_tensor)?;
        let block = self.add_block(lstm::product(x_q, factors, out).encode());
        self.push_args("input times factor", &[block as i64], "MUL_RQ");
        self.below.pop();
        self.quant = out;
        Ok(())
    }

    /// The frames a channel shuffle or split may stack on top of what is live: the VM's
    /// default `max_frames` (64), which the chain's configuration keeps.
    const MAX_FRAMES: usize = 64;

    /// ShuffleNet's channel shuffle as data movement: each output channel's plane is a
    /// BUF_SLICE of the input (kept on top by BUF_SWAP 1), gathered in batches that fit the
    /// Buffer's frame limit and joined with BUF_CAT; batches run from the last, each joined in
    /// front of those after it.
    fn channel_shuffle(&mut self, node: &NodeProto) -> Result<()> {
        let g = int(node, "group", 1)? as u32;
        let (c, plane) = (self.shape.c, self.shape.d * self.shape.h * self.shape.w);
        if g == 0 || c % g != 0 {
            bail!(err(node, format!("{c} channels in {g} groups")));
        }
        let n = c / g;
        let batch = Self::MAX_FRAMES
            .saturating_sub(self.below.len() + 4)
            .min(c as usize);
        if batch < 2 {
            bail!(err(node, "too many live tensors for a channel shuffle"));
        }
        let _ = writeln!(
            self.source,
            "; {} ChannelShuffle {g} groups of {n}",
            node.name
        );
        let starts: Vec<u32> = (0..c).step_by(batch).collect();
        for (k, start) in starts.iter().rev().enumerate() {
            let end = (start + batch as u32).min(c);
            // Made last first: the final swap with the input brings it to the end.
            let order = std::iter::once(end - 1).chain(*start..end - 1);
            for o in order {
                let src = (o % g) * n + o / g;
                self.push_args("", &[(src * plane) as i64, plane as i64], "BUF_SLICE");
                self.push_args("", &[1], "BUF_SWAP");
            }
            let count = (end - start) as i64;
            if count > 1 {
                self.push_args("", &[count], "BUF_SWAP");
                self.push_args("", &[count], "BUF_CAT");
            } else {
                self.push_args("", &[1], "BUF_SWAP");
            }
            if k > 0 {
                // [joined after, input, this batch] -> [input, this batch ++ joined after].
                self.push_args("", &[1], "BUF_SWAP");
                self.push_args("", &[2], "BUF_SWAP");
                self.push_args("", &[2], "BUF_CAT");
            }
            if k + 1 < starts.len() {
                self.push_args("", &[1], "BUF_SWAP");
            }
        }
        // [input, shuffled] -> [shuffled].
        self.push_args("", &[1], "BUF_SWAP");
        self.push_args("", &[1], "BUF_CLS");
        let shape = self.shape;
        self.push_args(
            "",
            &[
                shape.c as i64,
                shape.d as i64,
                shape.h as i64,
                shape.w as i64,
            ],
            "BUF_SHAPE",
        );
        Ok(())
    }

    /// ONNX Split along channels: each part a BUF_SLICE of the input, which is kept on top
    /// until the last part is cut and then discarded.
    fn split(&mut self, node: &NodeProto) -> Result<()> {
        let sizes = crate::reference::split_sizes(self.model, node, self.shape.c as usize)?;
        let plane = self.shape.d * self.shape.h * self.shape.w;
        let (input, shape) = (self.tensor.clone(), self.shape);
        let mut at = 0u32;
        for (part, c) in node.output.iter().zip(&sizes) {
            let c = *c as u32;
            self.push_args(
                &format!("{} Split: {part}", node.name),
                &[(at * plane) as i64, (c * plane) as i64],
                "BUF_SLICE",
            );
            self.push_args(
                "",
                &[c as i64, shape.d as i64, shape.h as i64, shape.w as i64],
                "BUF_SHAPE",
            );
            self.push_args("", &[1], "BUF_SWAP");
            self.below.push((
                part.clone(),
                Shape::new(c, shape.d, shape.h, shape.w),
                self.quant,
            ));
            at += c;
        }
        self.push_args(&format!("drop {input}"), &[1], "BUF_CLS");
        let (t, s, q) = self
            .below
            .pop()
            .ok_or_else(|| err(node, "has no outputs"))?;
        (self.tensor, self.shape, self.quant) = (t, s, q);
        Ok(())
    }

    /// Discards the frame below the top that holds `tensor`, if any: swapped to the top and
    /// cleared, which moves the top frame into its place.
    fn drop_frame(&mut self, node: &NodeProto, tensor: &str) -> Result<()> {
        let Some(idx) = self.below.iter().rposition(|(t, _, _)| t == tensor) else {
            return Ok(());
        };
        let depth = (self.below.len() - idx) as i64;
        self.push_args(&format!("drop {tensor}"), &[depth], "BUF_SWAP");
        self.push_args("", &[1], "BUF_CLS");
        self.below[idx] = (self.tensor.clone(), self.shape, self.quant);
        let (t, shape, quant) = self.below.pop().ok_or_else(|| err(node, "no frames"))?;
        (self.tensor, self.shape, self.quant) = (t, shape, quant);
        Ok(())
    }

    /// A 256-entry table applying `f` from this tensor's quantization to `out`'s.
    fn lut(&self, out: QParams, f: impl Fn(f32) -> f32) -> Vec<u8> {
        (0..=255u8)
            .map(|b| out.quantize(f(self.quant.dequantize(b as i8))) as u8)
            .collect()
    }

    /// An element-wise function of [`crate::unary`] as a table into the output's calibrated
    /// quantization.
    fn elementwise(&mut self, node: &NodeProto) -> Result<()> {
        let f = crate::unary::unary(node)?.ok_or_else(|| err(node, "not element-wise"))?;
        let out_tensor = node
            .output
            .first()
            .ok_or_else(|| err(node, "has no output"))?;
        let out = self.quant_of(out_tensor)?;
        let block = self.add_block(self.lut(out, f));
        self.push_args(
            &format!("{} {}", node.name, node.op_type),
            &[block as i64],
            "ACT_LUT",
        );
        self.quant = out;
        Ok(())
    }

    fn activation(&mut self, node: &NodeProto) -> Result<()> {
        let (out, op, table): (QParams, &str, Vec<u8>) = match node.op_type.as_str() {
            "Sigmoid" => {
                let out = QParams {
                    scale: 1.0 / 256.0,
                    zero_point: -128,
                };
                (out, "ACT_SM1", self.lut(out, lstm::sigmoid))
            }
            "Tanh" => {
                let out = QParams {
                    scale: 1.0 / 128.0,
                    zero_point: 0,
                };
                (out, "ACT_TANH", self.lut(out, libm::tanhf))
            }
            _ => {
                // Softmax over a flat vector (ONNX's last axis): exp table in quantized steps.
                if self.shape.elements() != Some(self.shape.c as u64) {
                    bail!(err(
                        node,
                        format!(
                            "softmax over {} is supported for flat vectors only",
                            shape_text(self.shape)
                        )
                    ));
                }
                let s = self.quant.scale as f64;
                let table: Vec<u8> = (0..256)
                    .map(|d| {
                        ((65536.0 * libm::exp(-(d as f64) * s)).round() as i32).clamp(0, 1 << 24)
                    })
                    .flat_map(|e| e.to_le_bytes())
                    .collect();
                (
                    QParams {
                        scale: 1.0 / 256.0,
                        zero_point: -128,
                    },
                    "ACT_SM0",
                    table,
                )
            }
        };
        let block = self.add_block(table);
        self.push_args(
            &format!("{} {}", node.name, node.op_type),
            &[block as i64],
            op,
        );
        self.quant = out;
        Ok(())
    }

    fn conv_transpose(&mut self, nodes: &[NodeProto], i: usize) -> Result<usize> {
        let node = &nodes[i];
        let (dims, w) = self
            .init(node, 1)?
            .ok_or_else(|| err(node, "needs constant weights"))?;
        let groups = int(node, "group", 1)? as u32;
        if dims.len() != 4 || dims[2] != dims[3] || square(node, "dilations", 1)? != 1 {
            bail!(err(
                node,
                format!("weights {dims:?}: only square, undilated 2-D kernels are supported")
            ));
        }
        let (k, stride, pad) = (
            dims[2] as u32,
            square(node, "strides", 1)?,
            symmetric_pads(node)?,
        );
        let out_pad = match ints(node, "output_padding")? {
            None => 0,
            Some(v) if v.len() == 2 && v[0] == v[1] => v[0] as u32,
            Some(v) => bail!(err(
                node,
                format!("output_padding {v:?} must be equal on both axes")
            )),
        };
        let (c, per_group) = (dims[0], dims[1]);
        let out_c = per_group as u32 * groups;
        let p = smartvm_kernels::ConvTransposeParams::new(
            self.shape, out_c, k, stride, pad, out_pad, groups,
        )
        .map_err(|e| {
            err(
                node,
                format!(
                    "geometry does not fit input {}: {e:?}",
                    shape_text(self.shape)
                ),
            )
        })?;
        // Per-output-channel scales: output channel o = g·per_group + j reads w[c, j, ..] for the group's c.
        let kk = (k * k) as usize;
        let group_in = c / groups as usize;
        let mut scales = vec![0f32; out_c as usize];
        for (o, scale) in scales.iter_mut().enumerate() {
            let (g, j) = (o / per_group, o % per_group);
            let max = (g * group_in..(g + 1) * group_in)
                .flat_map(|ci| w[(ci * per_group + j) * kk..(ci * per_group + j + 1) * kk].iter())
                .fold(0f32, |m, v| m.max(v.abs()));
            *scale = if max > 0.0 { max / 127.0 } else { 1.0 };
        }
        let q: Vec<i8> = w
            .iter()
            .enumerate()
            .map(|(at, v)| {
                let (ci, j) = (at / kk / per_group, at / kk % per_group);
                let o = ci / group_in * per_group + j;
                (v / scales[o]).round().clamp(-127.0, 127.0) as i8
            })
            .collect();
        let bias = self.init(node, 2)?.map(|(_, b)| b.as_slice());
        let (fused, out_tensor) = self.fusable(nodes, i)?;
        let out = self.quant_of(&out_tensor)?;
        let cq = self.channel_quant(bias, &scales, out, &fused);
        let wblock = self.add_weights(&q, per_group * kk);
        let qblock = self.add_block(cq.encode());
        let args = [
            out_c as i64,
            k as i64,
            stride as i64,
            pad as i64,
            out_pad as i64,
            groups as i64,
            wblock as i64,
            qblock as i64,
        ];
        self.push_args(
            &format!("{} ConvTranspose -> {}", node.name, shape_text(p.output)),
            &args,
            "CONV_TPD",
        );
        self.shape = p.output;
        self.quant = out;
        Ok(!matches!(fused, Fused::None) as usize)
    }

    fn dense(&mut self, nodes: &[NodeProto], i: usize) -> Result<usize> {
        let node = &nodes[i];
        let (dims, w) = self
            .init(node, 1)?
            .ok_or_else(|| err(node, "needs a constant weight matrix"))?;
        if dims.len() != 2 {
            bail!(err(node, format!("weights {dims:?} are not a matrix")));
        }
        let gemm = node.op_type == "Gemm";
        let trans_b = gemm && int(node, "transB", 0)? == 1;
        if gemm
            && (int(node, "transA", 0)? != 0
                || float(node, "alpha", 1.0)? != 1.0
                || float(node, "beta", 1.0)? != 1.0)
        {
            bail!(err(
                node,
                "only transA = 0, alpha = 1 and beta = 1 are supported"
            ));
        }
        let (n_out, n_in) = if trans_b {
            (dims[0], dims[1])
        } else {
            (dims[1], dims[0])
        };
        if self.shape.elements() != Some(n_in as u64) {
            bail!(err(
                node,
                format!(
                    "expects {n_in} inputs, the live tensor has shape {:?}",
                    self.shape
                )
            ));
        }
        // Row-major O x N weights.
        let rows: Vec<f32> = if trans_b {
            w.clone()
        } else {
            (0..n_out)
                .flat_map(|o| (0..n_in).map(move |k| (o, k)))
                .map(|(o, k)| w[k * n_out + o])
                .collect()
        };
        let bias = if gemm {
            self.init(node, 2)?.map(|(_, b)| b.as_slice())
        } else {
            None
        };
        if let Some(b) = bias {
            if b.len() != n_out {
                bail!(err(
                    node,
                    format!(
                        "bias of {} values for {n_out} outputs (broadcasting is not supported)",
                        b.len()
                    )
                ));
            }
        }
        let (fused, out_tensor) = self.fusable(nodes, i)?;
        let out = self.quant_of(&out_tensor)?;
        let (q, scales) = quantize_rows(&rows, n_in);
        let cq = self.channel_quant(bias, &scales, out, &fused);
        let wblock = self.add_weights(&q, n_in);
        let qblock = self.add_block(cq.encode());
        self.push_args(
            &format!("{} {} {n_in} -> {n_out}", node.name, node.op_type),
            &[n_out as i64, wblock as i64, qblock as i64],
            "FULL_CON",
        );
        self.shape = Shape::flat(n_out as u32);
        self.quant = out;
        Ok(!matches!(fused, Fused::None) as usize)
    }

    /// Caffe's ceil-mode max pooling as Caffe2 exports it: floor mode with extra padding after
    /// the last row and column only (`pads = [0, 0, e, e]`). Padding never wins a max, so when
    /// ceil mode without padding gives the same output size it is the same pooling: `Some(true)`.
    fn end_padded_max_pool(&self, node: &NodeProto, k: u32, stride: u32) -> Result<Option<bool>> {
        let Some(p) = ints(node, "pads")? else {
            return Ok(None);
        };
        let [0, 0, e, f] = p.as_slice() else {
            return Ok(None);
        };
        if node.op_type != "MaxPool" || e != f || *e <= 0 || int(node, "ceil_mode", 0)? != 0 {
            return Ok(None);
        }
        let e = *e as u32;
        let floor = |n: u32| (n + e).checked_sub(k).map(|v| v / stride + 1);
        let equal = PoolParams::new(self.shape, k, stride, 0, PoolKind::MaxCeil).is_ok_and(|c| {
            Some(c.output.h) == floor(self.shape.h) && Some(c.output.w) == floor(self.shape.w)
        });
        if e < k && equal {
            Ok(Some(true))
        } else {
            Err(err(
                node,
                format!("pads {p:?}: end-only padding is supported where it equals ceil mode"),
            ))
        }
    }

    /// An AveragePool whose one window covers the whole map, counting only the input's taps
    /// (e.g. Caffe2's 7x7 pooling with end-only padding over a 6x6 map), is a global average.
    fn is_global_average(&self, node: &NodeProto, k: u32) -> Result<bool> {
        if node.op_type != "AveragePool" || int(node, "count_include_pad", 0)? != 0 {
            return Ok(false);
        }
        let pads = ints(node, "pads")?.unwrap_or_else(|| vec![0; 4]);
        let [top, left, bottom, right] = pads.as_slice() else {
            return Ok(false);
        };
        let one_window = |n: u32, b: i64, e: i64| {
            let padded = n as i64 + b + e;
            b < k as i64 && e < k as i64 && k as i64 >= n as i64 + b && padded - (k as i64) < 1
        };
        Ok(self.shape.d == 1
            && one_window(self.shape.h, *top, *bottom)
            && one_window(self.shape.w, *left, *right))
    }

    fn pool(&mut self, node: &NodeProto) -> Result<()> {
        let k = square(node, "kernel_shape", 1)?;
        let stride = square(node, "strides", 1)?;
        if self.is_global_average(node, k)? {
            self.push_args(
                &format!("{} AveragePool over the whole map", node.name),
                &[],
                "POOL_GAVG",
            );
            self.shape = Shape::flat(self.shape.c);
            return Ok(());
        }
        let (pad, ceil) = match self.end_padded_max_pool(node, k, stride)? {
            Some(ceil) => (0, ceil),
            None => (symmetric_pads(node)?, int(node, "ceil_mode", 0)? == 1),
        };
        let (kind, op) = match node.op_type.as_str() {
            "MaxPool" if ceil => (PoolKind::MaxCeil, "POOL_OL"),
            "MaxPool" => (PoolKind::Max, "POOL_MAX"),
            _ if ceil => bail!(err(node, "ceil_mode average pooling is not supported")),
            _ if pad > 0 && int(node, "count_include_pad", 0)? != 0 => {
                bail!(err(node, "count_include_pad = 1 is not supported"))
            }
            _ => (PoolKind::Average, "POOL_AVG"),
        };
        if node.op_type == "MaxPool" && square(node, "dilations", 1)? != 1 {
            bail!(err(node, "dilated pooling is not supported"));
        }
        let p = PoolParams::new(self.shape, k, stride, pad, kind)
            .map_err(|e| err(node, format!("{e:?} for input {:?}", self.shape)))?;
        self.push_args(
            &format!(
                "{} {} {k}x{k}/{stride} -> {}",
                node.name,
                node.op_type,
                shape_text(p.output)
            ),
            &[k as i64, stride as i64, pad as i64],
            op,
        );
        self.shape = p.output;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::widen_kernel;

    /// The zero rows and columns go on the side padded less: before the taps for padding
    /// `[0, 0, 1, 1]` (TensorFlow's SAME), after them for `[1, 1, 0, 0]`.
    #[test]
    fn a_widened_kernel_keeps_its_taps_against_the_same_inputs() {
        let w = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(
            widen_kernel(&w, 1, 2, 1),
            (3, vec![0.0, 0.0, 0.0, 0.0, 1.0, 2.0, 0.0, 3.0, 4.0])
        );
        assert_eq!(
            widen_kernel(&w, 1, 2, -1),
            (3, vec![1.0, 2.0, 0.0, 3.0, 4.0, 0.0, 0.0, 0.0, 0.0])
        );
    }
}
