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

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn run_reports_output_gas_and_buffer_as_json() {
    let dir = root().join("examples/lenet5");
    let p = |f: &str| dir.join(f).to_string_lossy().into_owned();
    let (ok, stdout, stderr) = smartvm(&[
        "run",
        &p("lenet5.sasm"),
        "--weights",
        &p("weights.smw"),
        "--input",
        &p("inputs.bin"),
        "--index",
        "2",
        "--json",
    ]);
    assert!(ok, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    assert_eq!(v["output"], expected["logits"][2]);
    assert_eq!(v["argmax"], expected["argmax"][2]);
    assert_eq!(v["peak_buffer_bytes"], 5880);
    assert!(v["gas_used"].as_u64().unwrap() > 0);
    let (ok, _, stderr) = smartvm(&[
        "run",
        &p("lenet5.sasm"),
        "--weights",
        &p("weights.smw"),
        "--input",
        &p("inputs.bin"),
        "--index",
        "9",
    ]);
    assert!(!ok && stderr.contains("out of range"), "{stderr}");
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
