//! The VM's gas prices cover the relay validators' path, and not by much more.
//!
//! `make weights` times every entry of the VM's layer table (each kernel class at the zoo
//! models' shapes and at sweeps) in the runtime's wasm with the `Scalar` kernels, what
//! `validate_block` runs, and fits the schedule to those times; the times are committed in
//! `runtime/src/weights/vm_layers.csv`. Here each entry runs through the interpreter with the
//! schedule the runtime charges, and what its gas buys at `SmartvmRefTimePerGas` must lie between
//! one and two times its measured time. If a kernel gets slower in wasm, or a price is edited by
//! hand, or the table changes without new benchmarks, this fails until `make weights` is rerun.

use pallet_smartvm::{vm_programs, weights::WeightInfo};
use smartvm_kernels::Native;
use smartvm_runtime::{configs::SmartvmRefTimePerGas, Runtime};
use smartvm_vm::bench_programs::{layer_program, layers};
use smartvm_vm::{execute, BlockList, Executable};

type Weights = <Runtime as pallet_smartvm::Config>::WeightInfo;

/// The benchmarked times: index, name, class, time_ns (the rest is the fit's own report).
const MEASURED: &str = include_str!("../src/weights/vm_layers.csv");

/// Gas the runtime's schedule charges for `program` on `input`.
fn gas_of(program: smartvm_isa::Program, blocks: &[Vec<u8>], input: &[i8]) -> u64 {
    let exe = Executable::new(program).expect("the benchmark program is valid");
    let config = pallet_smartvm::limits::vm_config::<Runtime>();
    execute(&exe, input, &BlockList(blocks), &Native, &config, u64::MAX)
        .expect("the benchmark program runs")
        .gas_used
}

#[test]
fn every_kernel_class_is_charged_between_one_and_two_times_its_wasm_time() {
    let price = SmartvmRefTimePerGas::get() as f64;
    let table = layers();
    let rows: Vec<&str> = MEASURED.lines().skip(1).collect();
    assert_eq!(
        rows.len(),
        table.len(),
        "vm_layers.csv does not time the current layer table: run make weights"
    );
    let mut failures = Vec::new();
    let (mut lo, mut hi) = (f64::MAX, 0f64);
    for (layer, row) in table.iter().zip(rows) {
        let fields: Vec<&str> = row.split(',').collect();
        assert_eq!(
            fields[1], layer.name,
            "vm_layers.csv is stale: run make weights"
        );
        let time_ps = fields[3].parse::<f64>().expect("a time in ns") * 1000.0;
        let bench = layer_program(&layer.op);
        let charged_ps = gas_of(bench.program, &bench.blocks, &bench.input) as f64 * price;
        let ratio = charged_ps / time_ps;
        (lo, hi) = (lo.min(ratio), hi.max(ratio));
        if !(1.0..=2.0).contains(&ratio) {
            failures.push(format!(
                "{} ({}): {:.1} us in wasm, charged {:.1} us ({ratio:.2}x)",
                layer.name,
                fields[2],
                time_ps / 1e6,
                charged_ps / 1e6
            ));
        }
    }
    println!(
        "{} entries charged {lo:.2}x to {hi:.2}x their wasm time",
        table.len()
    );
    assert!(
        failures.is_empty(),
        "outside 1x-2x:\n{}",
        failures.join("\n")
    );
}

#[test]
fn base_instructions_pay_for_their_wasm_time() {
    let price = SmartvmRefTimePerGas::get();
    let (lo, hi) = (1u32, 10_000u32);
    let time = |r| Weights::vm_base_loop(r).ref_time();
    let gas = |r| gas_of(vm_programs::base_loop(r), &[], &[0]);
    let steps = u64::from(hi - lo);
    let time_per_turn = (time(hi) - time(lo)) as f64 / steps as f64;
    let charged_per_turn = ((gas(hi) - gas(lo)) * price) as f64 / steps as f64;
    println!(
        "one turn of six base instructions: {time_per_turn:.0} ps in wasm, charged \
         {charged_per_turn:.0} ps ({:.2}x)",
        charged_per_turn / time_per_turn
    );
    assert!(
        time_per_turn <= charged_per_turn,
        "the benchmarked wasm time per turn ({time_per_turn:.0} ps) exceeds what its gas pays \
         ({charged_per_turn:.0} ps at {price} ps per gas)"
    );
}
