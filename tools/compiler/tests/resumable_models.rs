//! Compiled models paused at random budgets of gas and of weight bytes (a chain job's slices),
//! their snapshots through SCALE between slices, end exactly as the uninterrupted run: output,
//! gas, instruction count and every counter. The models are the fixture cache's: a residual net,
//! the unrolled LSTM, the PyTorch export with a depthwise convolution, and the operator mix
//! (grouped convolution, ConvTranspose, pooling, Softmax); the VM's own tests cover LeNet-5 and
//! every kernel class.

use std::sync::LazyLock;

use codec::{Decode, Encode};
use proptest::prelude::*;
use smartvm_compiler::{compile, read_npy};
use smartvm_kernels::Reference;
use smartvm_vm::{
    execute, execute_slice, BlockList, ByteBudget, Config, Executable, Outcome, Progress, Snapshot,
    Start,
};

mod support;

struct Model {
    name: &'static str,
    exe: Executable,
    blocks: Vec<Vec<u8>>,
    input: Vec<i8>,
    whole: Outcome,
}

static MODELS: LazyLock<Vec<Model>> = LazyLock::new(|| {
    let dir = support::fixtures("residual.onnx");
    [
        ("residual", &[1, 3, 16, 16][..]),
        ("lstm", &[1, 784][..]),
        ("pytorch_patterns_opset13", &[1, 3, 32, 32][..]),
        ("operators", &[1, 3, 12, 12][..]),
    ]
    .into_iter()
    .map(|(name, shape)| {
        let (_, values) = read_npy(&dir.join(format!("{name}_inputs.npy"))).unwrap();
        let inputs: Vec<Vec<f32>> = values
            .chunks(shape.iter().product())
            .map(<[f32]>::to_vec)
            .collect();
        let compiled = compile(&dir.join(format!("{name}.onnx")), shape, &inputs[..8]).unwrap();
        let input = compiled.quantize_input(&inputs[8]);
        let exe = Executable::new(compiled.program.clone()).unwrap();
        let whole = execute(
            &exe,
            &input,
            &BlockList(&compiled.blocks),
            &Reference,
            &Config::default(),
            u64::MAX / 4,
        )
        .unwrap();
        Model {
            name,
            exe,
            blocks: compiled.blocks,
            input,
            whole,
        }
    })
    .collect()
});

/// Runs `m` in slices of `gas` and `bytes` (cycled), through SCALE; a slice that moves nothing
/// doubles the next ones, as the pallet gives a job a whole block's share in turn. Returns the
/// outcome and the pauses.
fn sliced(m: &Model, config: &Config, gas: &[u64], bytes: &[u64]) -> (Outcome, usize) {
    let source = BlockList(&m.blocks);
    let budget = ByteBudget::new(&source, 0, 0);
    let mut start = Start::Input(&m.input);
    let (mut pauses, mut boost) = (0usize, 1u64);
    let mut last: Option<Snapshot> = None;
    loop {
        assert!(pauses < 100_000, "{}: the run does not end", m.name);
        budget.refill(bytes[pauses % bytes.len()].saturating_mul(boost));
        let slice = gas[pauses % gas.len()].saturating_mul(boost);
        match execute_slice(
            &m.exe,
            start,
            &budget,
            &Reference,
            config,
            u64::MAX / 4,
            slice,
        ) {
            Ok(Progress::Done(outcome)) => return (outcome, pauses),
            Ok(Progress::Paused(snapshot)) => {
                let decoded = Snapshot::decode(&mut &snapshot.encode()[..]).unwrap();
                assert_eq!(decoded, snapshot);
                boost = if last.as_ref() == Some(&decoded) {
                    boost * 2
                } else {
                    1
                };
                last = Some(decoded.clone());
                pauses += 1;
                start = Start::Resume(Box::new(decoded));
            }
            Err(e) => panic!("{}: {e:?}", m.name),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]

    #[test]
    fn compiled_models_cut_anywhere_end_as_the_uninterrupted_run(
        which in any::<prop::sample::Index>(),
        gas in prop::collection::vec(1u64..200, 1..4),
        bytes in prop::collection::vec(256u64..20_000, 1..4),
        band in 64u32..8192,
    ) {
        let m = &MODELS[which.index(MODELS.len())];
        let gas: Vec<u64> = gas.iter().map(|g| m.whole.gas_used * g / 1000 + 1).collect();
        let config = Config { fc_band: band, ..Config::default() };
        let (outcome, pauses) = sliced(m, &config, &gas, &bytes);
        prop_assert_eq!(&outcome, &m.whole, "{}", m.name);
        // Each gas slice is under a fifth of the run: it pauses at least four times.
        prop_assert!(pauses >= 4, "{}: {} pauses", m.name, pauses);
    }
}
