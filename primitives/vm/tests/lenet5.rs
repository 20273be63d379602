//! LeNet-5 written twice — with the CNN instructions and with the plain base set — must give the
//! logits that numpy computed independently (examples/lenet5/expected.json), on both backends.

use smartvm_isa::{asm::assemble, pack::decode_pack, Program};
use smartvm_kernels::{Kernels, Native, Reference};
use smartvm_vm::{execute, BlockList, Config, Executable, Outcome};

/// The LeNet-5 example, found at run time: cargo may reuse this binary for another checkout.
static DIR: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let crate_dir = std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo");
    format!("{crate_dir}/../../examples/lenet5")
});

fn load(name: &str, blocks: &[Vec<u8>]) -> Executable {
    let src = std::fs::read_to_string(format!("{}/{name}", *DIR)).expect("example source");
    let mut program: Program = assemble(&src).expect("assembles");
    program.blocks = Program::manifest_of(blocks);
    Executable::new(program).expect("validates")
}

/// Weight blocks, sample inputs and their expected logits.
type Fixtures = (Vec<Vec<u8>>, Vec<Vec<i8>>, Vec<Vec<i8>>);

fn fixtures() -> Fixtures {
    let blocks = decode_pack(&std::fs::read(format!("{}/weights.smw", *DIR)).unwrap()).unwrap();
    let inputs: Vec<Vec<i8>> = std::fs::read(format!("{}/inputs.bin", *DIR))
        .unwrap()
        .chunks(1024)
        .map(|c| c.iter().map(|b| *b as i8).collect())
        .collect();
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{}/expected.json", *DIR)).unwrap())
            .unwrap();
    let expected = doc["logits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            l.as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_i64().unwrap() as i8)
                .collect()
        })
        .collect();
    (blocks, inputs, expected)
}

fn run<K: Kernels>(exe: &Executable, input: &[i8], blocks: &[Vec<u8>], k: &K) -> Outcome {
    execute(
        exe,
        input,
        &BlockList(blocks),
        k,
        &Config::default(),
        u64::MAX,
    )
    .expect("runs")
}

#[test]
fn both_programs_give_the_numpy_logits_on_every_backend() {
    let (blocks, inputs, expected) = fixtures();
    assert_eq!(inputs.len(), 4);
    let cnn = load("lenet5.sasm", &blocks);
    let base = load("lenet5_base.sasm", &blocks);
    for (input, want) in inputs.iter().zip(&expected) {
        let a = run(&cnn, input, &blocks, &Reference);
        let b = run(&cnn, input, &blocks, &Native);
        let c = run(&base, input, &blocks, &Native);
        assert_eq!(&a.output, want, "CNN program, reference kernels");
        assert_eq!(&b.output, want, "CNN program, native kernels");
        assert_eq!(&c.output, want, "base-set program");
        assert_eq!(a.gas_used, b.gas_used, "gas does not depend on the backend");
    }
}

#[test]
fn cnn_version_is_compact_and_frees_feature_maps() {
    let (blocks, inputs, _) = fixtures();
    let cnn = load("lenet5.sasm", &blocks);
    let base = load("lenet5_base.sasm", &blocks);
    let a = run(&cnn, &inputs[0], &blocks, &Native);
    let c = run(&base, &inputs[0], &blocks, &Native);
    // Paper Fig. 11: 8 instructions per conv layer (7 PUSH + CONV) vs. hundreds with the base set.
    assert_eq!(cnn.instruction_count(), 55);
    assert!(base.instruction_count() > 10 * cnn.instruction_count());
    assert!(c.instructions > 1000 * a.instructions);
    // The Buffer peaks at pool1's input + output (6x28x28 + 6x14x14 bytes); Memory keeps every
    // feature map (9034 bytes from the input to the logits) plus the loop variables.
    assert_eq!(a.peak_buffer_bytes, 4704 + 1176);
    // Never freeing would keep every frame: input, conv1, pool1, conv2, pool2, conv3, fc1, fc2.
    assert_eq!(
        a.buffer_bytes_pushed,
        1024 + 4704 + 1176 + 1600 + 400 + 120 + 84 + 10
    );
    // One gas entry per CNN-set instruction, and the layers cost more than the data moves.
    let ops: Vec<String> = a.cnn_gas.iter().map(|(op, _)| format!("{op:?}")).collect();
    assert_eq!(
        ops,
        [
            "MTOB",
            "BUF_SHAPE",
            "CONV_MUL",
            "POOL_MAX",
            "CONV_MUL",
            "POOL_MAX",
            "CONV_MUL",
            "FULL_CON",
            "FULL_CON",
            "BTOS1"
        ]
    );
    // Under the benchmarked schedule a 240k-MAC convolution costs tens of times a 1 KiB copy
    // (whose price is mostly the fixed cost of a call).
    let conv2 = a.cnn_gas[4].1;
    assert!(
        conv2 > 20 * a.cnn_gas[0].1,
        "conv2 {conv2} vs MTOB {}",
        a.cnn_gas[0].1
    );
    assert!(c.peak_memory_bytes >= 9034);
    assert!(c.gas_used > 20 * a.gas_used);
}

/// The same blocks from one contiguous pack (layers read in place) and through the read-ahead
/// thread give the same outcome, gas and fetch counts included, as the plain block list.
#[test]
fn weight_pack_and_read_ahead_change_nothing_but_speed() {
    use smartvm_vm::{with_read_ahead, WeightPack};
    let (blocks, inputs, _) = fixtures();
    let exe = load("lenet5.sasm", &blocks);
    let pack = WeightPack::new(&blocks);
    let config = Config::default();
    for input in &inputs {
        let plain = run(&exe, input, &blocks, &Native);
        let packed = execute(&exe, input, &pack, &Native, &config, u64::MAX).expect("runs");
        let ahead = with_read_ahead(&BlockList(&blocks), blocks.len() as u32, |source| {
            execute(&exe, input, source, &Native, &config, u64::MAX).expect("runs")
        });
        assert_eq!(packed, plain);
        assert_eq!(ahead, plain);
    }
}

/// Runs that share a `PackedLayers` hand each other the Buffer's kept frames, so a later run's
/// layers write into storage holding an earlier run's feature maps: every input still gives
/// numpy's logits, in any order (debug builds mark that storage first, too).
#[test]
fn runs_sharing_kept_frames_give_the_numpy_logits() {
    use smartvm_vm::{execute_slice_packed, PackedLayers, Progress, Start};
    let (blocks, inputs, expected) = fixtures();
    let cnn = load("lenet5.sasm", &blocks);
    let mut packed = PackedLayers::default();
    for i in [0, 1, 2, 3, 2, 0, 3, 1] {
        let done = execute_slice_packed(
            &cnn,
            Start::Input(&inputs[i]),
            &BlockList(&blocks),
            &Native,
            &Config::default(),
            u64::MAX,
            u64::MAX,
            &mut packed,
        )
        .expect("runs");
        let Progress::Done(out) = done else {
            panic!("an unsliced run finishes")
        };
        assert_eq!(out.output, expected[i], "input {i}");
    }
}
