//! Randomised agreement between the reference, native and wasm-tuned scalar backends over
//! shapes, strides, padding, dilation, groups and extreme values (-128 inputs against 127
//! weights, long sums).

mod support;

use proptest::prelude::*;
use smartvm_kernels::packed_fc::RUNS_FROM_BYTES;
use smartvm_kernels::tile::Tile;
use smartvm_kernels::{
    ChannelQuant, ConvParams, Kernels, Native, OutputRange, PackedFc, PoolKind, PoolParams,
    Reference, Scalar, Shape, MAX_WINDOW,
};
use support::{on_every_tile, Rng};

/// What the reference's and the other backends' output buffers hold before a kernel runs: two
/// different values, so an output byte some backend leaves unwritten shows as a mismatch (the
/// VM hands kernels unzeroed storage).
const REFERENCE_MARK: i8 = 0x5b;
const BACKEND_MARK: i8 = -0x5c;

/// The reference and native pooling of a random extreme input agree.
fn pool_agrees(p: &PoolParams, seed: u64) -> Result<(), TestCaseError> {
    let mut rng = Rng(seed);
    let x: Vec<i8> = (0..p.input.elements().unwrap())
        .map(|_| rng.i8(true))
        .collect();
    let mut a = vec![REFERENCE_MARK; p.output.elements().unwrap() as usize];
    Reference.pool(p, &x, &mut a).unwrap();
    for (tile, b) in on_every_tile(|| guarded_pool(p, &x, a.len())) {
        prop_assert_eq!(&a, &b, "{:?}", tile);
    }
    Ok(())
}

/// Bytes past a pool's output that a backend must leave alone: the vector kernels store whole
/// vectors past a row's end only where more of the output follows.
const GUARD: usize = 64;

/// The native pooling of `x` into the first `len` bytes of a longer buffer, asserting that the
/// bytes after them are untouched.
fn guarded_pool(p: &PoolParams, x: &[i8], len: usize) -> Vec<i8> {
    let mut b = vec![BACKEND_MARK; len + GUARD];
    Native.pool(p, x, &mut b[..len]).unwrap();
    assert!(
        b[len..].iter().all(|v| *v == BACKEND_MARK),
        "a write past the output"
    );
    b.truncate(len);
    b
}

/// The reference and native backends give the same bytes for layer `p` on random data
/// (`extreme`: the corners, -128 and 127).
fn conv_agrees(p: &ConvParams, extreme: bool, seed: u64) -> Result<(), TestCaseError> {
    let mut rng = Rng(seed);
    let x: Vec<i8> = (0..p.input.elements().unwrap())
        .map(|_| rng.i8(extreme))
        .collect();
    let wts: Vec<i8> = (0..p.weight_len()).map(|_| rng.i8(extreme)).collect();
    let q = rng.quant(p.output.c as usize, extreme);
    let mut a = vec![REFERENCE_MARK; p.output.elements().unwrap() as usize];
    let mut c = a.clone();
    Reference.conv(p, &x, &wts, &q, &mut a).unwrap();
    for (tile, b) in on_every_tile(|| {
        let mut b = vec![BACKEND_MARK; a.len()];
        Native.conv(p, &x, &wts, &q, &mut b).unwrap();
        b
    }) {
        prop_assert_eq!(&a, &b, "{:?}", tile);
    }
    Scalar.conv(p, &x, &wts, &q, &mut c).unwrap();
    prop_assert_eq!(a, c, "scalar");
    prop_assert_eq!(p.work_inside(), work_by_counting(p), "the work gas charges");
    Ok(())
}

/// Multiply-accumulates and inner loops of a convolution that skips its padding, counted tap by
/// tap and position by position (what `ConvParams::work_inside` works out per axis).
fn work_by_counting(p: &ConvParams) -> (u64, u64) {
    let dims = |s: Shape| [s.d, s.h, s.w];
    let (i, o) = (dims(p.input), dims(p.output));
    let count = |a: usize| -> u64 {
        let mut n = 0;
        for t in 0..p.kernel[a] as i64 {
            for x in 0..o[a] as i64 {
                let at = x * p.stride[a] as i64 + t * p.dilation[a] as i64 - p.pad[a] as i64;
                n += u64::from((0..i[a] as i64).contains(&at));
            }
        }
        n
    };
    let per_channel = u64::from(p.output.c) * u64::from(p.group_in());
    let macs = per_channel * count(0) * count(1) * count(2);
    let rows = per_channel * count(0) * count(1) * u64::from(p.kernel[2]);
    (macs, rows)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, max_global_rejects: 1 << 20, .. ProptestConfig::default() })]

    #[test]
    fn conv_backends_agree(
        groups in 1u32..4, in_per_group in 1u32..5, out_per_group in 1u32..5,
        h in 1u32..15, w in 1u32..15, k in 1u32..6, stride in 1u32..4, pad in 0u32..3, dilation in 1u32..3,
        extreme in any::<bool>(), seed in any::<u64>(),
    ) {
        let input = Shape::new(groups * in_per_group, 1, h, w);
        let p = ConvParams::conv2d(input, groups * out_per_group, k, stride, pad, dilation, groups);
        prop_assume!(p.is_ok());
        let p = p.unwrap();
        conv_agrees(&p, extreme, seed)?;
    }

    /// Depthwise layers with each axis's kernel, stride, padding and dilation drawn apart: the
    /// native path splits the padded plane by stride phase per axis.
    #[test]
    fn depthwise_backends_agree_per_axis(
        c in 1u32..6, h in 1u32..20, w in 1u32..20, kernel in [1u32..6, 1u32..6],
        stride in [1u32..5, 1u32..5], pad in [0u32..4, 0u32..4], dilation in [1u32..3, 1u32..3],
        extreme in any::<bool>(), seed in any::<u64>(),
    ) {
        let input = Shape::new(c, 1, h, w);
        let axes = |v: [u32; 2], d: u32| [d, v[0], v[1]];
        let p = ConvParams::new(input, c, axes(kernel, 1), axes(stride, 1), axes(pad, 0), axes(dilation, 1), c);
        prop_assume!(p.is_ok());
        let p = p.unwrap();
        conv_agrees(&p, extreme, seed)?;
    }

    /// Column strides 1, 2 and 4, whose grids (u8 for the GEMM, int16 for depthwise layers)
    /// AVX-512 fills 64 columns a step and LLVM's vector loops 16 or 32: widths past one and
    /// two steps of each, every padding phase, any row stride.
    #[test]
    fn strided_grids_agree(
        c in 1u32..4, out_c in 1u32..5, h in 1u32..8, w in 1u32..150, k in 1u32..6,
        column_stride in prop::sample::select(vec![1u32, 2, 4]), depthwise in any::<bool>(),
        row_stride in 1u32..5, pad in [0u32..4, 0u32..4], extreme in any::<bool>(), seed in any::<u64>(),
    ) {
        let input = Shape::new(c, 1, h, w);
        let (out_c, groups) = if depthwise { (c, c) } else { (out_c, 1) };
        let stride = [1, row_stride, column_stride];
        let p = ConvParams::new(input, out_c, [1, k, k], stride, [0, pad[0], pad[1]], [1, 1, 1], groups);
        prop_assume!(p.is_ok());
        conv_agrees(&p.unwrap(), extreme, seed)?;
    }

    /// 3-D convolutions, each axis's kernel, stride, padding and dilation drawn apart, padding
    /// up to and past the kernel (depth 1 with padding makes an output deeper than its input).
    #[test]
    fn conv3d_backends_agree_per_axis(
        groups in 1u32..3, in_per_group in 1u32..3, out_per_group in 1u32..3,
        d in 1u32..4, h in 1u32..8, w in 1u32..8, kernel in [1u32..4, 1u32..4, 1u32..4],
        stride in [1u32..3, 1u32..3, 1u32..3], pad in [0u32..4, 0u32..4, 0u32..4],
        dilation in [1u32..3, 1u32..3, 1u32..3], extreme in any::<bool>(), seed in any::<u64>(),
    ) {
        let input = Shape::new(groups * in_per_group, d, h, w);
        let p = ConvParams::new(input, groups * out_per_group, kernel, stride, pad, dilation, groups);
        prop_assume!(p.is_ok());
        let p = p.unwrap();
        conv_agrees(&p, extreme, seed)?;
    }

    /// Every window parameter over the whole range the validator admits (kernel, stride,
    /// padding and dilation up to `MAX_WINDOW` on each axis, drawn per axis), on inputs sized to
    /// the window so that each case stays small.
    #[test]
    fn conv_backends_agree_over_the_admitted_window_range(
        groups in 1u32..3, in_per_group in 1u32..3, out_per_group in 1u32..3,
        kernel in [1u32..=MAX_WINDOW, 1u32..=MAX_WINDOW], stride in [1u32..=MAX_WINDOW, 1u32..=MAX_WINDOW],
        pad in [0u32..=MAX_WINDOW, 0u32..=MAX_WINDOW], dilation in [1u32..=MAX_WINDOW, 1u32..=MAX_WINDOW],
        extra in [0u32..24, 0u32..24], extreme in any::<bool>(), seed in any::<u64>(),
    ) {
        let extent = |a: usize| {
            let span = dilation[a] * (kernel[a] - 1) + 1;
            (span + extra[a]).saturating_sub(2 * pad[a]).max(1)
        };
        let input = Shape::new(groups * in_per_group, 1, extent(0), extent(1));
        prop_assume!(input.elements().unwrap() <= 1 << 16);
        let p = ConvParams::new(
            input,
            groups * out_per_group,
            [1, kernel[0], kernel[1]],
            [1, stride[0], stride[1]],
            [0, pad[0], pad[1]],
            [1, dilation[0], dilation[1]],
            groups,
        );
        prop_assume!(p.as_ref().is_ok_and(|p| p.macs() <= 1 << 21));
        conv_agrees(&p.unwrap(), extreme, seed)?;
    }

    /// Pooling over the whole admitted range: windows and strides up to `MAX_WINDOW`, padding
    /// up to the window.
    #[test]
    fn pool_backends_agree_over_the_admitted_window_range(
        c in 1u32..3, k in 1u32..=MAX_WINDOW, stride in 1u32..=MAX_WINDOW, pad_share in 0u32..64,
        extra in [0u32..8, 0u32..8], kind in 0u8..3, seed in any::<u64>(),
    ) {
        let pad = pad_share % k;
        let kind = [PoolKind::Max, PoolKind::MaxCeil, PoolKind::Average][kind as usize];
        let extent = |e: u32| (k + e).saturating_sub(2 * pad).max(1);
        let p = PoolParams::new(Shape::new(c, 1, extent(extra[0]), extent(extra[1])), k, stride, pad, kind);
        prop_assume!(p.is_ok());
        pool_agrees(&p.unwrap(), seed)?;
    }

    #[test]
    fn fully_connected_backends_agree(n in 1usize..2000, outs in 1usize..40, extreme in any::<bool>(), zero in 0u8..3, seed in any::<u64>()) {
        let mut rng = Rng(seed);
        let x: Vec<i8> = (0..n).map(|_| rng.i8(extreme)).collect();
        let wts: Vec<i8> = (0..n * outs).map(|_| rng.i8(extreme)).collect();
        let mut q = rng.quant(outs, extreme);
        // The VNNI forms: -128 (no correction) and any other; 0 as ONNX's symmetric activations.
        q.input_zero = [-128, 0, q.input_zero][zero as usize];
        let mut a = vec![REFERENCE_MARK; outs];
        let mut c = a.clone();
        Reference.fully_connected(&x, &wts, &q, &mut a).unwrap();
        for (tile, b) in on_every_tile(|| {
            let mut b = vec![BACKEND_MARK; outs];
            Native.fully_connected(&x, &wts, &q, &mut b).unwrap();
            b
        }) {
            prop_assert_eq!(&a, &b, "{:?}", tile);
        }
        // Both packed forms on every tile (pairs in plain Rust under the portable tile).
        for packed in [PackedFc::new(&wts, n).unwrap(), PackedFc::pairs(&wts, n).unwrap()] {
            for (tile, b) in on_every_tile(|| {
                let mut b = vec![BACKEND_MARK; outs];
                Native.fully_connected_packed(&x, &wts, &packed, &q, &mut b).unwrap();
                b
            }) {
                prop_assert_eq!(&a, &b, "{:?}, packed as {:?}", tile, packed.form());
            }
        }
        Scalar.fully_connected(&x, &wts, &q, &mut c).unwrap();
        prop_assert_eq!(a, c, "scalar");
    }

    #[test]
    fn pool_backends_agree(c in 1u32..4, h in 1u32..12, w in 1u32..12, k in 1u32..4, stride in 1u32..3, pad in 0u32..2, kind in 0u8..3, seed in any::<u64>()) {
        let kind = [PoolKind::Max, PoolKind::MaxCeil, PoolKind::Average][kind as usize];
        let p = PoolParams::new(Shape::new(c, 1, h, w), k, stride, pad, kind);
        prop_assume!(p.is_ok());
        pool_agrees(&p.unwrap(), seed)?;
    }
}

/// Short rows (at most 32 weights go two to a vector on AVX-512) and the lengths around them,
/// with part blocks of rows, at both VNNI forms of the zero point.
#[test]
fn short_fully_connected_rows_agree_with_the_reference() {
    let mut rng = Rng(11);
    for n in 1..=40 {
        for outs in [1, 2, 15, 16, 17, 33] {
            let x: Vec<i8> = (0..n).map(|_| rng.i8(false)).collect();
            let wts: Vec<i8> = (0..n * outs).map(|_| rng.i8(false)).collect();
            let mut q = rng.quant(outs, false);
            q.bias.fill(0);
            q.output.zero = 0;
            q.mult.fill(1 << 30);
            for zero in [-128, 0, 77] {
                q.input_zero = zero;
                // A scale (2^(-1 - shift)) that brings the largest sum to about 100, so
                // that a sum in the wrong row shows.
                let largest = wts
                    .chunks(n)
                    .map(|row| {
                        row.iter()
                            .zip(&x)
                            .map(|(w, v)| *w as i64 * (*v as i64 - zero as i64))
                            .sum::<i64>()
                            .abs()
                    })
                    .max()
                    .unwrap_or(1);
                q.shift.fill((largest.max(200) / 100).ilog2() as i32 - 1);
                let mut a = vec![REFERENCE_MARK; outs];
                Reference.fully_connected(&x, &wts, &q, &mut a).unwrap();
                let distinct = a.iter().collect::<std::collections::BTreeSet<_>>().len();
                assert!(
                    outs < 15 || n < 8 || distinct > outs / 3,
                    "{n} -> {outs}: spread"
                );
                for (tile, b) in on_every_tile(|| {
                    let mut b = vec![BACKEND_MARK; outs];
                    Native.fully_connected(&x, &wts, &q, &mut b).unwrap();
                    b
                }) {
                    assert_eq!(a, b, "{tile:?} {n} -> {outs}, zero {zero}");
                }
            }
        }
    }
}

/// The packed path of repeated layers (an LSTM's gates) against the reference, in every packed
/// form (quads for `vpdpbusd`, int16 pairs and int8 runs for AVX2) on every tile: row counts
/// around the 16-row and 8-row blocks and the 8-block passes, rows with and without a part
/// quad, pair or run, each VNNI zero-point form, and layers big enough to split across threads
/// and to be packed as runs. Outputs are spread so that a sum in the wrong lane or block shows.
/// Each tile's own packer makes the plain packer's form for the layer's size.
#[test]
fn packed_fully_connected_agrees_with_the_reference() {
    let mut rng = Rng(23);
    for (n, outs) in [
        (1, 1),
        (3, 17),
        (67, 20),
        (4, 16),
        (5, 130),
        (28, 416),
        (104, 416),
        (129, 33),
        (17, 72),
        (31, 20),
        (600, 4000),
        (1040, 1013),
    ] {
        let x: Vec<i8> = (0..n).map(|_| rng.i8(false)).collect();
        let wts: Vec<i8> = (0..n * outs).map(|_| rng.i8(false)).collect();
        let quads = PackedFc::new(&wts, n).unwrap();
        let pairs = PackedFc::pairs(&wts, n).unwrap();
        let runs = PackedFc::runs(&wts, n).unwrap();
        let large = wts.len() >= RUNS_FROM_BYTES;
        let mut q = rng.quant(outs, false);
        q.output.zero = 0;
        for zero in [-128, 0, 77] {
            q.input_zero = zero;
            let largest = wts
                .chunks(n)
                .map(|row| {
                    let dot = row.iter().zip(&x);
                    dot.map(|(w, v)| *w as i64 * (*v as i64 - zero as i64))
                        .sum::<i64>()
                        .abs()
                })
                .max()
                .unwrap_or(1);
            q.bias.fill(0);
            q.mult.fill(1 << 30);
            q.shift.fill((largest.max(200) / 100).ilog2() as i32 - 1);
            let mut a = vec![REFERENCE_MARK; outs];
            Reference.fully_connected(&x, &wts, &q, &mut a).unwrap();
            let distinct = a.iter().collect::<std::collections::BTreeSet<_>>().len();
            assert!(
                outs < 16 || n < 4 || distinct > outs.min(60) / 3,
                "{n} -> {outs}: spread"
            );
            for (tile, ([b, c, d], packs)) in on_every_tile(|| {
                let outputs = [&quads, &pairs, &runs].map(|packed| {
                    let mut b = vec![BACKEND_MARK; outs];
                    Native
                        .fully_connected_packed(&x, &wts, packed, &q, &mut b)
                        .unwrap();
                    b
                });
                (outputs, Native.pack_fully_connected(&wts, n))
            }) {
                assert_eq!(a, b, "{tile:?} {n} -> {outs}, zero {zero}, quads");
                assert_eq!(a, c, "{tile:?} {n} -> {outs}, zero {zero}, pairs");
                assert_eq!(a, d, "{tile:?} {n} -> {outs}, zero {zero}, runs");
                // Each tile's packer (AVX-512 and AVX2 transpose) makes the plain packer's words.
                let expected = match tile {
                    Tile::Portable => None,
                    Tile::Avx2 if large => Some(runs.clone()),
                    Tile::Avx2 => Some(pairs.clone()),
                    _ if large => None,
                    _ => Some(quads.clone()),
                };
                assert_eq!(
                    packs, expected,
                    "{tile:?}: its packed form, as the plain packer"
                );
            }
        }
    }
    // A packed form of another shape is refused, not used.
    let packed = PackedFc::new(&[1; 12], 4).unwrap();
    let q = rng.quant(4, false);
    let (x, w, mut out) = ([1i8; 3], [1i8; 12], [0i8; 4]);
    assert_eq!(
        Native.fully_connected_packed(&x, &w, &packed, &q, &mut out),
        Err(smartvm_kernels::KernelError::ShapeMismatch)
    );
}

/// Layers big enough to take the native backend's threaded paths: row blocks of a wide layer
/// (with a partial last block and panel), whole groups side by side, depthwise and pointwise
/// layers, fully connected rows, and pooling split by planes. The proptest above covers the single-threaded paths.
#[test]
fn threaded_layers_agree_with_the_reference() {
    let mut rng = Rng(7);
    let convs = [
        (Shape::new(30, 1, 21, 21), 22, 3, 1, 1, 1),
        (Shape::new(32, 1, 28, 28), 48, 3, 1, 1, 4),
        (Shape::new(96, 1, 56, 56), 96, 3, 1, 1, 96),
        (Shape::new(256, 1, 64, 64), 256, 3, 2, 1, 256),
        (Shape::new(37, 1, 31, 31), 64, 1, 1, 0, 1),
        (Shape::new(128, 1, 61, 61), 128, 5, 2, 2, 128),
        // A strided stem of 48 rows over 2,500 positions: split by positions.
        (Shape::new(3, 1, 99, 99), 48, 7, 2, 3, 1),
        (Shape::new(3, 1, 67, 67), 64, 11, 4, 2, 1),
        // AMX tiles: weights read in place (576 taps, 96 rows), and padded (100 taps, 70 rows).
        (Shape::new(64, 1, 20, 20), 96, 3, 1, 1, 1),
        (Shape::new(25, 1, 33, 33), 70, 2, 1, 0, 1),
        // Few output rows: tasks split the positions (pointwise, strided and padded).
        (Shape::new(96, 1, 56, 56), 24, 1, 1, 0, 1),
        (Shape::new(16, 1, 64, 64), 32, 3, 2, 1, 1),
        (Shape::new(40, 1, 45, 45), 9, 3, 1, 1, 1),
    ];
    for (input, out_c, k, stride, pad, groups) in convs {
        let p = ConvParams::conv2d(input, out_c, k, stride, pad, 1, groups).unwrap();
        assert!(p.macs() >= 1 << 21, "{p:?} is big enough to run threaded");
        let x: Vec<i8> = (0..input.elements().unwrap())
            .map(|_| rng.i8(true))
            .collect();
        let wts: Vec<i8> = (0..p.weight_len()).map(|_| rng.i8(true)).collect();
        let mut q = rng.quant(out_c as usize, true);
        // The zero point after a ReLU (-128: no correction, no weight sums) and another one.
        for zero in [-128, rng.i8(false) as i32] {
            q.input_zero = zero;
            let mut a = vec![REFERENCE_MARK; p.output.elements().unwrap() as usize];
            let mut c = a.clone();
            Reference.conv(&p, &x, &wts, &q, &mut a).unwrap();
            for (tile, b) in on_every_tile(|| {
                let mut b = vec![BACKEND_MARK; a.len()];
                Native.conv(&p, &x, &wts, &q, &mut b).unwrap();
                b
            }) {
                assert_eq!(a, b, "{tile:?} {p:?} zero {zero}");
            }
            Scalar.conv(&p, &x, &wts, &q, &mut c).unwrap();
            assert_eq!(a, c, "scalar {p:?} zero {zero}");
        }
    }
    // A fully connected layer split into row tasks, with a partial last task and row quad.
    let (n, outs) = (4099, 603);
    let x: Vec<i8> = (0..n).map(|_| rng.i8(true)).collect();
    let wts: Vec<i8> = (0..n * outs).map(|_| rng.i8(true)).collect();
    let mut q = rng.quant(outs, true);
    for zero in [-128, 0, 37] {
        q.input_zero = zero;
        let mut a = vec![REFERENCE_MARK; outs];
        Reference.fully_connected(&x, &wts, &q, &mut a).unwrap();
        for (tile, b) in on_every_tile(|| {
            let mut b = vec![BACKEND_MARK; outs];
            Native.fully_connected(&x, &wts, &q, &mut b).unwrap();
            b
        }) {
            assert_eq!(a, b, "{tile:?} fully connected {n} -> {outs}, zero {zero}");
        }
    }
    // Wide rows (the vector de-interleave of stride 2) with odd and even padding, and a
    // stride-3 window.
    let pools = [
        (64, 112, 3, 2, 1),
        (3, 70, 2, 2, 0),
        (5, 67, 3, 2, 2),
        (4, 50, 3, 3, 1),
        // Rows too wide for the AVX-512 pool's stack buffer of column maxima.
        (2, 420, 3, 2, 1),
    ];
    for ((c, h, k, stride, pad), kind) in pools
        .into_iter()
        .flat_map(|g| [PoolKind::Max, PoolKind::MaxCeil, PoolKind::Average].map(|kind| (g, kind)))
    {
        let p = PoolParams::new(Shape::new(c, 1, h, h), k, stride, pad, kind).unwrap();
        let x: Vec<i8> = (0..p.input.elements().unwrap())
            .map(|_| rng.i8(true))
            .collect();
        let mut a = vec![REFERENCE_MARK; p.output.elements().unwrap() as usize];
        Reference.pool(&p, &x, &mut a).unwrap();
        for (tile, b) in on_every_tile(|| guarded_pool(&p, &x, a.len())) {
            assert_eq!(a, b, "{tile:?} {kind:?}");
        }
    }
}

/// Convolutions give the reference's bytes on every tile, laid out at each call (`conv`) and
/// once (`prepare_conv`, then `conv_prepared`): prepared under each tile and run under it, and
/// prepared under the best tile and run under every other one (which must not use a layout
/// made for another kernel or zero point). The layers: long rows of weights like a trained
/// layer's (small, with a rare ±127 or -128), which take the AVX2 byte loop with fixes for the
/// pairs `vpmaddubsw` would saturate on (whole quads, and 531 taps: VNNI quads packed);
/// uniform weights (the split pairs) with few rows split by positions; one thread.
#[test]
fn prepared_and_plain_convolutions_agree_with_the_reference() {
    use smartvm_kernels::quads::{QuadKernel, QuadWeights, MIN_BYTE_TAPS};
    let mut rng = Rng(23);
    let layers = [
        (Shape::new(64, 1, 20, 20), 96, true),
        (Shape::new(59, 1, 20, 20), 40, true),
        (Shape::new(30, 1, 21, 21), 22, false),
        (Shape::new(5, 1, 9, 9), 7, false),
    ];
    for (input, out_c, trained) in layers {
        let p = ConvParams::conv2d(input, out_c, 3, 1, 1, 1, 1).unwrap();
        let wts: Vec<i8> = (0..p.weight_len())
            .map(|_| match (trained, rng.next() % 150) {
                (true, 0) => 127,
                (true, 1) => -128,
                (true, r) => (r % 41) as i8 - 20,
                (false, _) => rng.i8(true),
            })
            .collect();
        let taps = p.weights_per_output() as usize;
        if trained && taps >= MIN_BYTE_TAPS {
            let avx2 = QuadWeights::new(QuadKernel::Avx2, &wts, out_c as usize, taps, 0);
            assert!(
                avx2.avx2_bytes(),
                "{taps} taps of trained-like weights take bytes"
            );
        }
        let x: Vec<i8> = (0..input.elements().unwrap())
            .map(|_| rng.i8(true))
            .collect();
        let mut q = rng.quant(out_c as usize, false);
        for zero in [-128, 17] {
            q.input_zero = zero;
            let mut a = vec![REFERENCE_MARK; p.output.elements().unwrap() as usize];
            Reference.conv(&p, &x, &wts, &q, &mut a).unwrap();
            let run = |prepared: &Option<smartvm_kernels::PreparedConv>| {
                let mut b = vec![BACKEND_MARK; a.len()];
                match prepared {
                    Some(prepared) => Native.conv_prepared(&p, &x, &wts, prepared, &q, &mut b),
                    None => Native.conv(&p, &x, &wts, &q, &mut b),
                }
                .unwrap();
                b
            };
            for (tile, (plain, made, b)) in on_every_tile(|| {
                let prepared = Native.prepare_conv(&p, &wts, &q);
                (run(&None), prepared.is_some(), run(&prepared))
            }) {
                assert_eq!(a, plain, "{tile:?} {p:?} zero {zero}");
                assert_eq!(a, b, "{tile:?} {p:?} zero {zero} prepared {made}");
                // The AVX2 tile's layouts are its own copies: always kept.
                assert!(
                    made || tile != Tile::Avx2,
                    "{p:?} prepared under the AVX2 tile"
                );
            }
            let best = Native.prepare_conv(&p, &wts, &q);
            for (tile, b) in on_every_tile(|| run(&best)) {
                assert_eq!(
                    a, b,
                    "{tile:?} {p:?} zero {zero}: a layout made for the best tile"
                );
            }
            // A layout whose corrections are for another input zero point is not used.
            let other = ChannelQuant {
                input_zero: if zero == -128 { 17 } else { -128 },
                ..q.clone()
            };
            let elsewhere = Native.prepare_conv(&p, &wts, &other);
            assert_eq!(
                a,
                run(&elsewhere),
                "{p:?} zero {zero}: a layout for another zero"
            );
        }
    }
}

/// A long reduction at the extremes: 16384 products of (-128 - 127) · 127 overflow int32, so
/// the result is only right if every backend wraps exactly as the spec says.
#[test]
fn long_extreme_reduction_wraps_identically() {
    let n = 1 << 14;
    let x = vec![-128i8; n];
    let w = vec![127i8; n];
    let q = ChannelQuant {
        input_zero: 127,
        output: OutputRange {
            zero: 0,
            lo: -128,
            hi: 127,
        },
        bias: vec![i32::MAX],
        mult: vec![1 << 30],
        shift: vec![20],
    };
    let expected_acc = (i32::MAX as i64 + n as i64 * (-255 * 127)) as i32 as i64; // wrapped
    let expected = ((expected_acc * (1 << 30) + (1i64 << 50)) >> 51).clamp(-128, 127) as i8;
    let (mut a, mut c) = ([0i8], [0i8]);
    Reference.fully_connected(&x, &w, &q, &mut a).unwrap();
    for (tile, b) in on_every_tile(|| {
        let mut b = [0i8];
        Native.fully_connected(&x, &w, &q, &mut b).unwrap();
        b
    }) {
        assert_eq!(b[0], expected, "{tile:?}");
    }
    Scalar.fully_connected(&x, &w, &q, &mut c).unwrap();
    assert_eq!(a[0], expected);
    assert_eq!(c[0], expected);
}

#[test]
fn bad_arguments_are_errors_not_panics() {
    use smartvm_kernels::KernelError;
    let s = Shape::new(3, 1, 4, 4);
    assert_eq!(
        ConvParams::conv2d(s, 4, 5, 1, 0, 1, 1),
        Err(KernelError::ShapeMismatch)
    );
    assert_eq!(
        ConvParams::conv2d(s, 4, 3, 0, 0, 1, 1),
        Err(KernelError::BadOperand)
    );
    assert_eq!(
        ConvParams::conv2d(s, 4, 3, 1, 0, 1, 2),
        Err(KernelError::BadOperand)
    );
    let p = ConvParams::conv2d(s, 2, 3, 1, 0, 1, 1).unwrap();
    let q = ChannelQuant {
        input_zero: 0,
        output: OutputRange {
            zero: 0,
            lo: -128,
            hi: 127,
        },
        bias: vec![0; 2],
        mult: vec![1; 2],
        shift: vec![0; 2],
    };
    let mut out = vec![0i8; 8];
    for k in [&Reference as &dyn Kernels, &Native, &Scalar] {
        assert_eq!(
            k.conv(&p, &[0; 47], &[0; 54], &q, &mut out),
            Err(KernelError::ShapeMismatch)
        );
        assert_eq!(
            k.conv(&p, &[0; 48], &[0; 53], &q, &mut out),
            Err(KernelError::ShapeMismatch)
        );
        assert_eq!(
            k.fully_connected(&[0; 4], &[0; 7], &q, &mut [0; 2]),
            Err(KernelError::ShapeMismatch)
        );
    }
    assert_eq!(
        ChannelQuant::decode(&q.encode()[..20], 2),
        Err(KernelError::BadQuant)
    );
    let mut bad_shift = q.clone();
    bad_shift.shift[1] = 32;
    assert_eq!(
        ChannelQuant::decode(&bad_shift.encode(), 2),
        Err(KernelError::BadQuant)
    );
}

/// A 1x1x1 CONV_3D with padding 1 on a depth-1 input has a 3x3x3 output. The native backend
/// took it for a 2-D layer (kernel depth 1, input depth 1) and indexed past its rows: a panic
/// inside the node's host function, from a valid program.
#[test]
fn a_depth_one_input_with_depth_padding_is_computed_not_a_panic() {
    for c in [1, 2] {
        let input = Shape::new(c, 1, 1, 1);
        let p = ConvParams::conv3d(input, 1, 1, 1, 1, 1, 1).unwrap();
        assert_eq!((p.output.d, p.output.h, p.output.w), (3, 3, 3));
        let q = ChannelQuant {
            input_zero: 0,
            output: OutputRange {
                zero: 0,
                lo: -128,
                hi: 127,
            },
            bias: vec![5],
            mult: vec![1 << 30],
            shift: vec![-1],
        };
        let x = vec![7i8; c as usize];
        let w = vec![3i8; c as usize];
        let mut a = vec![REFERENCE_MARK; 27];
        let mut b = vec![BACKEND_MARK; 27];
        Reference.conv(&p, &x, &w, &q, &mut a).unwrap();
        Native.conv(&p, &x, &w, &q, &mut b).unwrap();
        let mut s: Vec<i8> = a.iter().map(|v| !v).collect();
        Scalar.conv(&p, &x, &w, &q, &mut s).unwrap();
        assert_eq!(a, s, "scalar");
        // Only the centre sees the input: 5 + 21·c; the padding gives the bias alone.
        let mut expected = vec![5i8; 27];
        expected[13] = 5 + 21 * c as i8;
        assert_eq!(a, expected);
        assert_eq!(b, expected);
    }
}

/// Found by the structured kernels fuzzer: a CONV_3D on a depth-1 input whose depth padding
/// is left out by a stride longer than the padded depth has a depth-1 output, but that output
/// plane reads the padding (depth −3), not the input. The native backend took the layer for a
/// 2-D one (kernel, input and output depth 1) and convolved the input plane.
#[test]
fn a_depth_one_output_that_reads_only_depth_padding_is_the_bias() {
    let input = Shape::new(1, 1, 50, 50);
    // Kernel 1, stride 44, padding 3: D = (1 + 6 − 1) / 44 + 1 = 1, H = W = (50 + 5) / 44 + 1
    // = 2. Output row 1 sits on input row 41 in H and W, but on depth −3.
    let p = ConvParams::conv3d(input, 2, 1, 44, 3, 1, 1).unwrap();
    assert_eq!(p.output, Shape::new(2, 1, 2, 2));
    let q = ChannelQuant {
        input_zero: -4,
        output: OutputRange {
            zero: 0,
            lo: -128,
            hi: 127,
        },
        bias: vec![5, -9],
        mult: vec![1 << 30, 1 << 30],
        shift: vec![-1, -1],
    };
    let x: Vec<i8> = (0..2500).map(|i| (i % 97) as i8 - 40).collect();
    let w = vec![3i8, -7];
    let mut a = vec![REFERENCE_MARK; 8];
    let mut b = vec![BACKEND_MARK; 8];
    Reference.conv(&p, &x, &w, &q, &mut a).unwrap();
    Native.conv(&p, &x, &w, &q, &mut b).unwrap();
    let mut c: Vec<i8> = a.iter().map(|v| !v).collect();
    Scalar.conv(&p, &x, &w, &q, &mut c).unwrap();
    assert_eq!(a, c, "scalar");
    // Every tap is padding (the input's zero point), so each channel is its bias alone.
    assert_eq!(a, vec![5, 5, 5, 5, -9, -9, -9, -9]);
    assert_eq!(b, a);
}

/// Says which native tiles this CPU ran in the suites above (every supported one, the VNNI
/// emulation included), so a log shows what a CPU without VNNI did not check natively.
#[test]
fn the_suites_run_every_tile_this_cpu_executes() {
    let ran: Vec<&str> = on_every_tile(smartvm_kernels::tile::active)
        .into_iter()
        .map(|(forced, active)| {
            assert_eq!(forced, active, "a forced tile is the one kernels run");
            forced.name()
        })
        .collect();
    assert!(ran.contains(&"portable") && ran.contains(&"vnni-emulated"));
    println!(
        "native tiles checked against the reference on this CPU: {}",
        ran.join(", ")
    );
}

/// Depthwise windows past the register-chunked path's tap limit (64) run tap by tap: 9 × 9
/// and 11 × 11 windows, strided and padded, on every tile.
#[test]
fn large_depthwise_windows_agree() {
    let mut rng = Rng(11);
    for (c, h, k, stride, pad) in [(6, 30, 9, 1, 4), (3, 41, 11, 2, 5), (2, 20, 8, 1, 3)] {
        let p = ConvParams::conv2d(Shape::new(c, 1, h, h), c, k, stride, pad, 1, c).unwrap();
        let x: Vec<i8> = (0..p.input.elements().unwrap())
            .map(|_| rng.i8(true))
            .collect();
        let wts: Vec<i8> = (0..p.weight_len()).map(|_| rng.i8(true)).collect();
        // A scale that maps these sums (up to 121 · 128 · 255) onto the int8 range unsaturated,
        // so that any wrong tap shows.
        let mut q = rng.quant(c as usize, true);
        q.mult.fill(1 << 30);
        q.shift.fill(13);
        q.bias.fill(0);
        q.output.zero = 0;
        let mut a = vec![REFERENCE_MARK; p.output.elements().unwrap() as usize];
        Reference.conv(&p, &x, &wts, &q, &mut a).unwrap();
        let saturated = a.iter().filter(|v| **v == -128 || **v == 127).count();
        assert!(4 * saturated < a.len(), "most outputs are not saturated");
        for (tile, b) in on_every_tile(|| {
            let mut b = vec![BACKEND_MARK; a.len()];
            Native.conv(&p, &x, &wts, &q, &mut b).unwrap();
            b
        }) {
            assert!(a == b, "{tile:?} {p:?}");
        }
    }
}

/// Layers with few output rows split their positions among tasks. Across these widths the
/// tasks' boundaries fall on every kind of wide position, the discarded columns past the
/// output width included; every output must still be written once, on every tile.
#[test]
fn position_split_layers_agree_at_every_boundary() {
    let mut rng = Rng(23);
    // 3 × 3 unpadded (wide rows: a run crosses output rows with columns to skip) and 1 × 1
    // (wide positions are outputs: one span per run).
    let layers = (33..72).flat_map(|h| {
        [
            ConvParams::conv2d(Shape::new(32, 1, h, h), 8, 3, 1, 0, 1, 1),
            ConvParams::conv2d(Shape::new(256, 1, h, h), 8, 1, 1, 0, 1, 1),
        ]
    });
    for p in layers {
        let p = p.unwrap();
        assert!(p.macs() >= 1 << 21, "{p:?} is big enough to run threaded");
        let x: Vec<i8> = (0..p.input.elements().unwrap())
            .map(|_| rng.i8(false))
            .collect();
        let wts: Vec<i8> = (0..p.weight_len()).map(|_| rng.i8(false)).collect();
        let mut q = rng.quant(8, false);
        q.mult.fill(1 << 30);
        q.shift.fill(10);
        q.output.zero = 0;
        let mut a = vec![REFERENCE_MARK; p.output.elements().unwrap() as usize];
        Reference.conv(&p, &x, &wts, &q, &mut a).unwrap();
        for (tile, b) in on_every_tile(|| {
            let mut b = vec![BACKEND_MARK; a.len()];
            Native.conv(&p, &x, &wts, &q, &mut b).unwrap();
            b
        }) {
            assert!(a == b, "{tile:?} {p:?}");
        }
    }
}

/// The most negative shifts with the largest values the operands admit: random multipliers
/// (as in the proptest below) almost always saturate there, which hides a rounded value that
/// no longer fits the 32-bit lanes some tiles finish in. Every shift from −30 to −5, the
/// largest multiplier, and |x − z| = 255 on both signs, against i128.
#[test]
fn elementwise_add_and_mul_are_exact_at_the_most_negative_shifts() {
    use smartvm_kernels::{elementwise, AddQuant, PairQuant};
    let output = OutputRange {
        zero: 0,
        lo: -128,
        hi: 127,
    };
    // x − za = +255 (x = 127, za = −128) and −255 (x = −128, za = 127), with a smaller
    // multiplier too, so that r lands on both sides of the clamp for some shifts.
    let cases = [(127i8, -128i32), (-128, 127)];
    for shift in -30..=-5 {
        for mult in [i32::MAX, 1 << 20, 3] {
            for (x, za) in cases {
                for (z, zb) in cases {
                    let (a, b) = (vec![x; 19], vec![z; 19]);
                    let add = AddQuant {
                        a_zero: za,
                        b_zero: zb,
                        output,
                        a_mult: mult,
                        b_mult: mult,
                        shift,
                    };
                    let mul = PairQuant {
                        a_zero: za,
                        b_zero: zb,
                        output,
                        mult,
                        shift,
                    };
                    let finish = |t: i128| {
                        let n = 31 + shift;
                        let r = (t + (1i128 << (n - 1))).div_euclid(1i128 << n);
                        r.clamp(-128, 127) as i8
                    };
                    let (dx, dz) = ((x as i32 - za) as i128, (z as i32 - zb) as i128);
                    let want_add = finish((dx + dz) * mult as i128);
                    let want_mul = finish(dx * dz * mult as i128);
                    for (tile, (sum, product)) in on_every_tile(|| {
                        let (mut s, mut p) = (vec![REFERENCE_MARK; 19], vec![BACKEND_MARK; 19]);
                        elementwise::add(&a, &b, &add, &mut s).unwrap();
                        elementwise::mul(&a, &b, &mul, &mut p).unwrap();
                        (s, p)
                    }) {
                        let case = format!("{tile:?} shift {shift} mult {mult} x {x} z {z}");
                        assert!(sum.iter().all(|v| *v == want_add), "add {case}: {sum:?}");
                        assert!(
                            product.iter().all(|v| *v == want_mul),
                            "mul {case}: {product:?}"
                        );
                    }
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    /// Residual add and element-wise product on every tile against the spec's formula worked
    /// in i128 with floor division (an independent computation): zero points, multipliers and
    /// shifts across their admitted ranges, and lengths that leave vector tails.
    #[test]
    fn elementwise_add_and_mul_agree_on_every_tile(
        len in 1usize..300, zeros in any::<[i8; 3]>(), mults in any::<[u32; 3]>(),
        shift in -30i32..=31, bounds in any::<[i8; 2]>(), full_range in any::<bool>(), seed in any::<u64>(),
    ) {
        use smartvm_kernels::{elementwise, AddQuant, PairQuant};
        // The full int8 range, or a fused activation's narrower one.
        let (lo, hi) = if full_range {
            (-128, 127)
        } else {
            (bounds[0].min(bounds[1]) as i32, bounds[0].max(bounds[1]) as i32)
        };
        let mut rng = Rng(seed);
        let a: Vec<i8> = (0..len).map(|_| rng.i8(true)).collect();
        let b: Vec<i8> = (0..len).map(|_| rng.i8(true)).collect();
        let output = OutputRange { zero: zeros[2] as i32, lo, hi };
        let m = mults.map(|m| (m >> 1) as i32);
        let add = AddQuant {
            a_zero: zeros[0] as i32, b_zero: zeros[1] as i32, output, a_mult: m[0], b_mult: m[1], shift,
        };
        let mul = PairQuant { a_zero: zeros[0] as i32, b_zero: zeros[1] as i32, output, mult: m[2], shift };
        let finish = |t: i128| {
            let n = 31 + shift;
            let r = (t + (1i128 << (n - 1))).div_euclid(1i128 << n);
            (output.zero as i128 + r).clamp(lo as i128, hi as i128) as i8
        };
        let want_add: Vec<i8> = a.iter().zip(&b).map(|(x, z)| finish(
            (*x as i128 - add.a_zero as i128) * add.a_mult as i128
                + (*z as i128 - add.b_zero as i128) * add.b_mult as i128)).collect();
        let want_mul: Vec<i8> = a.iter().zip(&b).map(|(x, z)| finish(
            (*x as i128 - mul.a_zero as i128) * (*z as i128 - mul.b_zero as i128) * mul.mult as i128)).collect();
        for (tile, (sum, product)) in on_every_tile(|| {
            let (mut s, mut p) = (vec![REFERENCE_MARK; len], vec![BACKEND_MARK; len]);
            elementwise::add(&a, &b, &add, &mut s).unwrap();
            elementwise::mul(&a, &b, &mul, &mut p).unwrap();
            (s, p)
        }) {
            prop_assert_eq!(&sum, &want_add, "add {:?}", tile);
            prop_assert_eq!(&product, &want_mul, "mul {:?}", tile);
        }
    }

    #[test]
    fn table_lookups_agree_on_every_tile(len in 1usize..300, seed in any::<u64>()) {
        let mut rng = Rng(seed);
        let table: Vec<u8> = (0..256).map(|_| rng.i8(false) as u8).collect();
        // Every byte value, then random ones: both halves of the table and every lane.
        let data: Vec<i8> = (0..len)
            .map(|i| if i < 256 { i as u8 as i8 } else { rng.i8(true) })
            .collect();
        let want: Vec<i8> = data.iter().map(|x| table[*x as u8 as usize] as i8).collect();
        for (tile, got) in on_every_tile(|| {
            let mut got = data.clone();
            smartvm_kernels::elementwise::lut(&table, &mut got).unwrap();
            got
        }) {
            prop_assert_eq!(&got, &want, "{:?}", tile);
        }
    }
}
