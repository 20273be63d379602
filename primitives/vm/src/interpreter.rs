//! The fetch-charge-dispatch loop and the base instruction set.

use alloc::borrow::Cow;
use alloc::collections::BTreeMap;
use alloc::rc::Rc;
use alloc::vec;
use alloc::vec::Vec;

use smartvm_isa::{
    code::read_immediate, validate, validate::STACK_LIMIT, Opcode, Program, ValidationError,
};
use smartvm_kernels::{ChannelQuant, Kernels};

use crate::buffer::{Buffer, SavedFrame};
use crate::cnn::PartialLayer;
use crate::error::{ErrorKind, VmError};
use crate::gas::{KernelClass, Meter, Schedule, Work};
use crate::memory::Memory;
use crate::packed_layers::PackedLayers;
use crate::weights::{gather, unavailable, WeightSource};
use crate::Config;

/// A program that passed validation, with its jump table ready.
#[derive(Clone, Debug)]
pub struct Executable {
    program: Program,
    jumpdest: Vec<bool>,
    instruction_count: usize,
}

impl Executable {
    /// Validates `program` and prepares it for execution.
    pub fn new(program: Program) -> Result<Executable, ValidationError> {
        validate(&program)?;
        Ok(Self::validated(program))
    }

    /// Prepares a program that passed [`validate`] earlier, without validating it again: the
    /// pallet validates a program once, at upload, and stored programs never change, so
    /// `infer` pays for decoding and the jump table only. Safe on any program all the same:
    /// the interpreter checks stack bounds and jump targets as it runs, so an unvalidated
    /// program can only fail with a typed error.
    pub fn validated(program: Program) -> Executable {
        let mut jumpdest = vec![false; program.code.len()];
        let mut instruction_count = 0;
        for ins in smartvm_isa::decode_instructions(&program.code).flatten() {
            jumpdest[ins.pc as usize] = ins.opcode == Opcode::JUMPDEST;
            instruction_count += 1;
        }
        Executable {
            program,
            jumpdest,
            instruction_count,
        }
    }

    /// The program.
    pub fn program(&self) -> &Program {
        &self.program
    }

    /// Instructions in the code (static count, the paper's "bytecode length").
    pub fn instruction_count(&self) -> usize {
        self.instruction_count
    }
}

/// What a successful execution produced and consumed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The program's output elements.
    pub output: Vec<i8>,
    /// Gas consumed.
    pub gas_used: u64,
    /// Instructions executed.
    pub instructions: u64,
    /// Most bytes the Buffer held at once.
    pub peak_buffer_bytes: u64,
    /// Bytes of Memory at the end (Memory never shrinks, so also its peak).
    pub peak_memory_bytes: u64,
    /// Weight blocks fetched (a WLOAD from the block just read counts once).
    pub weight_blocks_read: u64,
    /// Weight bytes fetched.
    pub weight_bytes_read: u64,
    /// Bytes of every Buffer frame ever pushed: what the Buffer would hold if it never freed a
    /// feature map (the paper's §3.3 baseline for `peak_buffer_bytes`).
    pub buffer_bytes_pushed: u64,
    /// Gas of each CNN instruction executed, in order, with its opcode: the cost per layer.
    /// The first [`CNN_GAS_RECORD_LIMIT`] only, so a loop cannot grow it without bound.
    pub cnn_gas: Vec<(Opcode, u64)>,
    /// The work of each kernel class, indexed by [`KernelClass::index`]: what its gas was
    /// charged for, and what the benchmarks fit their prices to.
    pub work: [Work; KernelClass::COUNT],
}

/// Most entries [`Outcome::cnn_gas`] keeps: every layer of the paper's models (the unrolled LSTM
/// runs about 1,050 CNN instructions) in 64 KiB.
pub const CNN_GAS_RECORD_LIMIT: usize = 4096;

/// The state of one execution.
pub(crate) struct Machine<'a, K, W> {
    pub(crate) stack: Vec<i64>,
    pub(crate) memory: Memory,
    pub(crate) buffer: Buffer,
    pub(crate) meter: Meter,
    pub(crate) schedule: Schedule,
    pub(crate) kernels: &'a K,
    pub(crate) weights: &'a W,
    pub(crate) output: Option<Vec<i8>>,
    pub(crate) blocks_read: u64,
    pub(crate) weight_bytes: u64,
    pub(crate) work: [Work; KernelClass::COUNT],
    /// Most weight bytes one fully-connected band reads from a source that cannot lend a
    /// whole layer in place ([`Config::weight_chunk`]).
    pub(crate) weight_chunk: u64,
    /// Most weight bytes one band of a fully-connected layer reads ([`Config::fc_band`]).
    pub(crate) fc_band: u64,
    /// The block WLOAD last read, kept so that reading it again costs nothing.
    element_cache: Option<(u32, Cow<'a, [u8]>)>,
    /// The block WLOAD last paid for: a resumed run reads it again without paying again.
    element_paid: Option<u32>,
    /// A banded layer a slice's end interrupted, which the instruction at the pc goes on with.
    pub(crate) partial: Option<PartialLayer>,
    /// Gas used before the current instruction began.
    pub(crate) op_start: u64,
    /// Qblocks decoded in this run, by block and channel count: a recurrent program (the
    /// LSTM's gates, 28 steps) reads the same qblock every step. Each read is still charged.
    quants: BTreeMap<(u32, u32), Rc<ChannelQuant>>,
    /// Fully-connected layers run more than once, packed for the backend.
    pub(crate) packed: &'a mut PackedLayers,
}

/// Converts a stack word to a non-negative u32 operand.
#[inline]
pub(crate) fn operand(v: i64) -> Result<u32, ErrorKind> {
    u32::try_from(v).map_err(|_| ErrorKind::BadOperand)
}

impl<'a, K: Kernels, W: WeightSource> Machine<'a, K, W> {
    /// Pops `N` words, returned in push order (the last pushed is last).
    #[inline(always)]
    pub(crate) fn args<const N: usize>(&mut self) -> Result<[i64; N], ErrorKind> {
        let len = self.stack.len();
        if len < N {
            return Err(ErrorKind::StackUnderflow);
        }
        let base = len - N;
        let out = core::array::from_fn(|i| self.stack[base + i]);
        self.stack.truncate(base);
        Ok(out)
    }

    #[inline(always)]
    pub(crate) fn push(&mut self, v: i64) -> Result<(), ErrorKind> {
        if self.stack.len() >= STACK_LIMIT {
            return Err(ErrorKind::StackOverflow);
        }
        self.stack.push(v);
        Ok(())
    }

    #[inline(always)]
    pub(crate) fn charge(&mut self, amount: u64) -> Result<(), ErrorKind> {
        self.meter.charge(amount)
    }

    /// Charges `work` of `class` and records it.
    pub(crate) fn charge_work(&mut self, class: KernelClass, work: Work) -> Result<(), ErrorKind> {
        self.charge(self.schedule.kernel(class, &work))?;
        self.work[class.index()].accumulate(&work);
        Ok(())
    }

    /// Fetches one whole block (a qblock or table), charging for it.
    pub(crate) fn block(&mut self, index: i64) -> Result<Cow<'a, [u8]>, ErrorKind> {
        let index = operand(index)?;
        let bytes = self
            .weights
            .block(index)
            .ok_or_else(|| unavailable(self.weights, index))?;
        self.charge(self.schedule.weights(1, bytes.len() as u64))?;
        self.blocks_read += 1;
        self.weight_bytes += bytes.len() as u64;
        Ok(bytes)
    }

    /// Reads qblock `qblock` (charged like every read) as the quantization of `channels`
    /// outputs, decoding it only the first time in a run.
    pub(crate) fn channel_quant(
        &mut self,
        qblock: i64,
        channels: u32,
    ) -> Result<Rc<ChannelQuant>, ErrorKind> {
        let bytes = self.block(qblock)?;
        let key = (operand(qblock)?, channels);
        if let Some(q) = self.quants.get(&key) {
            return Ok(q.clone());
        }
        let q = ChannelQuant::decode(&bytes, channels).map_err(crate::cnn::kernel_error(qblock))?;
        let q = Rc::new(q);
        self.quants.insert(key, q.clone());
        Ok(q)
    }

    /// Checks a layer's weight length and charges for its bytes, before any block is read;
    /// the blocks are charged as they are read.
    pub(crate) fn charge_layer_bytes(&mut self, first: u32, len: u64) -> Result<(), ErrorKind> {
        // No layer can need more than every block a program may have.
        let most = smartvm_isa::MAX_BLOCKS as u64 * smartvm_isa::program::MAX_BLOCK_LEN as u64;
        if len > most {
            return Err(ErrorKind::WeightSizeMismatch { first_block: first });
        }
        self.charge(self.schedule.weights(0, len))?;
        self.weight_bytes += len;
        Ok(())
    }

    /// Charges for `count` weight blocks just read.
    pub(crate) fn charge_blocks(&mut self, count: u32) -> Result<(), ErrorKind> {
        self.charge(self.schedule.weights(count as u64, 0))?;
        self.blocks_read += count as u64;
        Ok(())
    }

    /// Fetches `len` weight bytes starting at block `first`, charging before reading.
    pub(crate) fn layer_weights(
        &mut self,
        first: i64,
        len: u64,
    ) -> Result<Cow<'a, [u8]>, ErrorKind> {
        let first = operand(first)?;
        let len_usize = usize::try_from(len).map_err(|_| ErrorKind::LayerWeightsTooLarge)?;
        if len > self.weight_chunk && self.weights.span(first, len_usize).is_none() {
            return Err(ErrorKind::LayerWeightsTooLarge);
        }
        self.charge_layer_bytes(first, len)?;
        let (bytes, count) = gather(self.weights, first, len_usize)?;
        self.charge_blocks(count)?;
        Ok(bytes)
    }

    /// WLOAD8 / WLOAD32: `width` bytes at `offset` of block `index`, sign-extended.
    fn weight_element(&mut self, index: i64, offset: i64, width: usize) -> Result<i64, ErrorKind> {
        let index = operand(index)?;
        let offset = operand(offset)? as usize;
        let cached = matches!(&self.element_cache, Some((i, _)) if *i == index);
        if !cached {
            let bytes = self
                .weights
                .block(index)
                .ok_or_else(|| unavailable(self.weights, index))?;
            if self.element_paid != Some(index) {
                self.charge(self.schedule.weights(1, 0))?;
                self.blocks_read += 1;
                self.weight_bytes += bytes.len() as u64;
                self.element_paid = Some(index);
            }
            self.element_cache = Some((index, bytes));
        }
        let bytes = match &self.element_cache {
            Some((_, b)) => b,
            None => return Err(ErrorKind::MissingWeightBlock { index }),
        };
        let raw = bytes
            .get(offset..offset.saturating_add(width))
            .ok_or(ErrorKind::BadOperand)?;
        Ok(read_immediate(raw))
    }
}

/// Runs a validated program on an int8 input.
///
/// The input (which must match the program's input shape) is placed in Memory at offset 0.
/// On success the output has exactly `program.output_len` elements.
pub fn execute<K: Kernels, W: WeightSource>(
    exe: &Executable,
    input: &[i8],
    weights: &W,
    kernels: &K,
    config: &Config,
    gas_limit: u64,
) -> Result<Outcome, VmError> {
    let start = Start::Input(input);
    match execute_slice(exe, start, weights, kernels, config, gas_limit, u64::MAX)? {
        Progress::Done(outcome) => Ok(outcome),
        // A slice without end never pauses.
        Progress::Paused(snapshot) => Err(VmError {
            pc: snapshot.pc,
            kind: ErrorKind::SliceEnd,
            gas_used: snapshot.gas_used,
        }),
    }
}

/// Where a resumable run begins: a fresh input, or a paused run's snapshot.
pub enum Start<'i> {
    /// A new run on this input.
    Input(&'i [i8]),
    /// Continue a paused run.
    Resume(alloc::boxed::Box<Snapshot>),
}

/// What one slice of a resumable run came to.
#[derive(Debug)]
pub enum Progress {
    /// The program finished (an error would have been returned as one).
    Done(Outcome),
    /// The slice's budget (gas, or the weight source's bytes) is spent: the run stopped before
    /// the instruction at `pc`, or inside it when that is a banded layer.
    Paused(Snapshot),
}

/// Everything a paused run needs to continue exactly as if it had never stopped: resuming gives
/// the uninterrupted run's output, gas and counters. Bounded by the configuration's limits
/// (Memory, Buffer bytes and frames, stack depth, the CNN gas record), and plain data, so a
/// chain can store it between blocks (SCALE-encoded).
#[derive(Clone, Debug, PartialEq, Eq, codec::Encode, codec::Decode)]
pub struct Snapshot {
    /// Byte offset of the next instruction.
    pub pc: u32,
    /// The stack, bottom first.
    pub stack: Vec<i64>,
    /// Memory's bytes.
    pub memory: Vec<u8>,
    /// Buffer frames, bottom first: shape (C, D, H, W) and elements.
    pub frames: Vec<SavedFrame>,
    /// Buffer live, peak and pushed bytes and its current limit.
    pub buffer: [u64; 4],
    /// Gas used so far.
    pub gas_used: u64,
    /// Instructions executed so far.
    pub instructions: u64,
    /// Weight blocks and bytes read so far.
    pub weights_read: [u64; 2],
    /// The block WLOAD reads from without paying again, if any.
    pub element_block: Option<u32>,
    /// The banded layer at `pc`, when the slice ended inside it.
    pub partial: Option<PartialLayer>,
    /// The output, once BTOS1 has set it.
    pub output: Option<Vec<i8>>,
    /// Gas per CNN instruction so far (opcode byte, gas).
    pub cnn_gas: Vec<(u8, u64)>,
    /// Work per kernel class so far.
    pub work: [Work; KernelClass::COUNT],
}

/// What an instruction may change before one of its charges fails at a slice's end: undone so
/// that the run pauses before the instruction, as if it had not started.
struct Checkpoint {
    stack_len: usize,
    top: [i64; 8],
    used: u64,
    memory_len: usize,
    blocks_read: u64,
    weight_bytes: u64,
    work: [Work; KernelClass::COUNT],
}

impl Checkpoint {
    fn take<K, W>(m: &Machine<'_, K, W>) -> Checkpoint {
        let len = m.stack.len();
        let kept = len.min(8);
        let mut top = [0i64; 8];
        top[..kept].copy_from_slice(&m.stack[len - kept..]);
        Checkpoint {
            stack_len: len,
            top,
            used: m.meter.used,
            memory_len: m.memory.bytes.len(),
            blocks_read: m.blocks_read,
            weight_bytes: m.weight_bytes,
            work: m.work,
        }
    }

    /// Every instruction pops at most eight words and charges before it pushes; Memory only
    /// grows, with zeros; the Buffer and the output change only after the last charge.
    fn restore<K, W>(&self, m: &mut Machine<'_, K, W>) {
        self.restore_stack(m);
        m.meter.used = self.used;
        m.memory.bytes.truncate(self.memory_len);
        m.blocks_read = self.blocks_read;
        m.weight_bytes = self.weight_bytes;
        m.work = self.work;
    }

    /// Puts back the words the instruction popped, for a banded layer that keeps what it paid
    /// and did in [`Machine::partial`] and pops its arguments again when it resumes.
    fn restore_stack<K, W>(&self, m: &mut Machine<'_, K, W>) {
        let kept = self.stack_len.min(8);
        m.stack.truncate(self.stack_len - kept);
        m.stack.extend_from_slice(&self.top[..kept]);
    }
}

/// Runs a program, or continues a paused run, until it ends or until the next instruction would
/// take the gas used past `slice_gas` more than at the start of this call, or would read a
/// weight block the source refuses for this slice ([`WeightSource::slice_spent`]). Where it
/// stops depends only on the program, the input, the slice sizes and the source's budget; resuming from each snapshot with
/// the same `weights`, `config` and `gas_limit` gives exactly the uninterrupted run's outcome.
/// A slice too small for the next instruction returns a snapshot equal to the one it started
/// from (no progress): the caller must give it more. A source with a byte budget needs a
/// finite `slice_gas`: with `u64::MAX` (no slicing) its refusal is the fault `SliceEnd`.
pub fn execute_slice<K: Kernels, W: WeightSource>(
    exe: &Executable,
    start: Start<'_>,
    weights: &W,
    kernels: &K,
    config: &Config,
    gas_limit: u64,
    slice_gas: u64,
) -> Result<Progress, VmError> {
    let mut packed = PackedLayers::default();
    execute_slice_packed(
        exe,
        start,
        weights,
        kernels,
        config,
        gas_limit,
        slice_gas,
        &mut packed,
    )
}

/// [`execute_slice`] keeping the fully-connected layers the backend packs in `packed`, so that
/// later runs of the same program on the same weights start with them packed, as ONNX Runtime
/// prepacks a session's weights once. `packed` must serve one weight source whose blocks do
/// not change between the runs (a loaded model file, one version of a deployed model): a
/// layer is known by its first block and shape. Outputs and gas are those of
/// [`execute_slice`].
#[allow(clippy::too_many_arguments)]
pub fn execute_slice_packed<K: Kernels, W: WeightSource>(
    exe: &Executable,
    start: Start<'_>,
    weights: &W,
    kernels: &K,
    config: &Config,
    gas_limit: u64,
    slice_gas: u64,
    packed: &mut PackedLayers,
) -> Result<Progress, VmError> {
    let program = &exe.program;
    // Out of gas consumes the whole limit; any other fault what was spent up to it.
    let fault = |pc: usize, kind, used: u64| VmError {
        pc: pc as u32,
        kind,
        gas_used: if kind == ErrorKind::OutOfGas {
            gas_limit
        } else {
            used
        },
    };
    let mut m = Machine {
        stack: Vec::with_capacity(64),
        memory: Memory::new(config.max_memory),
        buffer: Buffer::new(config.max_buffer, config.max_frames),
        meter: Meter {
            limit: gas_limit,
            used: 0,
            slice_end: u64::MAX,
        },
        schedule: config.schedule,
        kernels,
        weights,
        output: None,
        blocks_read: 0,
        weight_bytes: 0,
        work: [Work::default(); KernelClass::COUNT],
        weight_chunk: config.weight_chunk.max(1) as u64,
        fc_band: config.fc_band.clamp(1, config.weight_chunk.max(1)) as u64,
        element_cache: None,
        element_paid: None,
        partial: None,
        op_start: 0,
        quants: BTreeMap::new(),
        packed,
    };
    let mut pc = 0usize;
    let mut instructions = 0u64;
    let mut cnn_gas = Vec::new();
    match start {
        Start::Input(input) => {
            if program.input.elements() != Some(input.len() as u64) {
                return Err(fault(0, ErrorKind::ShapeMismatch, 0));
            }
            let range = m
                .memory
                .ensure(0, input.len() as i64, &mut m.meter, &m.schedule)
                .map_err(|k| fault(0, k, m.meter.used))?;
            m.memory.bytes[range].copy_from_slice(smartvm_kernels::as_u8(input));
        }
        Start::Resume(s) => {
            let s = *s;
            let (at, spent) = (s.pc as usize, s.gas_used);
            let bad = |kind| fault(at, kind, spent);
            if s.stack.len() > STACK_LIMIT || s.cnn_gas.len() > CNN_GAS_RECORD_LIMIT {
                return Err(bad(ErrorKind::StackOverflow));
            }
            m.memory = Memory::restore(config.max_memory, s.memory).map_err(bad)?;
            m.buffer = Buffer::restore(config.max_buffer, config.max_frames, &s.frames, s.buffer)
                .map_err(bad)?;
            m.stack = s.stack;
            m.meter.used = s.gas_used;
            m.output = s.output;
            [m.blocks_read, m.weight_bytes] = s.weights_read;
            m.work = s.work;
            m.element_paid = s.element_block;
            m.partial = s.partial;
            for (byte, gas) in s.cnn_gas {
                let op = Opcode::from_byte(byte).ok_or(bad(ErrorKind::InvalidInstruction))?;
                cnn_gas.push((op, gas));
            }
            pc = s.pc as usize;
            instructions = s.instructions;
        }
    }
    m.buffer.adopt_spares(m.packed.take_frames());
    let slicing = slice_gas != u64::MAX;
    if slicing {
        m.meter.slice_end = m.meter.used.saturating_add(slice_gas);
    }

    let costs = config.schedule.static_costs();
    let code = &program.code[..];
    let result = loop {
        let Some(&byte) = code.get(pc) else {
            break Ok(());
        };
        let checkpoint = slicing.then(|| Checkpoint::take(&m));
        // A banded layer resumed inside paid its static cost when it began.
        m.op_start = match &m.partial {
            Some(partial) => partial.start_gas(),
            None => m.meter.used,
        };
        if m.partial.is_none() {
            if let Err(kind) = m.meter.charge(costs[byte as usize]) {
                break Err((pc, kind));
            }
        }
        instructions += 1;
        let Some(op) = Opcode::from_byte(byte) else {
            break Err((pc, ErrorKind::InvalidInstruction));
        };
        if m.partial.is_some() && op != Opcode::FULL_CON {
            break Err((pc, ErrorKind::InvalidInstruction));
        }
        let flow = step(&mut m, op, code, pc, &exe.jumpdest);
        if let (Err(ErrorKind::SliceEnd), Some(checkpoint)) = (&flow, &checkpoint) {
            if m.partial.is_some() {
                checkpoint.restore_stack(&mut m);
            } else {
                checkpoint.restore(&mut m);
            }
            instructions -= 1;
            break Err((pc, ErrorKind::SliceEnd));
        }
        if op.is_cnn() && cnn_gas.len() < CNN_GAS_RECORD_LIMIT {
            cnn_gas.push((op, m.meter.used - m.op_start));
        }
        match flow {
            Ok(Flow::Next(next)) => pc = next,
            Ok(Flow::Halt) => break Ok(()),
            Err(kind) => break Err((pc, kind)),
        }
    };
    m.packed.keep_frames(m.buffer.take_spares());
    match result {
        // Only a sliced run undoes a stopped instruction: without a slice's end, a source that
        // refuses a read for its budget faults the run (`SliceEnd`) rather than pausing it.
        Err((at, ErrorKind::SliceEnd)) if slicing => {
            let (frames, buffer) = m.buffer.into_saved();
            return Ok(Progress::Paused(Snapshot {
                pc: at as u32,
                stack: m.stack,
                memory: m.memory.bytes,
                frames,
                buffer,
                gas_used: m.meter.used,
                instructions,
                weights_read: [m.blocks_read, m.weight_bytes],
                element_block: m.element_paid,
                partial: m.partial,
                output: m.output,
                cnn_gas: cnn_gas.iter().map(|(op, g)| (*op as u8, *g)).collect(),
                work: m.work,
            }));
        }
        Err((at, kind)) => return Err(fault(at, kind, m.meter.used)),
        Ok(()) => {}
    }
    let output = m.output.take().unwrap_or_default();
    if output.len() != program.output_len as usize {
        return Err(fault(
            pc.min(code.len()),
            ErrorKind::OutputSize,
            m.meter.used,
        ));
    }
    Ok(Progress::Done(Outcome {
        output,
        gas_used: m.meter.used,
        instructions,
        peak_buffer_bytes: m.buffer.peak_bytes(),
        peak_memory_bytes: m.memory.size() as u64,
        weight_blocks_read: m.blocks_read,
        weight_bytes_read: m.weight_bytes,
        buffer_bytes_pushed: m.buffer.pushed_bytes(),
        cnn_gas,
        work: m.work,
    }))
}

enum Flow {
    Next(usize),
    Halt,
}

#[inline(always)]
fn binary<K: Kernels, W: WeightSource>(
    m: &mut Machine<'_, K, W>,
    f: impl FnOnce(i64, i64) -> i64,
) -> Result<(), ErrorKind> {
    let [a, b] = m.args()?;
    m.stack.push(f(a, b));
    Ok(())
}

/// The `N` immediate bytes at `at` (validated code always has them).
#[inline(always)]
fn immediate<const N: usize>(code: &[u8], at: usize) -> Result<[u8; N], ErrorKind> {
    code.get(at..at + N)
        .and_then(|b| b.try_into().ok())
        .ok_or(ErrorKind::InvalidInstruction)
}

fn jump_target(dest: i64, jumpdest: &[bool]) -> Result<usize, ErrorKind> {
    usize::try_from(dest)
        .ok()
        .filter(|d| jumpdest.get(*d).copied().unwrap_or(false))
        .ok_or(ErrorKind::InvalidJump)
}

#[inline(always)]
fn step<K: Kernels, W: WeightSource>(
    m: &mut Machine<'_, K, W>,
    op: Opcode,
    code: &[u8],
    pc: usize,
    jumpdest: &[bool],
) -> Result<Flow, ErrorKind> {
    use Opcode::*;
    let next = pc + 1;
    match op {
        STOP => return Ok(Flow::Halt),
        ADD => binary(m, i64::wrapping_add)?,
        MUL => binary(m, i64::wrapping_mul)?,
        SUB => binary(m, i64::wrapping_sub)?,
        DIV => binary(m, |a, b| if b == 0 { 0 } else { a.wrapping_div(b) })?,
        MOD => binary(m, |a, b| if b == 0 { 0 } else { a.wrapping_rem(b) })?,
        SHL => binary(m, |a, n| if (0..64).contains(&n) { a << n } else { 0 })?,
        SAR => binary(m, |a, n| a >> n.clamp(0, 63))?,
        MIN => binary(m, i64::min)?,
        MAX => binary(m, i64::max)?,
        LT => binary(m, |a, b| (a < b) as i64)?,
        GT => binary(m, |a, b| (a > b) as i64)?,
        EQ => binary(m, |a, b| (a == b) as i64)?,
        AND => binary(m, |a, b| a & b)?,
        OR => binary(m, |a, b| a | b)?,
        XOR => binary(m, |a, b| a ^ b)?,
        ISZERO => {
            let [a] = m.args()?;
            m.stack.push((a == 0) as i64);
        }
        NOT => {
            let [a] = m.args()?;
            m.stack.push(!a);
        }
        POP => {
            m.args::<1>()?;
        }
        MLOAD8 => {
            let [addr] = m.args()?;
            let [b] = m.memory.load::<1>(addr, &mut m.meter, &m.schedule)?;
            m.stack.push(b as i8 as i64);
        }
        MLOAD32 => {
            let [addr] = m.args()?;
            let v = m.memory.load::<4>(addr, &mut m.meter, &m.schedule)?;
            m.stack.push(i32::from_le_bytes(v) as i64);
        }
        MLOAD64 => {
            let [addr] = m.args()?;
            let v = m.memory.load::<8>(addr, &mut m.meter, &m.schedule)?;
            m.stack.push(i64::from_le_bytes(v));
        }
        MSTORE8 => {
            let [addr, value] = m.args()?;
            m.memory
                .store::<1>(addr, [value as u8], &mut m.meter, &m.schedule)?;
        }
        MSTORE32 => {
            let [addr, value] = m.args()?;
            m.memory.store::<4>(
                addr,
                (value as i32).to_le_bytes(),
                &mut m.meter,
                &m.schedule,
            )?;
        }
        MSTORE64 => {
            let [addr, value] = m.args()?;
            m.memory
                .store::<8>(addr, value.to_le_bytes(), &mut m.meter, &m.schedule)?;
        }
        MSIZE => m.push(m.memory.size() as i64)?,
        JUMP => {
            let [dest] = m.args()?;
            return Ok(Flow::Next(jump_target(dest, jumpdest)?));
        }
        JUMPI => {
            let [dest, cond] = m.args()?;
            if cond != 0 {
                return Ok(Flow::Next(jump_target(dest, jumpdest)?));
            }
        }
        JUMPDEST => {}
        WLOAD8 => {
            let [block, index] = m.args()?;
            let v = m.weight_element(block, index, 1)?;
            m.stack.push(v);
        }
        WLOAD32 => {
            let [block, offset] = m.args()?;
            let v = m.weight_element(block, offset, 4)?;
            m.stack.push(v);
        }
        PUSH1 => {
            let [b] = immediate::<1>(code, next)?;
            m.push(b as i8 as i64)?;
            return Ok(Flow::Next(next + 1));
        }
        PUSH2 => {
            m.push(i16::from_le_bytes(immediate::<2>(code, next)?) as i64)?;
            return Ok(Flow::Next(next + 2));
        }
        PUSH4 => {
            m.push(i32::from_le_bytes(immediate::<4>(code, next)?) as i64)?;
            return Ok(Flow::Next(next + 4));
        }
        PUSH8 => {
            m.push(i64::from_le_bytes(immediate::<8>(code, next)?))?;
            return Ok(Flow::Next(next + 8));
        }
        RETURN => {
            let [offset, len] = m.args()?;
            let r = m.memory.ensure(offset, len, &mut m.meter, &m.schedule)?;
            m.output = Some(smartvm_kernels::as_i8(&m.memory.bytes[r]).to_vec());
            return Ok(Flow::Halt);
        }
        REVERT => return Err(ErrorKind::Reverted),
        INVALID => return Err(ErrorKind::InvalidInstruction),
        _ if (DUP1 as u8..=DUP16 as u8).contains(&(op as u8)) => {
            let n = (op as u8 - DUP1 as u8) as usize + 1;
            let len = m.stack.len();
            if len < n {
                return Err(ErrorKind::StackUnderflow);
            }
            let v = m.stack[len - n];
            m.push(v)?;
        }
        _ if (SWAP1 as u8..=SWAP16 as u8).contains(&(op as u8)) => {
            let n = (op as u8 - SWAP1 as u8) as usize + 1;
            let len = m.stack.len();
            if len <= n {
                return Err(ErrorKind::StackUnderflow);
            }
            m.stack.swap(len - 1, len - 1 - n);
        }
        _ => m.cnn(op)?,
    }
    Ok(Flow::Next(next))
}
