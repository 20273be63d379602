//! The calibration evaluator (`smartvm_compiler::reference`) against two independent yardsticks,
//! on single-operator ONNX models of random geometry:
//! - bit for bit against a per-element definition written here (one sum per output element in
//!   the documented order), which is what makes calibration the same bits on every machine;
//! - within float tolerance against tract, the float reference, so the fixed order computes
//!   what ONNX means.

use std::path::PathBuf;

use proptest::prelude::*;
mod support;

use prost::Message;
use smartvm_compiler::onnx::OnnxModel;
use smartvm_compiler::reference::Evaluator;
use smartvm_compiler::FloatRunner;
use tract_onnx::pb::attribute_proto::AttributeType;
use tract_onnx::pb::tensor_shape_proto::{dimension, Dimension};
use tract_onnx::pb::{
    type_proto, AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto,
};

fn ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Ints as i32,
        ints: v.to_vec(),
        ..Default::default()
    }
}

fn int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Int as i32,
        i: v,
        ..Default::default()
    }
}

fn float_input(name: &str, dims: &[usize]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(dimension::Value::DimValue(*d as i64)),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: 1,
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A one-node model `y = op(x, constants...)` written to a temporary file.
struct OneNode {
    path: PathBuf,
    input: Vec<usize>,
}

impl OneNode {
    fn new(
        op: &str,
        input: &[usize],
        constants: &[(&str, Vec<usize>, Vec<f32>)],
        attrs: Vec<AttributeProto>,
    ) -> OneNode {
        let mut inputs = vec!["x".to_string()];
        inputs.extend(constants.iter().map(|(n, _, _)| n.to_string()));
        let graph = GraphProto {
            node: vec![NodeProto {
                name: "the_node".into(),
                op_type: op.into(),
                input: inputs,
                output: vec!["y".into()],
                attribute: attrs,
                ..Default::default()
            }],
            initializer: constants
                .iter()
                .map(|(name, dims, data)| TensorProto {
                    name: name.to_string(),
                    dims: dims.iter().map(|d| *d as i64).collect(),
                    data_type: 1,
                    float_data: data.clone(),
                    ..Default::default()
                })
                .collect(),
            input: vec![float_input("x", input)],
            output: vec![ValueInfoProto {
                name: "y".into(),
                ..Default::default()
            }],
            name: "one".into(),
            ..Default::default()
        };
        let model = ModelProto {
            ir_version: 8,
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: 13,
            }],
            graph: Some(graph),
            ..Default::default()
        };
        let path = std::env::temp_dir().join(format!(
            "smartvm-reference-{}-{:?}.onnx",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::write(&path, model.encode_to_vec()).unwrap();
        OneNode {
            path,
            input: input.to_vec(),
        }
    }

    /// The evaluator's `y`.
    fn evaluate(&self, x: &[f32]) -> Vec<f32> {
        let model = OnnxModel::load(&self.path).unwrap();
        let evaluator = Evaluator::new(&model, &self.input).unwrap();
        let mut y = None;
        evaluator
            .run(x, &mut |name, v| {
                if name == "y" {
                    y = Some(v.to_vec());
                }
            })
            .unwrap();
        y.expect("the node's output was observed")
    }

    /// tract's `y`.
    fn tract(&self, x: &[f32]) -> Vec<f32> {
        FloatRunner::new(&self.path, &self.input, &["y".to_string()])
            .unwrap()
            .run(x)
            .unwrap()
            .remove(0)
    }
}

impl Drop for OneNode {
    fn drop(&mut self) {
        std::fs::remove_file(&self.path).ok();
    }
}

/// Values spread over many binades, so that summing in another order changes the bits.
fn spread(n: usize) -> impl Strategy<Value = Vec<f32>> {
    prop::collection::vec((-1.0f32..1.0, -6i32..6), n)
        .prop_map(|v| v.into_iter().map(|(m, e)| m * 2f32.powi(e)).collect())
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// `got` within float tolerance of `want`, relative to each element's sum of |terms|.
fn close(got: &[f32], want: &[f32], magnitude: &[f32]) -> Result<(), TestCaseError> {
    prop_assert_eq!(got.len(), want.len());
    for (i, ((g, w), m)) in got.iter().zip(want).zip(magnitude).enumerate() {
        prop_assert!(
            (g - w).abs() <= 1e-5 * m + 1e-6,
            "element {}: {} vs tract {} (terms {})",
            i,
            g,
            w,
            m
        );
    }
    Ok(())
}

/// Conv geometry within what the lowering and ONNX admit.
#[derive(Debug, Clone)]
struct ConvCase {
    c: usize,
    o: usize,
    groups: usize,
    k: (usize, usize),
    stride: (usize, usize),
    dilation: (usize, usize),
    pads: [usize; 4],
    h: usize,
    w: usize,
}

fn conv_case() -> impl Strategy<Value = ConvCase> {
    (
        1usize..4,
        1usize..4,
        prop_oneof![Just(1usize), Just(2), Just(3)],
        (1usize..6, 1usize..6),
        (1usize..4, 1usize..4),
        (1usize..3, 1usize..3),
        [0usize..4, 0usize..4, 0usize..4, 0usize..4],
        (1usize..12, 1usize..12),
    )
        .prop_map(
            |(cg, og, groups, k, stride, dilation, pads, (h, w))| ConvCase {
                c: cg * groups,
                o: og * groups,
                groups,
                k,
                stride,
                dilation,
                pads,
                h,
                w,
            },
        )
        .prop_filter("the window fits the padded input", |c| {
            c.h + c.pads[0] + c.pads[2] > c.dilation.0 * (c.k.0 - 1)
                && c.w + c.pads[1] + c.pads[3] > c.dilation.1 * (c.k.1 - 1)
        })
}

/// Conv by its definition: per output element, 0 + Σ over (ic, ky, kx) ascending, then + bias.
/// Returns the outputs and each one's sum of |terms|.
fn conv_by_definition(p: &ConvCase, x: &[f32], w: &[f32], b: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let span = |n: usize, k: usize, s: usize, d: usize, pb: usize, pe: usize| {
        (n + pb + pe - d * (k - 1) - 1) / s + 1
    };
    let oh = span(p.h, p.k.0, p.stride.0, p.dilation.0, p.pads[0], p.pads[2]);
    let ow = span(p.w, p.k.1, p.stride.1, p.dilation.1, p.pads[1], p.pads[3]);
    let (cg, og) = (p.c / p.groups, p.o / p.groups);
    let (mut out, mut mag) = (vec![], vec![]);
    for oc in 0..p.o {
        for oy in 0..oh {
            for ox in 0..ow {
                let (mut acc, mut m) = (0f32, b[oc].abs());
                for ic in 0..cg {
                    for ky in 0..p.k.0 {
                        for kx in 0..p.k.1 {
                            let iy =
                                (oy * p.stride.0 + ky * p.dilation.0) as isize - p.pads[0] as isize;
                            let ix =
                                (ox * p.stride.1 + kx * p.dilation.1) as isize - p.pads[1] as isize;
                            if iy < 0 || ix < 0 || iy >= p.h as isize || ix >= p.w as isize {
                                continue;
                            }
                            let xv =
                                x[((oc / og * cg + ic) * p.h + iy as usize) * p.w + ix as usize];
                            let wv = w[((oc * cg + ic) * p.k.0 + ky) * p.k.1 + kx];
                            acc += wv * xv;
                            m += (wv * xv).abs();
                        }
                    }
                }
                out.push(acc + b[oc]);
                mag.push(m);
            }
        }
    }
    (out, mag)
}

fn conv_model(p: &ConvCase, w: &[f32], b: &[f32], transposed: bool) -> OneNode {
    let (cg, og) = (p.c / p.groups, p.o / p.groups);
    let wdims = if transposed {
        vec![p.c, og, p.k.0, p.k.1]
    } else {
        vec![p.o, cg, p.k.0, p.k.1]
    };
    let mut attrs = vec![
        ints("strides", &[p.stride.0 as i64, p.stride.1 as i64]),
        ints("dilations", &[p.dilation.0 as i64, p.dilation.1 as i64]),
        ints("pads", &p.pads.map(|v| v as i64)),
        int("group", p.groups as i64),
    ];
    if !transposed {
        attrs.push(ints("kernel_shape", &[p.k.0 as i64, p.k.1 as i64]));
    }
    OneNode::new(
        if transposed { "ConvTranspose" } else { "Conv" },
        &[1, p.c, p.h, p.w],
        &[("w", wdims, w.to_vec()), ("b", vec![p.o], b.to_vec())],
        attrs,
    )
}

/// ConvTranspose by its definition: per output element, 0 + Σ over (ic in its group, ky, kx)
/// ascending of the one input each tap maps from, then + bias.
fn conv_transpose_by_definition(
    p: &ConvCase,
    x: &[f32],
    w: &[f32],
    b: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    let full = |n: usize, s: usize, d: usize, k: usize| (n - 1) * s + d * (k - 1) + 1;
    let oh = full(p.h, p.stride.0, p.dilation.0, p.k.0) - p.pads[0] - p.pads[2];
    let ow = full(p.w, p.stride.1, p.dilation.1, p.k.1) - p.pads[1] - p.pads[3];
    let (cg, og) = (p.c / p.groups, p.o / p.groups);
    let (mut out, mut mag) = (vec![], vec![]);
    for oc in 0..p.o {
        for oy in 0..oh {
            for ox in 0..ow {
                let (mut acc, mut m) = (0f32, b[oc].abs());
                for ic in oc / og * cg..(oc / og + 1) * cg {
                    for ky in 0..p.k.0 {
                        for kx in 0..p.k.1 {
                            let ty = (oy + p.pads[0]) as isize - (ky * p.dilation.0) as isize;
                            let tx = (ox + p.pads[1]) as isize - (kx * p.dilation.1) as isize;
                            if ty < 0
                                || tx < 0
                                || ty % p.stride.0 as isize != 0
                                || tx % p.stride.1 as isize != 0
                            {
                                continue;
                            }
                            let (iy, ix) = (ty as usize / p.stride.0, tx as usize / p.stride.1);
                            if iy >= p.h || ix >= p.w {
                                continue;
                            }
                            let xv = x[(ic * p.h + iy) * p.w + ix];
                            let wv = w[((ic * og + oc % og) * p.k.0 + ky) * p.k.1 + kx];
                            acc += wv * xv;
                            m += (wv * xv).abs();
                        }
                    }
                }
                out.push(acc + b[oc]);
                mag.push(m);
            }
        }
    }
    (out, mag)
}

/// Case, input, weights and bias of matching sizes.
fn conv_data(transposed: bool) -> impl Strategy<Value = (ConvCase, Vec<f32>, Vec<f32>, Vec<f32>)> {
    conv_case()
        .prop_filter("a transposed output is left after the pads", move |p| {
            !transposed
                || ((p.h - 1) * p.stride.0 + p.dilation.0 * (p.k.0 - 1) + 1 > p.pads[0] + p.pads[2]
                    && (p.w - 1) * p.stride.1 + p.dilation.1 * (p.k.1 - 1) + 1
                        > p.pads[1] + p.pads[3])
        })
        .prop_flat_map(|p| {
            let weights = p.o * (p.c / p.groups) * p.k.0 * p.k.1;
            (
                Just(p.clone()),
                spread(p.c * p.h * p.w),
                spread(weights),
                spread(p.o),
            )
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn conv_sums_in_its_documented_order((p, x, w, b) in conv_data(false)) {
        let model = conv_model(&p, &w, &b, false);
        let (want, magnitude) = conv_by_definition(&p, &x, &w, &b);
        let got = model.evaluate(&x);
        prop_assert_eq!(bits(&got), bits(&want), "{:?}", p);
        close(&got, &model.tract(&x), &magnitude)?;
    }

    #[test]
    fn conv_transpose_sums_in_its_documented_order((p, x, w, b) in conv_data(true)) {
        // ConvTranspose's weights are [C, O/g, kh, kw]; the same count as Conv's.
        let model = conv_model(&p, &w, &b, true);
        let (want, magnitude) = conv_transpose_by_definition(&p, &x, &w, &b);
        let got = model.evaluate(&x);
        prop_assert_eq!(bits(&got), bits(&want), "{:?}", p);
        close(&got, &model.tract(&x), &magnitude)?;
    }

    #[test]
    fn gemm_sums_in_index_order(
        (k, n, x, w, b) in (1usize..64, 1usize..16).prop_flat_map(|(k, n)| {
            (Just(k), Just(n), spread(k), spread(k * n), spread(n))
        })
    ) {
        let model = OneNode::new(
            "Gemm",
            &[1, k],
            &[("w", vec![n, k], w.clone()), ("b", vec![n], b.clone())],
            vec![int("transB", 1)],
        );
        let (mut want, mut magnitude) = (vec![], vec![]);
        for j in 0..n {
            let (mut acc, mut m) = (0f32, b[j].abs());
            for t in 0..k {
                acc += x[t] * w[j * k + t];
                m += (x[t] * w[j * k + t]).abs();
            }
            want.push(acc + b[j]);
            magnitude.push(m);
        }
        let got = model.evaluate(&x);
        prop_assert_eq!(bits(&got), bits(&want));
        close(&got, &model.tract(&x), &magnitude)?;
    }

    #[test]
    fn pooling_matches_its_definition_and_tract(
        (c, h, w, k, s, pad, x) in (1usize..3, 2usize..10, 2usize..10, 1usize..4, 1usize..3)
            .prop_flat_map(|(c, h, w, k, s)| {
                let pad = 0..=(k - 1).min(h.min(w) - 1).min(k / 2);
                (Just(c), Just(h), Just(w), Just(k.min(h).min(w)), Just(s), pad, spread(c * h * w))
            })
    ) {
        let attrs = || vec![
            ints("kernel_shape", &[k as i64, k as i64]),
            ints("strides", &[s as i64, s as i64]),
            ints("pads", &[pad as i64; 4]),
        ];
        let (oh, ow) = ((h + 2 * pad - k) / s + 1, (w + 2 * pad - k) / s + 1);
        let (mut max, mut avg, mut magnitude) = (vec![], vec![], vec![]);
        for ch in 0..c {
            for oy in 0..oh {
                for ox in 0..ow {
                    let (mut best, mut sum, mut n, mut m) = (f32::NEG_INFINITY, 0f32, 0, 0f32);
                    for ky in 0..k {
                        for kx in 0..k {
                            let (iy, ix) = ((oy * s + ky) as isize - pad as isize, (ox * s + kx) as isize - pad as isize);
                            if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                continue;
                            }
                            let v = x[(ch * h + iy as usize) * w + ix as usize];
                            best = if v > best { v } else { best };
                            sum += v;
                            m += v.abs();
                            n += 1;
                        }
                    }
                    max.push(best);
                    avg.push(sum / n as f32);
                    magnitude.push(m);
                }
            }
        }
        for (op, want) in [("MaxPool", max), ("AveragePool", avg)] {
            let model = OneNode::new(op, &[1, c, h, w], &[], attrs());
            let got = model.evaluate(&x);
            prop_assert_eq!(bits(&got), bits(&want), "{}", op);
            close(&got, &model.tract(&x), &magnitude)?;
        }
    }
}

/// Whole models (every operator the lowering takes: Conv with BatchNormalization, Clip,
/// ConvTranspose, pooling of each kind, Sigmoid, Tanh, Flatten, Gemm, Softmax, residual Add,
/// Reshape, LSTM) give tract's outputs within float tolerance.
#[test]
fn whole_fixture_models_match_tract() {
    let dir = support::fixtures("operators.onnx");
    for (name, shape, output, inputs) in [
        (
            "operators",
            &[1, 3, 12, 12][..],
            "probs",
            "operators_inputs",
        ),
        ("residual", &[1, 3, 16, 16][..], "logits", "residual_inputs"),
        ("lstm", &[1, 784][..], "logits", "lstm_inputs"),
        ("lenet5_float", &[1, 1, 32, 32][..], "logits", "lenet5_test"),
    ] {
        let path = dir.join(format!("{name}.onnx"));
        let model = OnnxModel::load(&path).unwrap();
        let evaluator = Evaluator::new(&model, shape).unwrap();
        let tract = FloatRunner::new(&path, shape, &[output.to_string()]).unwrap();
        let (_, values) = smartvm_compiler::read_npy(&dir.join(format!("{inputs}.npy"))).unwrap();
        for x in values.chunks(shape.iter().product()).take(8) {
            let mut got = vec![];
            evaluator
                .run(x, &mut |n, v| {
                    if n == output {
                        got = v.to_vec();
                    }
                })
                .unwrap();
            let want = tract.run(x).unwrap().remove(0);
            let scale = want.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
            assert_eq!(got.len(), want.len(), "{name}");
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() <= 1e-4 * scale, "{name}: {g} vs tract {w}");
            }
        }
    }
}
