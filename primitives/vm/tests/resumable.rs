//! A run cut into slices at random gas budgets, its snapshots SCALE-encoded and decoded between
//! slices, ends exactly as the uninterrupted run: output, gas, instruction count and every
//! counter (issue 21's resumable VM). Programs: LeNet-5 with the CNN instructions and with the
//! base set only (loops, Memory growth, WLOAD's block cache), and the small entries of the
//! benchmark layer table (every kernel class).

use codec::{Decode, Encode};
use proptest::prelude::*;
use smartvm_isa::{asm::assemble, pack::decode_pack, Program};
use smartvm_kernels::Reference;
use smartvm_vm::bench_programs::{layer_program, layers};
use smartvm_vm::{
    execute, execute_slice, BlockList, Config, Executable, Outcome, Progress, Snapshot, Start,
};

struct Case {
    exe: Executable,
    blocks: Vec<Vec<u8>>,
    input: Vec<i8>,
}

fn lenet(name: &str) -> Case {
    let dir = format!("{}/../../examples/lenet5", env!("CARGO_MANIFEST_DIR"));
    let blocks = decode_pack(&std::fs::read(format!("{dir}/weights.smw")).unwrap()).unwrap();
    let src = std::fs::read_to_string(format!("{dir}/{name}")).unwrap();
    let mut program: Program = assemble(&src).unwrap();
    program.blocks = Program::manifest_of(&blocks);
    let input = std::fs::read(format!("{dir}/inputs.bin")).unwrap()[..1024]
        .iter()
        .map(|b| *b as i8)
        .collect();
    Case {
        exe: Executable::new(program).unwrap(),
        blocks,
        input,
    }
}

fn cases() -> Vec<Case> {
    let mut all = vec![lenet("lenet5.sasm"), lenet("lenet5_base.sasm")];
    for layer in layers() {
        let bench = layer_program(&layer.op);
        let weights: usize = bench.blocks.iter().map(Vec::len).sum();
        if bench.input.len() <= 20_000 && weights <= 200_000 {
            all.push(Case {
                exe: Executable::new(bench.program).unwrap(),
                blocks: bench.blocks,
                input: bench.input,
            });
        }
    }
    all
}

/// Runs `case` in slices of the given sizes (cycled), through SCALE between slices.
fn sliced(
    case: &Case,
    slices: &[u64],
    limit: u64,
) -> (Result<Outcome, smartvm_vm::VmError>, usize) {
    let config = Config::default();
    let source = BlockList(&case.blocks);
    let mut start = Start::Input(&case.input);
    let mut pauses = 0;
    loop {
        let slice = slices[pauses % slices.len()];
        match execute_slice(&case.exe, start, &source, &Reference, &config, limit, slice) {
            Ok(Progress::Done(outcome)) => return (Ok(outcome), pauses),
            Ok(Progress::Paused(snapshot)) => {
                let bytes = snapshot.encode();
                let decoded = Snapshot::decode(&mut &bytes[..]).expect("a snapshot decodes");
                assert_eq!(decoded, snapshot);
                pauses += 1;
                start = Start::Resume(Box::new(decoded));
            }
            Err(e) => return (Err(e), pauses),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]

    #[test]
    fn a_run_in_random_slices_equals_the_uninterrupted_run(
        which in any::<prop::sample::Index>(),
        fractions in prop::collection::vec(1u64..1000, 1..6),
        limited in any::<bool>(),
    ) {
        let all = cases();
        let case = &all[which.index(all.len())];
        let whole = execute(&case.exe, &case.input, &BlockList(&case.blocks), &Reference, &Config::default(), u64::MAX)
            .expect("the program runs");
        // Slices from 1/1000 to the whole run; the largest kernel must fit one slice.
        let largest = whole.cnn_gas.iter().map(|(_, g)| *g).max().unwrap_or(0);
        let slices: Vec<u64> = fractions
            .iter()
            .map(|f| (whole.gas_used * f / 1000).max(largest + 64))
            .collect();
        // Half the cases run under a limit the run passes: both must fail the same way.
        let limit = if limited { whole.gas_used * 2 / 3 } else { u64::MAX };
        let reference = execute(&case.exe, &case.input, &BlockList(&case.blocks), &Reference, &Config::default(), limit);
        let (outcome, _) = sliced(case, &slices, limit);
        prop_assert_eq!(outcome, reference);
    }
}

#[test]
fn lenet5_base_set_pauses_many_times_and_each_pause_is_before_its_slice_end() {
    let case = lenet("lenet5_base.sasm");
    let whole = execute(
        &case.exe,
        &case.input,
        &BlockList(&case.blocks),
        &Reference,
        &Config::default(),
        u64::MAX,
    )
    .unwrap();
    let slice = whole.gas_used / 50;
    let (outcome, pauses) = sliced(&case, &[slice], u64::MAX);
    assert_eq!(outcome.unwrap(), whole);
    assert!(pauses >= 49, "{pauses} pauses");
    // Each slice stops before passing its budget.
    let mut start = Start::Input(&case.input);
    // The first slice begins after the input's Memory is charged: check from the first pause on.
    let mut used = None;
    while let Ok(Progress::Paused(s)) = execute_slice(
        &case.exe,
        start,
        &BlockList(&case.blocks),
        &Reference,
        &Config::default(),
        u64::MAX,
        slice,
    ) {
        if let Some(used) = used {
            assert!(s.gas_used - used <= slice, "a slice ran past its budget");
        }
        used = Some(s.gas_used);
        start = Start::Resume(Box::new(s));
    }
}

#[test]
fn a_slice_too_small_for_the_next_instruction_makes_no_progress() {
    let case = lenet("lenet5.sasm");
    let config = Config::default();
    let source = BlockList(&case.blocks);
    let run = |start, slice| {
        execute_slice(
            &case.exe,
            start,
            &source,
            &Reference,
            &config,
            u64::MAX,
            slice,
        )
    };
    // Run to just before the first convolution, then offer less than it costs.
    let Ok(Progress::Paused(before_conv)) = run(Start::Input(&case.input), 60) else {
        panic!("expected a pause before the first convolution");
    };
    let Ok(Progress::Paused(again)) = run(Start::Resume(Box::new(before_conv.clone())), 60) else {
        panic!("expected no progress");
    };
    assert_eq!(again, before_conv);
}
