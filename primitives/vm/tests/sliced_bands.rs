//! A run whose slices end by a budget of weight bytes (a chain job's share of a block's proof)
//! as well as by gas: it pauses before an instruction whose blocks do not fit what is left, and
//! inside a banded fully-connected layer larger than any one slice (AlexNet's fc6, 37.7 MB,
//! against a few MiB of proof per block). Resumed through SCALE, it must end exactly as the
//! uninterrupted run: output, gas, instructions and every counter.

use codec::{Decode, Encode};

mod common;
use proptest::prelude::*;
use smartvm_isa::asm::assemble;
use smartvm_isa::{pack::decode_pack, Program};
use smartvm_kernels::Reference;
use smartvm_vm::{
    execute, execute_slice, BlockList, ByteBudget, Config, ErrorKind, Executable, Outcome,
    Progress, Snapshot, Start, VmError,
};

/// The qblock, then the layer's weights in blocks of `block` bytes.
fn fc_blocks(in_n: usize, out_n: usize, block: usize, seed: usize) -> Vec<Vec<u8>> {
    let q = common::fc_quant(out_n);
    let weights: Vec<u8> = (0..in_n * out_n)
        .map(|i| ((i + seed) * 7 % 251) as u8)
        .collect();
    let mut blocks = vec![q.encode()];
    blocks.extend(weights.chunks(block).map(<[u8]>::to_vec));
    blocks
}

fn fc_input(in_n: usize) -> Vec<i8> {
    (0..in_n).map(|i| (i * 13 % 199) as i8).collect()
}

/// What a sliced run came to: the result, the pauses, and how many were inside a layer.
struct Sliced {
    result: Result<Outcome, VmError>,
    pauses: usize,
    inside: usize,
}

/// Runs in slices of `gas` and `bytes` (cycled, each at least the given floor), through SCALE
/// between slices. A slice that makes no progress doubles the next ones, as the pallet gives a
/// job a whole block's share when a smaller one did not move it.
fn sliced(
    exe: &Executable,
    input: &[i8],
    blocks: &[Vec<u8>],
    config: &Config,
    gas: &[u64],
    bytes: &[u64],
) -> Sliced {
    let source = BlockList(blocks);
    let budget = ByteBudget::new(&source, 0, 0);
    let mut start = Start::Input(input);
    let (mut pauses, mut inside, mut boost) = (0usize, 0usize, 1u64);
    let mut last: Option<Snapshot> = None;
    loop {
        assert!(pauses < 100_000, "the run does not end");
        budget.refill(bytes[pauses % bytes.len()].saturating_mul(boost));
        let slice = gas[pauses % gas.len()].saturating_mul(boost);
        match execute_slice(exe, start, &budget, &Reference, config, u64::MAX / 4, slice) {
            Ok(Progress::Done(outcome)) => {
                return Sliced {
                    result: Ok(outcome),
                    pauses,
                    inside,
                }
            }
            Ok(Progress::Paused(snapshot)) => {
                let decoded = Snapshot::decode(&mut &snapshot.encode()[..]).expect("decodes");
                assert_eq!(decoded, snapshot);
                if last.as_ref() == Some(&decoded) {
                    boost *= 2;
                } else {
                    boost = 1;
                }
                pauses += 1;
                inside += usize::from(decoded.partial.is_some());
                last = Some(decoded.clone());
                start = Start::Resume(Box::new(decoded));
            }
            Err(e) => {
                return Sliced {
                    result: Err(e),
                    pauses,
                    inside,
                }
            }
        }
    }
}

fn whole(exe: &Executable, input: &[i8], blocks: &[Vec<u8>], config: &Config) -> Outcome {
    execute(
        exe,
        input,
        &BlockList(blocks),
        &Reference,
        config,
        u64::MAX / 4,
    )
    .expect("runs")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    /// Any band size, block size, and slices of gas and bytes, however small: the banded layer
    /// paused between and inside its bands ends as the whole layer read at once.
    #[test]
    fn a_banded_layer_cut_by_gas_and_bytes_equals_the_whole_layer(
        in_n in 1usize..120,
        out_n in 1usize..90,
        block in 1usize..700,
        band in 1u32..4000,
        gas in prop::collection::vec(1u64..2000, 1..4),
        bytes in prop::collection::vec(1u64..3000, 1..4),
        seed in 0usize..1000,
    ) {
        let exe = common::fc_program(in_n, out_n);
        let blocks = fc_blocks(in_n, out_n, block, seed);
        let input = fc_input(in_n);
        let at_once = whole(&exe, &input, &blocks, &Config { weight_chunk: u32::MAX, ..Config::default() });
        let config = Config { fc_band: band, ..Config::default() };
        let gas: Vec<u64> = gas.iter().map(|g| at_once.gas_used * g / 1000 + 1).collect();
        let run = sliced(&exe, &input, &blocks, &config, &gas, &bytes);
        prop_assert_eq!(run.result.expect("the sliced run ends"), at_once);
    }
}

/// A 600 x 40 layer (24,000 bytes in 1 KiB blocks, bands of 3 KiB) with 5 KiB of weights a
/// slice: the layer cannot be read in one slice, so the run pauses inside it, several times,
/// and still gives the whole layer's outcome.
#[test]
fn a_layer_larger_than_a_slice_pauses_inside_and_completes() {
    let (in_n, out_n) = (600, 40);
    let exe = common::fc_program(in_n, out_n);
    let blocks = fc_blocks(in_n, out_n, 1024, 1);
    let input = fc_input(in_n);
    let config = Config {
        fc_band: 3 << 10,
        ..Config::default()
    };
    let at_once = whole(&exe, &input, &blocks, &Config::default());
    let run = sliced(&exe, &input, &blocks, &config, &[u64::MAX / 8], &[5 << 10]);
    assert_eq!(run.result.expect("completes"), at_once);
    assert!(run.inside >= 4, "{} pauses inside the layer", run.inside);
    assert!(at_once.output.iter().any(|v| *v != at_once.output[0]));
}

/// A convolution is read whole: with fewer bytes a slice than its weights it never starts, and
/// each slice returns the snapshot it began with, which is how the pallet tells a job that can
/// never fit a block from one that waits for room.
#[test]
fn a_convolution_larger_than_a_slice_makes_no_progress() {
    let dir = format!("{}/../../examples/lenet5", env!("CARGO_MANIFEST_DIR"));
    let blocks = decode_pack(&std::fs::read(format!("{dir}/weights.smw")).unwrap()).unwrap();
    let mut program: Program =
        assemble(&std::fs::read_to_string(format!("{dir}/lenet5.sasm")).unwrap()).unwrap();
    program.blocks = Program::manifest_of(&blocks);
    let exe = Executable::new(program).unwrap();
    let input: Vec<i8> = std::fs::read(format!("{dir}/inputs.bin")).unwrap()[..1024]
        .iter()
        .map(|b| *b as i8)
        .collect();
    let config = Config::default();
    let source = BlockList(&blocks);
    // The second convolution's weights (16 x 6 x 5 x 5 = 2,400 bytes) with 2 KiB a slice.
    let budget = ByteBudget::new(&source, 2048, 0);
    let mut start = Start::Input(&input[..]);
    let mut last = None;
    for _ in 0..20 {
        budget.refill(2048);
        match execute_slice(
            &exe,
            start,
            &budget,
            &Reference,
            &config,
            u64::MAX / 4,
            u64::MAX / 8,
        ) {
            Ok(Progress::Paused(s)) => {
                if last.as_ref() == Some(&s) {
                    // Stuck before a layer whose weights exceed the slice.
                    let whole = whole(&exe, &input, &blocks, &config);
                    assert!(s.gas_used < whole.gas_used);
                    return;
                }
                last = Some(s.clone());
                start = Start::Resume(Box::new(s));
            }
            other => panic!("expected to stall, got {other:?}"),
        }
    }
    panic!("never stalled");
}

/// Without a slice's end (`u64::MAX`) nothing is checkpointed, so a budget's refusal cannot
/// pause the run: it is the fault `SliceEnd`, never a snapshot of a half-done instruction.
#[test]
fn a_byte_budget_without_gas_slicing_faults_instead_of_pausing() {
    let exe = common::fc_program(600, 40);
    let blocks = fc_blocks(600, 40, 1024, 1);
    let input = fc_input(600);
    let source = BlockList(&blocks);
    let budget = ByteBudget::new(&source, 5 << 10, 0);
    let config = Config::default();
    let start = Start::Input(&input);
    let run = execute_slice(
        &exe,
        start,
        &budget,
        &Reference,
        &config,
        u64::MAX / 4,
        u64::MAX,
    );
    assert_eq!(
        run.map(|_| ()).map_err(|e| e.kind),
        Err(ErrorKind::SliceEnd)
    );
}

/// A source that refuses a block for a reason other than the slice's budget reports the missing
/// block, as before.
#[test]
fn a_missing_block_is_still_an_error_under_a_budget() {
    let exe = common::fc_program(10, 4);
    let mut blocks = fc_blocks(10, 4, 16, 0);
    blocks.truncate(2);
    let input = fc_input(10);
    let run = sliced(
        &exe,
        &input,
        &blocks,
        &Config::default(),
        &[u64::MAX / 8],
        &[1 << 20],
    );
    assert_eq!(
        run.result.map_err(|e| e.kind),
        Err(ErrorKind::MissingWeightBlock { index: 2 })
    );
    assert_eq!(run.pauses, 0);
}
