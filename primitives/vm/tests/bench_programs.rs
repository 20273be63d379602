//! The benchmark programs are valid, distinct and run: a broken one would time an early fault.

use smartvm_kernels::Reference;
use smartvm_vm::bench_programs::{layer_program, layers, LAYER_COUNT};
use smartvm_vm::{execute, BlockList, Config, Executable, KernelClass};

#[test]
fn the_layer_table_has_the_benchmarks_component_range() {
    let all = layers();
    assert_eq!(all.len() as u32, LAYER_COUNT, "update LAYER_COUNT");
    for (i, a) in all.iter().enumerate() {
        assert!(
            !a.name.contains(','),
            "{}: the CSV of times has no quoting",
            a.name
        );
        assert!(
            all[i + 1..].iter().all(|b| b.op != a.op),
            "{} twice",
            a.name
        );
    }
}

#[test]
fn every_layer_program_validates_and_the_small_ones_run_to_their_output() {
    let mut classes = std::collections::BTreeSet::new();
    for layer in layers() {
        let bench = layer_program(&layer.op);
        let exe = Executable::new(bench.program.clone())
            .unwrap_or_else(|e| panic!("{}: invalid program: {e:?}", layer.name));
        if bench.input.len() > 300_000 || bench.blocks.iter().map(Vec::len).sum::<usize>() > 300_000
        {
            continue;
        }
        let out = execute(
            &exe,
            &bench.input,
            &BlockList(&bench.blocks),
            &Reference,
            &Config::default(),
            u64::MAX,
        )
        .unwrap_or_else(|e| panic!("{}: {e:?}", layer.name));
        assert_eq!(
            out.output.len() as u32,
            bench.program.output_len,
            "{}",
            layer.name
        );
        for class in KernelClass::ALL {
            if out.work[class.index()].calls > 0 && class != KernelClass::Move {
                classes.insert(class);
            }
        }
    }
    // Every class but Move (which every program has) is timed on its own somewhere.
    assert_eq!(
        classes.len(),
        KernelClass::COUNT - 1,
        "classes run: {classes:?}"
    );
}
