//! Per-layer latency of the paper's networks (LeNet-5, AlexNet, ResNet-18, MobileNetV2 layer
//! shapes) on the native CPU path and, with `--features cuda` on a machine with a GPU, on the
//! CUDA path, measured in the same run; prints medians and the CPU/GPU ratio as a markdown table.
//! The GPU time is the whole kernel call as the host function sees it: inputs and weights copied
//! to the device, the kernel, the output copied back.
//!
//! Each layer also runs under the AVX2 tile when the CPU's best tile is wider (VNNI), so the
//! speed-up of the exact u8 × s8 path is measured on the same machine in the same run.
//!
//! `cargo bench -p smartvm-kernels --bench layers [--features cuda]`

use std::time::{Duration, Instant};

use smartvm_kernels::tile::{self, Tile};
use smartvm_kernels::{
    ChannelQuant, ConvParams, Kernels, Native, OutputRange, PoolKind, PoolParams, Shape,
};

enum Layer {
    Conv(ConvParams),
    Fc { inputs: usize, outputs: usize },
    Pool(PoolParams),
}

impl Layer {
    fn macs(&self) -> u64 {
        match self {
            Layer::Conv(p) => p.macs(),
            Layer::Fc { inputs, outputs } => (*inputs * *outputs) as u64,
            Layer::Pool(p) => p.output.elements().unwrap_or(0) * (p.k * p.k) as u64,
        }
    }
}

fn conv(c: u32, h: u32, out_c: u32, k: u32, stride: u32, pad: u32, groups: u32) -> Layer {
    let p = ConvParams::conv2d(Shape::new(c, 1, h, h), out_c, k, stride, pad, 1, groups);
    Layer::Conv(p.expect("benchmark geometry is valid"))
}

fn layers() -> Vec<(&'static str, Layer)> {
    let pool = |c, h, k, s, p| {
        Layer::Pool(PoolParams::new(Shape::new(c, 1, h, h), k, s, p, PoolKind::Max).unwrap())
    };
    vec![
        (
            "LeNet-5 conv1 1x28x28 -> 6, 5x5",
            conv(1, 28, 6, 5, 1, 2, 1),
        ),
        (
            "LeNet-5 conv2 6x14x14 -> 16, 5x5",
            conv(6, 14, 16, 5, 1, 0, 1),
        ),
        (
            "AlexNet conv1 3x224x224 -> 64, 11x11/4",
            conv(3, 224, 64, 11, 4, 2, 1),
        ),
        (
            "AlexNet conv2 64x27x27 -> 192, 5x5",
            conv(64, 27, 192, 5, 1, 2, 1),
        ),
        (
            "AlexNet conv3 192x13x13 -> 384, 3x3",
            conv(192, 13, 384, 3, 1, 1, 1),
        ),
        ("AlexNet maxpool1 64x55x55 3x3/2", pool(64, 55, 3, 2, 0)),
        ("AlexNet maxpool2 192x27x27 3x3/2", pool(192, 27, 3, 2, 0)),
        (
            "AlexNet fc6 9216 -> 4096",
            Layer::Fc {
                inputs: 9216,
                outputs: 4096,
            },
        ),
        (
            "LSTM gates 104 -> 416",
            Layer::Fc {
                inputs: 104,
                outputs: 416,
            },
        ),
        (
            "LSTM input 28 -> 416",
            Layer::Fc {
                inputs: 28,
                outputs: 416,
            },
        ),
        (
            "ResNet-18 conv2_x 64x56x56 -> 64, 3x3",
            conv(64, 56, 64, 3, 1, 1, 1),
        ),
        (
            "ResNet-18 conv5_x 512x7x7 -> 512, 3x3",
            conv(512, 7, 512, 3, 1, 1, 1),
        ),
        ("ResNet-18 maxpool 64x112x112 3x3/2", pool(64, 112, 3, 2, 1)),
        (
            "MobileNetV2 depthwise 144x56x56, 3x3",
            conv(144, 56, 144, 3, 1, 1, 144),
        ),
        (
            "MobileNetV2 depthwise 384x14x14, 3x3",
            conv(384, 14, 384, 3, 1, 1, 384),
        ),
        (
            "MobileNetV2 depthwise 960x7x7, 3x3",
            conv(960, 7, 960, 3, 1, 1, 960),
        ),
        (
            "MobileNetV2 depthwise 96x112x112, 3x3/2",
            conv(96, 112, 96, 3, 2, 1, 96),
        ),
        (
            "MobileNetV2 pointwise 144x56x56 -> 24",
            conv(144, 56, 24, 1, 1, 0, 1),
        ),
        (
            "MobileNetV2 pointwise 16x112x112 -> 96",
            conv(16, 112, 96, 1, 1, 0, 1),
        ),
        (
            "MobileNetV2 pointwise 24x56x56 -> 144",
            conv(24, 56, 144, 1, 1, 0, 1),
        ),
        (
            "MobileNetV2 pointwise 96x14x14 -> 576",
            conv(96, 14, 576, 1, 1, 0, 1),
        ),
        (
            "MobileNetV2 pointwise 320x7x7 -> 1280",
            conv(320, 7, 1280, 1, 1, 0, 1),
        ),
        (
            "MobileNetV2 pointwise 32x112x112 -> 16",
            conv(32, 112, 16, 1, 1, 0, 1),
        ),
        (
            "MobileNetV2 conv1 3x224x224 -> 32, 3x3/2",
            conv(3, 224, 32, 3, 2, 1, 1),
        ),
    ]
}

/// Weights shaped like a trained layer's: mostly small, a few at the int8 extremes. The AVX2
/// tile picks its layout from how many weight pairs `vpmaddubsw` could saturate on, which
/// uniform bytes would make nearly all of them.
fn trained(len: usize, seed: u64) -> Vec<i8> {
    data(len, seed)
        .into_iter()
        .enumerate()
        .map(|(i, v)| match i % 97 {
            0 => 127,
            1 => -128,
            _ => v / 6,
        })
        .collect()
}

/// Deterministic pseudo-random int8 data (the values do not change the work done).
fn data(len: usize, seed: u64) -> Vec<i8> {
    let mut s = seed;
    (0..len)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 56) as i8
        })
        .collect()
}

/// `BENCH_ZERO` sets the input zero point (default -3); -128 takes the VNNI tiles' form without
/// the zero-point correction.
fn quant(channels: usize) -> ChannelQuant {
    let zero = std::env::var("BENCH_ZERO")
        .ok()
        .and_then(|z| z.parse().ok());
    ChannelQuant {
        input_zero: zero.unwrap_or(-3),
        output: OutputRange {
            zero: 5,
            lo: 5,
            hi: 127,
        },
        bias: vec![1000; channels],
        mult: vec![1 << 30; channels],
        // A scale of 2^-8, as trained models have (n = 31 + shift = 38: the 32-bit path).
        shift: vec![7; channels],
    }
}

/// Runs one layer and returns its output, so two backends can be compared too.
fn run(k: &dyn Kernels, layer: &Layer, x: &[i8], w: &[i8]) -> Vec<i8> {
    match layer {
        Layer::Conv(p) => {
            let mut out = vec![0; p.output.elements().unwrap() as usize];
            k.conv(p, x, w, &quant(p.output.c as usize), &mut out)
                .unwrap();
            out
        }
        Layer::Fc { outputs, .. } => {
            let mut out = vec![0; *outputs];
            k.fully_connected(x, w, &quant(*outputs), &mut out).unwrap();
            out
        }
        Layer::Pool(p) => {
            let mut out = vec![0; p.output.elements().unwrap() as usize];
            k.pool(p, x, &mut out).unwrap();
            out
        }
    }
}

/// Median wall time in ms over as many runs as fit in about a second (at least 5).
fn median_ms(mut f: impl FnMut()) -> f64 {
    f();
    let budget = Duration::from_secs(1);
    let start = Instant::now();
    let mut times = Vec::new();
    while times.len() < 5 || (start.elapsed() < budget && times.len() < 1000) {
        let t = Instant::now();
        f();
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

#[cfg(feature = "cuda")]
fn gpu() -> Option<smartvm_kernels::Cuda> {
    smartvm_kernels::Cuda::new(0)
        .map_err(|why| println!("SKIPPED: cuda columns ({why})"))
        .ok()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    #[cfg(feature = "cuda")]
    let gpu = gpu();
    // `BASELINE_TILE=avx512-vnni` compares the best tile with another than AVX2.
    let wanted = std::env::var("BASELINE_TILE")
        .ok()
        .and_then(|name| Tile::parse(&name))
        .unwrap_or(Tile::Avx2);
    let baseline = (Tile::best() > wanted && wanted.supported()).then_some(wanted);
    println!(
        "\nthreads: {} (rayon), native tile: {}, baseline tile: {}\n\n| layer | MMACs | native ms | GMAC/s | baseline tile ms | baseline/native | cuda ms | native/cuda |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        rayon::current_num_threads(),
        Tile::best().name(),
        baseline.map_or("-", Tile::name)
    );
    // `cargo bench … -- conv5` runs the layers whose name holds `conv5`.
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    for (i, (name, layer)) in layers().iter().enumerate() {
        if !only.is_empty() && !only.iter().any(|o| name.contains(o.as_str())) {
            continue;
        }
        let (x_len, w_len) = match layer {
            Layer::Conv(p) => (
                p.input.elements().unwrap() as usize,
                p.weight_len() as usize,
            ),
            Layer::Fc { inputs, outputs } => (*inputs, inputs * outputs),
            Layer::Pool(p) => (p.input.elements().unwrap() as usize, 0),
        };
        let (x, w) = (data(x_len, i as u64), trained(w_len, 100 + i as u64));
        let native = median_ms(|| drop(run(&Native, layer, &x, &w)));
        let mut avx2_cols = ("-".to_string(), "-".to_string());
        if let Some(t) = baseline {
            let best = run(&Native, layer, &x, &w);
            tile::force(Some(t)).expect("supported");
            assert_eq!(run(&Native, layer, &x, &w), best, "{name}: tiles agree");
            let ms = median_ms(|| drop(run(&Native, layer, &x, &w)));
            tile::force(None).expect("best");
            avx2_cols = (format!("{ms:.3}"), format!("{:.2}x", ms / native));
        }
        #[allow(unused_mut)]
        let mut gpu_cols = ("-".to_string(), "-".to_string());
        #[cfg(feature = "cuda")]
        if let Some(gpu) = &gpu {
            assert_eq!(
                run(gpu, layer, &x, &w),
                run(&Native, layer, &x, &w),
                "{name}"
            );
            let t = median_ms(|| drop(run(gpu, layer, &x, &w)));
            gpu_cols = (format!("{t:.3}"), format!("{:.1}x", native / t));
        }
        println!(
            "| {name} | {:.1} | {native:.3} | {:.0} | {} | {} | {} | {} |",
            layer.macs() as f64 / 1e6,
            layer.macs() as f64 / 1e6 / native,
            avx2_cols.0,
            avx2_cols.1,
            gpu_cols.0,
            gpu_cols.1
        );
    }
}
