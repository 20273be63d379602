//! The host-function path gives the same bits as the reference kernels, and the host side
//! survives any bytes a runtime could send.

use proptest::prelude::*;
use smartvm_host::{wire, HostKernels};
use smartvm_isa::{asm::assemble, pack::decode_pack, Program, Shape};
use smartvm_kernels::{
    ChannelQuant, ConvParams, Kernels, OutputRange, PoolKind, PoolParams, Reference,
};
use smartvm_vm::{execute, BlockList, Config, Executable};

/// The LeNet-5 example, found at run time: cargo may reuse this binary for another checkout.
static DIR: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let crate_dir = std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo");
    format!("{crate_dir}/../../examples/lenet5")
});

#[test]
fn lenet5_through_the_host_functions_matches_the_reference() {
    let blocks = decode_pack(&std::fs::read(format!("{}/weights.smw", *DIR)).unwrap()).unwrap();
    let mut program: Program =
        assemble(&std::fs::read_to_string(format!("{}/lenet5.sasm", *DIR)).unwrap()).unwrap();
    program.blocks = Program::manifest_of(&blocks);
    let exe = Executable::new(program).unwrap();
    for input in std::fs::read(format!("{}/inputs.bin", *DIR))
        .unwrap()
        .chunks(1024)
    {
        let input: Vec<i8> = input.iter().map(|b| *b as i8).collect();
        let run = |k: &dyn Fn(&Executable) -> smartvm_vm::Outcome| k(&exe);
        let host = run(&|e| {
            execute(
                e,
                &input,
                &BlockList(&blocks),
                &HostKernels,
                &Config::default(),
                u64::MAX,
            )
            .unwrap()
        });
        let reference = run(&|e| {
            execute(
                e,
                &input,
                &BlockList(&blocks),
                &Reference,
                &Config::default(),
                u64::MAX,
            )
            .unwrap()
        });
        assert_eq!(host, reference, "same output, gas and peaks");
    }
}

#[test]
fn host_errors_come_back_as_kernel_errors() {
    let p = ConvParams::conv2d(Shape::new(2, 1, 5, 5), 3, 3, 1, 1, 1, 1).unwrap();
    let q = ChannelQuant {
        input_zero: 0,
        output: OutputRange {
            zero: 0,
            lo: -128,
            hi: 127,
        },
        bias: vec![0; 3],
        mult: vec![1 << 30; 3],
        shift: vec![0; 3],
    };
    let mut out = vec![0i8; 75];
    let bad_weights = vec![1i8; 53];
    assert_eq!(
        HostKernels.conv(&p, &[0; 50], &bad_weights, &q, &mut out),
        Reference.conv(&p, &[0; 50], &bad_weights, &q, &mut out)
    );
    let wrong_q = ChannelQuant {
        bias: vec![0; 2],
        mult: vec![1; 2],
        shift: vec![0; 2],
        ..q.clone()
    };
    assert_eq!(
        HostKernels.conv(&p, &[0; 50], &[1; 54], &wrong_q, &mut out),
        Err(smartvm_kernels::KernelError::BadQuant)
    );
    let pool = PoolParams::new(Shape::new(1, 1, 4, 4), 2, 2, 0, PoolKind::Average).unwrap();
    let (mut a, mut b) = ([0i8; 4], [0i8; 4]);
    let x: Vec<i8> = (0..16i32).map(|v| (v * 9 - 70) as i8).collect();
    HostKernels.pool(&pool, &x, &mut a).unwrap();
    Reference.pool(&pool, &x, &mut b).unwrap();
    assert_eq!(a, b);
}

proptest! {
    /// Whatever a runtime sends, the host answers with a status and never panics.
    #[test]
    fn arbitrary_wire_bytes_get_a_status(geometry in prop::collection::vec(any::<u8>(), 0..80), input in prop::collection::vec(any::<u8>(), 0..64), weights in prop::collection::vec(any::<u8>(), 0..64), quant in prop::collection::vec(any::<u8>(), 0..64), out_len in 0usize..64) {
        let k = smartvm_kernels::Native;
        let mut out = vec![0u8; out_len];
        let _ = wire::conv(&k, &geometry, &input, &weights, &quant, &mut out);
        let _ = wire::conv_transpose(&k, &geometry, &input, &weights, &quant, &mut out);
        let _ = wire::pool(&k, &geometry, &input, &mut out);
        let _ = wire::fully_connected(&k, &input, &weights, &quant, &mut out);
        let _ = wire::matmul(&k, &geometry, &input, &weights, &quant, &mut out);
    }

    /// Small but valid geometries: the words decode to what was encoded and the call succeeds.
    #[test]
    fn encoded_conv_geometry_runs(c in 1u32..4, h in 3u32..9, w in 3u32..9, oc in 1u32..4, k in 1u32..4, stride in 1u32..3) {
        let p = ConvParams::conv2d(Shape::new(c, 1, h, w), oc, k, stride, 0, 1, 1).unwrap();
        let q = ChannelQuant { input_zero: 3, output: OutputRange { zero: -1, lo: -128, hi: 127 }, bias: vec![7; oc as usize], mult: vec![1 << 30; oc as usize], shift: vec![2; oc as usize] };
        let input: Vec<u8> = (0..c * h * w).map(|i| (i * 37) as u8).collect();
        let weights: Vec<u8> = (0..p.weight_len()).map(|i| (i * 11) as u8).collect();
        let mut out = vec![0u8; p.output.elements().unwrap() as usize];
        prop_assert_eq!(wire::conv(&Reference, &wire::encode_conv(&p), &input, &weights, &q.encode(), &mut out), wire::Status::Ok);
    }
}
