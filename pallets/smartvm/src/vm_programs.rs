//! The programs the VM benchmarks time. Public so a runtime can run the same programs through
//! the interpreter and check that the gas they are charged covers the benchmarked time.

use alloc::{vec, vec::Vec};

use smartvm_isa::{Opcode, Program, Shape};
use smartvm_kernels::{ChannelQuant, OutputRange};

/// Code looping `turns` times over six base instructions (JUMPDEST PUSH SUB PUSH DUP2 JUMPI).
pub fn base_loop(turns: u32) -> Program {
    use Opcode::*;
    let mut code = vec![PUSH4 as u8];
    code.extend_from_slice(&turns.to_le_bytes());
    code.extend_from_slice(&[
        JUMPDEST as u8,
        PUSH1 as u8,
        1,
        SUB as u8,
        PUSH1 as u8,
        5,
        DUP2 as u8,
        JUMPI as u8,
    ]);
    code.extend_from_slice(&[POP as u8, PUSH1 as u8, 0, PUSH1 as u8, 1, RETURN as u8]);
    Program {
        input: Shape::new(1, 1, 1, 1),
        output_len: 1,
        code,
        blocks: vec![],
    }
}

/// A fully-connected layer of `m` inputs and 64 outputs returning its outputs, with its two
/// weight blocks (int8 weights, then the per-channel requantization): `m` x 64
/// multiply-accumulates.
pub fn fc_layer(m: u32) -> (Program, Vec<Vec<u8>>) {
    use Opcode::*;
    let quant = ChannelQuant {
        input_zero: 0,
        output: OutputRange {
            zero: 0,
            lo: -128,
            hi: 127,
        },
        bias: vec![0; 64],
        mult: vec![1 << 30; 64],
        shift: vec![8; 64],
    };
    let blocks = vec![vec![3u8; (m * 64) as usize], quant.encode()];
    let m16 = (m as u16).to_le_bytes();
    let code = vec![
        PUSH1 as u8,
        0,
        PUSH2 as u8,
        m16[0],
        m16[1],
        MTOB as u8,
        PUSH1 as u8,
        64,
        PUSH1 as u8,
        0,
        PUSH1 as u8,
        1,
        FULL_CON as u8,
        PUSH1 as u8,
        0,
        PUSH1 as u8,
        64,
        BTOS1 as u8,
        STOP as u8,
    ];
    let program = Program {
        input: Shape::new(m, 1, 1, 1),
        output_len: 64,
        code,
        blocks: Program::manifest_of(&blocks),
    };
    (program, blocks)
}
