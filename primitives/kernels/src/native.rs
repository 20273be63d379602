//! The native fast path: 2-D convolutions unfold into a packed int16 GEMM (`gemm`, AVX2
//! `vpmaddwd` where the CPU has it), FC layers are vectorised dot products, and rayon splits
//! output channels, groups or pooling planes once a call is big enough to pay for the threads.
//!
//! Bit-identity with [`Reference`] follows from the spec: products are exact in int32 and the
//! accumulation wraps, so any summation order gives the same int32 and the same requantized byte.

use rayon::prelude::*;

use crate::fc;
use crate::gemm::{self, PackedWeights, MR};
use crate::quads::{self, QuadKernel, QuadWeights};
use crate::requant::requantize_row;
use crate::rows;
use crate::unfold::{unfold, unfold_quads, Unfolded, UnfoldedQuads};
use crate::{
    check_conv, check_fc, check_pool, ChannelQuant, ConvParams, ConvTransposeParams, KernelError,
    Kernels, PairQuant, PoolParams, Reference,
};

/// Below this many multiply-accumulates a call runs on the calling thread: measured on LeNet-5,
/// handing a quarter-million-MAC layer to rayon costs more than it saves.
const PARALLEL_MACS: u64 = 1 << 21;

/// GEMM multiply-accumulates one depthwise multiply-accumulate is worth, for the threshold above.
const DEPTHWISE_MAC_COST: u64 = 8;

/// The native backend.
#[derive(Clone, Copy, Debug, Default)]
pub struct Native;

/// Makes the calling thread worker 0 of rayon's global pool (the other workers are spawned as
/// usual). A kernel called from outside the pool hands its parallel loops to the workers and
/// sleeps until they finish: two context switches a layer, a fifth of MobileNetV2's time
/// measured on two cores. Called first thing by a program whose main thread runs the VM;
/// returns false (and changes nothing) when the global pool already exists.
pub fn adopt_calling_thread() -> bool {
    rayon::ThreadPoolBuilder::new()
        .use_current_thread()
        .build_global()
        .is_ok()
}

/// Output rows of one rayon task: a multiple of both GEMMs' row blocks ([`MR`], [`quads::ROWS`]), few enough that both cores get work on
/// the narrow layers and that a task's packed weights stay in the L2 cache on the wide ones.
fn rows_per_task(rows: usize) -> usize {
    let tasks = 2 * rayon::current_num_threads();
    rows.div_ceil(tasks)
        .next_multiple_of(2 * MR)
        .clamp(2 * MR, 16)
}

/// A group's unfolded input in the layout of the GEMM that runs it.
enum Product {
    /// Int16 tap pairs (AVX2 `vpmaddwd`, portable).
    Pairs(Unfolded),
    /// u8 tap quads (`vpdpbusd`, or its emulation).
    Quads(UnfoldedQuads, QuadKernel),
}

impl Product {
    /// Unfolds group `group` for the GEMM the active tile runs.
    fn unfold(p: &ConvParams, input: &[i8], zero: i32, group: usize, parallel: bool) -> Self {
        match QuadKernel::for_active_tile() {
            Some(k) if quads::zero_fits(zero) => {
                Product::Quads(unfold_quads(p, input, zero, group, parallel), k)
            }
            _ => Product::Pairs(unfold(p, input, zero, group, parallel)),
        }
    }

    /// GEMM positions, and the length of an output row among them.
    fn layout(&self) -> (usize, usize) {
        match self {
            Product::Pairs(u) => (u.panels.positions(), u.row_len),
            Product::Quads(u, _) => (u.panels.positions(), u.row_len),
        }
    }

    /// The output rows `row0..` of `rows` weight rows (`taps` each) with the unfolded input,
    /// requantized into `out` (`rows` output planes of `out_w`-wide rows).
    fn rows(
        &self,
        weights: &[i8],
        (row0, rows, taps): (usize, usize, usize),
        q: &ChannelQuant,
        out_w: usize,
        out: &mut [i8],
    ) {
        let (wide, row_len) = self.layout();
        let plane = out.len() / rows.max(1);
        match self {
            Product::Pairs(u) => {
                let mut sums = vec![0i32; rows * wide];
                gemm::multiply(
                    &PackedWeights::new(weights, rows, taps),
                    &u.panels,
                    &mut sums,
                );
                for (row, (acc, y)) in sums.chunks(wide).zip(out.chunks_mut(plane)).enumerate() {
                    requantize_wide(acc, row_len, out_w, q, row0 + row, y, 0);
                }
            }
            Product::Quads(u, kernel) => {
                let w = QuadWeights::new(weights, rows, taps, q.input_zero);
                quads::multiply_with(*kernel, &w, &u.panels, |row, first, sums| {
                    let y = &mut out[row * plane..(row + 1) * plane];
                    requantize_wide(sums, row_len, out_w, q, row0 + row, y, first);
                });
            }
        }
    }
}

/// Requantizes the sums of wide positions `first..first + sums.len()` of channel `oc` into its
/// output plane `y`: wide position `p` is output `(p / row_len, p % row_len)`, and columns at
/// or past `out_w` are discarded.
fn requantize_wide(
    sums: &[i32],
    row_len: usize,
    out_w: usize,
    q: &ChannelQuant,
    oc: usize,
    y: &mut [i8],
    first: usize,
) {
    if row_len == out_w {
        let end = (first + sums.len()).min(y.len());
        return requantize_row(&sums[..end - first], q, oc, &mut y[first..end]);
    }
    let mut p = first;
    let end = first + sums.len();
    while p < end {
        let (oh, ow) = (p / row_len, p % row_len);
        let run_end = end.min((oh + 1) * row_len);
        if ow < out_w {
            let take = (out_w - ow).min(run_end - p);
            let at = oh * out_w + ow;
            if at + take <= y.len() {
                requantize_row(
                    &sums[p - first..p - first + take],
                    q,
                    oc,
                    &mut y[at..at + take],
                );
            }
        }
        p = run_end;
    }
}

/// One group of a 2-D convolution: unfold into panels, then per task of output rows pack their
/// weights, multiply and requantize; with `parallel`, both steps run on the rayon pool.
fn conv_group(
    p: &ConvParams,
    input: &[i8],
    weights: &[i8],
    q: &ChannelQuant,
    group: usize,
    out: &mut [i8],
    parallel: bool,
) {
    let positions = (p.output.h * p.output.w) as usize;
    let (out_w, taps) = (p.output.w as usize, p.weights_per_output() as usize);
    let rows = p.group_out() as usize;
    let first = group * rows;
    let product = Product::unfold(p, input, q.input_zero, group, parallel);
    let per_task = if parallel { rows_per_task(rows) } else { rows };
    let run = |(t, chunk): (usize, &mut [i8])| {
        let row0 = first + t * per_task;
        let task_rows = chunk.len() / positions;
        let task_weights = &weights[row0 * taps..(row0 + task_rows) * taps];
        product.rows(task_weights, (row0, task_rows, taps), q, out_w, chunk);
    };
    if parallel {
        out.par_chunks_mut(per_task * positions)
            .enumerate()
            .for_each(run);
    } else {
        out.chunks_mut(per_task * positions)
            .enumerate()
            .for_each(run);
    }
}

impl Kernels for Native {
    fn conv(
        &self,
        p: &ConvParams,
        input: &[i8],
        weights: &[i8],
        q: &ChannelQuant,
        out: &mut [i8],
    ) -> Result<(), KernelError> {
        check_conv(p, input, weights, q, out)?;
        // The native paths are 2-D: one input plane in, one output plane out per channel, the
        // output plane on the input plane. Depth padding breaks that: it makes a depth-1 input
        // give a deeper output, or (with a stride past the padded depth) a depth-1 output that
        // reads only padding. Those, like any true 3-D layer, run the reference.
        if p.kernel[0] != 1 || p.pad[0] != 0 || p.input.d != 1 || p.output.d != 1 {
            return Reference.conv(p, input, weights, q, out);
        }
        let group_len = p.group_out() as usize * (p.output.h * p.output.w) as usize;
        let parallel = p.macs() >= PARALLEL_MACS;
        if p.group_in() == 1 && p.group_out() == 1 {
            // A depthwise MAC costs about ten GEMM MACs (its grid fill and requantization are
            // per output, not per weight): measured on MobileNetV2, whose 14 × 14 and 7 × 7
            // depthwise layers ran on one thread below the GEMM's threshold.
            let parallel = p.macs() * DEPTHWISE_MAC_COST >= PARALLEL_MACS;
            rows::depthwise(p, input, weights, q, out, parallel);
            return Ok(());
        }
        if parallel && p.groups > 1 {
            // Grouped and depthwise layers: whole groups side by side, one thread each.
            out.par_chunks_mut(group_len)
                .enumerate()
                .for_each(|(g, o)| conv_group(p, input, weights, q, g, o, false));
        } else {
            for (g, o) in out.chunks_mut(group_len).enumerate() {
                conv_group(p, input, weights, q, g, o, parallel);
            }
        }
        Ok(())
    }

    fn conv_transpose(
        &self,
        p: &ConvTransposeParams,
        input: &[i8],
        weights: &[i8],
        q: &ChannelQuant,
        out: &mut [i8],
    ) -> Result<(), KernelError> {
        Reference.conv_transpose(p, input, weights, q, out)
    }

    fn pool(&self, p: &PoolParams, input: &[i8], out: &mut [i8]) -> Result<(), KernelError> {
        check_pool(p, input, out)?;
        let (plane_in, plane_out) = (
            (p.input.h * p.input.w) as usize,
            (p.output.h * p.output.w) as usize,
        );
        let run = |(c, o): (usize, &mut [i8])| {
            rows::pool_plane(p, &input[c * plane_in..(c + 1) * plane_in], o)
        };
        if p.output.elements().unwrap_or(0) * ((p.k * p.k) as u64) >= PARALLEL_MACS / 4 {
            out.par_chunks_mut(plane_out).enumerate().for_each(run);
        } else {
            out.chunks_mut(plane_out).enumerate().for_each(run);
        }
        Ok(())
    }

    fn fully_connected(
        &self,
        input: &[i8],
        weights: &[i8],
        q: &ChannelQuant,
        out: &mut [i8],
    ) -> Result<(), KernelError> {
        check_fc(input, weights, q, out)?;
        let parallel = (input.len() * out.len()) as u64 >= PARALLEL_MACS;
        fc::fully_connected(input, weights, q, out, parallel);
        Ok(())
    }

    fn matmul(
        &self,
        dims: [u32; 3],
        a: &[i8],
        b: &[i8],
        q: &PairQuant,
        out: &mut [i8],
    ) -> Result<(), KernelError> {
        Reference.matmul(dims, a, b, q, out)
    }
}
