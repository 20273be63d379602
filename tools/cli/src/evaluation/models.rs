//! The models of the paper's evaluation and the inputs each is measured on.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use smartvm_compiler::{onnx::OnnxModel, read_npy};

use crate::idx::Idx;

/// One model: where it is, its input shape, calibration and test inputs, labels if known.
pub struct ModelSpec {
    /// Name in the report.
    pub name: &'static str,
    /// Float ONNX model.
    pub onnx: PathBuf,
    /// Input shape with batch 1.
    pub shape: Vec<usize>,
    /// The output compared (the graph's first).
    pub output: String,
    /// Calibration inputs.
    pub calibration: Vec<Vec<f32>>,
    /// Test inputs.
    pub tests: Vec<Vec<f32>>,
    /// Labels of the test inputs, for accuracy.
    pub labels: Option<Vec<u8>>,
}

/// Float inputs, one vector per input.
type Inputs = Vec<Vec<f32>>;

fn first_output(model: &Path) -> Result<String> {
    let onnx = OnnxModel::load(model)?;
    match onnx.proto.graph.as_ref().and_then(|g| g.output.first()) {
        Some(o) => Ok(o.name.clone()),
        None => bail!("{} has no graph output", model.display()),
    }
}

/// Inputs of a `.npy`: the first `calibration` ones, then up to `count` test inputs.
fn npy_inputs(
    path: &Path,
    per_input: usize,
    calibration: usize,
    count: usize,
) -> Result<(Inputs, Inputs)> {
    let (_, values) = read_npy(path)?;
    let mut inputs: Inputs = values.chunks(per_input).map(<[f32]>::to_vec).collect();
    if inputs.len() <= calibration {
        bail!("{} holds only {} inputs", path.display(), inputs.len());
    }
    let tests = inputs.split_off(calibration);
    Ok((inputs, tests.into_iter().take(count).collect()))
}

/// Images of an IDX file scaled to [0, 1], as LeNet-5 was trained.
fn idx_images(path: &Path, count: usize) -> Result<Inputs> {
    let idx = Idx::read(path)?;
    Ok((0..count.min(idx.len()))
        .map(|i| idx.item(i).iter().map(|p| *p as f32 / 255.0).collect())
        .collect())
}

/// LeNet-5 on all Fashion-MNIST test images, then the zoo and the LSTM on `count` inputs each.
pub fn specs(
    fixtures: &Path,
    fashion: &Path,
    lenet: &Path,
    count: usize,
) -> Result<Vec<ModelSpec>> {
    let labels = Idx::read(&fashion.join("t10k-labels-idx1-ubyte.gz"))?;
    let mut specs = vec![ModelSpec {
        name: "LeNet-5",
        onnx: lenet.to_path_buf(),
        shape: vec![1, 1, 28, 28],
        output: first_output(lenet)?,
        calibration: idx_images(&fashion.join("train-images-idx3-ubyte.gz"), 512)?,
        tests: idx_images(&fashion.join("t10k-images-idx3-ubyte.gz"), usize::MAX)?,
        labels: Some((0..labels.len()).map(|i| labels.item(i)[0]).collect()),
    }];
    let zoo = fixtures.join("zoo");
    for (name, file) in [
        ("AlexNet", "alexnet.onnx"),
        ("ResNet-18", "resnet18.onnx"),
        ("MobileNetV2", "mobilenetv2.onnx"),
    ] {
        let onnx = zoo.join(file);
        let (calibration, tests) =
            npy_inputs(&zoo.join("imagenet_inputs.npy"), 3 * 224 * 224, 8, count)?;
        specs.push(ModelSpec {
            name,
            output: first_output(&onnx)?,
            onnx,
            shape: vec![1, 3, 224, 224],
            calibration,
            tests,
            labels: None,
        });
    }
    let lstm = fixtures.join("lstm.onnx");
    let (calibration, tests) = npy_inputs(&fixtures.join("lstm_inputs.npy"), 784, 8, count)?;
    specs.push(ModelSpec {
        name: "LSTM",
        output: first_output(&lstm)?,
        onnx: lstm,
        shape: vec![1, 784],
        calibration,
        tests,
        labels: None,
    });
    Ok(specs)
}
