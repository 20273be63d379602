//! Layer parameters and quantization blocks, checked once so kernels can index without panics.
//!
//! Every constructor here validates its inputs completely: a host function or the interpreter
//! may be handed anything, and a kernel given a checked parameter set never indexes out of range.

use alloc::vec::Vec;

use smartvm_isa::Shape;

use crate::arith::{MAX_SHIFT, MIN_SHIFT};
use crate::KernelError;

/// Largest kernel window side, stride, padding or dilation accepted.
pub const MAX_WINDOW: u32 = 64;
/// Largest number of multiply-accumulates one kernel call may do (bounds gas arithmetic too).
pub const MAX_MACS: u64 = 1 << 40;

fn le_i32(bytes: &[u8], word: usize) -> Result<i32, KernelError> {
    let b = bytes
        .get(4 * word..4 * word + 4)
        .ok_or(KernelError::BadQuant)?;
    Ok(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn check_int8(v: i32) -> Result<i32, KernelError> {
    if (-128..=127).contains(&v) {
        Ok(v)
    } else {
        Err(KernelError::BadQuant)
    }
}

fn check_range(lo: i32, hi: i32) -> Result<(), KernelError> {
    check_int8(lo)?;
    check_int8(hi)?;
    if lo <= hi {
        Ok(())
    } else {
        Err(KernelError::BadQuant)
    }
}

fn check_scale(mult: i32, shift: i32) -> Result<(), KernelError> {
    if mult >= 0 && (MIN_SHIFT..=MAX_SHIFT).contains(&shift) {
        Ok(())
    } else {
        Err(KernelError::BadQuant)
    }
}

/// Output zero point and clamp range shared by the requantizing kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutputRange {
    /// Output zero point.
    pub zero: i32,
    /// Lowest output value (a fused ReLU sets it to `zero`).
    pub lo: i32,
    /// Highest output value.
    pub hi: i32,
}

/// Per-output-channel quantization of a conv or fully-connected layer (SPEC.md "qblock").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelQuant {
    /// Input zero point.
    pub input_zero: i32,
    /// Output zero point and clamp.
    pub output: OutputRange,
    /// Bias per output channel.
    pub bias: Vec<i32>,
    /// Q31 multiplier per output channel.
    pub mult: Vec<i32>,
    /// Shift per output channel.
    pub shift: Vec<i32>,
}

impl ChannelQuant {
    /// Parses and checks a qblock for a layer with `channels` outputs.
    pub fn decode(bytes: &[u8], channels: u32) -> Result<ChannelQuant, KernelError> {
        let n = le_i32(bytes, 4)?;
        if n < 0 || n as u32 != channels || bytes.len() as u64 != 4 * (5 + 3 * n as u64) {
            return Err(KernelError::BadQuant);
        }
        let n = n as usize;
        // The length is checked above, so each run of `n` words is there: read it in one pass
        // into an exactly sized vector.
        let words = |start: usize| -> Result<Vec<i32>, KernelError> {
            let run = bytes
                .get(4 * start..4 * (start + n))
                .ok_or(KernelError::BadQuant)?;
            // A plain loop into a zeroed vector: the iterator `collect` it replaces was
            // compiled to a scalar loop in some builds, up to a sixth of the LSTM's time.
            let mut out = alloc::vec![0i32; n];
            for (word, b) in out.iter_mut().zip(run.chunks_exact(4)) {
                *word = i32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
            Ok(out)
        };
        let quant = ChannelQuant {
            input_zero: check_int8(le_i32(bytes, 0)?)?,
            output: OutputRange {
                zero: check_int8(le_i32(bytes, 1)?)?,
                lo: le_i32(bytes, 2)?,
                hi: le_i32(bytes, 3)?,
            },
            bias: words(5)?,
            mult: words(5 + n)?,
            shift: words(5 + 2 * n)?,
        };
        check_range(quant.output.lo, quant.output.hi)?;
        for (m, s) in quant.mult.iter().zip(&quant.shift) {
            check_scale(*m, *s)?;
        }
        Ok(quant)
    }

    /// The quantization of output channels `range` alone, for running a layer a band of
    /// channels at a time; `None` if the range is not within the layer.
    pub fn channels(&self, range: core::ops::Range<usize>) -> Option<ChannelQuant> {
        Some(ChannelQuant {
            input_zero: self.input_zero,
            output: self.output,
            bias: self.bias.get(range.clone())?.to_vec(),
            mult: self.mult.get(range.clone())?.to_vec(),
            shift: self.shift.get(range)?.to_vec(),
        })
    }

    /// Serialises the qblock (for compilers and tests).
    pub fn encode(&self) -> Vec<u8> {
        let head = [
            self.input_zero,
            self.output.zero,
            self.output.lo,
            self.output.hi,
            self.bias.len() as i32,
        ];
        head.iter()
            .chain(&self.bias)
            .chain(&self.mult)
            .chain(&self.shift)
            .flat_map(|w| w.to_le_bytes())
            .collect()
    }
}

/// Quantization of a matrix product or element-wise product: two zero points, one scale.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PairQuant {
    /// Zero point of the first operand.
    pub a_zero: i32,
    /// Zero point of the second operand.
    pub b_zero: i32,
    /// Output zero point and clamp.
    pub output: OutputRange,
    /// Q31 multiplier.
    pub mult: i32,
    /// Shift.
    pub shift: i32,
}

impl PairQuant {
    /// Parses `z_a, z_b, z_out, lo, hi, M, s`.
    pub fn decode(bytes: &[u8]) -> Result<PairQuant, KernelError> {
        if bytes.len() != 28 {
            return Err(KernelError::BadQuant);
        }
        let w = |i| le_i32(bytes, i);
        let q = PairQuant {
            a_zero: check_int8(w(0)?)?,
            b_zero: check_int8(w(1)?)?,
            output: OutputRange {
                zero: check_int8(w(2)?)?,
                lo: w(3)?,
                hi: w(4)?,
            },
            mult: w(5)?,
            shift: w(6)?,
        };
        check_range(q.output.lo, q.output.hi)?;
        check_scale(q.mult, q.shift)?;
        Ok(q)
    }

    /// Serialises the block.
    pub fn encode(&self) -> Vec<u8> {
        [
            self.a_zero,
            self.b_zero,
            self.output.zero,
            self.output.lo,
            self.output.hi,
            self.mult,
            self.shift,
        ]
        .iter()
        .flat_map(|w| w.to_le_bytes())
        .collect()
    }
}

/// Quantization of a residual add: each operand rescaled by its own multiplier, one shift.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddQuant {
    /// Zero point of the first operand.
    pub a_zero: i32,
    /// Zero point of the second operand.
    pub b_zero: i32,
    /// Output zero point and clamp.
    pub output: OutputRange,
    /// Q31 multiplier of the first operand.
    pub a_mult: i32,
    /// Q31 multiplier of the second operand.
    pub b_mult: i32,
    /// Shared shift.
    pub shift: i32,
}

impl AddQuant {
    /// Parses `z_a, z_b, z_out, lo, hi, M_a, M_b, s`.
    pub fn decode(bytes: &[u8]) -> Result<AddQuant, KernelError> {
        if bytes.len() != 32 {
            return Err(KernelError::BadQuant);
        }
        let w = |i| le_i32(bytes, i);
        let q = AddQuant {
            a_zero: check_int8(w(0)?)?,
            b_zero: check_int8(w(1)?)?,
            output: OutputRange {
                zero: check_int8(w(2)?)?,
                lo: w(3)?,
                hi: w(4)?,
            },
            a_mult: w(5)?,
            b_mult: w(6)?,
            shift: w(7)?,
        };
        check_range(q.output.lo, q.output.hi)?;
        check_scale(q.a_mult, q.shift)?;
        check_scale(q.b_mult, q.shift)?;
        Ok(q)
    }

    /// Serialises the block.
    pub fn encode(&self) -> Vec<u8> {
        [
            self.a_zero,
            self.b_zero,
            self.output.zero,
            self.output.lo,
            self.output.hi,
            self.a_mult,
            self.b_mult,
            self.shift,
        ]
        .iter()
        .flat_map(|w| w.to_le_bytes())
        .collect()
    }
}

/// The exp table of a softmax (SPEC.md "ACT_SM0").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SoftmaxTable(pub Vec<i32>);

impl SoftmaxTable {
    /// Parses 256 little-endian int32 entries with `E[0] > 0` and every entry in `0..=2^24`.
    pub fn decode(bytes: &[u8]) -> Result<SoftmaxTable, KernelError> {
        if bytes.len() != 1024 {
            return Err(KernelError::BadQuant);
        }
        let table = (0..256)
            .map(|i| le_i32(bytes, i))
            .collect::<Result<Vec<_>, _>>()?;
        if table[0] <= 0 || table.iter().any(|e| !(0..=1 << 24).contains(e)) {
            return Err(KernelError::BadQuant);
        }
        Ok(SoftmaxTable(table))
    }
}

/// A checked convolution: geometry of input, kernel and output (SPEC.md "Convolution").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvParams {
    /// Input shape.
    pub input: Shape,
    /// Output shape (derived).
    pub output: Shape,
    /// Kernel extent on (D, H, W).
    pub kernel: [u32; 3],
    /// Stride on (D, H, W).
    pub stride: [u32; 3],
    /// Padding on (D, H, W), both sides.
    pub pad: [u32; 3],
    /// Dilation on (D, H, W).
    pub dilation: [u32; 3],
    /// Channel groups.
    pub groups: u32,
}

fn window_ok(v: u32, min: u32) -> Result<u32, KernelError> {
    if (min..=MAX_WINDOW).contains(&v) {
        Ok(v)
    } else {
        Err(KernelError::BadOperand)
    }
}

fn conv_out(input: u32, k: u32, s: u32, p: u32, d: u32) -> Result<u32, KernelError> {
    let span = d as u64 * (k as u64 - 1) + 1;
    let padded = input as u64 + 2 * p as u64;
    if padded < span {
        return Err(KernelError::ShapeMismatch);
    }
    Ok(((padded - span) / s as u64 + 1) as u32)
}

fn check_macs(output: &Shape, per_output: u64) -> Result<(), KernelError> {
    let macs = output.elements().and_then(|e| e.checked_mul(per_output));
    match macs {
        Some(m) if m <= MAX_MACS => Ok(()),
        _ => Err(KernelError::TooLarge),
    }
}

impl ConvParams {
    /// A 2-D (D = 1) convolution; `k`, `stride`, `pad` and `dilation` apply to H and W.
    pub fn conv2d(
        input: Shape,
        out_c: u32,
        k: u32,
        stride: u32,
        pad: u32,
        dilation: u32,
        groups: u32,
    ) -> Result<Self, KernelError> {
        if input.d != 1 {
            return Err(KernelError::ShapeMismatch);
        }
        Self::new(
            input,
            out_c,
            [1, k, k],
            [1, stride, stride],
            [0, pad, pad],
            [1, dilation, dilation],
            groups,
        )
    }

    /// A 3-D convolution with a cubic kernel.
    pub fn conv3d(
        input: Shape,
        out_c: u32,
        k: u32,
        stride: u32,
        pad: u32,
        dilation: u32,
        groups: u32,
    ) -> Result<Self, KernelError> {
        Self::new(
            input,
            out_c,
            [k; 3],
            [stride; 3],
            [pad; 3],
            [dilation; 3],
            groups,
        )
    }

    /// A convolution with its geometry given per axis (D, H, W).
    pub fn new(
        input: Shape,
        out_c: u32,
        kernel: [u32; 3],
        stride: [u32; 3],
        pad: [u32; 3],
        dilation: [u32; 3],
        groups: u32,
    ) -> Result<Self, KernelError> {
        for axis in 0..3 {
            window_ok(kernel[axis], 1)?;
            window_ok(stride[axis], 1)?;
            window_ok(pad[axis], 0)?;
            window_ok(dilation[axis], 1)?;
        }
        if input.elements().is_none_or(|e| e == 0) || out_c == 0 {
            return Err(KernelError::ShapeMismatch);
        }
        if groups == 0 || !input.c.is_multiple_of(groups) || !out_c.is_multiple_of(groups) {
            return Err(KernelError::BadOperand);
        }
        let dims = [input.d, input.h, input.w];
        let mut out = [0u32; 3];
        for axis in 0..3 {
            out[axis] = conv_out(
                dims[axis],
                kernel[axis],
                stride[axis],
                pad[axis],
                dilation[axis],
            )?;
        }
        let output = Shape::new(out_c, out[0], out[1], out[2]);
        let params = ConvParams {
            input,
            output,
            kernel,
            stride,
            pad,
            dilation,
            groups,
        };
        check_macs(&output, params.weights_per_output())?;
        Ok(params)
    }

    /// Input channels each group sees.
    pub fn group_in(&self) -> u32 {
        self.input.c / self.groups
    }

    /// Output channels per group.
    pub fn group_out(&self) -> u32 {
        self.output.c / self.groups
    }

    /// Weights feeding one output element: (C/groups) · KD · KH · KW.
    pub fn weights_per_output(&self) -> u64 {
        self.group_in() as u64 * self.kernel.iter().map(|k| *k as u64).product::<u64>()
    }

    /// Total weight count O · (C/groups) · KD · KH · KW.
    pub fn weight_len(&self) -> u64 {
        self.output.c as u64 * self.weights_per_output()
    }

    /// Multiply-accumulates of one call.
    pub fn macs(&self) -> u64 {
        self.output.elements().unwrap_or(0) * self.weights_per_output()
    }

    /// Output positions along `axis` (0 = D, 1 = H, 2 = W) summed over the kernel's taps on
    /// that axis, counting only taps that land inside the input, not in the padding.
    pub fn taps_inside(&self, axis: usize) -> u64 {
        let (dims_in, dims_out) = (
            [self.input.d, self.input.h, self.input.w],
            [self.output.d, self.output.h, self.output.w],
        );
        (0..self.kernel[axis])
            .map(|t| {
                let shift = t as i64 * self.dilation[axis] as i64 - self.pad[axis] as i64;
                let (lo, hi) = inside(dims_out[axis], self.stride[axis], shift, dims_in[axis]);
                u64::from(hi - lo)
            })
            .sum()
    }

    /// The work of a convolution that skips the padding: multiply-accumulates over taps inside
    /// the input, and inner loops (one kernel tap over one output row). What the validators'
    /// kernels do, and so what gas charges; at most [`Self::macs`].
    pub fn work_inside(&self) -> (u64, u64) {
        let per_channel = u64::from(self.output.c) * u64::from(self.group_in());
        let (d, h) = (self.taps_inside(0), self.taps_inside(1));
        let macs = per_channel * d * h * self.taps_inside(2);
        let rows = per_channel * d * h * u64::from(self.kernel[2]);
        (macs, rows)
    }
}

/// The outputs `lo..hi` of `out` along one axis whose tap at offset `shift` (= k·dilation −
/// pad) lands inside an input of `size`, for `stride`.
#[inline(always)]
pub(crate) fn inside(out: u32, stride: u32, shift: i64, size: u32) -> (u32, u32) {
    // Input index o·stride + shift; keep 0 ≤ it < size.
    let s = stride as i64;
    let lo = if shift >= 0 { 0 } else { (-shift + s - 1) / s };
    let hi = if size as i64 > shift {
        ((size as i64 - 1 - shift) / s + 1).min(out as i64)
    } else {
        0
    };
    (lo.min(hi) as u32, hi.max(0) as u32)
}

/// A checked transposed 2-D convolution (SPEC.md "Transposed convolution").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvTransposeParams {
    /// Input shape (D = 1).
    pub input: Shape,
    /// Output shape (derived).
    pub output: Shape,
    /// Square kernel side.
    pub k: u32,
    /// Stride.
    pub stride: u32,
    /// Padding removed from both sides.
    pub pad: u32,
    /// Extra rows/columns added at the end.
    pub out_pad: u32,
    /// Channel groups.
    pub groups: u32,
}

impl ConvTransposeParams {
    /// Checks the geometry and derives the output shape.
    pub fn new(
        input: Shape,
        out_c: u32,
        k: u32,
        stride: u32,
        pad: u32,
        out_pad: u32,
        groups: u32,
    ) -> Result<Self, KernelError> {
        window_ok(k, 1)?;
        window_ok(stride, 1)?;
        window_ok(pad, 0)?;
        if out_pad >= stride.max(1) {
            return Err(KernelError::BadOperand);
        }
        if input.d != 1 || input.elements().is_none_or(|e| e == 0) || out_c == 0 {
            return Err(KernelError::ShapeMismatch);
        }
        if groups == 0 || !input.c.is_multiple_of(groups) || !out_c.is_multiple_of(groups) {
            return Err(KernelError::BadOperand);
        }
        let size = |i: u32| -> Result<u32, KernelError> {
            let full = (i as i64 - 1) * stride as i64 + k as i64 + out_pad as i64 - 2 * pad as i64;
            u32::try_from(full)
                .ok()
                .filter(|v| *v >= 1)
                .ok_or(KernelError::ShapeMismatch)
        };
        let output = Shape::new(out_c, 1, size(input.h)?, size(input.w)?);
        let params = ConvTransposeParams {
            input,
            output,
            k,
            stride,
            pad,
            out_pad,
            groups,
        };
        check_macs(&input, (out_c / groups) as u64 * (k * k) as u64)?;
        Ok(params)
    }

    /// Total weight count C · (O/groups) · K · K.
    pub fn weight_len(&self) -> u64 {
        self.input.c as u64 * (self.output.c / self.groups) as u64 * (self.k * self.k) as u64
    }

    /// Multiply-accumulates of one call.
    pub fn macs(&self) -> u64 {
        self.input.elements().unwrap_or(0)
            * (self.output.c / self.groups) as u64
            * (self.k * self.k) as u64
    }
}

/// Which pooling reduction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolKind {
    /// Largest cell, floor output size.
    Max,
    /// Largest cell, ceil output size (overlapping pooling).
    MaxCeil,
    /// Rounded mean of the valid cells.
    Average,
}

/// A checked 2-D pooling window (SPEC.md "Pooling").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolParams {
    /// Input shape (D = 1).
    pub input: Shape,
    /// Output shape (derived).
    pub output: Shape,
    /// Window side.
    pub k: u32,
    /// Stride.
    pub stride: u32,
    /// Padding on both sides (ignored cells).
    pub pad: u32,
    /// Reduction.
    pub kind: PoolKind,
}

impl PoolParams {
    /// Checks the window and derives the output shape.
    pub fn new(
        input: Shape,
        k: u32,
        stride: u32,
        pad: u32,
        kind: PoolKind,
    ) -> Result<Self, KernelError> {
        window_ok(k, 1)?;
        window_ok(stride, 1)?;
        window_ok(pad, 0)?;
        if pad >= k {
            return Err(KernelError::BadOperand);
        }
        if input.d != 1 || input.elements().is_none_or(|e| e == 0) {
            return Err(KernelError::ShapeMismatch);
        }
        let size = |i: u32| -> Result<u32, KernelError> {
            let padded = i as u64 + 2 * pad as u64;
            if padded < k as u64 {
                return Err(KernelError::ShapeMismatch);
            }
            let span = padded - k as u64;
            let mut out = match kind {
                PoolKind::MaxCeil => span.div_ceil(stride as u64) + 1,
                _ => span / stride as u64 + 1,
            };
            if kind == PoolKind::MaxCeil && (out - 1) * stride as u64 >= i as u64 + pad as u64 {
                out -= 1;
            }
            Ok(out as u32)
        };
        let output = Shape::new(input.c, 1, size(input.h)?, size(input.w)?);
        check_macs(&output, (k * k) as u64)?;
        Ok(PoolParams {
            input,
            output,
            k,
            stride,
            pad,
            kind,
        })
    }
}
