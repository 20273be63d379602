//! Row-shift kernels for the native backend: depthwise convolution and pooling, where each
//! window tap is a whole (possibly strided) input row combined into a row of outputs. Unfolding
//! would cost as much as the work itself for these few-tap layers; this form vectorises.
//!
//! Both follow the reference's arithmetic exactly: wrapping int32 sums for the convolution, and
//! for pooling the maximum over the valid cells (`-128` when none) or their rounded mean.

use alloc::vec;

use crate::arith::{div_round_half_up, requantize};
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

/// One channel of a depthwise convolution (`groups` = input channels = output channels).
pub fn depthwise_channel(
    p: &ConvParams,
    input: &[i8],
    weights: &[i8],
    q: &ChannelQuant,
    c: usize,
    out: &mut [i8],
) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked just above.
        return unsafe { depthwise_channel_avx2(p, input, weights, q, c, out) };
    }
    depthwise_channel_body(p, input, weights, q, c, out)
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
    out: &mut [i8],
) {
    depthwise_channel_body(p, input, weights, q, c, out)
}

#[inline(always)]
fn depthwise_channel_body(
    p: &ConvParams,
    input: &[i8],
    weights: &[i8],
    q: &ChannelQuant,
    c: usize,
    out: &mut [i8],
) {
    let (i, o) = (p.input, p.output);
    let [_, kh, kw] = p.kernel;
    let [_, sh, sw] = p.stride;
    let [_, ph, pw] = p.pad;
    let [_, dh, dw] = p.dilation;
    let plane = &input[c * (i.h * i.w) as usize..(c + 1) * (i.h * i.w) as usize];
    let taps = &weights[c * (kh * kw) as usize..(c + 1) * (kh * kw) as usize];
    let (zero, r) = (q.input_zero, q.output);
    // The input row as `x - z_in` in int16, split by column phase modulo the stride so that
    // every tap reads a contiguous run: `phases[ph][j]` is column `j · stride + ph`.
    let stride = sw as usize;
    let phase_len = (i.w as usize).div_ceil(stride);
    let mut phases = vec![0i16; stride * phase_len];
    // Per kernel column: the output columns it reaches and where their inputs start.
    let columns: Vec<(usize, usize, usize)> = (0..kw as i64)
        .map(|e| {
            let shift = e * dw as i64 - pw as i64;
            let (lo, hi) = valid_columns(shift, sw, i.w, o.w);
            if lo >= hi {
                return (0, 0, 0);
            }
            let start = (lo as i64 * sw as i64 + shift) as usize;
            (lo, hi, (start % stride) * phase_len + start / stride)
        })
        .collect();
    let mut acc = vec![0i32; o.w as usize];
    for (oh, out_row) in out.chunks_mut(o.w as usize).enumerate() {
        acc.fill(q.bias[c]);
        for b in 0..kh as i64 {
            let ih = oh as i64 * sh as i64 - ph as i64 + b * dh as i64;
            if !(0..i.h as i64).contains(&ih) {
                continue;
            }
            let row = &plane[ih as usize * i.w as usize..(ih as usize + 1) * i.w as usize];
            if stride == 1 {
                for (v, x) in phases.iter_mut().zip(row) {
                    *v = (*x as i32 - zero) as i16;
                }
            } else {
                for (col, x) in row.iter().enumerate() {
                    phases[(col % stride) * phase_len + col / stride] = (*x as i32 - zero) as i16;
                }
            }
            for (e, (lo, hi, from)) in columns.iter().enumerate() {
                // |w · (x - z_in)| ≤ 128 · 255 fits int16: the product is exact before widening.
                let w = taps[b as usize * kw as usize + e] as i16;
                let xs = &phases[*from..*from + (hi - lo)];
                for (a, x) in acc[*lo..*hi].iter_mut().zip(xs) {
                    *a = a.wrapping_add((w * *x) as i32);
                }
            }
        }
        for (y, a) in out_row.iter_mut().zip(&acc) {
            *y = requantize(*a, q.mult[c], q.shift[c], r.zero, r.lo, r.hi);
        }
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
