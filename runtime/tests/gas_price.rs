//! The VM's gas price covers the relay validators' path: the runtime's benchmarked weights of
//! the VM programs (run with the in-wasm kernels, `make weights`) must not exceed the `ref_time`
//! their gas buys at `SmartvmRefTimePerGas`. If a kernel or the interpreter gets slower in wasm,
//! regenerating the weights makes this fail until the price or the schedule is raised.

use pallet_smartvm::{vm_programs, weights::WeightInfo};
use smartvm_isa::Program;
use smartvm_kernels::Reference;
use smartvm_runtime::{configs::SmartvmRefTimePerGas, Runtime};
use smartvm_vm::{execute, BlockList, Config, Executable};

type Weights = <Runtime as pallet_smartvm::Config>::WeightInfo;

fn gas_of(program: Program, blocks: &[Vec<u8>], input: &[i8]) -> u64 {
    let exe = Executable::new(program).expect("the benchmark program is valid");
    execute(
        &exe,
        input,
        &BlockList(blocks),
        &Reference,
        &Config::default(),
        u64::MAX,
    )
    .expect("the benchmark program runs")
    .gas_used
}

/// Checks the marginal time of one step of a benchmark against the marginal gas it is charged,
/// and prints how many times the price covers it.
fn cover(name: &str, time: impl Fn(u32) -> u64, gas: impl Fn(u32) -> u64, lo: u32, hi: u32) {
    let price = SmartvmRefTimePerGas::get();
    let steps = u64::from(hi - lo);
    let time_per_step = (time(hi) - time(lo)) as f64 / steps as f64;
    let charged_per_step = ((gas(hi) - gas(lo)) * price) as f64 / steps as f64;
    println!(
        "{name}: {time_per_step:.0} ps per step in wasm, charged {charged_per_step:.0} ps ({:.2}x)",
        charged_per_step / time_per_step
    );
    assert!(
        time_per_step <= charged_per_step,
        "{name}: the benchmarked wasm time per step ({time_per_step:.0} ps) exceeds what its gas \
         pays ({charged_per_step:.0} ps at {price} ps per gas)"
    );
}

#[test]
fn base_instructions_pay_for_their_wasm_time() {
    cover(
        "vm_base_loop (one turn of six instructions)",
        |r| Weights::vm_base_loop(r).ref_time(),
        |r| gas_of(vm_programs::base_loop(r), &[], &[0]),
        1,
        10_000,
    );
}

#[test]
fn kernel_multiply_accumulates_pay_for_their_wasm_time() {
    cover(
        "vm_kernel_macs (64 multiply-accumulates)",
        |m| Weights::vm_kernel_macs(m).ref_time(),
        |m| {
            let (program, blocks) = vm_programs::fc_layer(m);
            gas_of(program, &blocks, &vec![1; m as usize])
        },
        1,
        1024,
    );
}
