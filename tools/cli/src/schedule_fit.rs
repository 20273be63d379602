//! `smartvm fit-schedule`: turns the runtime's wasm benchmarks of every kernel class (the
//! `vm_layer` benchmark of `make weights`) into the VM's gas schedule.
//!
//! Each benchmark entry is one kernel instruction at a zoo model's or a sweep's shape. Run here
//! through the interpreter, each tells what work (calls, multiply-accumulates, inner loops,
//! outputs, bytes) of which class it did; the benchmark says how long it took in the wasm the
//! relay validators run. Per class, non-negative least squares on the relative error gives the
//! prices; then each class is scaled so that its costliest entry per unit of charge is covered
//! with a margin. Written: the schedule (`primitives/vm/src/gas/benchmarked.rs`) and every
//! entry's time, charge and ratio (`runtime/src/weights/vm_layers.csv`), which
//! `runtime/tests/gas_price.rs` checks.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use smartvm_kernels::Native;
use smartvm_vm::bench_programs::{layer_program, layers, BenchLayer};
use smartvm_vm::{execute, BlockList, Config, Executable, KernelClass, Schedule, Work, WorkPrice};

/// Arguments of `fit-schedule`.
#[derive(clap::Args)]
pub struct FitArgs {
    /// `benchmark pallet --json-file` output holding the `vm_layer` benchmark.
    #[arg(long)]
    pub raw: PathBuf,
    /// Picoseconds of ref_time one gas stands for (the runtime's `SmartvmRefTimePerGas`).
    #[arg(long, default_value_t = 5_000)]
    pub ps_per_gas: u64,
    /// Each class's costliest entry is charged at least this many times its time.
    #[arg(long, default_value_t = 1.05)]
    pub margin: f64,
    /// Where to write the schedule.
    #[arg(long, default_value = "primitives/vm/src/gas/benchmarked.rs")]
    pub schedule: PathBuf,
    /// Where to write each entry's time and charge.
    #[arg(long, default_value = "runtime/src/weights/vm_layers.csv")]
    pub table: PathBuf,
    /// Machine the benchmarks ran on, for the generated file's header.
    #[arg(long)]
    pub machine: Option<String>,
}

/// One benchmark entry: its median wasm time and what it did.
struct Entry {
    layer: BenchLayer,
    class: KernelClass,
    time_ps: f64,
    work: [Work; KernelClass::COUNT],
    weight_bytes: u64,
    /// 32-byte words Memory grew by past the input: the memory-growth entries.
    memory_words: u64,
}

impl Entry {
    /// What the entry prices: its kernel class, or Memory growth.
    fn group(&self) -> &'static str {
        if self.memory_words > 0 {
            "memory"
        } else {
            self.class.name()
        }
    }
}

/// Median extrinsic time (ns) of each `vm_layer` component value in the raw benchmark output.
fn layer_times(raw: &serde_json::Value) -> Result<BTreeMap<u32, f64>> {
    let batches = raw
        .as_array()
        .context("the raw benchmark file is not a JSON array")?;
    let batch = batches
        .iter()
        .find(|b| b["benchmark"].as_str() == Some("vm_layer"))
        .context("no vm_layer benchmark in the raw file")?;
    let mut samples: BTreeMap<u32, Vec<f64>> = BTreeMap::new();
    for r in batch["time_results"]
        .as_array()
        .context("no time_results")?
    {
        let l = r["components"][0][1]
            .as_u64()
            .context("a result without component l")? as u32;
        let ns = r["extrinsic_time"]
            .as_f64()
            .context("a result without extrinsic_time")?;
        samples.entry(l).or_default().push(ns);
    }
    Ok(samples
        .into_iter()
        .map(|(l, mut v)| {
            v.sort_by(f64::total_cmp);
            (l, v[v.len() / 2])
        })
        .collect())
}

/// The one class besides Move an entry times (Move itself for the move sweep).
fn main_class(work: &[Work; KernelClass::COUNT]) -> Result<KernelClass> {
    let others: Vec<KernelClass> = KernelClass::ALL
        .into_iter()
        .filter(|c| *c != KernelClass::Move && work[c.index()].calls > 0)
        .collect();
    match others[..] {
        [] => Ok(KernelClass::Move),
        [c] => Ok(c),
        _ => bail!("an entry runs more than one kernel class: {others:?}"),
    }
}

fn run(layer: &BenchLayer, schedule: &Schedule) -> Result<smartvm_vm::Outcome> {
    let bench = layer_program(&layer.op);
    let exe = Executable::new(bench.program).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let config = Config {
        schedule: *schedule,
        ..Config::default()
    };
    execute(
        &exe,
        &bench.input,
        &BlockList(&bench.blocks),
        &Native,
        &config,
        u64::MAX,
    )
    .map_err(|e| anyhow::anyhow!("{}: {e:?}", layer.name))
}

/// Non-negative weighted least squares over at most five columns: drop the most negative
/// coefficient until none is left (an active-set method, exact enough for five unknowns).
fn nnls(rows: &[[f64; 5]], target: &[f64], weight: &[f64], usable: [bool; 5]) -> [f64; 5] {
    let mut active = usable;
    loop {
        let idx: Vec<usize> = (0..5).filter(|&j| active[j]).collect();
        if idx.is_empty() {
            return [0.0; 5];
        }
        let n = idx.len();
        let mut a = vec![vec![0.0; n + 1]; n];
        for (row, (&t, &w)) in rows.iter().zip(target.iter().zip(weight)) {
            for (i, &ji) in idx.iter().enumerate() {
                for (k, &jk) in idx.iter().enumerate() {
                    a[i][k] += w * w * row[ji] * row[jk];
                }
                a[i][n] += w * w * row[ji] * t;
            }
        }
        for (i, row) in a.iter_mut().enumerate() {
            row[i] *= 1.0 + 1e-9;
            row[i] += 1e-30;
        }
        // Gaussian elimination with partial pivoting.
        for col in 0..n {
            let pivot = (col..n)
                .max_by(|&x, &y| a[x][col].abs().total_cmp(&a[y][col].abs()))
                .unwrap_or(col);
            a.swap(col, pivot);
            let pivot_row = a[col].clone();
            if pivot_row[col] == 0.0 {
                continue;
            }
            for (r, row) in a.iter_mut().enumerate() {
                if r != col {
                    let f = row[col] / pivot_row[col];
                    for (x, p) in row[col..].iter_mut().zip(&pivot_row[col..]) {
                        *x -= f * p;
                    }
                }
            }
        }
        let mut coef = [0.0; 5];
        for (i, &j) in idx.iter().enumerate() {
            coef[j] = if a[i][i] != 0.0 {
                a[i][n] / a[i][i]
            } else {
                0.0
            };
        }
        match idx
            .iter()
            .copied()
            .min_by(|&x, &y| coef[x].total_cmp(&coef[y]))
        {
            Some(j) if coef[j] < 0.0 => active[j] = false,
            _ => return coef,
        }
    }
}

fn as_f64(q: [u64; 5]) -> [f64; 5] {
    q.map(|v| v as f64)
}

fn price_of(coef_ps: [f64; 5], ps_per_gas: u64) -> WorkPrice {
    // Milligas per unit: picoseconds per unit over picoseconds per milligas, rounded up.
    let m = coef_ps.map(|ps| (ps * 1000.0 / ps_per_gas as f64).ceil().max(0.0) as u64);
    WorkPrice {
        call: m[0],
        mac: m[1],
        row: m[2],
        output: m[3],
        byte: m[4],
    }
}

fn scale(p: WorkPrice, s: f64) -> WorkPrice {
    let f = |v: u64| (v as f64 * s).ceil() as u64;
    WorkPrice {
        call: f(p.call),
        mac: f(p.mac),
        row: f(p.row),
        output: f(p.output),
        byte: f(p.byte),
    }
}

/// Runs `fit-schedule`.
pub fn fit(args: FitArgs) -> Result<()> {
    let raw: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&args.raw).with_context(|| format!("reading {}", args.raw.display()))?,
    )?;
    let times = layer_times(&raw)?;
    let table = layers();
    if times.len() != table.len() {
        bail!(
            "the raw file times {} layers, the table has {}: run vm_layer with --steps {}",
            times.len(),
            table.len(),
            table.len()
        );
    }
    let mut schedule = Schedule::default();
    let mut entries = Vec::new();
    for (i, layer) in table.into_iter().enumerate() {
        let out = run(&layer, &schedule)?;
        let input_words = (layer_program(&layer.op).input.len() as u64).div_ceil(32);
        entries.push(Entry {
            class: main_class(&out.work)?,
            time_ps: times[&(i as u32)] * 1000.0,
            work: out.work,
            weight_bytes: out.weight_bytes_read,
            memory_words: (out.peak_memory_bytes / 32).saturating_sub(input_words),
            layer,
        });
    }

    // Move first (every program moves its input in and its output out), then each class on
    // what remains of its entries' time.
    let fit_class = |class: KernelClass, known: &dyn Fn(&Entry) -> f64| -> [f64; 5] {
        let mine: Vec<&Entry> = entries
            .iter()
            .filter(|e| e.class == class && e.memory_words == 0)
            .collect();
        let rows: Vec<[f64; 5]> = mine
            .iter()
            .map(|e| as_f64(e.work[class.index()].quantities()))
            .collect();
        let target: Vec<f64> = mine
            .iter()
            .map(|e| (e.time_ps - known(e)).max(0.0))
            .collect();
        let weight: Vec<f64> = mine.iter().map(|e| 1.0 / e.time_ps).collect();
        let usable = core::array::from_fn(|j| rows.iter().any(|r| r[j] > 0.0));
        nnls(&rows, &target, &weight, usable)
    };
    let move_ps = fit_class(KernelClass::Move, &|_| 0.0);
    let move_price = price_of(move_ps, args.ps_per_gas);
    let moved = |e: &Entry| {
        let w = e.work[KernelClass::Move.index()];
        move_ps[0] * w.calls as f64 + move_ps[4] * (w.bytes + e.weight_bytes) as f64
    };
    schedule.kernels[KernelClass::Move.index()] = move_price;
    schedule.weight_byte = move_price.byte;
    for class in KernelClass::ALL {
        if class != KernelClass::Move {
            schedule.kernels[class.index()] = price_of(fit_class(class, &moved), args.ps_per_gas);
        }
    }
    // Memory growth: what the growth entries took beyond their moves, per growth (each grows
    // twice: to hold the input, then past it) and per word.
    let growth: Vec<&Entry> = entries.iter().filter(|e| e.memory_words > 0).collect();
    let rows: Vec<[f64; 5]> = growth
        .iter()
        .map(|e| [2.0, e.memory_words as f64, 0.0, 0.0, 0.0])
        .collect();
    let target: Vec<f64> = growth
        .iter()
        .map(|e| (e.time_ps - moved(e)).max(0.0))
        .collect();
    let weight: Vec<f64> = growth.iter().map(|e| 1.0 / e.time_ps).collect();
    let memory = price_of(
        nnls(&rows, &target, &weight, [true, true, false, false, false]),
        args.ps_per_gas,
    );
    // At least one milligas each, so that the covering below can scale them.
    schedule.memory_grow = memory.call.max(1);
    schedule.memory_word = memory.mac.max(1);

    // Cover: scale each class so its costliest entry is charged `margin` times its time.
    let charge_ps = |schedule: &Schedule, e: &Entry| -> Result<f64> {
        Ok(run(&e.layer, schedule)?.gas_used as f64 * args.ps_per_gas as f64)
    };
    for _ in 0..8 {
        let mut worst: BTreeMap<&'static str, f64> = BTreeMap::new();
        for e in &entries {
            let need = e.time_ps * args.margin / charge_ps(&schedule, e)?;
            let w = worst.entry(e.group()).or_insert(0.0);
            *w = w.max(need);
        }
        for class in KernelClass::ALL {
            if let Some(s) = worst.get(class.name()) {
                let p = &mut schedule.kernels[class.index()];
                *p = scale(*p, *s);
            }
        }
        if let Some(s) = worst.get("memory") {
            schedule.memory_word = (schedule.memory_word as f64 * s).ceil() as u64;
            schedule.memory_grow = (schedule.memory_grow as f64 * s).ceil() as u64;
        }
        schedule.weight_byte = schedule.kernels[KernelClass::Move.index()].byte;
    }

    let mut csv = String::from("index,name,class,time_ns,charged_ns,ratio\n");
    let (mut lo, mut hi) = (f64::MAX, 0.0f64);
    for (i, e) in entries.iter().enumerate() {
        let charged = charge_ps(&schedule, e)?;
        let ratio = charged / e.time_ps;
        (lo, hi) = (lo.min(ratio), hi.max(ratio));
        writeln!(
            csv,
            "{i},{},{},{:.0},{:.0},{ratio:.2}",
            e.layer.name,
            e.group(),
            e.time_ps / 1000.0,
            charged / 1000.0
        )?;
    }
    std::fs::write(&args.table, csv)?;
    std::fs::write(&args.schedule, render(&schedule, &args))?;
    println!(
        "fitted {} entries: charged {lo:.2}x to {hi:.2}x their wasm time; wrote {} and {}",
        entries.len(),
        args.schedule.display(),
        args.table.display()
    );
    Ok(())
}

fn render(s: &Schedule, args: &FitArgs) -> String {
    let machine = args.machine.as_deref().unwrap_or("this machine");
    let mut out = format!(
        "//! The benchmarked gas schedule, written by `make weights` (`smartvm fit-schedule` over\n\
         //! the `vm_layer` benchmark run in the runtime's wasm with the `Scalar` kernels, the relay\n\
         //! validators' path): do not edit by hand.\n\
         //!\n\
         //! Measured on {machine}.\n\
         //! {} ps of ref_time per gas; each class's costliest entry charged {:.2}x its time.\n\n\
         use super::{{Schedule, WorkPrice}};\n\n\
         /// Milligas per unit: call, multiply-accumulate, inner loop, output, byte.\n\
         const fn price(call: u64, mac: u64, row: u64, output: u64, byte: u64) -> WorkPrice {{\n    \
         WorkPrice {{\n        call,\n        mac,\n        row,\n        output,\n        byte,\n    }}\n}}\n\n\
         /// The schedule the chain charges.\n\
         pub fn schedule() -> Schedule {{\n    Schedule {{\n        class: {:?},\n        kernels: [\n",
        args.ps_per_gas, args.margin, s.class
    );
    for class in KernelClass::ALL {
        let p = s.kernels[class.index()];
        let _ = writeln!(
            out,
            "            // {}\n            price({}, {}, {}, {}, {}),",
            class.name(),
            p.call,
            p.mac,
            p.row,
            p.output,
            p.byte
        );
    }
    let _ = write!(
        out,
        "        ],\n        per_block: {},\n        weight_byte: {},\n        memory_word: {},\n        memory_grow: {},\n    }}\n}}\n",
        s.per_block, s.weight_byte, s.memory_word, s.memory_grow
    );
    out
}
