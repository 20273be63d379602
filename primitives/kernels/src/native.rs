//! The native fast path: 2-D convolutions unfold into a packed int16 GEMM (`gemm`, AVX2
//! `vpmaddwd` where the CPU has it), FC layers are vectorised dot products, and rayon splits
//! output channels, groups or pooling planes once a call is big enough to pay for the threads.
//!
//! Bit-identity with [`Reference`] follows from the spec: products are exact in int32 and the
//! accumulation wraps, so any summation order gives the same int32 and the same requantized byte.

use rayon::prelude::*;

use crate::fc;
use crate::gemm::{self, PackedWeights, MR};
use crate::quads::QuadInput;
use crate::quads::{self, QuadKernel, QuadWeights};
use crate::requant::requantize_row;
use crate::rows;
use crate::unfold::{unfold, QuadPlan, Unfolded};
use crate::warm;
use crate::{
    check_conv, check_fc, check_pool, ChannelQuant, ConvParams, ConvTransposeParams, KernelError,
    Kernels, PackedFc, PairQuant, PoolParams, PreparedConv, Reference,
};

/// Below this many multiply-accumulates a call runs on the calling thread: measured on LeNet-5,
/// handing a quarter-million-MAC layer to rayon costs more than it saves.
const PARALLEL_MACS: u64 = 1 << 21;

/// GEMM multiply-accumulates one depthwise multiply-accumulate is worth, for the threshold above.
const DEPTHWISE_MAC_COST: u64 = 8;

/// Input elements from which a depthwise layer goes parallel whatever its MACs.
const DEPTHWISE_PARALLEL_INPUTS: u64 = 1 << 16;

/// Input elements from which a pooling layer runs its planes on the rayon pool.
const POOL_PARALLEL_INPUTS: u64 = 1 << 15;

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

// A task's first row must start a block of the quad GEMM (`quads::multiply_rows_with`).
const _: () = assert!((2 * MR).is_multiple_of(quads::ROWS));

/// Output rows of one rayon task: a multiple of both GEMMs' row blocks ([`MR`], [`quads::ROWS`]), few enough that both cores get work on
/// the narrow layers and that a task's packed weights stay in the L2 cache on the wide ones.
fn rows_per_task(rows: usize, product: &Product) -> usize {
    if let Product::Quads(_, _, QuadKernel::Amx) = product {
        // Whole 32-row blocks of AMX tiles: smaller tasks would pad their weights.
        return crate::amx::BLOCK;
    }
    let tasks = 2 * rayon::current_num_threads();
    rows.div_ceil(tasks)
        .next_multiple_of(2 * MR)
        .clamp(2 * MR, 16)
}

/// A group's unfolded input in the layout of the GEMM that runs it.
enum Product {
    /// Int16 tap pairs (AVX2 `vpmaddwd`, portable).
    Pairs(Unfolded),
    /// u8 tap quads (`vpdpbusd`, or its emulation): the panels and the output row length.
    Quads(QuadInput, usize, QuadKernel),
}

impl Product {
    /// GEMM positions, and the length of an output row among them.
    fn layout(&self) -> (usize, usize) {
        match self {
            Product::Pairs(u) => (u.panels.positions(), u.row_len),
            Product::Quads(panels, row_len, _) => (panels.positions(), *row_len),
        }
    }

    /// The output rows `row0..` of `rows` weight rows (`taps` each) with the unfolded input,
    /// requantized into `out` (`rows` output planes of `out_w`-wide rows).
    fn rows(
        &self,
        (weights, prepared): (&[i8], Option<&QuadWeights<'static>>),
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
                    requantize_wide(acc, (row_len, out_w), q, (row0 + row, 0), y, 0, 0);
                }
            }
            Product::Quads(panels, _, kernel) => {
                let sink = |row: usize, first: usize, sums: &[i32], less: i32| {
                    let y = &mut out[row * plane..(row + 1) * plane];
                    let channel = (row0 + row, less);
                    requantize_wide(sums, (row_len, out_w), q, channel, y, first, 0);
                };
                match prepared {
                    // The layer's weights laid out once: this task's rows of them.
                    Some(w) => {
                        quads::multiply_rows_with(*kernel, w, row0..row0 + rows, panels, sink)
                    }
                    None => {
                        let w = QuadWeights::new(*kernel, weights, rows, taps, q.input_zero);
                        quads::multiply_with(*kernel, &w, panels, sink)
                    }
                }
            }
        }
    }
}

/// Requantizes the sums (less `less`, a GEMM's correction) of wide positions
/// `first..first + sums.len()` of channel `oc` into the part of its output plane that `y`
/// holds, outputs `origin..origin + y.len()`: wide position `p` is output
/// `(p / row_len, p % row_len)`; columns at or past `out_w`, and outputs outside `y`, are
/// left alone.
#[inline]
fn requantize_wide(
    sums: &[i32],
    (row_len, out_w): (usize, usize),
    q: &ChannelQuant,
    (oc, less): (usize, i32),
    y: &mut [i8],
    first: usize,
    origin: usize,
) {
    let end = first + sums.len();
    let (lo, hi) = (origin, origin + y.len());
    if row_len == out_w {
        // No wide columns (1 × 1 layers, unpadded rows): wide positions are outputs, so the
        // run is one span, clipped to `y`, however many output rows it crosses.
        let (from, to) = (first.max(lo), end.min(hi));
        if from < to {
            let s = from - first;
            requantize_row(
                &sums[s..s + (to - from)],
                q,
                oc,
                less,
                &mut y[from - lo..to - lo],
            );
        }
        return;
    }
    let mut p = first;
    while p < end {
        let (oh, ow) = (p / row_len, p % row_len);
        let run_end = end.min((oh + 1) * row_len);
        if ow < out_w {
            let take = (out_w - ow).min(run_end - p);
            // Outputs `at..at + take`, clipped to what `y` holds.
            let at = oh * out_w + ow;
            let (from, to) = (at.max(lo), (at + take).min(hi));
            if from < to {
                let s = p - first + (from - at);
                requantize_row(
                    &sums[s..s + (to - from)],
                    q,
                    oc,
                    less,
                    &mut y[from - lo..to - lo],
                );
            }
        }
        p = run_end;
    }
}

/// Output rows per group below which a parallel layer splits its positions among the tasks
/// instead of its rows: with 24 rows, three row tasks kept one of two threads idle half the
/// time (MobileNetV2's 144 × 56 × 56 → 24 took 216 µs on two threads, 113 on one).
const FEW_ROWS: usize = 32;

/// A group with few output rows: each task builds the panels of its own run of positions, runs
/// every row over them and writes its part of every output plane.
#[allow(clippy::too_many_arguments)]
fn conv_group_by_positions(
    p: &ConvParams,
    plan: &QuadPlan<'_>,
    kernel: QuadKernel,
    (weights, prepared): (&[i8], Option<&QuadWeights<'static>>),
    q: &ChannelQuant,
    first_row: usize,
    out: &mut [i8],
) {
    let (rows, taps) = (p.group_out() as usize, p.weights_per_output() as usize);
    let (plane, out_w) = ((p.output.h * p.output.w) as usize, p.output.w as usize);
    let (wide, row_len) = (plan.positions, plan.row_len);
    let fresh;
    let w = match prepared {
        Some(w) => w,
        None => {
            let group_weights = &weights[first_row * taps..(first_row + rows) * taps];
            fresh = QuadWeights::new(kernel, group_weights, rows, taps, q.input_zero);
            &fresh
        }
    };
    let panels = wide.div_ceil(quads::COLS);
    let tasks = 4 * rayon::current_num_threads();
    let per_task = panels.div_ceil(tasks).next_multiple_of(quads::PANELS);
    let tasks = panels.div_ceil(per_task);
    // The first output of wide position `p` or after it.
    let output_at = |p: usize| ((p / row_len) * out_w + (p % row_len).min(out_w)).min(plane);
    let bound = |t: usize| (t * per_task * quads::COLS).min(wide);
    let mut parts: Vec<Vec<&mut [i8]>> = (0..tasks).map(|_| Vec::with_capacity(rows)).collect();
    for channel in out.chunks_mut(plane) {
        let (mut rest, mut at) = (channel, 0);
        for (t, part) in parts.iter_mut().enumerate() {
            let end = output_at(bound(t + 1));
            let (head, tail) = rest.split_at_mut(end - at);
            part.push(head);
            (rest, at) = (tail, end);
        }
    }
    parts.into_par_iter().enumerate().for_each(|(t, mut ys)| {
        let (origin, start) = (output_at(bound(t)), bound(t));
        let mine = plan.panels(start, bound(t + 1) - start, false);
        quads::multiply_with(kernel, w, &mine, |row, first, sums, less| {
            let y = &mut ys[row];
            requantize_wide(
                sums,
                (row_len, out_w),
                q,
                (first_row + row, less),
                y,
                start + first,
                origin,
            );
        });
    });
}

/// The quad kernel a convolution of `p` runs on the active tile, if any (the int16 GEMM
/// otherwise): AMX only where its tiles would not be mostly padding.
fn quad_kernel(p: &ConvParams, q: &ChannelQuant) -> Option<QuadKernel> {
    let (rows, taps) = (p.group_out() as usize, p.weights_per_output() as usize);
    QuadKernel::for_active_tile()
        .filter(|_| quads::zero_fits(q.input_zero))
        .map(|kernel| match kernel {
            // Tiles of 32 rows × 64 taps would be mostly padding.
            QuadKernel::Amx if !crate::amx::fills_tiles(rows, taps) => QuadKernel::Avx512Vnni,
            kernel => kernel,
        })
}

/// Whether [`Native`] runs `p` as one group through `conv_group`: a single-group 2-D layer with
/// more than one input or output channel (one of each is a depthwise layer).
fn runs_whole(p: &ConvParams) -> bool {
    p.groups == 1 && two_d(p) && !depthwise(p)
}

/// Whether the native paths run `p`, 2-D: one input plane in, one output plane out per
/// channel, the output plane on the input plane. Depth padding breaks that: it makes a depth-1
/// input give a deeper output, or (with a stride past the padded depth) a depth-1 output that
/// reads only padding. Those, like any true 3-D layer, run the reference.
fn two_d(p: &ConvParams) -> bool {
    p.kernel[0] == 1 && p.pad[0] == 0 && p.input.d == 1 && p.output.d == 1
}

/// Whether `p` is depthwise (one input and one output channel a group): the row kernels.
fn depthwise(p: &ConvParams) -> bool {
    p.group_in() == 1 && p.group_out() == 1
}

/// A single-group convolution's weights laid out once for `kernel` and input zero point `zero`
/// ([`Kernels::prepare_conv`]): the split or byte pairs of the AVX2 tile, or VNNI quads packed
/// where rows are no whole number of quads, with their corrections.
struct PreparedQuads {
    kernel: QuadKernel,
    zero: i32,
    weights: QuadWeights<'static>,
}

/// Whether a parallel group of `rows` output rows over `positions` splits its positions among
/// the tasks rather than its rows: few rows (see [`FEW_ROWS`]), or a strided stem (AlexNet's
/// 11 × 11/4 and ResNet-18's 7 × 7/2 first layers, 64 rows over 3,025 and 12,544 positions).
/// Split by rows, every task reads the whole unfolded input (1.1 and 1.8 MB there), half of it
/// from the other core's caches; split by positions, each task unfolds and multiplies its own
/// part and reads all of the small weights. On two AMD EPYC threads the two stems went 0.80 →
/// 0.73 and 1.25 → 1.13 ms; ResNet-18's unit-stride 64-row layers, tried the same way, went
/// 3.57 → 3.71 ms, so they keep the row split.
fn by_positions(p: &ConvParams, rows: usize, positions: usize) -> bool {
    rows <= FEW_ROWS || (p.stride[1] > 1 && positions >= 8 * rows)
}

/// One group of a 2-D convolution: unfold into panels, then per task of output rows pack their
/// weights, multiply and requantize; with `parallel`, both steps run on the rayon pool.
fn conv_group(
    p: &ConvParams,
    input: &[i8],
    (weights, prepared): (&[i8], Option<&PreparedQuads>),
    q: &ChannelQuant,
    group: usize,
    out: &mut [i8],
    parallel: bool,
) {
    let positions = (p.output.h * p.output.w) as usize;
    let (out_w, taps) = (p.output.w as usize, p.weights_per_output() as usize);
    let rows = p.group_out() as usize;
    let first = group * rows;
    let kernel = quad_kernel(p, q);
    // Weights laid out for this kernel and zero point (another tile may be forced since).
    let prepared = prepared
        .filter(|w| Some(w.kernel) == kernel && w.zero == q.input_zero)
        .map(|w| &w.weights);
    let product = match kernel {
        Some(kernel) => {
            let plan = QuadPlan::new(p, input, q.input_zero, group, parallel);
            if parallel && by_positions(p, rows, positions) {
                let weights = (weights, prepared);
                return conv_group_by_positions(p, &plan, kernel, weights, q, first, out);
            }
            Product::Quads(
                plan.panels(0, plan.positions, parallel),
                plan.row_len,
                kernel,
            )
        }
        None => Product::Pairs(unfold(p, input, q.input_zero, group, parallel)),
    };
    let per_task = if parallel {
        rows_per_task(rows, &product)
    } else {
        rows
    };
    let run = |(t, chunk): (usize, &mut [i8])| {
        let row0 = first + t * per_task;
        let task_rows = chunk.len() / positions;
        let task_weights = &weights[row0 * taps..(row0 + task_rows) * taps];
        let weights = (task_weights, prepared);
        product.rows(weights, (row0, task_rows, taps), q, out_w, chunk);
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
        if !two_d(p) {
            return Reference.conv(p, input, weights, q, out);
        }
        let group_len = p.group_out() as usize * (p.output.h * p.output.w) as usize;
        let parallel = p.macs() >= PARALLEL_MACS;
        if parallel {
            warm::parallel_layer();
        }
        if depthwise(p) {
            // A depthwise MAC costs about ten GEMM MACs, and each channel has a fixed cost
            // (its grids, its requantization): measured per layer on MobileNetV2, whose
            // 576 × 14 × 14 stride-2 layer took 150 µs on one thread for 0.25 M MACs.
            let inputs = p.input.elements().unwrap_or(0);
            let parallel = p.macs() * DEPTHWISE_MAC_COST >= PARALLEL_MACS
                || inputs >= DEPTHWISE_PARALLEL_INPUTS;
            if parallel {
                warm::parallel_layer();
            }
            rows::depthwise(p, input, weights, q, out, parallel);
            return Ok(());
        }
        if parallel && p.groups > 1 {
            // Grouped and depthwise layers: whole groups side by side, one thread each.
            out.par_chunks_mut(group_len)
                .enumerate()
                .for_each(|(g, o)| conv_group(p, input, (weights, None), q, g, o, false));
        } else {
            for (g, o) in out.chunks_mut(group_len).enumerate() {
                conv_group(p, input, (weights, None), q, g, o, parallel);
            }
        }
        Ok(())
    }

    fn prepare_conv(
        &self,
        p: &ConvParams,
        weights: &[i8],
        q: &ChannelQuant,
    ) -> Option<PreparedConv> {
        if !runs_whole(p) || weights.len() as u64 != p.weight_len() {
            return None;
        }
        let kernel = quad_kernel(p, q)?;
        let (rows, taps) = (p.group_out() as usize, p.weights_per_output() as usize);
        let weights = QuadWeights::new(kernel, weights, rows, taps, q.input_zero).into_owned()?;
        let bytes = weights.heap_bytes();
        let zero = q.input_zero;
        Some(PreparedConv::new(
            PreparedQuads {
                kernel,
                zero,
                weights,
            },
            bytes,
        ))
    }

    fn conv_prepared(
        &self,
        p: &ConvParams,
        input: &[i8],
        weights: &[i8],
        prepared: &PreparedConv,
        q: &ChannelQuant,
        out: &mut [i8],
    ) -> Result<(), KernelError> {
        let Some(layout) = prepared.layout::<PreparedQuads>() else {
            return self.conv(p, input, weights, q, out);
        };
        let (rows, taps) = (p.group_out() as usize, p.weights_per_output() as usize);
        if !runs_whole(p) || layout.weights.shape() != (rows, taps.div_ceil(4)) {
            return self.conv(p, input, weights, q, out);
        }
        check_conv(p, input, weights, q, out)?;
        let parallel = p.macs() >= PARALLEL_MACS;
        if parallel {
            warm::parallel_layer();
        }
        conv_group(p, input, (weights, Some(layout)), q, 0, out, parallel);
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
        // Input bytes, not comparisons, set a pool's cost: each plane is read once and its
        // windows' maxima come from row maxima. AlexNet's three pools (43 K to 194 K inputs,
        // 0.13–0.26 ms on one thread) ran on one thread under the old bound of 2^19 comparisons.
        if p.input.elements().unwrap_or(0) >= POOL_PARALLEL_INPUTS {
            warm::parallel_layer();
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
        if parallel {
            warm::parallel_layer();
        }
        fc::fully_connected(input, weights, q, out, parallel);
        Ok(())
    }

    fn pack_fully_connected(&self, weights: &[i8], inputs: usize) -> Option<PackedFc> {
        // Quads for the `vpdpbusd` tiles, int16 pairs for AVX2, nothing for the portable tile;
        // layers of megabytes as runs on AVX2, and row-major (not packed) on the others.
        let kernel = QuadKernel::for_active_tile()?;
        if weights.len() >= crate::packed_fc::RUNS_FROM_BYTES {
            return (kernel == QuadKernel::Avx2)
                .then(|| PackedFc::runs(weights, inputs))
                .flatten();
        }
        match kernel {
            QuadKernel::Avx2 => fc::pack_pairs(weights, inputs),
            _ => fc::pack(weights, inputs),
        }
    }

    fn fully_connected_packed(
        &self,
        input: &[i8],
        weights: &[i8],
        packed: &PackedFc,
        q: &ChannelQuant,
        out: &mut [i8],
    ) -> Result<(), KernelError> {
        check_fc(input, weights, q, out)?;
        if (packed.inputs(), packed.outputs()) != (input.len(), out.len()) {
            return Err(KernelError::ShapeMismatch);
        }
        let parallel = (input.len() * out.len()) as u64 >= PARALLEL_MACS;
        if !fc::fully_connected_packed(input, packed, q, out, parallel) {
            fc::fully_connected(input, weights, q, out, parallel);
        }
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
