//! The validators' kernels: the reference conv and FC against the wasm-tuned [`Scalar`] ones,
//! per layer of the paper's networks, in the same run; prints ns per multiply-accumulate and
//! the speed-up as a markdown table. Compiled natively here (the compiler may vectorize either
//! loop with the CPU's baseline SIMD), so the ratio is an indication for wasm, not its figure:
//! `smartvm infer --dry-run --wasm-kernels` measures the runtime itself.
//!
//! `cargo bench -p smartvm-kernels --bench scalar`

use std::time::Instant;

use smartvm_kernels::{ChannelQuant, ConvParams, Kernels, OutputRange, Reference, Scalar, Shape};

fn quant(n: usize) -> ChannelQuant {
    ChannelQuant {
        input_zero: -3,
        output: OutputRange {
            zero: -5,
            lo: -128,
            hi: 127,
        },
        bias: (0..n as i32).map(|i| i * 37 - 900).collect(),
        mult: vec![1_518_500_250; n],
        shift: vec![9; n],
    }
}

/// Median seconds of `f` over five runs.
fn median(mut f: impl FnMut()) -> f64 {
    let mut t: Vec<f64> = (0..5)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[2]
}

fn main() {
    let conv =
        |c, h, o, k, s, p, g| ConvParams::conv2d(Shape::new(c, 1, h, h), o, k, s, p, 1, g).unwrap();
    let convs = [
        ("LeNet-5 conv2 5x5", conv(6, 14, 16, 5, 1, 0, 1)),
        ("AlexNet conv1 11x11/4", conv(3, 224, 64, 11, 4, 2, 1)),
        ("ResNet-18 conv 3x3 64", conv(64, 56, 64, 3, 1, 1, 1)),
        ("ResNet-18 conv 3x3 256", conv(256, 14, 256, 3, 1, 1, 1)),
        ("MobileNetV2 1x1 expand", conv(24, 56, 144, 1, 1, 0, 1)),
        (
            "MobileNetV2 depthwise 3x3",
            conv(144, 56, 144, 3, 1, 1, 144),
        ),
        (
            "MobileNetV2 depthwise 3x3/2",
            conv(144, 56, 144, 3, 2, 1, 144),
        ),
    ];
    println!("| layer | MACs | reference ns/MAC | scalar ns/MAC | speed-up |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    let row = |name: &str, macs: u64, r: f64, s: f64| {
        println!(
            "| {name} | {macs} | {:.2} | {:.2} | {:.1}x |",
            r * 1e9 / macs as f64,
            s * 1e9 / macs as f64,
            r / s
        )
    };
    for (name, p) in convs {
        let x: Vec<i8> = (0..p.input.elements().unwrap())
            .map(|i| (i * 7 % 255) as i8)
            .collect();
        let w: Vec<i8> = (0..p.weight_len()).map(|i| (i * 13 % 251) as i8).collect();
        let q = quant(p.output.c as usize);
        let mut a = vec![0i8; p.output.elements().unwrap() as usize];
        let mut b = a.clone();
        let r = median(|| Reference.conv(&p, &x, &w, &q, &mut a).unwrap());
        let s = median(|| Scalar.conv(&p, &x, &w, &q, &mut b).unwrap());
        assert_eq!(a, b, "{name}");
        row(name, p.macs(), r, s);
    }
    for (name, n, outs) in [
        ("AlexNet fc6", 9216usize, 4096usize),
        ("LeNet-5 fc1", 400, 120),
    ] {
        let x: Vec<i8> = (0..n).map(|i| (i * 7 % 255) as i8).collect();
        let w: Vec<i8> = (0..n * outs).map(|i| (i * 13 % 251) as i8).collect();
        let q = quant(outs);
        let (mut a, mut b) = (vec![0i8; outs], vec![0i8; outs]);
        let r = median(|| Reference.fully_connected(&x, &w, &q, &mut a).unwrap());
        let s = median(|| Scalar.fully_connected(&x, &w, &q, &mut b).unwrap());
        assert_eq!(a, b, "{name}");
        row(name, (n * outs) as u64, r, s);
    }
}
