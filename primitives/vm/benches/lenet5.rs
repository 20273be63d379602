//! LeNet-5 with CNN instructions against the same network in the plain base set, measured in
//! the same run; prints the ratio of the medians after criterion's report.

use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion};
use smartvm_isa::{asm::assemble, pack::decode_pack, Program};
use smartvm_kernels::{Native, Reference};
use smartvm_vm::{execute, BlockList, Config, Executable};

/// The LeNet-5 example, found at run time: cargo may reuse this binary for another checkout.
static DIR: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let crate_dir = std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo");
    format!("{crate_dir}/../../examples/lenet5")
});

struct Fixture {
    blocks: Vec<Vec<u8>>,
    input: Vec<i8>,
    cnn: Executable,
    base: Executable,
}

fn fixture() -> Fixture {
    let blocks = decode_pack(&std::fs::read(format!("{}/weights.smw", *DIR)).unwrap()).unwrap();
    let load = |name: &str| {
        let mut p: Program =
            assemble(&std::fs::read_to_string(format!("{}/{name}", *DIR)).unwrap()).unwrap();
        p.blocks = Program::manifest_of(&blocks);
        Executable::new(p).unwrap()
    };
    let input = std::fs::read(format!("{}/inputs.bin", *DIR)).unwrap()[..1024]
        .iter()
        .map(|b| *b as i8)
        .collect();
    Fixture {
        cnn: load("lenet5.sasm"),
        base: load("lenet5_base.sasm"),
        blocks,
        input,
    }
}

fn lenet5(c: &mut Criterion) {
    let f = fixture();
    let cfg = Config::default();
    let mut group = c.benchmark_group("lenet5");
    group.bench_function("cnn_instructions_native", |b| {
        b.iter(|| {
            execute(
                &f.cnn,
                &f.input,
                &BlockList(&f.blocks),
                &Native,
                &cfg,
                u64::MAX,
            )
            .unwrap()
        })
    });
    group.bench_function("cnn_instructions_reference", |b| {
        b.iter(|| {
            execute(
                &f.cnn,
                &f.input,
                &BlockList(&f.blocks),
                &Reference,
                &cfg,
                u64::MAX,
            )
            .unwrap()
        })
    });
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(8));
    group.bench_function("base_set_only", |b| {
        b.iter(|| {
            execute(
                &f.base,
                &f.input,
                &BlockList(&f.blocks),
                &Native,
                &cfg,
                u64::MAX,
            )
            .unwrap()
        })
    });
    group.finish();
}

fn median_ms(runs: usize, mut f: impl FnMut()) -> f64 {
    let mut t: Vec<f64> = (0..runs)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(|a, b| a.total_cmp(b));
    t[runs / 2]
}

fn summary() {
    let f = fixture();
    let cfg = Config::default();
    let run = |exe: &Executable| {
        execute(
            exe,
            &f.input,
            &BlockList(&f.blocks),
            &Native,
            &cfg,
            u64::MAX,
        )
        .unwrap()
    };
    let cnn = median_ms(501, || drop(run(&f.cnn)));
    let base = median_ms(11, || drop(run(&f.base)));
    let (a, b) = (run(&f.cnn), run(&f.base));
    println!("\nLeNet-5 summary (medians, same run): CNN instructions {cnn:.4} ms, base set {base:.2} ms, ratio {:.0}x", base / cnn);
    println!(
        "bytecode instructions {} vs {}; executed {} vs {}",
        f.cnn.instruction_count(),
        f.base.instruction_count(),
        a.instructions,
        b.instructions
    );
    println!(
        "peak Buffer {} bytes vs Memory {} bytes",
        a.peak_buffer_bytes, b.peak_memory_bytes
    );
}

criterion_group!(benches, lenet5);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    summary();
}
