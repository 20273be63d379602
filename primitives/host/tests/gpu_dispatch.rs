//! With the node's kernels configured for the GPU (every layer, however small), LeNet-5 through
//! the host functions still gives the reference's bytes, gas and peaks. Without a GPU: one
//! `SKIPPED:` line.
#![cfg(feature = "cuda")]

use smartvm_host::backend::{self, Choice};
use smartvm_host::HostKernels;
use smartvm_isa::{asm::assemble, pack::decode_pack, Program};
use smartvm_kernels::Reference;
use smartvm_vm::{execute, BlockList, Config, Executable};

/// The LeNet-5 example, found at run time: cargo may reuse this binary for another checkout.
static DIR: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let crate_dir = std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo");
    format!("{crate_dir}/../../examples/lenet5")
});

#[test]
fn lenet5_on_the_gpu_through_the_host_functions_matches_the_reference() {
    let choice = Choice::Cuda {
        device: 0,
        min_gpu_macs: 0,
    };
    match backend::configure(choice) {
        Ok(active) => eprintln!("host kernels: {active}"),
        Err(why) => {
            eprintln!("SKIPPED: GPU host-function test ({why}; needs an NVIDIA GPU and driver)");
            return;
        }
    }
    assert!(backend::active().describe().starts_with("cuda"));
    let blocks = decode_pack(&std::fs::read(format!("{}/weights.smw", *DIR)).unwrap()).unwrap();
    let mut program: Program =
        assemble(&std::fs::read_to_string(format!("{}/lenet5.sasm", *DIR)).unwrap()).unwrap();
    program.blocks = Program::manifest_of(&blocks);
    let exe = Executable::new(program).unwrap();
    let cfg = Config::default();
    for input in std::fs::read(format!("{}/inputs.bin", *DIR))
        .unwrap()
        .chunks(1024)
    {
        let input: Vec<i8> = input.iter().map(|b| *b as i8).collect();
        let weights = BlockList(&blocks);
        let gpu = execute(&exe, &input, &weights, &HostKernels, &cfg, u64::MAX).unwrap();
        let reference = execute(&exe, &input, &weights, &Reference, &cfg, u64::MAX).unwrap();
        assert_eq!(gpu, reference, "same output, gas and peaks");
    }
}
