//! The CUDA backend against the reference, bit for bit, over seeded random geometry and extreme
//! values. Without a GPU the suite prints one `SKIPPED:` line and checks only that the backend
//! refuses to start with a reason instead of panicking.
#![cfg(feature = "cuda")]

mod support;

use smartvm_kernels::{
    ChannelQuant, ConvParams, ConvTransposeParams, Cuda, KernelError, Kernels, OutputRange,
    PairQuant, PoolKind, PoolParams, Reference, Shape,
};
use support::Rng;

fn gpu() -> Option<Cuda> {
    match Cuda::new(0) {
        Ok(cuda) => {
            eprintln!("cuda tests on {}", cuda.device_name());
            Some(cuda)
        }
        Err(why) => {
            static SAY_ONCE: std::sync::Once = std::sync::Once::new();
            SAY_ONCE.call_once(|| {
                eprintln!(
                    "SKIPPED: cuda kernel tests ({why}; run `cargo test -p smartvm-kernels \
                     --features cuda` on a machine with an NVIDIA GPU and driver)"
                )
            });
            None
        }
    }
}

fn tensor(rng: &mut Rng, len: u64, extreme: bool) -> Vec<i8> {
    (0..len).map(|_| rng.i8(extreme)).collect()
}

fn check_conv(gpu: &Cuda, rng: &mut Rng, p: &ConvParams, extreme: bool) {
    let x = tensor(rng, p.input.elements().unwrap(), extreme);
    let w = tensor(rng, p.weight_len(), extreme);
    let mut q = rng.quant(p.output.c as usize, extreme);
    if rng.next().is_multiple_of(2) {
        q.output.lo = q.output.zero; // fused ReLU
    }
    let mut expected = vec![0i8; p.output.elements().unwrap() as usize];
    let mut actual = vec![0x55i8; expected.len()];
    Reference.conv(p, &x, &w, &q, &mut expected).unwrap();
    gpu.conv(p, &x, &w, &q, &mut actual).unwrap();
    assert_eq!(expected, actual, "conv {p:?}");
}

#[test]
fn cuda_matches_reference() {
    let Some(gpu) = gpu() else { return };
    let mut rng = Rng(0x5eed);

    // 2-D convolutions over groups (incl. depthwise), strides, padding and dilation.
    let mut convs = 0;
    while convs < 300 {
        let r = |rng: &mut Rng, n: u64| (rng.next() % n) as u32;
        let groups = 1 + r(&mut rng, 4);
        let (per_in, per_out) = (1 + r(&mut rng, 5), 1 + r(&mut rng, 5));
        let (h, w) = (1 + r(&mut rng, 20), 1 + r(&mut rng, 20));
        let input = Shape::new(groups * per_in, 1, h, w);
        let (k, s, pad, d) = (
            1 + r(&mut rng, 5),
            1 + r(&mut rng, 3),
            r(&mut rng, 3),
            1 + r(&mut rng, 2),
        );
        let Ok(p) = ConvParams::conv2d(input, groups * per_out, k, s, pad, d, groups) else {
            continue;
        };
        let extreme = rng.next().is_multiple_of(2);
        check_conv(&gpu, &mut rng, &p, extreme);
        convs += 1;
    }
    // Depthwise 3x3 as in MobileNetV2, and a 3-D convolution with per-axis geometry.
    let depthwise = ConvParams::conv2d(Shape::new(32, 1, 28, 28), 32, 3, 2, 1, 1, 32).unwrap();
    check_conv(&gpu, &mut rng, &depthwise, true);
    let volume = ConvParams::new(
        Shape::new(3, 5, 9, 7),
        4,
        [2, 3, 1],
        [1, 2, 1],
        [1, 0, 0],
        [2, 1, 1],
        1,
    )
    .unwrap();
    check_conv(&gpu, &mut rng, &volume, true);
    // A ResNet-sized layer: 64 -> 64 channels, 56 x 56, 3 x 3 (about 116M MACs).
    let wide = ConvParams::conv2d(Shape::new(64, 1, 56, 56), 64, 3, 1, 1, 1, 1).unwrap();
    check_conv(&gpu, &mut rng, &wide, false);

    // Transposed convolutions.
    let mut transposed = 0;
    while transposed < 100 {
        let r = |rng: &mut Rng, n: u64| (rng.next() % n) as u32;
        let groups = 1 + r(&mut rng, 3);
        let input = Shape::new(
            groups * (1 + r(&mut rng, 3)),
            1,
            1 + r(&mut rng, 9),
            1 + r(&mut rng, 9),
        );
        let stride = 1 + r(&mut rng, 3);
        let Ok(p) = ConvTransposeParams::new(
            input,
            groups * (1 + r(&mut rng, 3)),
            1 + r(&mut rng, 4),
            stride,
            r(&mut rng, 2),
            r(&mut rng, stride as u64),
            groups,
        ) else {
            continue;
        };
        let x = tensor(&mut rng, p.input.elements().unwrap(), true);
        let w = tensor(&mut rng, p.weight_len(), true);
        let q = rng.quant(p.output.c as usize, true);
        let mut expected = vec![0i8; p.output.elements().unwrap() as usize];
        let mut actual = vec![0x55i8; expected.len()];
        Reference
            .conv_transpose(&p, &x, &w, &q, &mut expected)
            .unwrap();
        gpu.conv_transpose(&p, &x, &w, &q, &mut actual).unwrap();
        assert_eq!(expected, actual, "conv_transpose {p:?}");
        transposed += 1;
    }

    // Pooling: max, max with ceil mode, average with padding (count excludes padding).
    let mut pools = 0;
    while pools < 200 {
        let r = |rng: &mut Rng, n: u64| (rng.next() % n) as u32;
        let kind = [PoolKind::Max, PoolKind::MaxCeil, PoolKind::Average][r(&mut rng, 3) as usize];
        let input = Shape::new(
            1 + r(&mut rng, 4),
            1,
            1 + r(&mut rng, 16),
            1 + r(&mut rng, 16),
        );
        let Ok(p) = PoolParams::new(
            input,
            1 + r(&mut rng, 4),
            1 + r(&mut rng, 3),
            r(&mut rng, 2),
            kind,
        ) else {
            continue;
        };
        let x = tensor(&mut rng, p.input.elements().unwrap(), true);
        let mut expected = vec![0i8; p.output.elements().unwrap() as usize];
        let mut actual = vec![0x55i8; expected.len()];
        Reference.pool(&p, &x, &mut expected).unwrap();
        gpu.pool(&p, &x, &mut actual).unwrap();
        assert_eq!(expected, actual, "pool {p:?}");
        pools += 1;
    }

    // Fully connected, lengths across the warp width, and matrix products.
    for case in 0..150 {
        let extreme = case % 2 == 0;
        let n = 1 + (rng.next() % 3000) as usize;
        let outs = 1 + (rng.next() % 70) as usize;
        let x = tensor(&mut rng, n as u64, extreme);
        let w = tensor(&mut rng, (n * outs) as u64, extreme);
        let q = rng.quant(outs, extreme);
        let mut expected = vec![0i8; outs];
        let mut actual = vec![0x55i8; outs];
        Reference
            .fully_connected(&x, &w, &q, &mut expected)
            .unwrap();
        gpu.fully_connected(&x, &w, &q, &mut actual).unwrap();
        assert_eq!(expected, actual, "fully_connected n={n} outs={outs}");

        let [m, k, cols] = [1, 2, 3].map(|_| 1 + (rng.next() % 40) as u32);
        let a = tensor(&mut rng, (m * k) as u64, extreme);
        let b = tensor(&mut rng, (k * cols) as u64, extreme);
        let pq = PairQuant {
            a_zero: rng.i8(extreme) as i32,
            b_zero: rng.i8(extreme) as i32,
            output: OutputRange {
                zero: rng.i8(false) as i32,
                lo: -128,
                hi: 127,
            },
            mult: (rng.next() % (1 << 31)) as i32,
            shift: (rng.next() % 62) as i32 - 30,
        };
        let mut expected = vec![0i8; (m * cols) as usize];
        let mut actual = vec![0x55i8; expected.len()];
        Reference
            .matmul([m, k, cols], &a, &b, &pq, &mut expected)
            .unwrap();
        gpu.matmul([m, k, cols], &a, &b, &pq, &mut actual).unwrap();
        assert_eq!(expected, actual, "matmul {m}x{k}x{cols}");
    }

    assert_eq!(gpu.fallbacks(), 0, "every call above ran on the GPU");
}

/// 16384 products of (-128 - 127) · 127 overflow int32: the GPU's warp reduction must wrap
/// exactly as the spec's sequential sum does.
#[test]
fn cuda_long_reduction_wraps() {
    let Some(gpu) = gpu() else { return };
    let n = 1 << 14;
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
    let expected_acc = (i32::MAX as i64 + n as i64 * (-255 * 127)) as i32 as i64;
    let expected = ((expected_acc * (1 << 30) + (1i64 << 50)) >> 51).clamp(-128, 127) as i8;
    let mut out = [0i8];
    gpu.fully_connected(&vec![-128; n], &vec![127; n], &q, &mut out)
        .unwrap();
    assert_eq!(out[0], expected);
    assert_eq!(gpu.fallbacks(), 0);
}

/// Wrong slices are the same errors as on the CPU, and nothing is launched.
#[test]
fn cuda_rejects_bad_slices() {
    let Some(gpu) = gpu() else { return };
    let p = ConvParams::conv2d(Shape::new(3, 1, 4, 4), 2, 3, 1, 0, 1, 1).unwrap();
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
    assert_eq!(
        gpu.conv(&p, &[0; 47], &[0; 54], &q, &mut [0; 8]),
        Err(KernelError::ShapeMismatch)
    );
    assert_eq!(
        gpu.fully_connected(&[0; 4], &[0; 7], &q, &mut [0; 2]),
        Err(KernelError::ShapeMismatch)
    );
    assert_eq!(
        gpu.matmul(
            [2, 2, 2],
            &[0; 4],
            &[0; 3],
            &PairQuant::decode(&[0; 28]).unwrap(),
            &mut [0; 4]
        ),
        Err(KernelError::ShapeMismatch)
    );
}

/// Without CUDA libraries the backend says why; it never panics.
#[test]
fn cuda_start_reports_instead_of_panicking() {
    match Cuda::new(0) {
        Ok(cuda) => assert!(!cuda.device_name().is_empty()),
        Err(why) => assert!(!why.to_string().is_empty()),
    }
}
