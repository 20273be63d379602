//! Execution faults. Each one is precise enough for a user to find the instruction at fault.

use smartvm_kernels::KernelError;

/// What went wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The gas limit was reached.
    OutOfGas,
    /// The next instruction would pass the end of a resumable run's slice: the run pauses
    /// before it ([`crate::execute_slice`]); never the outcome of a run.
    SliceEnd,
    /// An instruction needed more stack words than there were.
    StackUnderflow,
    /// The stack would exceed its depth limit.
    StackOverflow,
    /// A stack argument is out of range for the instruction (negative size, bad index, ...).
    BadOperand,
    /// Tensor shapes do not fit together (frame vs. layer, input vs. program).
    ShapeMismatch,
    /// A weight block the program asked for is not there.
    MissingWeightBlock { index: u32 },
    /// Weight blocks do not add up to the size the layer needs.
    WeightSizeMismatch { first_block: u32 },
    /// A layer's weights span blocks and exceed `Config::weight_chunk`, and the source cannot
    /// lend them in place: gathering them would need one allocation past what the runtime
    /// allows. (Large fully-connected layers run in bands instead.)
    LayerWeightsTooLarge,
    /// A quantization block is malformed.
    BadQuantBlock { index: u32 },
    /// The Buffer would exceed its byte or frame limit.
    BufferLimit,
    /// An instruction needed a Buffer frame and there was none.
    BufferUnderflow,
    /// Memory would grow past its limit.
    MemoryLimit,
    /// A jump to something other than a JUMPDEST.
    InvalidJump,
    /// The INVALID instruction.
    InvalidInstruction,
    /// The program executed REVERT.
    Reverted,
    /// The program halted without producing exactly the declared number of output elements.
    OutputSize,
    /// A kernel rejected its arguments.
    Kernel(KernelError),
}

/// A fault and the byte offset of the instruction that caused it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmError {
    /// Byte offset in the code.
    pub pc: u32,
    /// The fault.
    pub kind: ErrorKind,
    /// Gas consumed up to the fault (the whole limit when out of gas), for charging.
    pub gas_used: u64,
}

impl core::fmt::Display for VmError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:?} at pc {:#06x}", self.kind, self.pc)
    }
}

#[cfg(feature = "std")]
impl std::error::Error for VmError {}
