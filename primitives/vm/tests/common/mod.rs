//! What the fully-connected layer tests share: a one-layer program and a fixed quantization.

use smartvm_isa::asm::assemble;
use smartvm_kernels::{ChannelQuant, OutputRange};
use smartvm_vm::Executable;

/// One FULL_CON layer: `in_n` inputs, `out_n` outputs, qblock 0, weights from block 1.
pub fn fc_program(in_n: usize, out_n: usize) -> Executable {
    let src = format!(
        ".input 1 1 1 {in_n}\n.output {out_n}\n\
         PUSH 0\nPUSH {in_n}\nMTOB\n\
         PUSH {out_n}\nPUSH 1\nPUSH 0\nFULL_CON\n\
         PUSH 0\nPUSH {out_n}\nBTOS1\nSTOP"
    );
    Executable::new(assemble(&src).expect("assembles")).expect("validates")
}

/// A per-channel quantization whose outputs vary across channels (bias ramps).
pub fn fc_quant(out_n: usize) -> ChannelQuant {
    ChannelQuant {
        input_zero: 3,
        output: OutputRange {
            zero: -2,
            lo: -128,
            hi: 127,
        },
        bias: (0..out_n as i32).map(|i| 40 * i - 900).collect(),
        mult: vec![1 << 30; out_n],
        shift: vec![9; out_n],
    }
}
