//! Row-shift kernels for the native backend: depthwise convolution and pooling, where each
//! window tap is a whole (possibly strided) input row combined into a row of outputs. Unfolding
//! would cost as much as the work itself for these few-tap layers; this form vectorises.
//!
//! Both follow the reference's arithmetic exactly: wrapping int32 sums for the convolution, and
//! for pooling the maximum over the valid cells (`-128` when none) or their rounded mean.

use alloc::vec;
use alloc::vec::Vec;

use rayon::prelude::*;

use crate::arith::div_round_half_up;
use crate::native::requantize_row;
use crate::{ChannelQuant, ConvParams, PoolKind, PoolParams};

/// The output columns `lo..hi` whose input column `ow · stride + shift` lies in `0..width`.
fn valid_columns(shift: i64, stride: u32, width: u32, outputs: u32) -> (usize, usize) {
    let s = stride as i64;
    let lo = (-shift).max(0).div_euclid(s) + ((-shift).max(0) % s != 0) as i64;
    let hi = (width as i64 - shift + s - 1)
        .div_euclid(s)
        .clamp(0, outputs as i64);
    (lo.min(hi) as usize, hi as usize)
}

/// The input values tap `shift` adds to output columns `lo..`, every `stride`-th one.
fn strided(row: &[i8], lo: usize, stride: u32, shift: i64) -> impl Iterator<Item = &i8> {
    let start = (lo as i64 * stride as i64 + shift) as usize;
    row[start..].iter().step_by(stride as usize)
}

/// A depthwise convolution (`groups` = input channels = output channels), `channels_per_task`
/// channels per rayon task (all on the calling thread when `parallel` is off).
pub fn depthwise(
    p: &ConvParams,
    input: &[i8],
    weights: &[i8],
    q: &ChannelQuant,
    out: &mut [i8],
    parallel: bool,
) {
    let plane_out = (p.output.h * p.output.w) as usize;
    let channels = p.output.c as usize;
    let per_task = if parallel {
        channels.div_ceil(4 * rayon::current_num_threads()).max(1)
    } else {
        channels
    };
    let run = |(t, chunk): (usize, &mut [i8])| {
        let mut scratch = DepthwiseScratch::new(p);
        for (i, plane) in chunk.chunks_mut(plane_out).enumerate() {
            depthwise_channel(p, input, weights, q, t * per_task + i, &mut scratch, plane);
        }
    };
    if parallel {
        out.par_chunks_mut(per_task * plane_out)
            .enumerate()
            .for_each(run);
    } else {
        out.chunks_mut(per_task * plane_out)
            .enumerate()
            .for_each(run);
    }
}

/// Per-task buffers of [`depthwise`], reused across its channels.
///
/// The padded input plane is split by row and column phase modulo the strides `(sh, sw)` into
/// `sh · sw` grids: grid `(fr, fc)`, cell `(i, j)` is padded input `(i · sh + fr, j · sw + fc)`,
/// stored as
/// `x - z_in` in int16 (padding stays 0, its contribution). Tap `(b, e)` of every output
/// position is then one grid read at a fixed offset, so each tap is a single run over a "wide"
/// output plane whose rows are `phase_len` long (the columns past the output width are
/// discarded): the loop is as long as the plane, not a row.
struct DepthwiseScratch {
    /// The `sh · sw` grids, each `grid_rows + 1` rows (the last is slack for the wide reads).
    grids: Vec<i16>,
    /// Rows of one grid.
    grid_rows: usize,
    /// Columns of one grid row, and the wide plane's row length.
    phase_len: usize,
    /// int32 sums of one channel's wide output plane.
    sums: Vec<i32>,
}

impl DepthwiseScratch {
    fn new(p: &ConvParams) -> Self {
        let [_, sh, sw] = p.stride.map(|s| s as usize);
        let grid_rows = (p.input.h as usize + 2 * p.pad[1] as usize).div_ceil(sh);
        let phase_len = (p.input.w as usize + 2 * p.pad[2] as usize).div_ceil(sw);
        Self {
            grids: vec![0; sh * sw * (grid_rows + 1) * phase_len],
            grid_rows,
            phase_len,
            sums: vec![0; p.output.h as usize * phase_len],
        }
    }

    fn grid_len(&self) -> usize {
        (self.grid_rows + 1) * self.phase_len
    }
}

/// One channel of a depthwise convolution into its output `plane`.
fn depthwise_channel(
    p: &ConvParams,
    input: &[i8],
    weights: &[i8],
    q: &ChannelQuant,
    c: usize,
    scratch: &mut DepthwiseScratch,
    plane: &mut [i8],
) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked just above.
        unsafe { depthwise_channel_avx2(p, input, weights, q, c, scratch) };
        return requantize_row(&scratch.sums[..plane.len()], q, c, plane);
    }
    depthwise_channel_body(p, input, weights, q, c, scratch);
    requantize_row(&scratch.sums[..plane.len()], q, c, plane)
}

/// [`depthwise_channel_body`] compiled for AVX2.
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn depthwise_channel_avx2(
    p: &ConvParams,
    input: &[i8],
    weights: &[i8],
    q: &ChannelQuant,
    c: usize,
    scratch: &mut DepthwiseScratch,
) {
    depthwise_channel_body(p, input, weights, q, c, scratch)
}

/// The int32 sums (bias not yet added) of channel `c`, compacted to the output plane's shape at
/// the front of `scratch.sums`.
#[inline(always)]
fn depthwise_channel_body(
    p: &ConvParams,
    input: &[i8],
    weights: &[i8],
    q: &ChannelQuant,
    c: usize,
    scratch: &mut DepthwiseScratch,
) {
    let (i, o) = (p.input, p.output);
    let [_, kh, kw] = p.kernel;
    let [_, sh, sw] = p.stride.map(|s| s as usize);
    let [_, ph, pw] = p.pad.map(|s| s as usize);
    let [_, dh, dw] = p.dilation.map(|s| s as usize);
    let width = i.w as usize;
    let (phase_len, grid_len) = (scratch.phase_len, scratch.grid_len());
    let plane = &input[c * (i.h * i.w) as usize..(c + 1) * (i.h * i.w) as usize];
    let taps = &weights[c * (kh * kw) as usize..(c + 1) * (kh * kw) as usize];
    let zero = q.input_zero;
    for (ih, row) in plane.chunks_exact(width).enumerate() {
        let r = ih + ph;
        let grid_row = (r % sh) * sw * grid_len + (r / sh) * phase_len;
        if sw == 2 {
            // Even and odd input columns go to the grids of padded phases pw % 2 and the other.
            let (even, odd) = (
                grid_row + (pw % 2) * grid_len,
                grid_row + (1 - pw % 2) * grid_len,
            );
            let (even, odd) = (even + pw / 2, odd + pw.div_ceil(2));
            let pairs = width / 2;
            let (grids, row) = (&mut scratch.grids, &row[..2 * pairs]);
            for (k, two) in row.chunks_exact(2).enumerate() {
                grids[even + k] = (two[0] as i32 - zero) as i16;
                grids[odd + k] = (two[1] as i32 - zero) as i16;
            }
            if width % 2 == 1 {
                grids[even + pairs] = (plane[(ih + 1) * width - 1] as i32 - zero) as i16;
            }
            continue;
        }
        for fc in 0..sw {
            // The first input column whose padded column is ≡ fc (mod sw).
            let x0 = (fc + sw - pw % sw) % sw;
            if x0 >= width {
                continue;
            }
            let at = grid_row + fc * grid_len + (x0 + pw) / sw;
            let cells = &mut scratch.grids[at..at + (width - x0).div_ceil(sw)];
            if sw == 1 {
                for (v, x) in cells.iter_mut().zip(row) {
                    *v = (*x as i32 - zero) as i16;
                }
            } else {
                for (v, x) in cells.iter_mut().zip(row[x0..].iter().step_by(sw)) {
                    *v = (*x as i32 - zero) as i16;
                }
            }
        }
    }
    let wide = o.h as usize * phase_len;
    let sums = &mut scratch.sums[..wide];
    sums.fill(0);
    for b in 0..kh as usize {
        let row = b * dh;
        for e in 0..kw as usize {
            let col = e * dw;
            let grid = (row % sh) * sw + col % sw;
            let start = grid * grid_len + (row / sh) * phase_len + col / sw;
            // |w · (x - z_in)| ≤ 128 · 255 fits int16: the product is exact before widening.
            let w = taps[b * kw as usize + e] as i16;
            for (a, x) in sums.iter_mut().zip(&scratch.grids[start..start + wide]) {
                *a = a.wrapping_add((w * *x) as i32);
            }
        }
    }
    let ow = o.w as usize;
    for oh in 1..o.h as usize {
        sums.copy_within(oh * phase_len..oh * phase_len + ow, oh * ow);
    }
}

/// One channel plane of a pooling layer.
pub fn pool_plane(p: &PoolParams, plane: &[i8], out: &mut [i8]) {
    let (i, o) = (p.input, p.output);
    let mut max = vec![i8::MIN; o.w as usize];
    let mut sum = vec![0i32; o.w as usize];
    let mut count = vec![0i32; o.w as usize];
    // Per window column: its shift and the output columns it reaches.
    let columns: Vec<(i64, usize, usize)> = (0..p.k as i64)
        .map(|e| {
            let shift = e - p.pad as i64;
            let (lo, hi) = valid_columns(shift, p.stride, i.w, o.w);
            (shift, lo, hi)
        })
        .filter(|(_, lo, hi)| lo < hi)
        .collect();
    for (oh, out_row) in out.chunks_mut(o.w as usize).enumerate() {
        max.fill(i8::MIN);
        sum.fill(0);
        count.fill(0);
        for b in 0..p.k as i64 {
            let ih = oh as i64 * p.stride as i64 - p.pad as i64 + b;
            if !(0..i.h as i64).contains(&ih) {
                continue;
            }
            let row = &plane[ih as usize * i.w as usize..(ih as usize + 1) * i.w as usize];
            for &(shift, lo, hi) in &columns {
                let xs = strided(row, lo, p.stride, shift);
                match p.kind {
                    PoolKind::Max | PoolKind::MaxCeil => {
                        for (m, x) in max[lo..hi].iter_mut().zip(xs) {
                            *m = (*m).max(*x);
                        }
                    }
                    PoolKind::Average => {
                        for ((s, n), x) in sum[lo..hi].iter_mut().zip(&mut count[lo..hi]).zip(xs) {
                            *s += *x as i32;
                            *n += 1;
                        }
                    }
                }
            }
        }
        match p.kind {
            PoolKind::Max | PoolKind::MaxCeil => out_row.copy_from_slice(&max),
            PoolKind::Average => {
                for ((y, s), n) in out_row.iter_mut().zip(&sum).zip(&count) {
                    *y = div_round_half_up(*s as i64, (*n as i64).max(1)) as i8;
                }
            }
        }
    }
}
