//! A fully-connected layer larger than `Config::weight_chunk`, read from a source that cannot
//! lend it in place (chain storage), runs in bands of output rows. Whatever the band and block
//! sizes, it must produce the output, gas and counters of the whole-layer path, and report the
//! same faults.

use std::cell::Cell;

mod common;

use proptest::prelude::*;
use smartvm_kernels::{
    ChannelQuant, ConvParams, ConvTransposeParams, KernelError, Kernels, OutputRange, PairQuant,
    PoolParams, Reference,
};
use smartvm_vm::{
    execute, BlockList, Config, ErrorKind, Executable, Outcome, VmError, WeightPack, WeightSource,
};

fn run<W: WeightSource>(
    exe: &Executable,
    input: &[i8],
    source: &W,
    weight_chunk: u32,
) -> Result<Outcome, VmError> {
    let config = Config {
        weight_chunk,
        ..Config::default()
    };
    execute(exe, input, source, &Reference, &config, u64::MAX / 4)
}

/// The qblock followed by the weights cut into blocks of the given sizes, in turn.
fn blocks(q: &ChannelQuant, weights: &[i8], sizes: &[usize]) -> Vec<Vec<u8>> {
    let mut out = vec![q.encode()];
    let mut rest = weights;
    for size in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (head, tail) = rest.split_at((*size).min(rest.len()));
        out.push(head.iter().map(|w| *w as u8).collect());
        rest = tail;
    }
    out
}

fn layer_case() -> impl Strategy<Value = (usize, usize, Vec<i8>, Vec<i8>, ChannelQuant, Vec<usize>)>
{
    (1usize..48, 1usize..40).prop_flat_map(|(in_n, out_n)| {
        let quant = (
            -128i32..128,
            -128i32..128,
            prop::collection::vec(-5000i32..5000, out_n),
            prop::collection::vec(1i32 << 28..i32::MAX, out_n),
            prop::collection::vec(-4i32..12, out_n),
        )
            .prop_map(|(input_zero, zero, bias, mult, shift)| ChannelQuant {
                input_zero,
                output: OutputRange {
                    zero,
                    lo: -128,
                    hi: 127,
                },
                bias,
                mult,
                shift,
            });
        (
            Just(in_n),
            Just(out_n),
            prop::collection::vec(any::<i8>(), in_n),
            prop::collection::vec(any::<i8>(), in_n * out_n),
            quant,
            prop::collection::vec(1usize..200, 1..6),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn bands_match_the_whole_layer(
        (in_n, out_n, input, weights, q, sizes) in layer_case(),
        chunk_fraction in 0.0f64..1.2,
    ) {
        let exe = common::fc_program(in_n, out_n);
        let blocks = blocks(&q, &weights, &sizes);
        let chunk = ((weights.len() as f64 * chunk_fraction) as u32).max(1);
        // The whole layer at once: gathered block by block, and lent in place by a pack.
        let whole = run(&exe, &input, &BlockList(&blocks), u32::MAX).expect("whole layer runs");
        let lent = run(&exe, &input, &WeightPack::new(&blocks), chunk).expect("pack runs");
        let banded = run(&exe, &input, &BlockList(&blocks), chunk).expect("bands run");
        prop_assert_eq!(&lent, &whole);
        prop_assert_eq!(&banded, &whole);
        prop_assert_eq!(banded.weight_blocks_read as usize, blocks.len());
        prop_assert_eq!(banded.weight_bytes_read as usize, blocks.iter().map(Vec::len).sum::<usize>());
    }

    #[test]
    fn bands_report_the_faults_of_the_whole_layer(
        (in_n, out_n, input, weights, q, sizes) in layer_case(),
        chunk_fraction in 0.0f64..1.0,
        victim in any::<prop::sample::Index>(),
        fault in 0usize..3,
    ) {
        let exe = common::fc_program(in_n, out_n);
        let mut blocks = blocks(&q, &weights, &sizes);
        let chunk = ((weights.len() as f64 * chunk_fraction) as u32).max(1);
        let at = 1 + victim.index(blocks.len() - 1);
        let expected = match fault {
            0 => {
                // A missing block: every later block is missing too, as in storage.
                blocks.truncate(at);
                ErrorKind::MissingWeightBlock { index: at as u32 }
            }
            1 => {
                // A byte too many in the last block: the layer would end inside it.
                let last = blocks.len() - 1;
                blocks[last].push(0);
                ErrorKind::WeightSizeMismatch { first_block: 1 }
            }
            _ => {
                // The layer's last block one byte short: the read runs past it.
                let last = blocks.len() - 1;
                blocks[last].pop();
                ErrorKind::MissingWeightBlock { index: blocks.len() as u32 }
            }
        };
        let whole = run(&exe, &input, &BlockList(&blocks), u32::MAX);
        let banded = run(&exe, &input, &BlockList(&blocks), chunk);
        prop_assert_eq!(whole.map_err(|e| e.kind), Err(expected));
        prop_assert_eq!(banded.map_err(|e| e.kind), Err(expected));
    }
}

/// Counts the fully-connected kernel calls, running the reference.
#[derive(Default)]
struct CountingKernels(Cell<usize>);

impl Kernels for CountingKernels {
    fn conv(
        &self,
        p: &ConvParams,
        input: &[i8],
        weights: &[i8],
        q: &ChannelQuant,
        out: &mut [i8],
    ) -> Result<(), KernelError> {
        Reference.conv(p, input, weights, q, out)
    }

    fn conv_transpose(
        &self,
        p: &ConvTransposeParams,
        input: &[i8],
        weights: &[i8],
        q: &ChannelQuant,
        out: &mut [i8],
    ) -> Result<(), KernelError> {
        Reference.conv_transpose(p, input, weights, q, out)
    }

    fn pool(&self, p: &PoolParams, input: &[i8], out: &mut [i8]) -> Result<(), KernelError> {
        Reference.pool(p, input, out)
    }

    fn fully_connected(
        &self,
        input: &[i8],
        weights: &[i8],
        q: &ChannelQuant,
        out: &mut [i8],
    ) -> Result<(), KernelError> {
        self.0.set(self.0.get() + 1);
        Reference.fully_connected(input, weights, q, out)
    }

    fn matmul(
        &self,
        dims: [u32; 3],
        a: &[i8],
        b: &[i8],
        q: &PairQuant,
        out: &mut [i8],
    ) -> Result<(), KernelError> {
        Reference.matmul(dims, a, b, q, out)
    }
}

/// Bands are sized by the chunk: a 300 x 50 layer read from storage with a 1 KiB chunk runs as
/// 17 bands of 3 rows (the last of 2), with the output and gas of the whole layer; a pack that
/// lends the layer in place runs it whole whatever the chunk.
#[test]
fn a_large_layer_from_storage_is_computed_in_bands() {
    let (in_n, out_n) = (300usize, 50usize);
    let weights: Vec<i8> = (0..in_n * out_n).map(|i| (i * 7 % 251) as i8).collect();
    let input: Vec<i8> = (0..in_n).map(|i| (i * 13 % 199) as i8).collect();
    let q = common::fc_quant(out_n);
    let blocks = blocks(&q, &weights, &[4096]);
    let exe = common::fc_program(in_n, out_n);
    let calls = |source: &dyn Fn(&CountingKernels) -> Outcome| {
        let kernels = CountingKernels::default();
        let outcome = source(&kernels);
        (outcome, kernels.0.get())
    };
    let config = |weight_chunk| Config {
        weight_chunk,
        ..Config::default()
    };
    let gas = u64::MAX / 4;
    let (whole, whole_calls) =
        calls(&|k| execute(&exe, &input, &BlockList(&blocks), k, &config(u32::MAX), gas).unwrap());
    let (banded, band_calls) =
        calls(&|k| execute(&exe, &input, &BlockList(&blocks), k, &config(1024), gas).unwrap());
    let pack = WeightPack::new(&blocks);
    let (lent, lent_calls) =
        calls(&|k| execute(&exe, &input, &pack, k, &config(1024), gas).unwrap());
    assert_eq!((whole_calls, band_calls, lent_calls), (1, 17, 1));
    assert_eq!(banded, whole);
    assert_eq!(lent, whole);
    // The output is not trivially constant, so the comparison says something.
    assert!(whole.output.iter().any(|v| *v != whole.output[0]));
}
