//! `smartvm eval`: top-1 accuracy of the integer program on a labelled IDX data set (images
//! scaled to [0, 1] as the model was trained), next to the float ONNX model run by tract.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Result};
use clap::Args;
use smartvm_compiler::FloatRunner;
use smartvm_kernels::Native;
use smartvm_vm::{execute, BlockList, Config, Executable};

use crate::compile::read_quant;
use crate::idx::Idx;
use crate::load;
use crate::run::argmax;

/// Arguments of `smartvm eval`.
#[derive(Args)]
pub struct EvalArgs {
    /// Directory written by `smartvm compile` (program.smvm, weights.smw, quant.json).
    compiled: PathBuf,
    /// IDX images (e.g. t10k-images-idx3-ubyte.gz).
    #[arg(long)]
    images: PathBuf,
    /// IDX labels.
    #[arg(long)]
    labels: PathBuf,
    /// The float ONNX model, to report its accuracy and the agreement next to the program's.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Evaluate only the first N images.
    #[arg(long)]
    limit: Option<usize>,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

pub fn eval(args: EvalArgs) -> Result<()> {
    let program = load::program(&args.compiled.join("program.smvm"), None)?;
    let blocks = load::blocks(&args.compiled.join("weights.smw"))?;
    load::check_manifest(&program, &blocks)?;
    let quant = read_quant(&args.compiled.join("quant.json"))?;
    let images = Idx::read(&args.images)?;
    let labels = Idx::read(&args.labels)?;
    if images.len() != labels.len() {
        bail!("{} images but {} labels", images.len(), labels.len());
    }
    let n = args.limit.unwrap_or(images.len()).min(images.len());
    let size = program.input.elements().unwrap_or(0) as usize;
    if images.item(0).len() != size {
        bail!(
            "images hold {} pixels, the program takes {size}",
            images.item(0).len()
        );
    }
    let shape = [
        1,
        program.input.c as usize,
        program.input.h as usize,
        program.input.w as usize,
    ];
    let float = match &args.model {
        Some(m) => Some(
            FloatRunner::new(m, &shape, &["logits".to_string()]).or_else(|_| {
                let out = smartvm_compiler::onnx::OnnxModel::load(m)?;
                let name = out
                    .proto
                    .graph
                    .as_ref()
                    .and_then(|g| g.output.first())
                    .map(|o| o.name.clone())
                    .unwrap_or_default();
                FloatRunner::new(m, &shape, &[name])
            })?,
        ),
        None => None,
    };
    let exe = Executable::new(program).map_err(|e| anyhow!("invalid program: {e:?}"))?;
    let (mut int_ok, mut float_ok, mut agree) = (0usize, 0usize, 0usize);
    for i in 0..n {
        let pixels: Vec<f32> = images.item(i).iter().map(|p| *p as f32).collect();
        let q = quant.encode_pixels(&pixels);
        let x = quant.float_pixels(&pixels, shape[1]);
        let out = execute(
            &exe,
            &q,
            &BlockList(&blocks),
            &Native,
            &Config::default(),
            u64::MAX,
        )
        .map_err(|e| anyhow!("image {i}: {e}"))?;
        let label = labels.item(i)[0] as usize;
        let class = argmax(&out.output);
        int_ok += (class == label) as usize;
        if let Some(f) = &float {
            let logits = f.run(&x)?.remove(0);
            let fc = logits
                .iter()
                .enumerate()
                .fold(0, |b, (j, v)| if *v > logits[b] { j } else { b });
            float_ok += (fc == label) as usize;
            agree += (fc == class) as usize;
        }
    }
    let pct = |k: usize| 100.0 * k as f64 / n.max(1) as f64;
    if args.json {
        let v = serde_json::json!({
            "images": n, "integer_top1": pct(int_ok),
            "float_top1": float.as_ref().map(|_| pct(float_ok)),
            "agreement": float.as_ref().map(|_| pct(agree)),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("images           {n}");
        println!("integer top-1    {:.2}%", pct(int_ok));
        if float.is_some() {
            println!("float top-1      {:.2}%  (tract, float32)", pct(float_ok));
            println!("agreement        {:.2}%", pct(agree));
        }
    }
    Ok(())
}
