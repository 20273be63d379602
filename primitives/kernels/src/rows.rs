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
use crate::grids::GridShape;
use crate::requant::requantize_row;
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

/// Per-task buffers of [`depthwise`], reused across its channels: one channel's stride-phase
/// grids (see [`crate::grids`]) and the int32 sums of its wide output plane. Each tap is then
/// one run over the whole plane rather than a row.
struct DepthwiseScratch {
    shape: GridShape,
    cells: Vec<i16>,
    sums: Vec<i32>,
}

impl DepthwiseScratch {
    fn new(p: &ConvParams) -> Self {
        let shape = GridShape::of(p);
        Self {
            shape,
            cells: vec![0; shape.channel_len()],
            sums: vec![0; shape.wide_len(p)],
        }
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
    if crate::tile::avx2() {
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
    let [_, kh, kw] = p.kernel.map(|k| k as usize);
    let plane = &input[c * (i.h * i.w) as usize..(c + 1) * (i.h * i.w) as usize];
    let taps = &weights[c * kh * kw..(c + 1) * kh * kw];
    let shape = scratch.shape;
    let zero = q.input_zero;
    shape.fill(p, plane, &mut scratch.cells, |x| (x as i32 - zero) as i16);
    let sums = &mut scratch.sums[..];
    sums.fill(0);
    let wide = sums.len();
    for b in 0..kh {
        for e in 0..kw {
            let start = shape.tap(p, b, e);
            // |w · (x - z_in)| ≤ 128 · 255 fits int16: the product is exact before widening.
            let w = taps[b * kw + e] as i16;
            for (a, x) in sums.iter_mut().zip(&scratch.cells[start..start + wide]) {
                *a = a.wrapping_add((w * *x) as i32);
            }
        }
    }
    let ow = o.w as usize;
    for oh in 1..o.h as usize {
        sums.copy_within(oh * shape.phase_len..oh * shape.phase_len + ow, oh * ow);
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
