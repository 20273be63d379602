//! Decode + validate + execute arbitrary bytes, differentially on both kernel backends.
//!
//! The bytes are tried as a program container and as bare code run against a few real weight
//! blocks (a conv kernel, qblocks, a LUT), so CNN instructions do real work. Any panic, any
//! disagreement between backends, or a valid program that does not survive a disassemble →
//! assemble round trip is a finding. Code the validator refuses runs too, unvalidated, as
//! stored programs run in the pallet: it must fail with a typed error, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smartvm_isa::{asm, Program, Shape};
use smartvm_kernels::{ChannelQuant, Native, OutputRange, Reference};
use smartvm_vm::{execute, BlockList, Config, Executable};

fn blocks() -> Vec<Vec<u8>> {
    let quant = |n: usize| ChannelQuant {
        input_zero: -3,
        output: OutputRange {
            zero: 1,
            lo: -128,
            hi: 127,
        },
        bias: (0..n as i32).map(|i| i * 37 - 50).collect(),
        mult: vec![1 << 30; n],
        shift: vec![4; n],
    };
    vec![
        (0..36u8).map(|i| i.wrapping_mul(37)).collect(), // 4 kernels 3x3 for 1 channel, or 36 FC weights
        quant(4).encode(),
        (0..=255u8).rev().collect(), // a LUT
        quant(1).encode(),
        vec![0x7f; 16],
    ]
}

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = Program::decode(data) {
        assert_eq!(Program::decode(&p.encode()).as_ref(), Ok(&p));
    }
    if data.is_empty() || data.len() > 4096 {
        return;
    }
    let program = Program {
        input: Shape::new(1, 1, 4, 4),
        output_len: 4,
        code: data.to_vec(),
        blocks: Vec::new(),
    };
    // A program the validator refuses still runs safely when prepared without validation (as
    // the pallet runs stored programs): the interpreter's own checks give typed errors.
    let exe = match Executable::new(program.clone()) {
        Ok(exe) => {
            assert_eq!(
                asm::assemble(&asm::disassemble(&program)).as_ref(),
                Ok(&program)
            );
            exe
        }
        Err(_) => Executable::validated(program),
    };
    let blocks = blocks();
    let input: Vec<i8> = (0..16).map(|i| (i * 29 - 128) as i8).collect();
    let config = Config {
        max_memory: 1 << 16,
        max_buffer: 1 << 16,
        max_frames: 8,
        ..Config::default()
    };
    let a = execute(
        &exe,
        &input,
        &BlockList(&blocks),
        &Reference,
        &config,
        2_000_000,
    );
    let b = execute(
        &exe,
        &input,
        &BlockList(&blocks),
        &Native,
        &config,
        2_000_000,
    );
    assert_eq!(a, b, "backends disagree");
});
