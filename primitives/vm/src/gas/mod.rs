//! The gas schedule: what each instruction costs.
//!
//! Every instruction pays the static cost of its opcode's gas class. A kernel or Buffer
//! instruction also pays for its [`Work`] at the prices of its [`KernelClass`]: per call, per
//! multiply-accumulate, per inner loop, per output element and per byte, in milligas, so that a
//! price far below one gas per unit (a multiply-accumulate in wasm is under a nanosecond) is
//! still exact. Weight blocks pay per block and per byte, Memory per growth and per 32-byte word
//! of growth.
//!
//! The prices are benchmarked, not chosen: `make weights` times every kernel class in the
//! runtime's wasm, on the validators' path, and writes [`benchmarked`] (see
//! `scripts/bench-weights.sh`); `runtime/tests/gas_price.rs` checks that each benchmarked shape
//! is charged between one and two times its measured time.

use smartvm_isa::{GasClass, TABLE};

pub mod benchmarked;

/// The kinds of work priced separately, because their cost per unit differs in wasm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum KernelClass {
    /// Convolution with unit stride along the width (contiguous inner loops), depthwise too.
    Conv,
    /// Convolution with a stride above one along the width (strided inner loops).
    ConvStrided,
    /// Transposed convolution.
    ConvTranspose,
    /// Max and average pooling, per window element.
    Pool,
    /// Global average pooling.
    GlobalPool,
    /// Fully connected.
    FullyConnected,
    /// Matrix product of two frames.
    MatMul,
    /// ADD_RQ.
    Add,
    /// MUL_RQ.
    Mul,
    /// Softmax.
    Softmax,
    /// Table activations (ACT_LUT, ACT_SM1, ACT_TANH).
    Table,
    /// In-place clamps and fills (ACT_RL, ACT_CLIP, BUF_FIL).
    Clip,
    /// In-place arithmetic over a frame (BUF_SCL0, BUF_SCL1, BUF_BIAS).
    Scale,
    /// Copies between Memory, Buffer frames and the output; weight bytes read.
    Move,
}

impl KernelClass {
    /// How many classes there are.
    pub const COUNT: usize = 14;
    /// Every class, in index order.
    pub const ALL: [KernelClass; Self::COUNT] = [
        KernelClass::Conv,
        KernelClass::ConvStrided,
        KernelClass::ConvTranspose,
        KernelClass::Pool,
        KernelClass::GlobalPool,
        KernelClass::FullyConnected,
        KernelClass::MatMul,
        KernelClass::Add,
        KernelClass::Mul,
        KernelClass::Softmax,
        KernelClass::Table,
        KernelClass::Clip,
        KernelClass::Scale,
        KernelClass::Move,
    ];

    /// Position in [`Schedule::kernels`] and [`crate::Outcome::work`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// Lower-case name, as the benchmarks and reports print it.
    pub fn name(self) -> &'static str {
        match self {
            KernelClass::Conv => "conv",
            KernelClass::ConvStrided => "conv_strided",
            KernelClass::ConvTranspose => "conv_transpose",
            KernelClass::Pool => "pool",
            KernelClass::GlobalPool => "global_pool",
            KernelClass::FullyConnected => "fully_connected",
            KernelClass::MatMul => "matmul",
            KernelClass::Add => "add",
            KernelClass::Mul => "mul",
            KernelClass::Softmax => "softmax",
            KernelClass::Table => "table",
            KernelClass::Clip => "clip",
            KernelClass::Scale => "scale",
            KernelClass::Move => "move",
        }
    }
}

/// The quantities one instruction's cost scales with. Summed per class over an execution in
/// [`crate::Outcome::work`], which is how the benchmarks' prices are fitted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, codec::Encode, codec::Decode)]
pub struct Work {
    /// Instructions.
    pub calls: u64,
    /// Multiply-accumulates (window elements for pooling, elements for global pooling).
    pub macs: u64,
    /// Inner loops of a convolution, one kernel tap over one output row: small feature maps
    /// pay the loop overhead more often per multiply-accumulate.
    pub rows: u64,
    /// Output elements requantized and written.
    pub outputs: u64,
    /// Bytes read and written.
    pub bytes: u64,
}

impl Work {
    /// The quantities as a vector, in [`WorkPrice`]'s field order.
    pub fn quantities(&self) -> [u64; 5] {
        [self.calls, self.macs, self.rows, self.outputs, self.bytes]
    }

    /// Adds `other` into `self`, saturating.
    pub fn accumulate(&mut self, other: &Work) {
        self.calls = self.calls.saturating_add(other.calls);
        self.macs = self.macs.saturating_add(other.macs);
        self.rows = self.rows.saturating_add(other.rows);
        self.outputs = self.outputs.saturating_add(other.outputs);
        self.bytes = self.bytes.saturating_add(other.bytes);
    }
}

/// Milligas per unit of each [`Work`] quantity, for one class.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkPrice {
    /// Per instruction.
    pub call: u64,
    /// Per multiply-accumulate.
    pub mac: u64,
    /// Per inner loop.
    pub row: u64,
    /// Per output element.
    pub output: u64,
    /// Per byte.
    pub byte: u64,
}

impl WorkPrice {
    /// The prices as a vector, in [`Work::quantities`]' order.
    pub fn as_array(&self) -> [u64; 5] {
        [self.call, self.mac, self.row, self.output, self.byte]
    }

    /// Milligas of `work` at these prices, saturating.
    pub fn milligas(&self, work: &Work) -> u64 {
        self.as_array()
            .iter()
            .zip(work.quantities())
            .fold(0u64, |sum, (price, n)| {
                sum.saturating_add(price.saturating_mul(n))
            })
    }
}

/// Prices of one execution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schedule {
    /// Static cost of each class: Zero, Base, VeryLow, Low, Mid, High, JumpDest, Memory,
    /// WeightRead, Kernel, Buffer (in that order).
    pub class: [u64; 11],
    /// Prices of each kernel class's work, indexed by [`KernelClass::index`].
    pub kernels: [WorkPrice; KernelClass::COUNT],
    /// Gas per weight block fetched (on chain, at least one database read: see the pallet).
    pub per_block: u64,
    /// Milligas per weight byte fetched.
    pub weight_byte: u64,
    /// Milligas per 32-byte word of Memory growth.
    pub memory_word: u64,
    /// Milligas per growth of Memory (a reallocation), on top of its words.
    pub memory_grow: u64,
}

impl Default for Schedule {
    /// The benchmarked schedule (`make weights`).
    fn default() -> Self {
        benchmarked::schedule()
    }
}

fn class_index(class: GasClass) -> usize {
    match class {
        GasClass::Zero => 0,
        GasClass::Base => 1,
        GasClass::VeryLow => 2,
        GasClass::Low => 3,
        GasClass::Mid => 4,
        GasClass::High => 5,
        GasClass::JumpDest => 6,
        GasClass::Memory => 7,
        GasClass::WeightRead => 8,
        GasClass::Kernel => 9,
        GasClass::Buffer => 10,
    }
}

/// Whole gas for `milligas`, rounded up.
fn whole(milligas: u64) -> u64 {
    milligas.div_ceil(1000)
}

impl Schedule {
    /// Static cost per opcode byte, for one table lookup per instruction.
    pub fn static_costs(&self) -> [u64; 256] {
        let mut costs = [0u64; 256];
        for row in TABLE {
            costs[row.byte as usize] = self.class[class_index(row.gas)];
        }
        costs
    }

    /// Dynamic cost of `work` of `class`.
    pub fn kernel(&self, class: KernelClass, work: &Work) -> u64 {
        whole(self.kernels[class.index()].milligas(work))
    }

    /// Dynamic cost of fetching `blocks` weight blocks holding `bytes` bytes.
    pub fn weights(&self, blocks: u64, bytes: u64) -> u64 {
        blocks
            .saturating_mul(self.per_block)
            .saturating_add(whole(bytes.saturating_mul(self.weight_byte)))
    }

    /// Dynamic cost of growing Memory by `words` 32-byte words in one step.
    pub fn memory_growth(&self, words: u64) -> u64 {
        if words == 0 {
            return 0;
        }
        whole(
            words
                .saturating_mul(self.memory_word)
                .saturating_add(self.memory_grow),
        )
    }
}

/// The running gas meter.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Meter {
    pub(crate) limit: u64,
    pub(crate) used: u64,
    /// Where a resumable run's current slice ends (`u64::MAX` when not slicing).
    pub(crate) slice_end: u64,
}

impl Meter {
    /// Charges `amount`, failing without charging if it would pass the limit (`OutOfGas`) or,
    /// within the limit, the slice's end (`SliceEnd`).
    #[inline(always)]
    pub(crate) fn charge(&mut self, amount: u64) -> Result<(), crate::ErrorKind> {
        match self.used.checked_add(amount) {
            Some(total) if total <= self.limit.min(self.slice_end) => {
                self.used = total;
                Ok(())
            }
            Some(total) if total <= self.limit => Err(crate::ErrorKind::SliceEnd),
            _ => Err(crate::ErrorKind::OutOfGas),
        }
    }
}
