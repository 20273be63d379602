//! Every backend must reproduce the golden vectors that `tests/golden/kernels.py` computed from
//! SPEC.md with numpy (an independent implementation), bit for bit.

use serde_json::Value;
use smartvm_kernels::tile::{self, Tile};
use smartvm_kernels::{
    elementwise, AddQuant, ChannelQuant, ConvParams, ConvTransposeParams, KernelError, Kernels,
    Native, OutputRange, PairQuant, PoolKind, PoolParams, Reference, Shape, SoftmaxTable,
};

fn ints(v: &Value) -> Vec<i64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_i64().expect("int"))
        .collect()
}
fn i8s(v: &Value) -> Vec<i8> {
    ints(v)
        .into_iter()
        .map(|x| i8::try_from(x).expect("int8"))
        .collect()
}
fn i32s(v: &Value) -> Vec<i32> {
    ints(v)
        .into_iter()
        .map(|x| i32::try_from(x).expect("int32"))
        .collect()
}
fn int(v: &Value) -> i32 {
    v.as_i64().expect("int") as i32
}
fn shape(v: &Value) -> Shape {
    let d = ints(v);
    Shape::new(d[0] as u32, d[1] as u32, d[2] as u32, d[3] as u32)
}
fn channel_quant(v: &Value) -> ChannelQuant {
    let q = ChannelQuant {
        input_zero: int(&v["input_zero"]),
        output: OutputRange {
            zero: int(&v["output_zero"]),
            lo: int(&v["lo"]),
            hi: int(&v["hi"]),
        },
        bias: i32s(&v["bias"]),
        mult: i32s(&v["mult"]),
        shift: i32s(&v["shift"]),
    };
    // Go through the wire format so the block decoder is pinned too.
    ChannelQuant::decode(&q.encode(), q.bias.len() as u32).expect("valid qblock")
}
fn pair_quant(v: &Value) -> PairQuant {
    let q = PairQuant {
        a_zero: int(&v["a_zero"]),
        b_zero: int(&v["b_zero"]),
        output: OutputRange {
            zero: int(&v["output_zero"]),
            lo: int(&v["lo"]),
            hi: int(&v["hi"]),
        },
        mult: int(&v["mult"]),
        shift: int(&v["shift"]),
    };
    PairQuant::decode(&q.encode()).expect("valid pair block")
}

/// The native backend with `tile` forced for each call (this binary's one test runs alone).
struct NativeOn(Tile);

impl Kernels for NativeOn {
    fn conv(
        &self,
        p: &ConvParams,
        input: &[i8],
        weights: &[i8],
        q: &ChannelQuant,
        out: &mut [i8],
    ) -> Result<(), KernelError> {
        tile::force(Some(self.0)).expect("supported");
        Native.conv(p, input, weights, q, out)
    }

    fn conv_transpose(
        &self,
        p: &ConvTransposeParams,
        input: &[i8],
        weights: &[i8],
        q: &ChannelQuant,
        out: &mut [i8],
    ) -> Result<(), KernelError> {
        tile::force(Some(self.0)).expect("supported");
        Native.conv_transpose(p, input, weights, q, out)
    }

    fn pool(&self, p: &PoolParams, input: &[i8], out: &mut [i8]) -> Result<(), KernelError> {
        tile::force(Some(self.0)).expect("supported");
        Native.pool(p, input, out)
    }

    fn fully_connected(
        &self,
        input: &[i8],
        weights: &[i8],
        q: &ChannelQuant,
        out: &mut [i8],
    ) -> Result<(), KernelError> {
        tile::force(Some(self.0)).expect("supported");
        Native.fully_connected(input, weights, q, out)
    }

    fn matmul(
        &self,
        dims: [u32; 3],
        a: &[i8],
        b: &[i8],
        q: &PairQuant,
        out: &mut [i8],
    ) -> Result<(), KernelError> {
        tile::force(Some(self.0)).expect("supported");
        Native.matmul(dims, a, b, q, out)
    }
}

fn backends() -> Vec<(&'static str, Box<dyn Kernels>)> {
    #[allow(unused_mut)]
    let mut all: Vec<(&'static str, Box<dyn Kernels>)> = vec![
        ("reference", Box::new(Reference)),
        ("scalar", Box::new(smartvm_kernels::Scalar)),
    ];
    for tile in Tile::supported_tiles() {
        let name: &'static str = Box::leak(format!("native/{}", tile.name()).into_boxed_str());
        all.push((name, Box::new(NativeOn(tile))));
    }
    println!(
        "golden vectors checked on: {}",
        all.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
    );
    #[cfg(feature = "cuda")]
    match smartvm_kernels::Cuda::new(0) {
        Ok(gpu) => all.push(("cuda", Box::new(gpu))),
        Err(why) => eprintln!("SKIPPED: cuda golden vectors ({why}; needs an NVIDIA GPU)"),
    }
    all
}

#[test]
fn every_backend_matches_the_numpy_golden_vectors() {
    // Found at run time: cargo may reuse this binary for another checkout.
    let crate_dir = std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo");
    let path = format!("{crate_dir}/../../tests/golden/kernels.json");
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("golden file")).expect("json");
    let cases = doc["cases"].as_array().expect("cases");
    assert!(cases.len() >= 20, "golden file lost cases");
    let backends = backends();
    let mut checked = 0;
    for (n, case) in cases.iter().enumerate() {
        let kind = case["kind"].as_str().expect("kind");
        let expected = i8s(&case["expected"]);
        for (backend, k) in &backends {
            let mut out = vec![0i8; expected.len()];
            match kind {
                "conv2d" | "conv3d" => {
                    let (i, oc) = (
                        shape(&case["input_shape"]),
                        case["out_c"].as_u64().unwrap() as u32,
                    );
                    let g = |f: &str| case[f].as_u64().unwrap() as u32;
                    let make = if kind == "conv2d" {
                        ConvParams::conv2d
                    } else {
                        ConvParams::conv3d
                    };
                    let p = make(
                        i,
                        oc,
                        g("k"),
                        g("stride"),
                        g("pad"),
                        g("dilation"),
                        g("groups"),
                    )
                    .unwrap();
                    assert_eq!(p.output, shape(&case["output_shape"]), "case {n}");
                    k.conv(
                        &p,
                        &i8s(&case["input"]),
                        &i8s(&case["weights"]),
                        &channel_quant(&case["quant"]),
                        &mut out,
                    )
                    .unwrap();
                }
                "conv_transpose" => {
                    let g = |f: &str| case[f].as_u64().unwrap() as u32;
                    let p = ConvTransposeParams::new(
                        shape(&case["input_shape"]),
                        g("out_c"),
                        g("k"),
                        g("stride"),
                        g("pad"),
                        g("out_pad"),
                        g("groups"),
                    )
                    .unwrap();
                    assert_eq!(p.output, shape(&case["output_shape"]), "case {n}");
                    k.conv_transpose(
                        &p,
                        &i8s(&case["input"]),
                        &i8s(&case["weights"]),
                        &channel_quant(&case["quant"]),
                        &mut out,
                    )
                    .unwrap();
                }
                "pool_max" | "pool_max_ceil" | "pool_avg" => {
                    let kind = match kind {
                        "pool_max" => PoolKind::Max,
                        "pool_max_ceil" => PoolKind::MaxCeil,
                        _ => PoolKind::Average,
                    };
                    let g = |f: &str| case[f].as_u64().unwrap() as u32;
                    let p = PoolParams::new(
                        shape(&case["input_shape"]),
                        g("k"),
                        g("stride"),
                        g("pad"),
                        kind,
                    )
                    .unwrap();
                    assert_eq!(p.output, shape(&case["output_shape"]), "case {n}");
                    k.pool(&p, &i8s(&case["input"]), &mut out).unwrap();
                }
                "fc" => k
                    .fully_connected(
                        &i8s(&case["input"]),
                        &i8s(&case["weights"]),
                        &channel_quant(&case["quant"]),
                        &mut out,
                    )
                    .unwrap(),
                "matmul" => {
                    let d = ints(&case["dims"]);
                    let dims = [d[0] as u32, d[1] as u32, d[2] as u32];
                    k.matmul(
                        dims,
                        &i8s(&case["a"]),
                        &i8s(&case["b"]),
                        &pair_quant(&case["pair"]),
                        &mut out,
                    )
                    .unwrap();
                }
                "add" => {
                    let v = &case["add"];
                    let q = AddQuant {
                        a_zero: int(&v["a_zero"]),
                        b_zero: int(&v["b_zero"]),
                        output: OutputRange {
                            zero: int(&v["output_zero"]),
                            lo: int(&v["lo"]),
                            hi: int(&v["hi"]),
                        },
                        a_mult: int(&v["a_mult"]),
                        b_mult: int(&v["b_mult"]),
                        shift: int(&v["shift"]),
                    };
                    let q = AddQuant::decode(&q.encode()).unwrap();
                    elementwise::add(&i8s(&case["a"]), &i8s(&case["b"]), &q, &mut out).unwrap();
                }
                "mul" => elementwise::mul(
                    &i8s(&case["a"]),
                    &i8s(&case["b"]),
                    &pair_quant(&case["pair"]),
                    &mut out,
                )
                .unwrap(),
                "lut" => {
                    let table: Vec<u8> = ints(&case["table"])
                        .into_iter()
                        .map(|v| v as i8 as u8)
                        .collect();
                    out = i8s(&case["input"]);
                    elementwise::lut(&table, &mut out).unwrap();
                }
                "softmax" => {
                    let bytes: Vec<u8> = i32s(&case["table"])
                        .iter()
                        .flat_map(|v| v.to_le_bytes())
                        .collect();
                    let table = SoftmaxTable::decode(&bytes).unwrap();
                    elementwise::softmax(
                        shape(&case["input_shape"]),
                        &table,
                        &i8s(&case["input"]),
                        &mut out,
                    )
                    .unwrap();
                }
                "global_avg_pool" => elementwise::global_avg_pool(
                    shape(&case["input_shape"]),
                    &i8s(&case["input"]),
                    &mut out,
                )
                .unwrap(),
                other => panic!("unknown golden case kind {other}"),
            }
            assert_eq!(out, expected, "case {n} ({kind}) on {backend}");
            checked += 1;
        }
    }
    assert_eq!(checked, cases.len() * backends.len());
}
