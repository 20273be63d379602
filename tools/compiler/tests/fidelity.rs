//! Float models built with onnx + numpy (tests/fixtures/make_onnx_fixtures.py) — LeNet-5, an
//! operator chain, a residual block — compile, run on the VM, and track tract's float execution
//! of the same ONNX files.

use std::path::{Path, PathBuf};

mod support;

use smartvm_compiler::{compile, compile_with, read_npy, Compiled, FloatRunner, Normalization};
use smartvm_kernels::Native;
use smartvm_vm::{execute, BlockList, Config, Executable};

fn images(path: PathBuf) -> Vec<Vec<f32>> {
    let (shape, values) = read_npy(&path).unwrap();
    assert_eq!(&shape[1..], &[1, 32, 32]);
    values.chunks(1024).map(|c| c.to_vec()).collect()
}

fn argmax(v: &[f32]) -> usize {
    v.iter()
        .enumerate()
        .fold(0, |b, (i, x)| if *x > v[b] { i } else { b })
}

/// How a compiled program's dequantized logits compare with tract's run of `model`.
struct Comparison {
    /// Inputs whose top-1 class agrees.
    agree: usize,
    /// SQNR of the logits, dB.
    sqnr: f64,
    /// Largest absolute logit difference.
    worst: f32,
}

fn compare(
    compiled: &Compiled,
    model: &Path,
    shape: &[usize],
    output: &str,
    tests: &[Vec<f32>],
) -> Comparison {
    let exe = Executable::new(compiled.program.clone()).unwrap();
    let reference = FloatRunner::new(model, shape, &[output.to_string()]).unwrap();
    let (mut agree, mut signal, mut noise, mut worst) = (0, 0f64, 0f64, 0f32);
    for x in tests {
        let expected = reference.run(&compiled.float_input(x)).unwrap().remove(0);
        let out = execute(
            &exe,
            &compiled.quantize_input(x),
            &BlockList(&compiled.blocks),
            &Native,
            &Config::default(),
            u64::MAX,
        )
        .unwrap();
        let logits = compiled.dequantize_output(&out.output);
        agree += (argmax(&logits) == argmax(&expected)) as usize;
        for (a, b) in expected.iter().zip(&logits) {
            signal += (*a as f64).powi(2);
            noise += (*a as f64 - *b as f64).powi(2);
            worst = worst.max((a - b).abs());
        }
    }
    Comparison {
        agree,
        sqnr: 10.0 * (signal / noise).log10(),
        worst,
    }
}

#[test]
fn compiled_lenet5_tracks_the_float_model() {
    let dir = support::fixtures("lenet5_float.onnx");
    let model = dir.join("lenet5_float.onnx");
    let compiled = compile(
        &model,
        &[1, 1, 32, 32],
        &images(dir.join("lenet5_calibration.npy")),
    )
    .unwrap();
    // The lowering is as compact as the hand-written program: 8 instructions per conv layer.
    assert!(
        compiled.source.matches("CONV_MUL").count() == 2
            && compiled.source.matches("FULL_CON").count() == 3
    );
    let tests = images(dir.join("lenet5_test.npy"));
    let Comparison { agree, sqnr, .. } =
        compare(&compiled, &model, &[1, 1, 32, 32], "logits", &tests);
    println!(
        "LeNet-5 fixture: top-1 agreement {agree}/{} with tract float, logits SQNR {sqnr:.1} dB",
        tests.len()
    );
    assert!(agree >= 95, "top-1 agreement {agree}/100");
    assert!(sqnr >= 25.0, "SQNR {sqnr:.1} dB");
}

#[test]
fn bad_inputs_are_clear_errors() {
    let dir = support::fixtures("lenet5_float.onnx");
    let err = compile(
        &dir.join("unsupported_softsign.onnx"),
        &[1, 1, 8, 8],
        &[vec![0.5; 64]],
    )
    .err()
    .unwrap();
    let text = err.to_string();
    assert!(
        text.contains("the_softsign")
            && text.contains("Softsign")
            && text.contains("not supported"),
        "{text}"
    );
    let err = compile(&dir.join("lenet5_float.onnx"), &[1, 1, 32, 32], &[])
        .err()
        .unwrap();
    assert!(err.to_string().contains("calibration"), "{err}");
    let err = compile(
        &dir.join("missing.onnx"),
        &[1, 1, 32, 32],
        &[vec![0.0; 1024]],
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("missing.onnx"), "{err}");
}

/// Compiles `name` calibrated on the first half of its inputs and returns the SQNR (dB) of the
/// program's dequantized output against tract's float output on the second half.
fn sqnr_against_float(name: &str, shape: &[usize], output: &str, ops: &[&str]) -> f64 {
    let dir = support::fixtures("lenet5_float.onnx");
    let model = dir.join(format!("{name}.onnx"));
    let (_, values) = read_npy(&dir.join(format!("{name}_inputs.npy"))).unwrap();
    let inputs: Vec<Vec<f32>> = values
        .chunks(shape.iter().product())
        .map(|c| c.to_vec())
        .collect();
    let (calibration, tests) = inputs.split_at(inputs.len() / 2);
    let compiled = compile(&model, shape, calibration).unwrap();
    for op in ops {
        assert!(
            compiled.source.contains(op),
            "{op} missing from\n{}",
            compiled.source
        );
    }
    let sqnr = compare(&compiled, &model, shape, output, tests).sqnr;
    println!("{name}: SQNR {sqnr:.1} dB over {} inputs", tests.len());
    sqnr
}

#[test]
fn every_lowered_operator_tracks_the_float_model() {
    let ops = [
        "CONV_MUL",
        "CONV_TPD",
        "POOL_AVG",
        "ACT_SM1",
        "POOL_OL",
        "ACT_TANH",
        "POOL_GAVG",
        "FULL_CON",
        "ACT_SM0",
    ];
    let sqnr = sqnr_against_float("operators", &[1, 3, 12, 12], "probs", &ops);
    assert!(sqnr >= 20.0, "SQNR {sqnr:.1} dB");
}

#[test]
fn a_residual_block_keeps_its_skip_tensor_and_tracks_the_float_model() {
    let sqnr = sqnr_against_float(
        "residual",
        &[1, 3, 16, 16],
        "logits",
        &["BUF_COPY", "ADD_RQ"],
    );
    assert!(sqnr >= 20.0, "SQNR {sqnr:.1} dB");
}

#[test]
fn the_papers_lstm_unrolls_into_kernels_and_tracks_the_float_model() {
    let sqnr = sqnr_against_float(
        "lstm",
        &[1, 784],
        "logits",
        &["BUF_SLICE", "ACT_SM1", "ACT_TANH", "MUL_RQ", "ADD_RQ"],
    );
    assert!(sqnr >= 20.0, "SQNR {sqnr:.1} dB");
}

#[test]
fn an_lstm_the_unrolling_does_not_cover_is_refused_by_name() {
    let dir = support::fixtures("lenet5_float.onnx");
    let err = compile(
        &dir.join("lstm_bidirectional.onnx"),
        &[1, 784],
        &[vec![0.5; 784]],
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains("\"lstm\"") && err.contains("LSTM") && err.contains("direction"),
        "{err}"
    );
}

#[test]
fn an_onnxruntime_qdq_model_compiles_with_its_own_scales() {
    let dir = support::fixtures("lenet5_float.onnx");
    let path = dir.join("lenet5_qdq.onnx");
    // A flat calibration input would give a very different input range: the model's own
    // QuantizeLinear scales must win.
    let compiled = compile(&path, &[1, 1, 32, 32], &[vec![0.5; 1024]]).unwrap();
    let model = smartvm_compiler::onnx::OnnxModel::load(&path).unwrap();
    let (scale, zero) = (
        model.initializers["input_scale"].1[0],
        model.initializers["input_zero_point"].1[0] as i32,
    );
    assert_eq!(
        (compiled.input.scale, compiled.input.zero_point),
        (scale, zero)
    );
    assert!(
        !compiled.source.contains("Quantize"),
        "Q/DQ nodes are folded"
    );

    // The integer program computes what the quantized model means (tract runs its Q/DQ).
    let tests = images(dir.join("lenet5_test.npy"));
    let Comparison { agree, sqnr, worst } =
        compare(&compiled, &path, &[1, 1, 32, 32], "logits", &tests);
    println!(
        "LeNet-5 QDQ (onnxruntime): top-1 agreement {agree}/{} with the QDQ model, SQNR {sqnr:.1} \
         dB, largest logit difference {worst}",
        tests.len()
    );
    assert!(agree >= 95, "top-1 agreement {agree}/100");
    assert!(sqnr >= 25.0, "SQNR {sqnr:.1} dB");
}

/// `name` compiled, calibrated on the first of its inputs only.
fn compiled_on_first_input(name: &str, shape: &[usize]) -> Compiled {
    let dir = support::fixtures("lenet5_float.onnx");
    let (_, values) = read_npy(&dir.join(format!("{name}_inputs.npy"))).unwrap();
    let first = values[..shape.iter().product::<usize>()].to_vec();
    compile(&dir.join(format!("{name}.onnx")), shape, &[first]).unwrap()
}

/// The operators left in `name` after the graph folding.
fn folded_operators(name: &str, shape: &[usize]) -> Vec<String> {
    let dir = support::fixtures("lenet5_float.onnx");
    let mut model =
        smartvm_compiler::onnx::OnnxModel::load(&dir.join(format!("{name}.onnx"))).unwrap();
    smartvm_compiler::fold::fold(&mut model, shape).unwrap();
    model.nodes().iter().map(|n| n.op_type.clone()).collect()
}

/// PyTorch's `x.view(x.size(0), -1)` (Shape → Gather → Unsqueeze → Concat of int64 Constants
/// into the Reshape), a bias written as a separate Add, and Identity/Dropout left in: the
/// folding leaves the layers alone, and the model compiles and tracks the float model. Before
/// the folding it failed at the Shape node.
#[test]
fn a_pytorch_view_export_compiles_and_tracks_the_float_model() {
    assert_eq!(
        folded_operators("pytorch_view", &[1, 3, 8, 8]),
        ["Conv", "Relu", "MaxPool", "Reshape", "Gemm"]
    );
    let sqnr = sqnr_against_float("pytorch_view", &[1, 3, 8, 8], "logits", &["CONV_MUL"]);
    assert!(sqnr >= 20.0, "SQNR {sqnr:.1} dB");
}

/// An opset-8 export that reshapes one initializer and transposes another before their
/// MatMuls and adds each bias with its own Add (as the old model zoo's MNIST does): the
/// initializers fold, each MatMul takes its Add as a bias, and it tracks the float model.
#[test]
fn an_opset_8_export_with_reshaped_initializers_compiles_and_tracks_the_float_model() {
    assert_eq!(
        folded_operators("legacy_matmul", &[1, 64]),
        ["Gemm", "Relu", "Gemm"]
    );
    let sqnr = sqnr_against_float("legacy_matmul", &[1, 64], "logits", &["FULL_CON"]);
    assert!(sqnr >= 20.0, "SQNR {sqnr:.1} dB");
}

/// The patterns of the Caffe2-converted models in the `onnx` package's test data: weights from
/// ConstantOfShape, Conv → BatchNormalization → Mul/Add scale layers (folded into the conv), a
/// BatchNormalization and scale layer after a Concat (a depthwise 1x1 conv of its own), input
/// normalization by a scalar Sub and Div (another), ceil-mode max pooling and a whole-map
/// average pooling written with end-only pads,
/// a zero Pad before a conv (taken into its padding), a three-way channel Concat, a residual
/// Sum and a SqueezeNet fire module (a Concat whose
/// parts both die there). Before, the first node failed ("ConstantOfShape is not supported");
/// the fire module caught the joined frame left below the top after the parts were dropped.
#[test]
fn a_caffe2_style_export_with_concats_and_scale_layers_tracks_the_float_model() {
    assert_eq!(
        folded_operators("caffe2_style", &[1, 3, 12, 12]).join(" "),
        "Conv Conv Relu MaxPool Conv Relu Conv Relu Concat Conv Relu Conv Add Relu \
         Conv Relu Conv Relu Conv Relu Concat AveragePool Flatten Gemm"
    );
    let ops = [
        "ACT_LUT", "BUF_CAT", "BUF_CLS", "POOL_OL", "ADD_RQ", "CONV_MUL",
    ];
    let sqnr = sqnr_against_float("caffe2_style", &[1, 3, 12, 12], "logits", &ops);
    assert!(sqnr >= 20.0, "SQNR {sqnr:.1} dB");
}

/// Real exports by PyTorch (tests/fixtures/pytorch/export.py) of one CNN written the ways people
/// write them: `nn.Sequential`, `F.relu`, a depthwise conv, a residual add, `torch.cat`,
/// `F.adaptive_avg_pool2d` and `x.view(x.size(0), -1)`. The TorchScript exporter at opset 13,
/// again at opset 17 with a dynamic batch axis (which keeps `x.size(0)` as a Shape subgraph,
/// the export that failed in the issue), and today's default (dynamo) exporter at opset 20.
#[test]
fn pytorch_exports_of_common_patterns_compile_and_track_the_float_model() {
    for name in [
        "pytorch_patterns_opset13",
        "pytorch_patterns_opset17_dynamic_batch",
        "pytorch_patterns_dynamo",
    ] {
        let ops = ["BUF_CAT", "ADD_RQ", "POOL_AVG", "FULL_CON"];
        let sqnr = sqnr_against_float(name, &[1, 3, 32, 32], "logits", &ops);
        assert!(sqnr >= 30.0, "{name}: SQNR {sqnr:.1} dB");
    }
    assert!(
        folded_operators("pytorch_patterns_opset17_dynamic_batch", &[1, 3, 32, 32])
            .iter()
            .all(|op| !["Shape", "Gather", "Unsqueeze", "Constant"].contains(&op.as_str()))
    );
}

/// HardSwish, HardSigmoid, LeakyRelu, Elu, Softplus, Gelu and SiLU (written as
/// `Mul(x, Sigmoid(x))`) each run as one 256-entry table; ReduceMean over H and W becomes global
/// average pooling. Before, the first node failed ("HardSwish is not supported").
#[test]
fn element_wise_functions_run_as_tables_and_track_the_float_model() {
    let ops = folded_operators("activations", &[1, 3, 8, 8]);
    assert!(ops.contains(&"Silu".to_string()), "{ops:?}");
    for gone in ["Mul", "Sigmoid", "ReduceMean"] {
        assert!(!ops.contains(&gone.to_string()), "{gone} left in {ops:?}");
    }
    let sqnr = sqnr_against_float("activations", &[1, 3, 8, 8], "logits", &["POOL_GAVG"]);
    assert!(sqnr >= 30.0, "SQNR {sqnr:.1} dB");
    let compiled = compiled_on_first_input("activations", &[1, 3, 8, 8]);
    assert_eq!(
        compiled.source.matches("ACT_LUT").count(),
        7,
        "{}",
        compiled.source
    );
}

/// The same images as whole pixels 0..=255 (the fixtures hold pixel / 255).
fn pixels(images: &[Vec<f32>]) -> Vec<Vec<f32>> {
    images
        .iter()
        .map(|x| x.iter().map(|v| (v * 255.0).round()).collect())
        .collect()
}

/// Runs `compiled` on one input as its program takes it.
fn run(compiled: &Compiled, x: &[f32]) -> Vec<i8> {
    let exe = Executable::new(compiled.program.clone()).unwrap();
    execute(
        &exe,
        &compiled.quantize_input(x),
        &BlockList(&compiled.blocks),
        &Native,
        &Config::default(),
        u64::MAX,
    )
    .unwrap()
    .output
}

/// `--input-scale 255`: the program takes the raw pixels, and its table gives each byte the
/// very int8 that quantizing pixel / 255 gave the program compiled on floats, so the two
/// programs' outputs are identical on every test image.
#[test]
fn a_raw_pixel_program_matches_the_program_compiled_on_scaled_floats_bit_for_bit() {
    let dir = support::fixtures("lenet5_float.onnx");
    let model = dir.join("lenet5_float.onnx");
    let raw_calibration = pixels(&images(dir.join("lenet5_calibration.npy")));
    let raw_tests = pixels(&images(dir.join("lenet5_test.npy")));
    let scaled = |x: &Vec<f32>| x.iter().map(|p| p / 255.0).collect::<Vec<f32>>();
    let shape = [1, 1, 32, 32];
    let floats = compile(
        &model,
        &shape,
        &raw_calibration.iter().map(scaled).collect::<Vec<_>>(),
    )
    .unwrap();
    let norm = Normalization {
        scale: 255.0,
        mean: vec![0.0],
        std: vec![1.0],
    };
    let raw = compile_with(&model, &shape, &raw_calibration, Some(&norm)).unwrap();
    assert!(raw
        .source
        .contains("; input normalization\n    PUSH 0\n    ACT_LUT"));
    assert_eq!(raw.input, floats.input, "the same input quantization");
    for x in &raw_tests {
        assert!(x.iter().all(|p| (0.0..=255.0).contains(p)));
        assert_eq!(run(&raw, x), run(&floats, &scaled(x)));
    }
}

/// ImageNet-style per-channel mean and std: the program takes raw pixels, a table makes them
/// signed and a depthwise 1x1 convolution normalizes each channel; it tracks the float model
/// run on the normalized input as closely as the float-input program does.
#[test]
fn a_per_channel_mean_std_program_takes_raw_pixels_and_tracks_the_float_model() {
    let dir = support::fixtures("lenet5_float.onnx");
    let name = "pytorch_patterns_opset13";
    let model = dir.join(format!("{name}.onnx"));
    let (_, values) = read_npy(&dir.join(format!("{name}_inputs.npy"))).unwrap();
    let raw: Vec<Vec<f32>> = values
        .chunks(3 * 32 * 32)
        .map(|c| c.iter().map(|v| (v * 255.0).round()).collect())
        .collect();
    let norm = Normalization {
        scale: 255.0,
        mean: vec![0.485, 0.456, 0.406],
        std: vec![0.229, 0.224, 0.225],
    };
    let (calibration, tests) = raw.split_at(raw.len() / 2);
    let shape = [1, 3, 32, 32];
    let compiled = compile_with(&model, &shape, calibration, Some(&norm)).unwrap();
    let first_layers: Vec<&str> = compiled
        .source
        .lines()
        .filter(|l| l.starts_with("; "))
        .take(3)
        .collect();
    assert_eq!(first_layers[1], "; input normalization");
    assert!(first_layers[2].contains("Conv 3x1x1x1"), "{first_layers:?}");
    let c = compare(&compiled, &model, &shape, "logits", tests);
    println!("per-channel mean/std: SQNR {:.1} dB", c.sqnr);
    assert!(c.sqnr >= 30.0, "SQNR {:.1} dB", c.sqnr);
    assert_eq!(c.agree, tests.len());
    // Values the normalization would divide by zero, or lists of the wrong length, are refused.
    for bad in [
        Normalization {
            std: vec![0.0],
            ..norm.clone()
        },
        Normalization {
            mean: vec![0.5, 0.5],
            ..norm.clone()
        },
        Normalization {
            scale: 0.0,
            ..norm.clone()
        },
    ] {
        assert!(compile_with(&model, &shape, calibration, Some(&bad)).is_err());
    }
}

/// A squeeze-and-excitation gate (one value per channel times a 12x12 map: broadcast by three
/// CONV_TPDs, one per prime factor of 12 (2, 2 and 3), then MUL_RQ), a product of two maps
/// of one shape, and the gated map's input kept for a residual Add. Before, the first Mul
/// failed ("Mul is not supported").
#[test]
fn a_squeeze_excite_gate_broadcasts_and_multiplies_and_tracks_the_float_model() {
    let ops = ["CONV_TPD", "MUL_RQ", "ADD_RQ", "ACT_LUT"];
    let sqnr = sqnr_against_float("squeeze_excite", &[1, 3, 12, 12], "logits", &ops);
    assert!(sqnr >= 28.0, "SQNR {sqnr:.1} dB");
    let compiled = compiled_on_first_input("squeeze_excite", &[1, 3, 12, 12]);
    assert_eq!(compiled.source.matches("CONV_TPD").count(), 3);
    assert_eq!(compiled.source.matches("MUL_RQ").count(), 2);
}

/// ONNX LRN (AlexNet's, and ZFNet's with bias 2 and an even window) built from existing
/// instructions: a squaring table, a band-of-ones 1x1 conv for the window sums, a table for
/// `(bias + alpha/size · sum)^-beta` and MUL_RQ. Before, it failed ("LRN is not supported").
/// The normalization matters here: the float model with its LRNs left out is 2 dB from it.
#[test]
fn local_response_normalization_tracks_the_float_model() {
    let ops = ["ACT_LUT", "MUL_RQ", "CONV_MUL"];
    let sqnr = sqnr_against_float("lrn", &[1, 3, 8, 8], "logits", &ops);
    assert!(sqnr >= 25.0, "SQNR {sqnr:.1} dB");
}

/// ShuffleNet v2's unit: a channel Split, a Concat and two channel shuffles (Reshape →
/// Transpose → Reshape, folded into one ChannelShuffle), the second over 150 channels, more
/// than one batch of slices fits in the Buffer's frame limit. Before, the Split failed.
#[test]
fn channel_split_and_shuffle_move_planes_exactly_and_track_the_float_model() {
    let ops = folded_operators("shuffle", &[1, 3, 6, 6]);
    assert_eq!(
        ops.iter().filter(|o| *o == "ChannelShuffle").count(),
        2,
        "{ops:?}"
    );
    assert!(
        !ops.iter().any(|o| o == "Transpose" || o == "Reshape"),
        "{ops:?}"
    );
    let ops = ["BUF_SLICE", "BUF_CAT", "BUF_CLS"];
    let sqnr = sqnr_against_float("shuffle", &[1, 3, 6, 6], "logits", &ops);
    assert!(sqnr >= 28.0, "SQNR {sqnr:.1} dB");
}

/// A Keras model converted by tf2onnx (tests/fixtures/keras/export.py): `padding="same"` on a
/// stride-2 conv pads `[0, 0, 1, 1]`, lowered as a kernel one larger with a zero leading row and
/// column and equal padding 1; ZeroPadding2D arrives as a Pad, taken into the next conv's padding
/// and into a max pool's after a ReLU; GlobalAveragePooling2D arrives as ReduceMean → Squeeze and
/// Dense as MatMul + Add. Before, the Squeeze failed, then the padding, then the Pad.
#[test]
fn a_keras_export_with_same_padding_compiles_and_tracks_the_float_model() {
    let ops = folded_operators("keras_cnn", &[1, 3, 32, 32]);
    assert!(
        !ops.iter().any(|o| o == "Squeeze" || o == "ReduceMean"),
        "{ops:?}"
    );
    let sqnr = sqnr_against_float("keras_cnn", &[1, 3, 32, 32], "logits", &["CONV_MUL"]);
    assert!(sqnr >= 30.0, "SQNR {sqnr:.1} dB");
    let compiled = compiled_on_first_input("keras_cnn", &[1, 3, 32, 32]);
    assert!(
        compiled.source.contains("Conv 24x16x4x4"),
        "{}",
        compiled.source
    );
}
