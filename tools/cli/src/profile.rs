//! `smartvm run --profile`: where an inference's time goes, kernel call by kernel call. The
//! backend is wrapped in [`Timed`], which times each call the VM makes through the `Kernels`
//! trait and files it under the layer's kind and shape; the rest of the run (the interpreter,
//! the Buffer, element-wise instructions, weight reads) is what the calls leave of the total.
//! That remainder runs on one thread, so it is also what bounds the speed-up of more cores.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use smartvm_kernels::{
    ChannelQuant, ConvParams, ConvTransposeParams, KernelError, Kernels, PackedFc, PairQuant,
    PoolParams,
};

/// A backend whose calls are timed, per layer kind and shape.
pub struct Timed<K> {
    inner: K,
    calls: RefCell<BTreeMap<String, (u32, Duration)>>,
}

impl<K: Kernels> Timed<K> {
    /// Times `inner`'s calls.
    pub fn new(inner: K) -> Self {
        Timed {
            inner,
            calls: RefCell::new(BTreeMap::new()),
        }
    }

    fn time<T>(&self, key: impl FnOnce() -> String, call: impl FnOnce() -> T) -> T {
        let started = Instant::now();
        let result = call();
        let elapsed = started.elapsed();
        let mut calls = self.calls.borrow_mut();
        let entry = calls.entry(key()).or_default();
        entry.0 += 1;
        entry.1 += elapsed;
        result
    }

    /// Each layer kind and shape with its calls and time, slowest first.
    pub fn report(&self) -> Vec<(String, u32, Duration)> {
        let mut rows: Vec<_> = self
            .calls
            .borrow()
            .iter()
            .map(|(key, (calls, time))| (key.clone(), *calls, *time))
            .collect();
        rows.sort_by_key(|row| std::cmp::Reverse(row.2));
        rows
    }
}

impl<K: Kernels> Kernels for Timed<K> {
    fn conv(
        &self,
        p: &ConvParams,
        input: &[i8],
        weights: &[i8],
        q: &ChannelQuant,
        out: &mut [i8],
    ) -> Result<(), KernelError> {
        let (i, o) = (p.input, p.output);
        let key = || {
            let kind = if p.groups > 1 && p.groups == i.c {
                "depthwise"
            } else {
                "conv"
            };
            format!(
                "{kind} {}x{}x{} -> {}, {}x{}/{}",
                i.c, i.h, i.w, o.c, p.kernel[1], p.kernel[2], p.stride[2]
            )
        };
        self.time(key, || self.inner.conv(p, input, weights, q, out))
    }

    fn conv_transpose(
        &self,
        p: &ConvTransposeParams,
        input: &[i8],
        weights: &[i8],
        q: &ChannelQuant,
        out: &mut [i8],
    ) -> Result<(), KernelError> {
        let key = || format!("conv-transpose {:?} -> {:?}", p.input, p.output);
        self.time(key, || self.inner.conv_transpose(p, input, weights, q, out))
    }

    fn pool(&self, p: &PoolParams, input: &[i8], out: &mut [i8]) -> Result<(), KernelError> {
        let i = p.input;
        let key = || {
            format!(
                "pool {:?} {}x{}x{}, {}x{}/{}",
                p.kind, i.c, i.h, i.w, p.k, p.k, p.stride
            )
        };
        self.time(key, || self.inner.pool(p, input, out))
    }

    fn fully_connected(
        &self,
        input: &[i8],
        weights: &[i8],
        q: &ChannelQuant,
        out: &mut [i8],
    ) -> Result<(), KernelError> {
        let outputs = out.len();
        let key = || format!("fully connected {} -> {outputs}", input.len());
        self.time(key, || self.inner.fully_connected(input, weights, q, out))
    }

    fn pack_fully_connected(&self, weights: &[i8], inputs: usize) -> Option<PackedFc> {
        let key = || {
            format!(
                "packing fully connected {inputs} -> {}",
                weights.len() / inputs
            )
        };
        self.time(key, || self.inner.pack_fully_connected(weights, inputs))
    }

    fn fully_connected_packed(
        &self,
        input: &[i8],
        weights: &[i8],
        packed: &PackedFc,
        q: &ChannelQuant,
        out: &mut [i8],
    ) -> Result<(), KernelError> {
        let outputs = out.len();
        let key = || format!("fully connected {} -> {outputs}, packed", input.len());
        self.time(key, || {
            self.inner
                .fully_connected_packed(input, weights, packed, q, out)
        })
    }

    fn matmul(
        &self,
        dims: [u32; 3],
        a: &[i8],
        b: &[i8],
        q: &PairQuant,
        out: &mut [i8],
    ) -> Result<(), KernelError> {
        let key = || format!("matmul {}x{} by {}x{}", dims[0], dims[1], dims[1], dims[2]);
        self.time(key, || self.inner.matmul(dims, a, b, q, out))
    }
}

/// The profile as a markdown table: per run, each layer shape's calls, time and share of the
/// run, then the time outside the kernel calls.
pub fn print_profile(rows: &[(String, u32, Duration)], total: Duration, runs: u32) {
    let per_run = |d: Duration| d.as_secs_f64() * 1e3 / runs as f64;
    let share = |d: Duration| 100.0 * d.as_secs_f64() / total.as_secs_f64().max(f64::MIN_POSITIVE);
    println!(
        "\nprofile: {:.3} ms a run, mean of {runs}\n\n| layer | calls a run | ms a run | share |\n| --- | ---: | ---: | ---: |",
        per_run(total)
    );
    for (layer, calls, time) in rows {
        println!(
            "| {layer} | {} | {:.3} | {:.1} % |",
            calls / runs,
            per_run(*time),
            share(*time)
        );
    }
    let inside: Duration = rows.iter().map(|r| r.2).sum();
    let outside = total.saturating_sub(inside);
    println!(
        "| outside the kernel calls (interpreter, Buffer, element-wise, weight reads) | | {:.3} | {:.1} % |",
        per_run(outside),
        share(outside)
    );
}
