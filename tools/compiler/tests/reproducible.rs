//! `compile` is a pure function of the model, the calibration inputs and the shape (DESIGN.md
//! invariant 9): the bytes it writes must not depend on the machine. Without a second machine,
//! this forces the calibration through different schedules (one thread, several threads, inputs
//! in different groupings) and requires identical programs, weight blocks and quantization.

use std::path::{Path, PathBuf};

use smartvm_compiler::{compile, read_npy, Compiled};

mod support;

/// Everything `smartvm compile` writes, as bytes.
fn artifact(c: &Compiled) -> Vec<u8> {
    let mut out = c.program.encode();
    for b in &c.blocks {
        out.extend_from_slice(&(b.len() as u32).to_le_bytes());
        out.extend_from_slice(b);
    }
    for q in [c.input, c.output] {
        out.extend_from_slice(&q.scale.to_bits().to_le_bytes());
        out.extend_from_slice(&q.zero_point.to_le_bytes());
    }
    out
}

fn compile_on(threads: usize, model: &Path, shape: &[usize], inputs: &[Vec<f32>]) -> Vec<u8> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    pool.install(|| artifact(&compile(model, shape, inputs).unwrap()))
}

fn inputs(path: PathBuf, shape: &[usize], count: usize) -> Vec<Vec<f32>> {
    let (_, values) = read_npy(&path).unwrap();
    values
        .chunks(shape.iter().product())
        .take(count)
        .map(|c| c.to_vec())
        .collect()
}

fn same_bytes_on_any_schedule(
    model: PathBuf,
    shape: &[usize],
    inputs: Vec<Vec<f32>>,
    thread_counts: &[usize],
) {
    let one = compile_on(1, &model, shape, &inputs);
    for &threads in thread_counts {
        assert!(
            compile_on(threads, &model, shape, &inputs) == one,
            "{}: {threads} threads compile other bytes than one thread",
            model.display()
        );
    }
}

#[test]
fn fixtures_compile_to_the_same_bytes_on_any_thread_count() {
    let dir = support::fixtures("zoo/mobilenetv2.onnx");
    for (name, shape) in [
        ("operators", &[1, 3, 12, 12][..]),
        ("residual", &[1, 3, 16, 16][..]),
        ("lstm", &[1, 784][..]),
        ("caffe2_style", &[1, 3, 12, 12][..]),
        ("squeeze_excite", &[1, 3, 12, 12][..]),
        ("activations", &[1, 3, 8, 8][..]),
        ("lrn", &[1, 3, 8, 8][..]),
        ("shuffle", &[1, 3, 6, 6][..]),
    ] {
        let data = inputs(dir.join(format!("{name}_inputs.npy")), shape, 16);
        same_bytes_on_any_schedule(dir.join(format!("{name}.onnx")), shape, data, &[2, 3, 8]);
    }
}

#[test]
fn a_zoo_model_compiles_to_the_same_bytes_on_any_thread_count() {
    let dir = support::fixtures("zoo/mobilenetv2.onnx").join("zoo");
    let shape = [1, 3, 224, 224];
    let data = inputs(dir.join("imagenet_inputs.npy"), &shape, 2);
    same_bytes_on_any_schedule(dir.join("mobilenetv2.onnx"), &shape, data, &[3]);
}

/// Calibration ranges are a min and max over inputs: the order inputs come in changes nothing.
#[test]
fn calibration_input_order_changes_nothing() {
    let dir = support::fixtures("zoo/mobilenetv2.onnx");
    let shape = [1, 3, 16, 16];
    let model = dir.join("residual.onnx");
    let data = inputs(dir.join("residual_inputs.npy"), &shape, 12);
    let mut reversed = data.clone();
    reversed.reverse();
    assert!(compile_on(2, &model, &shape, &data) == compile_on(2, &model, &shape, &reversed));
}
