//! `smartvm run`: execute a program on one input and report what it cost.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use clap::Args;
use smartvm_kernels::tile::Tile;
use smartvm_kernels::{Kernels, Native, Reference};
use smartvm_vm::{
    execute_slice_packed, Config, Executable, Outcome, PackedLayers, Progress, Start, WeightSource,
};

use crate::profile::{print_profile, Timed};
use crate::{load, Backend};

/// Arguments of `smartvm run`.
#[derive(Args)]
pub struct RunArgs {
    /// Program (.smvm container or .sasm source).
    program: PathBuf,
    /// Weight pack (.smw).
    #[arg(long)]
    weights: PathBuf,
    /// Input: raw int8 bytes, a float32 .npy, or a PNG (pixels / 255); floats are quantized
    /// with the program's quant.json. Raw and .npy files may hold several inputs back to back.
    #[arg(long)]
    input: PathBuf,
    /// Quantization parameters for .npy inputs (default: quant.json beside the program).
    #[arg(long)]
    quant: Option<PathBuf>,
    /// Which input of the file to run.
    #[arg(long, default_value_t = 0)]
    index: usize,
    /// Kernel backend.
    #[arg(long, value_enum, default_value_t = Backend::Native)]
    backend: Backend,
    /// Gas limit.
    #[arg(long, default_value_t = u64::MAX)]
    gas: u64,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
    /// Run this many times (after one warm-up run when above 1) and report the median time.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    repeat: u32,
    /// Also run it in slices of this much gas, as a job spanning blocks would: prints how often
    /// it paused and each snapshot's SCALE size, and checks that the outcome is the same.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    slice_gas: Option<u64>,
    /// Native kernels' SIMD tile (default: the widest this CPU runs): portable, vnni-emulated,
    /// avx2, avx-vnni, avx512-vnni or amx. Every tile gives the same bytes; use it to time one
    /// against another on the same machine.
    #[arg(long, value_parser = parse_tile)]
    tile: Option<Tile>,
    /// Also time each kernel call over `--repeat` more runs and print where the time goes:
    /// each layer shape's share, and what the interpreter and element-wise instructions take
    /// outside the calls (one thread's work, whatever the cores).
    #[arg(long)]
    profile: bool,
}

fn parse_tile(name: &str) -> Result<Tile, String> {
    let tile = Tile::parse(name).ok_or_else(|| {
        let names: Vec<&str> = Tile::ALL.iter().map(|t| t.name()).collect();
        format!("unknown tile (one of: {})", names.join(", "))
    })?;
    if tile.supported() {
        Ok(tile)
    } else {
        Err(format!("this CPU cannot run the {name} tile"))
    }
}

/// Runs `exe` in slices of `slice` gas (`u64::MAX`: in one go) with the chosen backend; the
/// outcome and the SCALE size of each snapshot it paused with.
fn sliced_with(
    backend: Backend,
    exe: &Executable,
    input: &[i8],
    blocks: &impl WeightSource,
    (gas, slice): (u64, u64),
    packed: &mut PackedLayers,
) -> Result<(Outcome, Vec<usize>)> {
    let budget = (gas, slice);
    match backend {
        Backend::Native => sliced_on(&Native, exe, input, blocks, budget, packed),
        Backend::Reference => sliced_on(&Reference, exe, input, blocks, budget, packed),
        Backend::Scalar => sliced_on(&smartvm_kernels::Scalar, exe, input, blocks, budget, packed),
        #[cfg(feature = "cuda")]
        Backend::Cuda => sliced_on(gpu()?, exe, input, blocks, budget, packed),
    }
}

/// Runs `exe` in slices of `slice` gas on `k`; the outcome and each snapshot's SCALE size.
/// `packed` keeps the layers the backend packs for the next run of the same model.
fn sliced_on<K: Kernels>(
    k: &K,
    exe: &Executable,
    input: &[i8],
    blocks: &impl WeightSource,
    (gas, slice): (u64, u64),
    packed: &mut PackedLayers,
) -> Result<(Outcome, Vec<usize>)> {
    use subxt::ext::codec::Encode;
    let (mut start, mut sizes, mut last) = (Start::Input(input), Vec::new(), None);
    loop {
        let config = Config::default();
        match execute_slice_packed(exe, start, blocks, k, &config, gas, slice, packed)
            .map_err(|e| anyhow!("execution failed: {e}"))?
        {
            Progress::Done(out) => return Ok((out, sizes)),
            Progress::Paused(snapshot) => {
                if last == Some(snapshot.gas_used) {
                    let pc = snapshot.pc;
                    anyhow::bail!("a slice of {slice} gas cannot hold the instruction at pc {pc}");
                }
                last = Some(snapshot.gas_used);
                sizes.push(snapshot.encode().len());
                start = Start::Resume(Box::new(snapshot));
            }
        }
    }
}

/// Executes with the chosen backend.
pub fn execute_with(
    backend: Backend,
    exe: &Executable,
    input: &[i8],
    blocks: &impl WeightSource,
    gas: u64,
) -> Result<Outcome> {
    // A slice without end runs the program through once, as `execute` does.
    let mut packed = PackedLayers::default();
    sliced_with(backend, exe, input, blocks, (gas, u64::MAX), &mut packed).map(|(out, _)| out)
}

/// The GPU backend, started (and its kernels compiled) once per process.
#[cfg(feature = "cuda")]
fn gpu() -> Result<&'static smartvm_kernels::Cuda> {
    static GPU: std::sync::OnceLock<Result<smartvm_kernels::Cuda, String>> =
        std::sync::OnceLock::new();
    GPU.get_or_init(|| smartvm_kernels::Cuda::new(0).map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|why| anyhow!("--backend cuda: {why}"))
}

/// The index of the first largest element.
pub fn argmax(values: &[i8]) -> usize {
    values
        .iter()
        .enumerate()
        .fold(0, |best, (i, v)| if *v > values[best] { i } else { best })
}

pub fn run(args: RunArgs) -> Result<()> {
    if let Some(tile) = args.tile {
        smartvm_kernels::tile::force(Some(tile))
            .map_err(|t| anyhow!("this CPU cannot run the {} tile", t.name()))?;
    }
    let blocks = load::blocks(&args.weights)?;
    let program = load::program(&args.program, Some(&args.weights))?;
    load::check_manifest(&program, &blocks)?;
    let (input, quant) = load::model_input(
        &args.input,
        args.quant.as_deref(),
        &args.program,
        program.input,
        args.index,
    )?;
    let exe = Executable::new(program).map_err(|e| anyhow!("invalid program: {e:?}"))?;
    let pack = crate::memory::weight_pack(&blocks);
    // Layers the backend packs are kept from run to run, as ONNX Runtime keeps a session's
    // prepacked weights: the repeats time the steady state.
    let mut packed = PackedLayers::default();
    let mut run_once = || -> Result<(Outcome, Duration)> {
        let started = Instant::now();
        let whole = (args.gas, u64::MAX);
        let (out, _) = sliced_with(args.backend, &exe, &input, &pack, whole, &mut packed)?;
        Ok((out, started.elapsed()))
    };
    let (mut out, first) = run_once()?;
    let mut times = vec![first];
    if args.repeat > 1 {
        times.clear();
        for _ in 0..args.repeat {
            let (again, elapsed) = run_once()?;
            out = again;
            times.push(elapsed);
        }
    }
    times.sort();
    let elapsed = times[times.len() / 2];
    let runs = match times.len() {
        1 => "one run".to_string(),
        n => format!("median of {n} runs after a warm-up"),
    };
    let slices = match args.slice_gas {
        Some(slice) => {
            let budget = (args.gas, slice);
            let fresh = &mut PackedLayers::default();
            let (sliced, sizes) = sliced_with(args.backend, &exe, &input, &pack, budget, fresh)?;
            if sliced != out {
                anyhow::bail!("the run in slices of {slice} gas ended differently: {sliced:?}");
            }
            Some((slice, sizes))
        }
        None => None,
    };
    let class = argmax(&out.output);
    let real: Option<Vec<f32>> =
        quant.map(|q| out.output.iter().map(|v| q.output.dequantize(*v)).collect());
    if args.json {
        let report = serde_json::json!({
            "output": out.output, "dequantized": real, "argmax": class, "gas_used": out.gas_used,
            "instructions": out.instructions, "peak_buffer_bytes": out.peak_buffer_bytes,
            "peak_memory_bytes": out.peak_memory_bytes, "weight_blocks_read": out.weight_blocks_read,
            "weight_bytes_read": out.weight_bytes_read, "elapsed_us": elapsed.as_secs_f64() * 1e6,
            "runs": times.len(), "tile": smartvm_kernels::tile::active().name(),
            "slices": slices.as_ref().map(|(gas, sizes)| serde_json::json!({
                "slice_gas": gas, "pauses": sizes.len(), "snapshot_bytes": sizes,
            })),
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("output            {:?}", out.output);
        if let Some(real) = &real {
            println!("dequantized       {real:?}");
        }
        println!("argmax            {class}");
        println!("gas used          {}", out.gas_used);
        println!("instructions      {}", out.instructions);
        println!("peak Buffer bytes {}", out.peak_buffer_bytes);
        println!("Memory bytes      {}", out.peak_memory_bytes);
        println!(
            "weight reads      {} blocks, {} bytes",
            out.weight_blocks_read, out.weight_bytes_read
        );
        let tile = match args.backend {
            Backend::Native => format!(", {} tile", smartvm_kernels::tile::active().name()),
            _ => String::new(),
        };
        println!(
            "time              {:.3} ms ({:?} kernels{tile}, {runs})",
            elapsed.as_secs_f64() * 1e3,
            args.backend
        );
        if let Some((gas, sizes)) = &slices {
            let largest = sizes.iter().max().copied().unwrap_or(0);
            println!(
                "in slices of {gas} gas: {} pauses, same outcome; snapshots {sizes:?} bytes \
                 (largest {largest})",
                sizes.len()
            );
        }
    }
    if args.profile {
        let runs = args.repeat;
        let time_runs = |run: &dyn Fn() -> Result<()>| -> Result<Duration> {
            let started = Instant::now();
            for _ in 0..runs {
                run()?;
            }
            Ok(started.elapsed())
        };
        macro_rules! profile {
            ($kernels:expr) => {{
                let timed = Timed::new($kernels);
                // Two untimed runs first pack what the backend packs (a layer that runs once a
                // run is packed at its second): every timed run then makes the same calls.
                let mut warm = PackedLayers::default();
                let whole = (args.gas, u64::MAX);
                sliced_on(&$kernels, &exe, &input, &pack, whole, &mut warm)?;
                sliced_on(&$kernels, &exe, &input, &pack, whole, &mut warm)?;
                let packed = std::cell::RefCell::new(warm);
                let run = || {
                    let whole = (args.gas, u64::MAX);
                    let packed = &mut packed.borrow_mut();
                    sliced_on(&timed, &exe, &input, &pack, whole, packed).map(drop)
                };
                let total = time_runs(&run)?;
                print_profile(&timed.report(), total, runs);
            }};
        }
        match args.backend {
            Backend::Native => profile!(Native),
            Backend::Reference => profile!(Reference),
            Backend::Scalar => profile!(smartvm_kernels::Scalar),
            #[cfg(feature = "cuda")]
            Backend::Cuda => anyhow::bail!("--profile times the CPU backends"),
        }
    }
    Ok(())
}
