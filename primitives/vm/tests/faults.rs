//! Every fault is a typed error naming the instruction, never a panic.

use smartvm_isa::asm::assemble;
use smartvm_kernels::{ChannelQuant, OutputRange, Reference};
use smartvm_vm::{execute, BlockList, Config, ErrorKind, Executable, Outcome, Schedule, VmError};

fn run_with(src: &str, blocks: &[Vec<u8>], gas: u64) -> Result<Outcome, VmError> {
    let program = assemble(&format!(".input 1 1 2 2\n.output 1\n{src}")).expect("assembles");
    let exe = Executable::new(program).expect("validates");
    execute(
        &exe,
        &[1, 2, 3, 4],
        &BlockList(blocks),
        &Reference,
        &Config::default(),
        gas,
    )
}

fn fault(src: &str, blocks: &[Vec<u8>]) -> ErrorKind {
    run_with(src, blocks, 1_000_000)
        .expect_err("must fail")
        .kind
}

fn qblock(channels: usize) -> Vec<u8> {
    ChannelQuant {
        input_zero: 0,
        output: OutputRange {
            zero: 0,
            lo: -128,
            hi: 127,
        },
        bias: vec![0; channels],
        mult: vec![1 << 30; channels],
        shift: vec![-1; channels],
    }
    .encode()
}

/// Pushes the 2x2 input as a frame of shape 1x1x2x2.
const INPUT: &str =
    "PUSH 0 \n PUSH 4 \n MTOB \n PUSH 1 \n PUSH 1 \n PUSH 2 \n PUSH 2 \n BUF_SHAPE\n";

#[test]
fn a_working_program_produces_output() {
    let out = run_with(
        &format!("{INPUT} PUSH 2\nPUSH 1\nPUSH 0\nPOOL_MAX\nPUSH 0\nPUSH 1\nBTOS1\nSTOP"),
        &[],
        1_000_000,
    )
    .unwrap();
    assert_eq!(out.output, vec![4]);
}

#[test]
fn out_of_gas_is_reported_where_it_happens() {
    let src = format!("{INPUT} PUSH 2\nPUSH 1\nPUSH 0\nPOOL_MAX\nPUSH 0\nPUSH 1\nBTOS1\nSTOP");
    let full = run_with(&src, &[], u64::MAX).unwrap().gas_used;
    for limit in [0, 1, full / 2, full - 1] {
        assert_eq!(
            run_with(&src, &[], limit).unwrap_err().gas_used,
            limit,
            "out of gas consumes the limit"
        );
        assert_eq!(
            run_with(&src, &[], limit).unwrap_err().kind,
            ErrorKind::OutOfGas,
            "limit {limit}"
        );
    }
    assert!(run_with(&src, &[], full).is_ok());
    // Any other fault reports what it spent up to the fault.
    let revert = run_with("PUSH 0\nPUSH 0\nREVERT", &[], 1_000_000).unwrap_err();
    assert_eq!(revert.kind, ErrorKind::Reverted);
    // Three instructions and the Memory that holds the input (a growth: about 3 us in wasm).
    let cheap = Schedule::default().memory_growth(1) + 100;
    assert!(revert.gas_used > 0 && revert.gas_used < cheap, "{revert:?}");
}

#[test]
fn runtime_faults_are_typed() {
    let q = qblock(1);
    let blocks = vec![vec![1u8; 4], q, vec![0u8; 5]];
    // A dynamic jump to a non-JUMPDEST.
    assert_eq!(
        fault("PUSH 1\nPUSH 2\nADD\nJUMP\nSTOP", &[]),
        ErrorKind::InvalidJump
    );
    // A dynamically computed jump target that is valid but leads to an underflow.
    assert_eq!(
        fault("PUSH 1\nPUSH 5\nADD\nJUMP\nJUMPDEST\nADD\nSTOP", &[]),
        ErrorKind::StackUnderflow
    );
    // CNN instructions without a frame, with bad operands, wrong shapes, missing blocks.
    assert_eq!(
        fault("PUSH 2\nPUSH 2\nPUSH 0\nPOOL_MAX\nSTOP", &[]),
        ErrorKind::BufferUnderflow
    );
    assert_eq!(
        fault(
            &format!("{INPUT} PUSH -2\nPUSH 2\nPUSH 0\nPOOL_MAX\nSTOP"),
            &[]
        ),
        ErrorKind::BadOperand
    );
    assert_eq!(
        fault(
            &format!("{INPUT} PUSH 3\nPUSH 1\nPUSH 0\nPOOL_MAX\nSTOP"),
            &[]
        ),
        ErrorKind::ShapeMismatch
    );
    let conv = |w: u32, q: u32| {
        format!("{INPUT} PUSH 1\nPUSH 2\nPUSH 1\nPUSH 0\nPUSH 1\nPUSH 1\nPUSH {w}\nPUSH {q}\nCONV_MUL\nPUSH 0\nPUSH 1\nBTOS1\nSTOP")
    };
    assert!(run_with(&conv(0, 1), &blocks, 1_000_000).is_ok());
    assert_eq!(
        fault(&conv(7, 1), &blocks),
        ErrorKind::MissingWeightBlock { index: 7 }
    );
    assert_eq!(
        fault(&conv(2, 1), &blocks),
        ErrorKind::WeightSizeMismatch { first_block: 2 }
    );
    assert_eq!(
        fault(&conv(0, 2), &blocks),
        ErrorKind::BadQuantBlock { index: 2 }
    );
    assert_eq!(
        fault(
            &format!("{INPUT} PUSH 1\nPUSH 0\nPUSH 1\nFULL_CON\nSTOP"),
            &blocks
        ),
        ErrorKind::OutputSize
    );
    assert_eq!(
        fault(
            &format!("{INPUT} PUSH 2\nPUSH 0\nPUSH 1\nFULL_CON\nSTOP"),
            &blocks
        ),
        ErrorKind::WeightSizeMismatch { first_block: 0 }
    );
    // Limits.
    assert_eq!(
        fault("PUSH 3\nBUF_INIT\nPUSH 0\nPUSH 4\nMTOB\nSTOP", &[]),
        ErrorKind::BufferLimit
    );
    assert_eq!(
        fault("PUSH 4294967295\nBUF_ALLO\nSTOP", &[]),
        ErrorKind::BufferLimit
    );
    assert_eq!(
        fault("PUSH8 1099511627776\nPUSH 1\nMSTORE8\nSTOP", &[]),
        ErrorKind::MemoryLimit
    );
    assert_eq!(fault("PUSH -1\nMLOAD8\nSTOP", &[]), ErrorKind::BadOperand);
    assert_eq!(
        fault("PUSH 9\nPUSH 0\nWLOAD8\nSTOP", &[]),
        ErrorKind::MissingWeightBlock { index: 9 }
    );
    assert_eq!(
        fault("PUSH 0\nPUSH 4\nWLOAD8\nSTOP", &blocks),
        ErrorKind::BadOperand
    );
    // Endings.
    assert_eq!(fault("PUSH 0\nPUSH 0\nREVERT", &[]), ErrorKind::Reverted);
    assert_eq!(fault("INVALID", &[]), ErrorKind::InvalidInstruction);
    assert_eq!(fault("STOP", &[]), ErrorKind::OutputSize);
}

#[test]
fn stack_overflow_is_caught_at_runtime_in_loops() {
    // A loop that pushes forever through a computed (dynamic) jump, which the validator does
    // not follow (a static one is refused there): the interpreter bounds it.
    assert_eq!(
        fault("JUMPDEST\nPUSH 1\nPUSH 0\nPUSH 0\nADD\nJUMP", &[]),
        ErrorKind::StackOverflow
    );
}

#[test]
fn wrong_input_length_is_rejected_before_running() {
    let exe = Executable::new(assemble(".input 1 1 2 2\n.output 1\nSTOP").unwrap()).unwrap();
    let err = execute(
        &exe,
        &[0; 3],
        &BlockList(&[]),
        &Reference,
        &Config::default(),
        1000,
    )
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::ShapeMismatch);
}

/// The per-instruction gas record of CNN instructions is bounded: a loop of cheap CNN
/// instructions used to grow it by one entry per turn, up to one allocation past the runtime's
/// 32 MiB limit (a trap instead of a typed error, and no fee).
#[test]
fn the_cnn_gas_record_keeps_at_most_its_limit() {
    let turns = smartvm_vm::CNN_GAS_RECORD_LIMIT + 500;
    let out = run_with(
        &format!(
            "{INPUT} PUSH {turns}\nturn:\nJUMPDEST\nPUSH 0\nACT_RL\nPUSH 1\nSUB\nPUSH @turn\nDUP2\nJUMPI\n\
             POP\nPUSH 0\nPUSH 1\nBTOS1\nSTOP"
        ),
        &[],
        u64::MAX / 2,
    )
    .unwrap();
    assert!(out.instructions > 7 * turns as u64, "the loop ran");
    assert_eq!(out.cnn_gas.len(), smartvm_vm::CNN_GAS_RECORD_LIMIT);
    // MTOB and BUF_SHAPE, then the loop's ACT_RLs up to the limit.
    assert!(out.cnn_gas[2..]
        .iter()
        .all(|(op, _)| *op == smartvm_isa::Opcode::ACT_RL));
}

/// A layer whose weights span blocks and exceed `Config::weight_chunk` cannot be gathered into
/// one buffer from a source that does not lend it in place (chain storage): the runtime would
/// trap on the allocation past 32 MiB, so it is a typed fault. The CLI's pack lends it in place
/// and runs it.
#[test]
fn a_convolution_over_the_weight_chunk_is_refused_unless_lent_in_place() {
    use smartvm_vm::WeightPack;
    let program = assemble(&format!(
        ".input 1 1 2 2\n.output 1\n{INPUT} PUSH 48\nPUSH 5\nPUSH 1\nPUSH 2\nPUSH 1\nPUSH 1\nPUSH 0\nPUSH 2\nCONV_MUL\n\
         PUSH 0\nPUSH 1\nBTOS1\nSTOP"
    ))
    .expect("assembles");
    let exe = Executable::new(program).expect("validates");
    let blocks = vec![vec![1u8; 600], vec![2u8; 600], qblock(48)];
    let config = Config {
        weight_chunk: 1024,
        ..Config::default()
    };
    let gathered = execute(
        &exe,
        &[1, 2, 3, 4],
        &BlockList(&blocks),
        &Reference,
        &config,
        1 << 40,
    );
    assert_eq!(
        gathered.expect_err("refused").kind,
        ErrorKind::LayerWeightsTooLarge
    );
    let pack = WeightPack::new(&blocks);
    let lent = execute(&exe, &[1, 2, 3, 4], &pack, &Reference, &config, 1 << 40);
    assert!(lent.is_ok(), "{lent:?}");
    // Under the chunk, gathering is fine.
    let lent = execute(
        &exe,
        &[1, 2, 3, 4],
        &BlockList(&blocks),
        &Reference,
        &Config::default(),
        1 << 40,
    );
    assert!(lent.is_ok(), "{lent:?}");
}
