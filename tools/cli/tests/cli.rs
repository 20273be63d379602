//! The `smartvm` binary end to end: compile an ONNX fixture, run it on a .npy input, and the
//! LeNet-5 example through `run --json`.

use std::path::PathBuf;
use std::process::Command;

fn smartvm(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_smartvm"))
        .args(args)
        .output()
        .expect("runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// The repository, found at run time: cargo may reuse this binary for another checkout.
fn root() -> PathBuf {
    PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo")).join("../..")
}

/// The decompressed bytes of a Fashion-MNIST IDX file (a 16-byte header, then 784 per image).
fn idx_bytes(path: &str) -> Vec<u8> {
    let mut raw = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap()),
        &mut raw,
    )
    .unwrap();
    raw
}

/// Writes a 28x28 grayscale PNG.
fn write_png(path: &std::path::Path, pixels: &[u8]) {
    let mut encoder = png::Encoder::new(std::fs::File::create(path).unwrap(), 28, 28);
    encoder.set_color(png::ColorType::Grayscale);
    encoder
        .write_header()
        .unwrap()
        .write_image_data(pixels)
        .unwrap();
}

/// `smartvm eval --json` of the program in `dir` on the first `limit` Fashion-MNIST test images,
/// against the float `model`.
fn eval_json(dir: &str, model: &std::path::Path, limit: &str) -> serde_json::Value {
    let d = |n: &str| format!("/usr/share/datasets/fashion-mnist/{n}");
    let (ok, stdout, stderr) = smartvm(&[
        "eval",
        dir,
        "--images",
        &d("t10k-images-idx3-ubyte.gz"),
        "--labels",
        &d("t10k-labels-idx1-ubyte.gz"),
        "--model",
        &model.to_string_lossy(),
        "--limit",
        limit,
        "--json",
    ]);
    assert!(ok, "{stderr}");
    serde_json::from_str(&stdout).unwrap()
}

/// The output `smartvm run --json` gives for `input` on the program compiled into `dir`.
fn run_output(dir: &std::path::Path, input: &str) -> serde_json::Value {
    let o = |n: &str| dir.join(n).to_string_lossy().into_owned();
    let (ok, stdout, stderr) = smartvm(&[
        "run",
        &o("program.smvm"),
        "--weights",
        &o("weights.smw"),
        "--input",
        &o(input),
        "--json",
    ]);
    assert!(ok, "{stderr}");
    serde_json::from_str::<serde_json::Value>(&stdout).unwrap()["output"].clone()
}

/// `smartvm run` on the committed LeNet-5 example with its inputs, then `extra` arguments.
fn run_lenet5(extra: &[&str]) -> (bool, String, String) {
    let dir = root().join("examples/lenet5");
    let p = |f: &str| dir.join(f).to_string_lossy().into_owned();
    let (program, weights, inputs) = (p("lenet5.sasm"), p("weights.smw"), p("inputs.bin"));
    let mut args = vec!["run", &program, "--weights", &weights, "--input", &inputs];
    args.extend_from_slice(extra);
    smartvm(&args)
}

#[test]
fn run_reports_output_gas_and_buffer_as_json() {
    let dir = root().join("examples/lenet5");
    let (ok, stdout, stderr) = run_lenet5(&["--index", "2", "--json"]);
    assert!(ok, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    assert_eq!(v["output"], expected["logits"][2]);
    assert_eq!(v["argmax"], expected["argmax"][2]);
    assert_eq!(v["peak_buffer_bytes"], 5880);
    assert!(v["gas_used"].as_u64().unwrap() > 0);
    let (ok, _, stderr) = run_lenet5(&["--index", "9"]);
    assert!(!ok && stderr.contains("out of range"), "{stderr}");
}

/// `--profile` times every kernel call: LeNet-5's seven layers (three convolutions, two pools,
/// two fully connected) each appear with their calls a run, and the time outside the calls closes
/// the table.
#[test]
fn run_profile_lists_every_layer_call() {
    let (ok, stdout, stderr) = run_lenet5(&["--repeat", "3", "--profile"]);
    assert!(ok, "{stderr}");
    let rows: Vec<Vec<&str>> = stdout
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| layer"))
        .map(|l| l.split('|').map(str::trim).collect())
        .collect();
    let calls = |kind: &str| -> u32 {
        rows.iter()
            .filter(|r| r[1].starts_with(kind))
            .map(|r| r[2].parse::<u32>().unwrap())
            .sum()
    };
    assert_eq!(
        (calls("conv "), calls("pool "), calls("fully connected ")),
        (3, 2, 2),
        "{stdout}"
    );
    assert!(
        rows.last().unwrap()[1].starts_with("outside the kernel calls"),
        "{stdout}"
    );
}

/// `--tile` runs the native kernels on the tile named, each giving the expected logits; the
/// report names the tile, and a tile this CPU cannot run or does not know is a clear error.
#[test]
fn run_on_every_tile_this_cpu_has_gives_the_expected_logits() {
    let dir = root().join("examples/lenet5");
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let tiles = smartvm_kernels::tile::Tile::supported_tiles();
    for tile in &tiles {
        let (ok, stdout, stderr) = run_lenet5(&["--index", "3", "--tile", tile.name(), "--json"]);
        assert!(ok, "{stderr}");
        let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(v["output"], expected["logits"][3], "{}", tile.name());
        assert_eq!(v["tile"], tile.name());
    }
    println!(
        "smartvm run checked on tiles: {}",
        tiles
            .iter()
            .map(|t| t.name())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let (ok, _, stderr) = run_lenet5(&["--tile", "sse9"]);
    assert!(!ok && stderr.contains("unknown tile"), "{stderr}");
}

/// `--slice-gas` runs the program again as a job across blocks would, pausing and resuming
/// through SCALE-encoded snapshots, and must end the same; a slice too small for one layer is a
/// clear error, not a loop.
#[test]
fn run_in_slices_pauses_and_ends_the_same() {
    let dir = root().join("examples/lenet5");
    let p = |f: &str| dir.join(f).to_string_lossy().into_owned();
    let args = |slice: &'static str| {
        let mut a = vec!["run".to_string(), p("lenet5.sasm"), "--weights".into()];
        a.extend([
            p("weights.smw"),
            "--input".into(),
            p("inputs.bin"),
            "--json".into(),
        ]);
        a.extend(["--slice-gas".into(), slice.into()]);
        a
    };
    let run = |slice| {
        let a = args(slice);
        smartvm(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let (ok, stdout, stderr) = run("80000");
    assert!(ok, "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let pauses = report["slices"]["pauses"].as_u64().unwrap();
    let gas = report["gas_used"].as_u64().unwrap();
    assert!(pauses >= gas / 80_000, "{pauses} pauses for {gas} gas");
    assert!(report["slices"]["snapshot_bytes"][0].as_u64().unwrap() > 1024);
    let (ok, _, stderr) = run("1000");
    assert!(
        !ok && stderr.contains("cannot hold the instruction"),
        "{stderr}"
    );
}

#[test]
fn compile_then_run_a_npy_input() {
    let fixtures =
        PathBuf::from(std::env::var("SMARTVM_FIXTURES").unwrap_or_else(|_| {
            format!("{}/.cache/smartvm/fixtures", std::env::var("HOME").unwrap())
        }));
    let model = fixtures.join("lenet5_float.onnx");
    assert!(model.exists(), "run `make fixtures` first");
    let out = std::env::temp_dir().join(format!("smartvm-cli-test-{}", std::process::id()));
    let f = |n: &str| fixtures.join(n).to_string_lossy().into_owned();
    let o = |n: &str| out.join(n).to_string_lossy().into_owned();
    let (ok, _, stderr) = smartvm(&[
        "compile",
        &f("lenet5_float.onnx"),
        "--calibration",
        &f("lenet5_calibration.npy"),
        "--input-shape",
        "1,1,32,32",
        "-o",
        &o(""),
    ]);
    assert!(ok, "{stderr}");
    let (ok, stdout, stderr) = smartvm(&[
        "run",
        &o("program.smvm"),
        "--weights",
        &o("weights.smw"),
        "--input",
        &f("lenet5_test.npy"),
        "--index",
        "5",
        "--json",
    ]);
    assert!(ok, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["output"].as_array().unwrap().len(), 10);
    assert_eq!(v["dequantized"].as_array().unwrap().len(), 10);
    let (ok, _, stderr) = smartvm(&[
        "run",
        &o("program.smvm"),
        "--weights",
        &f("lenet5_calibration.npy"),
        "--input",
        &f("lenet5_test.npy"),
    ]);
    assert!(!ok && stderr.contains("not a weight pack"), "{stderr}");
    std::fs::remove_dir_all(&out).ok();
}

/// The trained Fashion-MNIST LeNet-5 (models/lenet5-fashion) compiled with IDX calibration keeps
/// the float model's accuracy on real test images.
#[test]
fn trained_lenet5_keeps_its_accuracy_on_fashion_mnist() {
    let data = PathBuf::from("/usr/share/datasets/fashion-mnist");
    assert!(
        data.exists(),
        "Fashion-MNIST missing: apt-get install dataset-fashion-mnist (make setup does)"
    );
    let model = root().join("models/lenet5-fashion/lenet5_fashion.onnx");
    let out = std::env::temp_dir().join(format!("smartvm-fmnist-{}", std::process::id()));
    let d = |n: &str| data.join(n).to_string_lossy().into_owned();
    let (ok, _, stderr) = smartvm(&[
        "compile",
        &model.to_string_lossy(),
        "--calibration",
        &d("train-images-idx3-ubyte.gz"),
        "--calibration-count",
        "256",
        "--input-shape",
        "1,1,28,28",
        "-o",
        &out.to_string_lossy(),
    ]);
    assert!(ok, "{stderr}");
    let v = eval_json(&out.to_string_lossy(), &model, "1000");
    let (int, float, agree) = (
        v["integer_top1"].as_f64().unwrap(),
        v["float_top1"].as_f64().unwrap(),
        v["agreement"].as_f64().unwrap(),
    );
    println!(
        "Fashion-MNIST first 1000: integer {int:.1}%, float {float:.1}%, agreement {agree:.1}%"
    );
    assert!(float > 85.0, "the committed model is trained: {float}%");
    assert!(int >= float - 1.0, "integer {int}% vs float {float}%");
    assert!(agree >= 97.0, "agreement {agree}%");

    // The first test image as a PNG gives exactly what its quantized raw bytes give.
    let raw = idx_bytes(&d("t10k-images-idx3-ubyte.gz"));
    let pixels = &raw[16..16 + 784];
    write_png(&out.join("image0.png"), pixels);
    let quant: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("quant.json")).unwrap()).unwrap();
    let (scale, zero) = (
        quant["input"]["scale"].as_f64().unwrap() as f32,
        quant["input"]["zero_point"].as_i64().unwrap() as f32,
    );
    let bytes: Vec<u8> = pixels
        .iter()
        .map(|p| ((*p as f32 / 255.0 / scale).round() + zero).clamp(-128.0, 127.0) as i8 as u8)
        .collect();
    std::fs::write(out.join("image0.bin"), &bytes).unwrap();
    assert_eq!(
        run_output(&out, "image0.png"),
        run_output(&out, "image0.bin")
    );
    std::fs::remove_dir_all(&out).ok();
}

/// The committed demo model (models/lenet5-fashion/compiled, deployed at genesis) is what
/// `smartvm compile` writes from its ONNX file on any machine: with the calibration run on one
/// thread and on several, this (debug) build writes the same bytes as the release build that
/// made the committed files. tests/demo_model/check.sh checks the release build the same way.
#[test]
fn the_demo_model_compiles_to_the_committed_bytes_on_any_thread_count() {
    let data = PathBuf::from("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz");
    assert!(
        data.exists(),
        "Fashion-MNIST missing: apt-get install dataset-fashion-mnist (make setup does)"
    );
    let model = root().join("models/lenet5-fashion");
    for threads in ["1", "3"] {
        let out =
            std::env::temp_dir().join(format!("smartvm-demo-{}-{threads}", std::process::id()));
        let status = Command::new(env!("CARGO_BIN_EXE_smartvm"))
            .env("RAYON_NUM_THREADS", threads)
            .args([
                "compile",
                &model.join("lenet5_fashion.onnx").to_string_lossy(),
            ])
            .args(["--calibration", &data.to_string_lossy()])
            .args([
                "--calibration-count",
                "512",
                "--input-shape",
                "1,1,28,28",
                "-o",
            ])
            .arg(&out)
            .output()
            .expect("runs");
        assert!(
            status.status.success(),
            "{}",
            String::from_utf8_lossy(&status.stderr)
        );
        for file in ["program.smvm", "weights.smw", "quant.json"] {
            assert!(
                std::fs::read(out.join(file)).unwrap()
                    == std::fs::read(model.join("compiled").join(file)).unwrap(),
                "{file} compiled on {threads} thread(s) differs from the committed one \
                 (make demo-model regenerates it)"
            );
        }
        std::fs::remove_dir_all(&out).ok();
    }
}

/// `smartvm asm` refuses what `run` and the chain refuse (it wrote such programs before), and
/// takes a conditional jump whose destination lies below its condition.
#[test]
fn asm_validates_what_it_writes() {
    let dir = std::env::temp_dir().join(format!("smartvm-asm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.to_string_lossy().into_owned()
    };
    let out = dir.join("out.smvm").to_string_lossy().into_owned();
    let bad = write("bad.sasm", ".input 1 1 1 1\n.output 1\n    ADD\n    STOP\n");
    let (ok, _, stderr) = smartvm(&["asm", &bad, "-o", &out]);
    assert!(!ok && stderr.contains("StackUnderflow"), "{stderr}");
    assert!(!std::path::Path::new(&out).exists(), "nothing is written");
    let good = write(
        "jumpi.sasm",
        ".input 1 1 1 1\n.output 1\n    PUSH @target\n    PUSH 1\n    JUMPI\n    STOP\ntarget:\n    JUMPDEST\n    STOP\n",
    );
    let (ok, _, stderr) = smartvm(&["asm", &good, "-o", &out]);
    assert!(ok, "{stderr}");
    std::fs::remove_dir_all(&dir).ok();
}

/// `--input-scale 255`: the trained LeNet-5 compiled to take raw pixels. `eval` scores it
/// exactly as the program compiled on pixel / 255 (its input table gives each byte the int8
/// that quantizing pixel / 255 gave), quant.json records the normalization, and `run` feeds a
/// PNG's pixels as the bytes themselves.
#[test]
fn a_raw_pixel_lenet5_scores_as_the_scaled_one_and_takes_png_pixels_as_bytes() {
    let data = PathBuf::from("/usr/share/datasets/fashion-mnist");
    assert!(
        data.exists(),
        "Fashion-MNIST missing: apt-get install dataset-fashion-mnist (make setup does)"
    );
    let model = root().join("models/lenet5-fashion/lenet5_fashion.onnx");
    let d = |n: &str| data.join(n).to_string_lossy().into_owned();
    let top1 = |extra: &[&str], tag: &str| -> (f64, PathBuf) {
        let out = std::env::temp_dir().join(format!("smartvm-{tag}-{}", std::process::id()));
        let (calibration, out_s) = (
            d("train-images-idx3-ubyte.gz"),
            out.to_string_lossy().into_owned(),
        );
        let mut args = vec!["compile", model.to_str().unwrap(), "--calibration"];
        args.extend_from_slice(&[&calibration, "--calibration-count", "256"]);
        args.extend_from_slice(&["--input-shape", "1,1,28,28", "-o", &out_s]);
        args.extend_from_slice(extra);
        let (ok, _, stderr) = smartvm(&args);
        assert!(ok, "{stderr}");
        let v = eval_json(&out_s, &model, "500");
        assert!(v["agreement"].as_f64().unwrap() >= 97.0, "{v}");
        (v["integer_top1"].as_f64().unwrap(), out)
    };
    let (scaled, scaled_dir) = top1(&[], "scaled");
    let (raw, raw_dir) = top1(&["--input-scale", "255"], "raw");
    assert_eq!(raw, scaled);
    let quant: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(raw_dir.join("quant.json")).unwrap())
            .unwrap();
    assert_eq!(quant["input_format"], "u8");
    assert_eq!(quant["normalization"]["scale"], 255.0);

    // A PNG of a test image runs as its pixel bytes, unchanged.
    let idx = idx_bytes(&d("t10k-images-idx3-ubyte.gz"));
    let pixels = &idx[16 + 784..16 + 2 * 784];
    write_png(&raw_dir.join("image1.png"), pixels);
    std::fs::write(raw_dir.join("image1.bin"), pixels).unwrap();
    assert_eq!(
        run_output(&raw_dir, "image1.png"),
        run_output(&raw_dir, "image1.bin")
    );
    // A quant.json whose mean list does not fit the input's channels is refused by name, not
    // indexed (an empty list panicked before).
    let mut bad = quant.clone();
    bad["normalization"]["mean"] = serde_json::json!([]);
    std::fs::write(raw_dir.join("quant.json"), bad.to_string()).unwrap();
    let (ok, _, stderr) = smartvm(&[
        "run",
        &raw_dir.join("program.smvm").to_string_lossy(),
        "--weights",
        &raw_dir.join("weights.smw").to_string_lossy(),
        "--input",
        &raw_dir.join("image1.png").to_string_lossy(),
    ]);
    assert!(!ok && stderr.contains("normalization"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    for dir in [scaled_dir, raw_dir] {
        std::fs::remove_dir_all(dir).ok();
    }
}
