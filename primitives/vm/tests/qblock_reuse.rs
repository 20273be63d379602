//! A run decodes each qblock once and reuses it (a recurrent program reads its gates' qblocks
//! every step). Reuse must change nothing observable: a layer that reads a qblock again pays
//! for the read as if it were a fresh block, and a qblock reused for another channel count is
//! refused as it would be on its first read.

#[allow(dead_code)]
mod common;

use smartvm_isa::asm::assemble;
use smartvm_kernels::Reference;
use smartvm_vm::{execute, BlockList, Config, ErrorKind, Executable};

/// Two FULL_CON layers, `n` → `n` → `out2`: the first with qblock 0 and weights block 1, the
/// second with qblock `second_q` and weights block 2.
fn two_layers(n: usize, out2: usize, second_q: usize) -> Executable {
    let src = format!(
        ".input 1 1 1 {n}\n.output {out2}\n\
         PUSH 0\nPUSH {n}\nMTOB\n\
         PUSH {n}\nPUSH 1\nPUSH 0\nFULL_CON\n\
         PUSH {out2}\nPUSH 2\nPUSH {second_q}\nFULL_CON\n\
         PUSH 0\nPUSH {out2}\nBTOS1\nSTOP"
    );
    Executable::new(assemble(&src).expect("assembles")).expect("validates")
}

fn weights(len: usize, seed: i32) -> Vec<u8> {
    (0..len as i32)
        .map(|i| ((i * seed) % 251 - 125) as u8)
        .collect()
}

#[test]
fn a_reused_qblock_gives_the_output_and_gas_of_a_fresh_copy() {
    let n = 24;
    let q = common::fc_quant(n).encode();
    let blocks = vec![q.clone(), weights(n * n, 7), weights(n * n, 13), q];
    let input: Vec<i8> = (0..n as i8).map(|i| 5 * i - 60).collect();
    let run = |second_q| {
        execute(
            &two_layers(n, n, second_q),
            &input,
            &BlockList(&blocks),
            &Reference,
            &Config::default(),
            u64::MAX / 4,
        )
        .expect("runs")
    };
    let (reused, copy) = (run(0), run(3));
    assert_eq!(reused.output, copy.output);
    assert_eq!(
        reused.gas_used, copy.gas_used,
        "a reused qblock is charged as read"
    );
    assert_eq!(reused.weight_blocks_read, copy.weight_blocks_read);
    assert!(reused.output.iter().any(|v| *v != reused.output[0]));
}

#[test]
fn a_qblock_reused_for_another_channel_count_is_refused() {
    let n = 24;
    let blocks = vec![
        common::fc_quant(n).encode(),
        weights(n * n, 7),
        weights(n * (n - 1), 13),
    ];
    let input = vec![1i8; n];
    let err = execute(
        &two_layers(n, n - 1, 0),
        &input,
        &BlockList(&blocks),
        &Reference,
        &Config::default(),
        u64::MAX / 4,
    )
    .expect_err("qblock 0 holds 24 channels, not 23");
    assert_eq!(err.kind, ErrorKind::BadQuantBlock { index: 0 });
}
