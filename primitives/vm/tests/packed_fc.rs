//! A fully-connected layer that runs again in one execution (a recurrence: an LSTM's gates) is
//! packed at its second run and computed from the packed weights on the native backend. That
//! must change nothing observable: the output, gas and weight reads equal the reference
//! backend's, which packs nothing, on every tile this CPU runs.

#[allow(dead_code)]
mod common;

use smartvm_isa::asm::assemble;
use smartvm_kernels::tile::{self, Tile};
use smartvm_kernels::{Native, Reference};
use smartvm_vm::{execute, BlockList, Config, Executable, Outcome};

/// `steps` runs of the `n` → `n` layers of weights blocks 1 and 2 (qblock 0), one after the
/// other: both are packed at their second run, and a cache that mixed them up would show.
fn recurrence(n: usize, steps: usize) -> Executable {
    let step = format!("PUSH {n}\nPUSH 1\nPUSH 0\nFULL_CON\nPUSH {n}\nPUSH 2\nPUSH 0\nFULL_CON\n");
    let src = format!(
        ".input 1 1 1 {n}\n.output {n}\nPUSH 0\nPUSH {n}\nMTOB\n{}PUSH 0\nPUSH {n}\nBTOS1\nSTOP",
        step.repeat(steps)
    );
    Executable::new(assemble(&src).expect("assembles")).expect("validates")
}

fn weights(len: usize, seed: i32) -> Vec<u8> {
    (0..len as i32)
        .map(|i| ((i * seed) % 251 - 125) as u8)
        .collect()
}

fn run(exe: &Executable, input: &[i8], blocks: &[Vec<u8>], native: bool) -> Outcome {
    let source = BlockList(blocks);
    let config = Config::default();
    let gas = u64::MAX / 4;
    if native {
        execute(exe, input, &source, &Native, &config, gas)
    } else {
        execute(exe, input, &source, &Reference, &config, gas)
    }
    .expect("runs")
}

#[test]
fn a_recurrent_layer_computes_and_costs_the_same_packed() {
    // 104 inputs: whole and part 64-byte runs, 26 quads; 104 outputs: six and a half blocks.
    for (n, zero) in [(104, 3), (104, -128), (7, 3)] {
        let mut q = common::fc_quant(n);
        q.input_zero = zero;
        let blocks = vec![q.encode(), weights(n * n, 7), weights(n * n, 13)];
        let input: Vec<i8> = (0..n).map(|i| (i as i32 * 37 % 256 - 128) as i8).collect();
        let exe = recurrence(n, 4);
        let reference = run(&exe, &input, &blocks, false);
        assert!(
            reference.output.iter().any(|v| *v != reference.output[0]),
            "the output is spread"
        );
        for t in Tile::supported_tiles() {
            tile::force(Some(t)).expect("a supported tile");
            let native = run(&exe, &input, &blocks, true);
            assert_eq!(native, reference, "{t:?}, {n} inputs, zero {zero}");
        }
        tile::force(None).expect("the best tile");
    }
}

#[test]
fn layers_packed_in_one_run_serve_the_next_runs_unchanged() {
    use smartvm_vm::{execute_slice_packed, PackedLayers, Progress, Start};
    let n = 104;
    let q = common::fc_quant(n);
    let blocks = vec![q.encode(), weights(n * n, 7), weights(n * n, 13)];
    let exe = recurrence(n, 2);
    let mut packed = PackedLayers::default();
    for seed in 0..3 {
        let input: Vec<i8> = (0..n)
            .map(|i| ((i * 37 + seed * 11) % 256) as u8 as i8)
            .collect();
        let reference = run(&exe, &input, &blocks, false);
        // The last run in slices of half its gas: it also resumes with packed layers.
        let (mut start, gas, mut pauses) = (Start::Input(&input), u64::MAX / 4, 0);
        let outcome = loop {
            let source = BlockList(&blocks);
            let config = Config::default();
            let slice = if seed == 2 {
                reference.gas_used / 2
            } else {
                u64::MAX
            };
            match execute_slice_packed(
                &exe,
                start,
                &source,
                &Native,
                &config,
                gas,
                slice,
                &mut packed,
            )
            .expect("runs")
            {
                Progress::Done(outcome) => break outcome,
                Progress::Paused(snapshot) => {
                    assert!(pauses < 100, "the slices make progress");
                    pauses += 1;
                    start = Start::Resume(Box::new(snapshot));
                }
            }
        };
        assert_eq!(outcome, reference, "run {seed}");
        assert_eq!(pauses > 0, seed == 2, "only the last run is sliced");
    }
}
