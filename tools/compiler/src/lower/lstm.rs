//! ONNX `LSTM` unrolled into SmartVM instructions, one block of about forty per time step.
//!
//! Each step computes the four gates as two fully-connected layers (`W·x_t + b` and `R·h`,
//! each with its own input quantization) added with requantization, applies sigmoid and tanh
//! through tables, and updates `c` and `h` with element-wise products and an add. The weights
//! are stored once and read by every step. The quantization of the inner tensors comes from
//! running the same recurrence in float on the calibration inputs ([`Lstm::forward`], in the
//! fixed-order float of [`crate::reference`]); `c` and `h` are symmetric so the zeroed frames
//! that start the recurrence mean 0.

use anyhow::{bail, Result};
use smartvm_isa::Shape;
use smartvm_kernels::{OutputRange, PairQuant};
use tract_onnx::pb::NodeProto;

use super::{err, float, int, Fused, Lowering};
use crate::onnx::OnnxModel;
use crate::quant::{q31, quantize_rows, QParams};

/// Output scale of the sigmoid tables: [0, 1] over the whole int8 range.
const SIGMOID: QParams = QParams {
    scale: 1.0 / 256.0,
    zero_point: -128,
};
/// Output scale of the tanh tables and of `h`: [-1, 1], symmetric.
const TANH: QParams = QParams {
    scale: 1.0 / 128.0,
    zero_point: 0,
};

/// One forward LSTM layer as ONNX defines it, with the gate rows in ONNX order (i, o, f, c).
pub(crate) struct Lstm {
    name: String,
    hidden: usize,
    input: usize,
    /// `4H x I`, row-major.
    w: Vec<f32>,
    /// `4H x H`, row-major.
    r: Vec<f32>,
    /// `Wb + Rb`, `4H`.
    bias: Vec<f32>,
}

/// The calibration keys of a layer's inner tensors.
fn key(node: &str, part: &str) -> String {
    format!("{node}#{part}")
}

/// The logistic function, with `libm`'s `expf` so that tables and ranges are the same bits on
/// every machine (the platform's libm may pick an FMA variant at run time).
pub(crate) fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + libm::expf(-x))
}

/// `rows` (`n x k`, row-major) times `x`, each sum in index order.
fn matvec(rows: &[f32], x: &[f32]) -> Vec<f32> {
    rows.chunks(x.len())
        .map(|row| row.iter().zip(x).fold(0.0, |acc, (a, b)| acc + a * b))
        .collect()
}

impl Lstm {
    /// Reads the layer, refusing what the unrolled form does not compute.
    pub(crate) fn from_node(node: &NodeProto, model: &OnnxModel) -> Result<Lstm> {
        let hidden = int(node, "hidden_size", 0)?;
        if hidden <= 0 {
            bail!(err(node, "needs a positive hidden_size"));
        }
        let hidden = hidden as usize;
        for attr in &node.attribute {
            let supported = match attr.name.as_str() {
                "hidden_size" => true,
                "direction" => attr.s == b"forward",
                "activations" => {
                    attr.strings == [&b"Sigmoid"[..], b"Tanh", b"Tanh"].map(|s| s.to_vec())
                }
                "input_forget" | "layout" => attr.i == 0,
                _ => false,
            };
            if !supported {
                bail!(err(
                    node,
                    format!(
                        "attribute {} is not supported (one forward layer, default activations, \
                         no clip, sequence-first layout)",
                        attr.name
                    )
                ));
            }
        }
        if float(node, "clip", 0.0)? != 0.0 {
            bail!(err(node, "clip is not supported"));
        }
        // Inputs: X, W, R, B, sequence_lens, initial_h, initial_c, P.
        if node.input.iter().skip(4).any(|name| !name.is_empty()) {
            bail!(err(
                node,
                "sequence_lens, initial_h, initial_c and peepholes are not supported"
            ));
        }
        let constant = |index: usize, what: &str| {
            node.input
                .get(index)
                .filter(|name| !name.is_empty())
                .and_then(|name| model.initializers.get(name))
                .ok_or_else(|| err(node, format!("{what} must be a constant initializer")))
        };
        let (w_dims, w) = constant(1, "W")?;
        let (r_dims, r) = constant(2, "R")?;
        if w_dims.len() != 3 || w_dims[0] != 1 || w_dims[1] != 4 * hidden || w_dims[2] == 0 {
            bail!(err(
                node,
                format!("W of shape {w_dims:?} is not [1, 4H, I]")
            ));
        }
        if r_dims.as_slice() != [1, 4 * hidden, hidden] {
            bail!(err(
                node,
                format!("R of shape {r_dims:?} is not [1, 4H, H]")
            ));
        }
        let bias = match node.input.get(3).filter(|name| !name.is_empty()) {
            None => vec![0.0; 4 * hidden],
            Some(_) => {
                let (b_dims, b) = constant(3, "B")?;
                if b_dims.as_slice() != [1, 8 * hidden] {
                    bail!(err(node, format!("B of shape {b_dims:?} is not [1, 8H]")));
                }
                (0..4 * hidden).map(|k| b[k] + b[4 * hidden + k]).collect()
            }
        };
        if node
            .output
            .iter()
            .enumerate()
            .any(|(k, name)| k != 1 && !name.is_empty())
        {
            bail!(err(
                node,
                "only the last hidden state Y_h (the second output) may be used"
            ));
        }
        Ok(Lstm {
            name: node.name.clone(),
            hidden,
            input: w_dims[2],
            w: w.clone(),
            r: r.clone(),
            bias,
        })
    }

    /// Length of one step's input vector.
    pub(crate) fn input_len(&self) -> usize {
        self.input
    }

    /// Hidden size.
    pub(crate) fn hidden(&self) -> usize {
        self.hidden
    }

    /// Runs the recurrence in float on one input (`T x I`, sequence first) and returns the last
    /// hidden state; `observe` sees the inner tensors the lowering quantizes, by their
    /// calibration keys: `W·x + b`, `R·h`, their sum (the gates) and `c`, at every step.
    pub(crate) fn forward(&self, x: &[f32], observe: &mut dyn FnMut(&str, &[f32])) -> Vec<f32> {
        let h_len = self.hidden;
        let (mut h, mut c) = (vec![0f32; h_len], vec![0f32; h_len]);
        let keys = ["wx", "rh", "gates", "cell"].map(|part| key(&self.name, part));
        for x_t in x.chunks_exact(self.input) {
            let wx: Vec<f32> = matvec(&self.w, x_t)
                .iter()
                .zip(&self.bias)
                .map(|(a, b)| a + b)
                .collect();
            let rh = matvec(&self.r, &h);
            let gates: Vec<f32> = wx.iter().zip(&rh).map(|(a, b)| a + b).collect();
            observe(&keys[0], &wx);
            observe(&keys[1], &rh);
            observe(&keys[2], &gates);
            for k in 0..h_len {
                let (i, o, f) = (
                    sigmoid(gates[k]),
                    sigmoid(gates[h_len + k]),
                    sigmoid(gates[2 * h_len + k]),
                );
                c[k] = f * c[k] + i * libm::tanhf(gates[3 * h_len + k]);
                h[k] = o * libm::tanhf(c[k]);
            }
            observe(&keys[3], &c);
        }
        h
    }
}

/// Requantization of an element-wise product `a · b` into `out`.
pub(super) fn product(a: QParams, b: QParams, out: QParams) -> PairQuant {
    let (mult, shift) = q31(a.scale as f64 * b.scale as f64 / out.scale as f64);
    PairQuant {
        a_zero: a.zero_point,
        b_zero: b.zero_point,
        output: OutputRange {
            zero: out.zero_point,
            lo: -128,
            hi: 127,
        },
        mult,
        shift,
    }
}

/// A 256-entry table applying `f` from `input`'s quantization to `out`'s.
fn table(input: QParams, out: QParams, f: impl Fn(f32) -> f32) -> Vec<u8> {
    (0..=255u8)
        .map(|b| out.quantize(f(input.dequantize(b as i8))) as u8)
        .collect()
}

impl Lowering<'_> {
    /// Lowers the LSTM at `nodes[i]`; its input sequence is the live tensor, its last hidden
    /// state becomes it.
    pub(super) fn lstm(&mut self, node: &NodeProto) -> Result<()> {
        let layer = Lstm::from_node(node, self.model)?;
        let (h, n_in) = (layer.hidden, layer.input);
        let total = self.shape.elements().unwrap_or(0) as usize;
        if n_in == 0 || total == 0 || !total.is_multiple_of(n_in) {
            bail!(err(
                node,
                format!("an input of {total} values is not a sequence of {n_in}-vectors")
            ));
        }
        let steps = total / n_in;
        let range = |part: &str| self.quant_of(&key(&layer.name, part));
        let (q_x, q_wx, q_rh, q_gates) = (self.quant, range("wx")?, range("rh")?, range("gates")?);
        let cell = {
            let (lo, hi) = self
                .ranges
                .get(&key(&layer.name, "cell"))
                .copied()
                .unwrap_or((-1.0, 1.0));
            let bound = lo.abs().max(hi.abs()).max(1e-3);
            QParams {
                scale: bound / 127.0,
                zero_point: 0,
            }
        };

        // Blocks shared by every step.
        let (wq, w_scales) = quantize_rows(&layer.w, n_in);
        let w_block = self.add_weights(&wq, n_in);
        let w_quant =
            self.channel_quant_from(q_x, Some(&layer.bias), &w_scales, q_wx, &Fused::None);
        let w_quant = self.add_block(w_quant.encode());
        let (rq, r_scales) = quantize_rows(&layer.r, h);
        let r_block = self.add_weights(&rq, h);
        let r_quant = self.channel_quant_from(TANH, None, &r_scales, q_rh, &Fused::None);
        let r_quant = self.add_block(r_quant.encode());
        let gates_sum = self.add_block(super::add_quant(q_wx, q_rh, q_gates, (-128, 127)).encode());
        let gate_sigmoid = self.add_block(table(q_gates, SIGMOID, sigmoid));
        let gate_tanh = self.add_block(table(q_gates, TANH, libm::tanhf));
        let cell_tanh = self.add_block(table(cell, TANH, libm::tanhf));
        let forget = self.add_block(product(SIGMOID, cell, cell).encode());
        let admit = self.add_block(product(SIGMOID, TANH, TANH).encode());
        let cell_sum = self.add_block(super::add_quant(cell, TANH, cell, (-128, 127)).encode());
        let emit = self.add_block(product(TANH, SIGMOID, TANH).encode());

        let (h, n_in) = (h as i64, n_in as i64);
        self.push_args(
            &format!(
                "{} LSTM: {steps} steps of {n_in} -> {h}, c and h start at 0",
                node.name
            ),
            &[h],
            "BUF_ALLO",
        );
        self.push_args("h", &[h], "BUF_ALLO");
        // Buffer, bottom to top: X c h.
        for t in 0..steps as i64 {
            let ops: &[(&str, &[i64], &str)] = &[
                ("x_t", &[2], "BUF_COPY"),
                ("", &[t * n_in, n_in], "BUF_SLICE"),
                ("", &[1], "BUF_SWAP"),
                ("", &[1], "BUF_CLS"),
                (
                    "W·x_t + b",
                    &[4 * h, w_block as i64, w_quant as i64],
                    "FULL_CON",
                ),
                ("R·h", &[1], "BUF_COPY"),
                ("", &[4 * h, r_block as i64, r_quant as i64], "FULL_CON"),
                ("gates", &[gates_sum as i64], "ADD_RQ"),
                ("i", &[0, h], "BUF_SLICE"),
                ("", &[gate_sigmoid as i64], "ACT_SM1"),
                ("", &[1], "BUF_SWAP"),
                ("candidate", &[3 * h, h], "BUF_SLICE"),
                ("", &[gate_tanh as i64], "ACT_TANH"),
                ("", &[1], "BUF_SWAP"),
                ("f", &[2 * h, h], "BUF_SLICE"),
                ("", &[gate_sigmoid as i64], "ACT_SM1"),
                ("", &[1], "BUF_SWAP"),
                ("o", &[h, h], "BUF_SLICE"),
                ("", &[gate_sigmoid as i64], "ACT_SM1"),
                ("drop the gates: X c h i g f o", &[1], "BUF_SWAP"),
                ("", &[1], "BUF_CLS"),
                ("f·c: X c h i g o f c", &[1], "BUF_SWAP"),
                ("", &[5], "BUF_COPY"),
                ("", &[forget as i64], "MUL_RQ"),
                ("i·g: X c h i g o fc i g", &[3], "BUF_COPY"),
                ("", &[3], "BUF_COPY"),
                ("", &[admit as i64], "MUL_RQ"),
                ("c' = f·c + i·g", &[cell_sum as i64], "ADD_RQ"),
                (
                    "h' = o·tanh(c'): X c h i g o c' tanh(c') o",
                    &[0],
                    "BUF_COPY",
                ),
                ("", &[cell_tanh as i64], "ACT_TANH"),
                ("", &[2], "BUF_COPY"),
                ("", &[emit as i64], "MUL_RQ"),
                ("keep X c' h'", &[5], "BUF_SWAP"),
                ("", &[1], "BUF_CLS"),
                ("", &[5], "BUF_SWAP"),
                ("", &[4], "BUF_CLS"),
            ];
            self.push_args(&format!("step {t}"), &[], "");
            for (comment, args, op) in ops {
                self.push_args(comment, args, op);
            }
        }
        self.push_args("Y_h: drop c and X", &[2], "BUF_SWAP");
        self.push_args("", &[2], "BUF_CLS");
        self.shape = Shape::flat(h as u32);
        self.quant = TANH;
        Ok(())
    }
}
