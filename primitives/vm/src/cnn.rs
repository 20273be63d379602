//! The CNN-oriented instructions (paper Table 1) and their extensions.
//!
//! Each one pops its arguments, reads the frames it works on, charges gas for the work before
//! doing it, fetches its weight blocks, runs the kernel and replaces its input frames with the
//! output frame, so the Buffer holds only live feature maps.

use alloc::vec;

use smartvm_isa::{Opcode, Shape};
use smartvm_kernels::{
    as_i8, elementwise, AddQuant, ChannelQuant, ConvParams, ConvTransposeParams, KernelError,
    Kernels, PairQuant, PoolKind, PoolParams, SoftmaxTable,
};

use crate::buffer::Frame;
use crate::error::ErrorKind;
use crate::gas::{KernelClass, Work};
use crate::interpreter::{operand, Machine};
use crate::weights::{unavailable, LayerStream, WeightSource};

pub(crate) fn kernel_error(qblock: i64) -> impl Fn(KernelError) -> ErrorKind {
    move |e| match e {
        KernelError::BadOperand => ErrorKind::BadOperand,
        KernelError::ShapeMismatch => ErrorKind::ShapeMismatch,
        KernelError::BadQuant => ErrorKind::BadQuantBlock {
            index: qblock.clamp(0, u32::MAX as i64) as u32,
        },
        KernelError::TooLarge => ErrorKind::Kernel(KernelError::TooLarge),
    }
}

/// A banded fully-connected layer that a slice's end interrupted: the rows done, the stream of
/// its weights and the output so far. The next slice resumes inside the instruction.
#[derive(Clone, Debug, PartialEq, Eq, codec::Encode, codec::Decode)]
pub struct PartialLayer {
    /// Gas used before the instruction began (its gas record spans the slices).
    start_gas: u64,
    /// Output rows computed.
    rows_done: u32,
    /// Where the layer's weight blocks stand.
    stream: LayerStream,
    /// The output so far.
    out: alloc::vec::Vec<i8>,
}

impl PartialLayer {
    /// Gas used before the instruction began.
    pub(crate) fn start_gas(&self) -> u64 {
        self.start_gas
    }
}

fn elements(shape: &Shape) -> Result<u64, ErrorKind> {
    shape.elements().ok_or(ErrorKind::ShapeMismatch)
}

impl<'a, K: Kernels, W: WeightSource> Machine<'a, K, W> {
    /// Charges one kernel instruction's work at its class's prices, before doing it.
    fn charge_kernel(
        &mut self,
        class: KernelClass,
        macs: u64,
        outputs: u64,
        bytes: u64,
    ) -> Result<(), ErrorKind> {
        let work = Work {
            calls: 1,
            macs,
            rows: 0,
            outputs,
            bytes,
        };
        self.charge_work(class, work)
    }

    /// Charges an element-wise pass over `len` elements of `class`, touching `bytes`.
    fn charge_elements(
        &mut self,
        class: KernelClass,
        len: u64,
        bytes: u64,
    ) -> Result<(), ErrorKind> {
        self.charge_kernel(class, 0, len, bytes)
    }

    /// Charges moving `bytes` through the Buffer.
    fn charge_bytes(&mut self, bytes: u64) -> Result<(), ErrorKind> {
        self.charge_kernel(KernelClass::Move, 0, 0, bytes)
    }

    /// Replaces the top `inputs` frames with a freshly computed output of `shape`.
    fn produce(
        &mut self,
        inputs: usize,
        shape: Shape,
        compute: impl FnOnce(&Self, &mut [i8]) -> Result<(), ErrorKind>,
    ) -> Result<(), ErrorKind> {
        let len = elements(&shape)?;
        self.buffer.reserve(len)?;
        let mut out = self.buffer.for_output(len as usize);
        compute(self, &mut out)?;
        self.buffer.replace(inputs, Frame { shape, data: out })
    }

    fn conv(&mut self, p: ConvParams, wblock: i64, qblock: i64) -> Result<(), ErrorKind> {
        let outputs = elements(&p.output)?;
        // Taps in the padding cost the kernels nothing but a skipped loop: charge those inside.
        let (macs, rows) = p.work_inside();
        let class = if p.stride[2] == 1 {
            KernelClass::Conv
        } else {
            KernelClass::ConvStrided
        };
        let work = Work {
            calls: 1,
            macs,
            rows,
            outputs,
            bytes: elements(&p.input)? + outputs + p.weight_len(),
        };
        self.charge_work(class, work)?;
        let weights = self.layer_weights(wblock, p.weight_len())?;
        let q = self.channel_quant(qblock, p.output.c)?;
        let key = (operand(wblock)?, p.weight_len(), outputs);
        let prepared = self
            .packed
            .conv(key, self.kernels, (&p, as_i8(&weights), &q));
        self.produce(1, p.output, |m, out| {
            let input = &m.buffer.top()?.data;
            match &prepared {
                Some(prepared) => {
                    m.kernels
                        .conv_prepared(&p, input, as_i8(&weights), prepared, &q, out)
                }
                None => m.kernels.conv(&p, input, as_i8(&weights), &q, out),
            }
            .map_err(kernel_error(qblock))
        })
    }

    fn fully_connected(&mut self, out_n: i64, wblock: i64, qblock: i64) -> Result<(), ErrorKind> {
        let out_n = operand(out_n)?;
        if let Some(partial) = self.partial.take() {
            return self.resume_bands(partial, out_n, qblock);
        }
        let in_n = self.buffer.top()?.data.len() as u64;
        let macs = in_n
            .checked_mul(out_n as u64)
            .filter(|m| *m <= smartvm_kernels::params::MAX_MACS);
        let macs = macs.ok_or(ErrorKind::Kernel(KernelError::TooLarge))?;
        if out_n == 0 {
            return Err(ErrorKind::BadOperand);
        }
        let bytes = in_n + out_n as u64 + macs;
        self.charge_kernel(KernelClass::FullyConnected, macs, out_n as u64, bytes)?;
        let first = operand(wblock)?;
        // A source that lends the whole layer in place (the CLI's pack) needs no bands.
        let lent_in_place = |len: u64| {
            usize::try_from(len)
                .ok()
                .and_then(|len| self.weights.span(first, len))
                .is_some()
        };
        if macs > self.fc_band && !lent_in_place(macs) {
            return self.fully_connected_in_bands(in_n, out_n, first, qblock);
        }
        let weights = self.layer_weights(wblock, macs)?;
        let q = self.channel_quant(qblock, out_n)?;
        let key = (first, in_n, out_n as u64);
        let packed = self.packed.get(key, self.kernels, as_i8(&weights));
        self.produce(1, Shape::flat(out_n), |m, out| {
            let input = &m.buffer.top()?.data;
            match &packed {
                Some(packed) => {
                    m.kernels
                        .fully_connected_packed(input, as_i8(&weights), packed, &q, out)
                }
                None => m.kernels.fully_connected(input, as_i8(&weights), &q, out),
            }
            .map_err(kernel_error(qblock))
        })
    }

    /// A fully-connected layer too large to read at once: its rows are read and multiplied a
    /// band at a time, each band within [`Config::fc_band`](crate::Config) bytes. Gas is what
    /// [`Self::fully_connected`] charges (the qblock is read first here, so a fault in the
    /// layer's weight blocks is found after it).
    // The rare path, kept out of line so that it does not grow the common one.
    #[inline(never)]
    fn fully_connected_in_bands(
        &mut self,
        in_n: u64,
        out_n: u32,
        first: u32,
        qblock: i64,
    ) -> Result<(), ErrorKind> {
        let len = in_n * out_n as u64;
        self.charge_layer_bytes(first, len)?;
        let q = ChannelQuant::decode(&self.block(qblock)?, out_n).map_err(kernel_error(qblock))?;
        self.buffer.reserve(out_n as u64)?;
        let partial = PartialLayer {
            start_gas: self.op_start,
            rows_done: 0,
            stream: LayerStream::new(first, len),
            out: vec![0i8; out_n as usize],
        };
        self.run_bands(partial, &q, in_n, qblock)
    }

    /// Goes on with a banded layer a slice's end interrupted, without charging again what its
    /// start paid for (the layer, its qblock).
    #[inline(never)]
    fn resume_bands(
        &mut self,
        partial: PartialLayer,
        out_n: u32,
        qblock: i64,
    ) -> Result<(), ErrorKind> {
        let in_n = self.buffer.top()?.data.len() as u64;
        if partial.out.len() != out_n as usize || partial.rows_done > out_n {
            return Err(ErrorKind::BadOperand);
        }
        let index = operand(qblock)?;
        let Some(bytes) = self.weights.block(index) else {
            let kind = unavailable(self.weights, index);
            if kind == ErrorKind::SliceEnd {
                self.partial = Some(partial);
            }
            return Err(kind);
        };
        let q = ChannelQuant::decode(&bytes, out_n).map_err(kernel_error(qblock))?;
        self.buffer.reserve(out_n as u64)?;
        self.run_bands(partial, &q, in_n, qblock)
    }

    /// Runs the remaining bands of `layer`. At a slice's end (the gas of a band's blocks, or
    /// the source's share of weight bytes) the layer is kept in [`Machine::partial`] and the
    /// run pauses inside the instruction; bands start at the same rows either way, so the
    /// output and the gas are the uninterrupted run's.
    fn run_bands(
        &mut self,
        mut layer: PartialLayer,
        q: &ChannelQuant,
        in_n: u64,
        qblock: i64,
    ) -> Result<(), ErrorKind> {
        let input = self.buffer.top()?.data.clone();
        let band_rows = (self.fc_band / in_n.max(1)).max(1) as usize;
        let source = self.weights;
        let rows = layer.out.len();
        while (layer.rows_done as usize) < rows {
            let start = layer.rows_done as usize;
            let end = start.saturating_add(band_rows).min(rows);
            let n = (end - start) * in_n as usize;
            let read = layer.stream.fill(source, n);
            if let Err(kind) = read.and_then(|unpaid| self.charge_blocks(unpaid)) {
                if kind == ErrorKind::SliceEnd {
                    self.partial = Some(layer);
                }
                return Err(kind);
            }
            let weights = layer.stream.split(n);
            let band_q = q.channels(start..end).ok_or(ErrorKind::ShapeMismatch)?;
            self.kernels
                .fully_connected(&input, as_i8(&weights), &band_q, &mut layer.out[start..end])
                .map_err(kernel_error(qblock))?;
            layer.rows_done = end as u32;
        }
        self.buffer.replace(
            1,
            Frame {
                shape: Shape::flat(layer.out.len() as u32),
                data: layer.out,
            },
        )
    }

    fn pool(&mut self, kind: PoolKind) -> Result<(), ErrorKind> {
        let [k, stride, pad] = self.args()?;
        let shape = self.buffer.top()?.shape;
        let p = PoolParams::new(shape, operand(k)?, operand(stride)?, operand(pad)?, kind)
            .map_err(kernel_error(0))?;
        let out = elements(&p.output)?;
        let taps = out * (p.k * p.k) as u64;
        self.charge_kernel(KernelClass::Pool, taps, out, elements(&shape)? + out)?;
        self.produce(1, p.output, |m, out| {
            m.kernels
                .pool(&p, &m.buffer.top()?.data, out)
                .map_err(kernel_error(0))
        })
    }

    /// Applies an in-place element-wise transform to the top frame, charging per byte.
    fn in_place(
        &mut self,
        class: KernelClass,
        f: impl FnOnce(&mut [i8]) -> Result<(), KernelError>,
    ) -> Result<(), ErrorKind> {
        let len = self.buffer.top()?.data.len() as u64;
        self.charge_elements(class, len, len)?;
        f(&mut self.buffer.top_mut()?.data).map_err(kernel_error(0))
    }

    /// Two-frame element-wise op: checks sizes and produces a frame shaped like the lower one.
    fn pairwise(
        &mut self,
        class: KernelClass,
        qblock: i64,
        f: impl FnOnce(&[u8], &[i8], &[i8], &mut [i8]) -> Result<(), KernelError>,
    ) -> Result<(), ErrorKind> {
        let (a, b) = (self.buffer.get(1)?, self.buffer.top()?);
        if a.data.len() != b.data.len() {
            return Err(ErrorKind::ShapeMismatch);
        }
        let (shape, len) = (a.shape, a.data.len() as u64);
        self.charge_elements(class, len, 3 * len)?;
        let q = self.block(qblock)?;
        self.produce(2, shape, |m, out| {
            let (a, b) = (&m.buffer.get(1)?.data, &m.buffer.top()?.data);
            f(&q, a, b, out).map_err(kernel_error(qblock))
        })
    }

    /// Executes one CNN-oriented instruction.
    pub(crate) fn cnn(&mut self, op: Opcode) -> Result<(), ErrorKind> {
        use Opcode::*;
        match op {
            CONV_MUL | CONV_3D => {
                let [out_c, k, stride, pad, dilation, groups, wblock, qblock] = self.args()?;
                let shape = self.buffer.top()?.shape;
                let make = if op == CONV_MUL {
                    ConvParams::conv2d
                } else {
                    ConvParams::conv3d
                };
                let p = make(
                    shape,
                    operand(out_c)?,
                    operand(k)?,
                    operand(stride)?,
                    operand(pad)?,
                    operand(dilation)?,
                    operand(groups)?,
                )
                .map_err(kernel_error(qblock))?;
                self.conv(p, wblock, qblock)
            }
            CONV_SING => {
                let [k, stride, pad, dilation, wblock, qblock] = self.args()?;
                let shape = self.buffer.top()?.shape;
                let p = ConvParams::conv2d(
                    shape,
                    shape.c,
                    operand(k)?,
                    operand(stride)?,
                    operand(pad)?,
                    operand(dilation)?,
                    shape.c,
                )
                .map_err(kernel_error(qblock))?;
                self.conv(p, wblock, qblock)
            }
            CONV_TPD => {
                let [out_c, k, stride, pad, out_pad, groups, wblock, qblock] = self.args()?;
                let shape = self.buffer.top()?.shape;
                let p = ConvTransposeParams::new(
                    shape,
                    operand(out_c)?,
                    operand(k)?,
                    operand(stride)?,
                    operand(pad)?,
                    operand(out_pad)?,
                    operand(groups)?,
                )
                .map_err(kernel_error(qblock))?;
                let outputs = elements(&p.output)?;
                let bytes = elements(&p.input)? + outputs + p.weight_len();
                self.charge_kernel(KernelClass::ConvTranspose, p.macs(), outputs, bytes)?;
                let weights = self.layer_weights(wblock, p.weight_len())?;
                let q = self.channel_quant(qblock, p.output.c)?;
                self.produce(1, p.output, |m, out| {
                    m.kernels
                        .conv_transpose(&p, &m.buffer.top()?.data, as_i8(&weights), &q, out)
                        .map_err(kernel_error(qblock))
                })
            }
            POOL_MAX => self.pool(PoolKind::Max),
            POOL_OL => self.pool(PoolKind::MaxCeil),
            POOL_AVG => self.pool(PoolKind::Average),
            POOL_GAVG => {
                let shape = self.buffer.top()?.shape;
                let len = elements(&shape)?;
                let outputs = u64::from(shape.c);
                self.charge_kernel(KernelClass::GlobalPool, len, outputs, len + outputs)?;
                self.produce(1, Shape::flat(shape.c), |m, out| {
                    elementwise::global_avg_pool(shape, &m.buffer.top()?.data, out)
                        .map_err(kernel_error(0))
                })
            }
            FULL_CON => {
                let [out_n, wblock, qblock] = self.args()?;
                self.fully_connected(out_n, wblock, qblock)
            }
            MAT_MUL => {
                let [qblock] = self.args()?;
                let (a, b) = (self.buffer.get(1)?.shape, self.buffer.top()?.shape);
                let rows = |s: Shape| (s.c as u64) * (s.d as u64) * (s.h as u64);
                let (m_rows, k, n) = (rows(a), a.w as u64, b.w as u64);
                if rows(b) != k || m_rows > u32::MAX as u64 {
                    return Err(ErrorKind::ShapeMismatch);
                }
                let macs = m_rows.saturating_mul(k).saturating_mul(n);
                if macs > smartvm_kernels::params::MAX_MACS {
                    return Err(ErrorKind::Kernel(KernelError::TooLarge));
                }
                let bytes = m_rows * k + k * n + m_rows * n;
                self.charge_kernel(KernelClass::MatMul, macs, m_rows * n, bytes)?;
                let q = PairQuant::decode(&self.block(qblock)?).map_err(kernel_error(qblock))?;
                let dims = [m_rows as u32, k as u32, n as u32];
                self.produce(2, Shape::new(1, 1, m_rows as u32, n as u32), |m, out| {
                    let (a, b) = (&m.buffer.get(1)?.data, &m.buffer.top()?.data);
                    m.kernels
                        .matmul(dims, a, b, &q, out)
                        .map_err(kernel_error(qblock))
                })
            }
            ADD_RQ => {
                let [qblock] = self.args()?;
                self.pairwise(KernelClass::Add, qblock, |q, a, b, out| {
                    elementwise::add(a, b, &AddQuant::decode(q)?, out)
                })
            }
            MUL_RQ => {
                let [qblock] = self.args()?;
                self.pairwise(KernelClass::Mul, qblock, |q, a, b, out| {
                    elementwise::mul(a, b, &PairQuant::decode(q)?, out)
                })
            }
            ACT_SM0 => {
                let [qblock] = self.args()?;
                let table =
                    SoftmaxTable::decode(&self.block(qblock)?).map_err(kernel_error(qblock))?;
                let shape = self.buffer.top()?.shape;
                let len = elements(&shape)?;
                self.charge_elements(KernelClass::Softmax, len, 2 * len)?;
                self.produce(1, shape, |m, out| {
                    elementwise::softmax(shape, &table, &m.buffer.top()?.data, out)
                        .map_err(kernel_error(qblock))
                })
            }
            ACT_SM1 | ACT_TANH | ACT_LUT => {
                let [table] = self.args()?;
                let bytes = self.block(table)?;
                let map = kernel_error(table);
                self.in_place(KernelClass::Table, |data| elementwise::lut(&bytes, data))
                    .map_err(|e| match e {
                        ErrorKind::BadQuantBlock { .. } => map(KernelError::BadQuant),
                        other => other,
                    })
            }
            ACT_RL => {
                let [zero] = self.args()?;
                self.in_place(KernelClass::Clip, |data| elementwise::clip(data, zero, 127))
            }
            ACT_CLIP => {
                let [lo, hi] = self.args()?;
                self.in_place(KernelClass::Clip, |data| elementwise::clip(data, lo, hi))
            }
            BUF_SCL0 => {
                let [times] = self.args()?;
                self.in_place(KernelClass::Scale, |data| {
                    elementwise::scale_up(data, times)
                })
            }
            BUF_SCL1 => {
                let [times] = self.args()?;
                self.in_place(KernelClass::Scale, |data| {
                    elementwise::scale_down(data, times)
                })
            }
            BUF_BIAS => {
                let [block] = self.args()?;
                let bias = self.block(block)?;
                if bias.len() != self.buffer.top()?.shape.c as usize {
                    return Err(ErrorKind::ShapeMismatch);
                }
                self.in_place(KernelClass::Scale, |data| {
                    elementwise::add_channel_bias(data, as_i8(&bias))
                })
            }
            MTOB => {
                let [offset, len] = self.args()?;
                let r = self
                    .memory
                    .ensure(offset, len, &mut self.meter, &self.schedule)?;
                self.charge_bytes(r.len() as u64)?;
                let data = self.buffer.copied(as_i8(&self.memory.bytes[r]));
                self.buffer.push(Frame::flat(data))
            }
            BTOM => {
                let [offset] = self.args()?;
                let len = self.buffer.top()?.data.len();
                self.charge_bytes(len as u64)?;
                let r = self
                    .memory
                    .ensure(offset, len as i64, &mut self.meter, &self.schedule)?;
                let frame = self.buffer.pop()?;
                self.memory.bytes[r].copy_from_slice(smartvm_kernels::as_u8(&frame.data));
                Ok(())
            }
            BTOS0 => {
                let [offset] = self.args()?;
                let data = &self.buffer.top()?.data;
                let v = *usize::try_from(offset)
                    .ok()
                    .and_then(|o| data.get(o))
                    .ok_or(ErrorKind::BadOperand)?;
                self.push(v as i64)
            }
            BTOS1 => {
                let [offset, len] = self.args()?;
                let (offset, len) = (operand(offset)? as usize, operand(len)? as usize);
                self.charge_bytes(len as u64)?;
                let data = &self.buffer.top()?.data;
                let slice = data
                    .get(offset..offset.saturating_add(len))
                    .ok_or(ErrorKind::BadOperand)?;
                self.output = Some(slice.to_vec());
                Ok(())
            }
            BUF_CLS => {
                let [count] = self.args()?;
                for _ in 0..operand(count)? {
                    self.buffer.discard()?;
                }
                Ok(())
            }
            BUF_FIL => {
                let [value] = self.args()?;
                let value = i8::try_from(value).map_err(|_| ErrorKind::BadOperand)?;
                self.in_place(KernelClass::Clip, |data| {
                    data.fill(value);
                    Ok(())
                })
            }
            BUF_INIT => {
                let [limit] = self.args()?;
                self.buffer.init(operand(limit)? as u64)
            }
            BUF_ALLO => {
                let [bytes] = self.args()?;
                let bytes = operand(bytes)?;
                self.buffer.reserve(bytes as u64)?;
                self.charge_bytes(bytes as u64)?;
                self.buffer.push(Frame::flat(vec![0; bytes as usize]))
            }
            BUF_FREE => {
                let [bytes] = self.args()?;
                self.buffer.shrink_top(operand(bytes)? as u64)
            }
            BUF_COPY => {
                let [depth] = self.args()?;
                let depth = operand(depth)? as usize;
                let len = self.buffer.get(depth)?.data.len() as u64;
                self.buffer.reserve(len)?;
                self.charge_bytes(len)?;
                let copy = self.buffer.copy_of(depth)?;
                self.buffer.push(copy)
            }
            BUF_SHAPE => {
                let [c, d, h, w] = self.args()?;
                let shape = Shape::new(operand(c)?, operand(d)?, operand(h)?, operand(w)?);
                let top = self.buffer.top_mut()?;
                if shape.elements() != Some(top.data.len() as u64) {
                    return Err(ErrorKind::ShapeMismatch);
                }
                top.shape = shape;
                Ok(())
            }
            BUF_SWAP => {
                let [depth] = self.args()?;
                self.buffer.swap(operand(depth)? as usize)
            }
            BUF_SLICE => {
                let [offset, len] = self.args()?;
                let (offset, len) = (operand(offset)? as usize, operand(len)? as usize);
                self.charge_bytes(len as u64)?;
                let slice = self.buffer.slice_of_top(offset, len)?;
                self.buffer.push(slice)
            }
            BUF_CAT => {
                let [count] = self.args()?;
                let count = operand(count)? as usize;
                if count == 0 || count > self.buffer.depth() {
                    return Err(ErrorKind::BufferUnderflow);
                }
                let total: u64 = (0..count)
                    .map(|d| self.buffer.get(d).map(|f| f.data.len() as u64))
                    .sum::<Result<u64, _>>()?;
                if total > u32::MAX as u64 {
                    return Err(ErrorKind::BufferLimit);
                }
                self.charge_bytes(total)?;
                self.produce(count, Shape::flat(total as u32), |m, out| {
                    let mut at = 0;
                    for d in (0..count).rev() {
                        let part = &m.buffer.get(d)?.data;
                        out[at..at + part.len()].copy_from_slice(part);
                        at += part.len();
                    }
                    Ok(())
                })
            }
            ARGMAX => {
                let data = &self.buffer.top()?.data;
                let mut best = 0usize;
                for (i, v) in data.iter().enumerate() {
                    if *v > data[best] {
                        best = i;
                    }
                }
                let len = data.len() as u64;
                self.charge_bytes(len)?;
                self.push(best as i64)
            }
            _ => Err(ErrorKind::InvalidInstruction),
        }
    }
}
