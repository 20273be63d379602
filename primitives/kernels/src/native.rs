//! The native fast path: 2-D convolutions unfold into a packed int16 GEMM (`gemm`, AVX2
//! `vpmaddwd` where the CPU has it), FC layers are vectorised dot products, and rayon splits
//! output channels, groups or pooling planes once a call is big enough to pay for the threads.
//!
//! Bit-identity with [`Reference`] follows from the spec: products are exact in int32 and the
//! accumulation wraps, so any summation order gives the same int32 and the same requantized byte.

use alloc::vec::Vec;

use rayon::prelude::*;

use crate::arith::requantize;
use crate::gemm::{self, PackedWeights, MR};
use crate::rows;
use crate::unfold::unfold;
use crate::{
    check_conv, check_fc, check_pool, ChannelQuant, ConvParams, ConvTransposeParams, KernelError,
    Kernels, PairQuant, PoolParams, Reference,
};

/// Below this many multiply-accumulates a call runs on the calling thread: measured on LeNet-5,
/// handing a quarter-million-MAC layer to rayon costs more than it saves.
const PARALLEL_MACS: u64 = 1 << 21;

/// The native backend.
#[derive(Clone, Copy, Debug, Default)]
pub struct Native;

/// Wrapping dot product of int8 weights with zero-point-shifted int16 activations.
#[inline(always)]
fn dot_body(weights: &[i8], xs: &[i16]) -> i32 {
    let mut lanes = [0i32; 16];
    let mut w_chunks = weights.chunks_exact(16);
    let mut x_chunks = xs.chunks_exact(16);
    for (w, x) in (&mut w_chunks).zip(&mut x_chunks) {
        for l in 0..16 {
            lanes[l] = lanes[l].wrapping_add(w[l] as i32 * x[l] as i32);
        }
    }
    let mut acc = lanes.iter().fold(0i32, |s, v| s.wrapping_add(*v));
    for (w, x) in w_chunks.remainder().iter().zip(x_chunks.remainder()) {
        acc = acc.wrapping_add(*w as i32 * *x as i32);
    }
    acc
}

/// Requantizes one output channel's int32 sums (bias not yet added), with AVX2 where present.
pub(crate) fn requantize_row(sums: &[i32], q: &ChannelQuant, oc: usize, out: &mut [i8]) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked just above.
        return unsafe { x86::requantize_row_avx2(sums, q, oc, out) };
    }
    requantize_row_body(sums, q, oc, out)
}

#[inline(always)]
fn requantize_row_body(sums: &[i32], q: &ChannelQuant, oc: usize, out: &mut [i8]) {
    let (bias, mult, shift, r) = (q.bias[oc], q.mult[oc], q.shift[oc], q.output);
    for (y, acc) in out.iter_mut().zip(sums) {
        *y = requantize(bias.wrapping_add(*acc), mult, shift, r.zero, r.lo, r.hi);
    }
}

/// Wrapping dot product, with the widest SIMD the CPU has.
fn dot(weights: &[i8], xs: &[i16]) -> i32 {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked just above.
        return unsafe { x86::dot_avx2(weights, xs) };
    }
    dot_body(weights, xs)
}

/// The same loops compiled for AVX2; chosen at run time, so one binary runs everywhere.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::*;

    /// [`requantize_row_body`] eight lanes at a time. AVX2 has neither a 64-bit arithmetic
    /// shift nor 64-bit min/max, so the product is offset by 2^62 to make it non-negative: then
    /// the logical shift floors exactly (2^62 is a multiple of 2^n for n ≤ 62), and the clamp
    /// bounds move by the same 2^(62-n).
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn requantize_row_avx2(
        sums: &[i32],
        q: &ChannelQuant,
        oc: usize,
        out: &mut [i8],
    ) {
        use core::arch::x86_64::*;
        let (bias, mult, shift, r) = (q.bias[oc], q.mult[oc], q.shift[oc], q.output);
        let n = (31 + shift) as u32;
        let moved = 1i64 << (62 - n);
        let offset = _mm256_set1_epi64x(((1u64 << 62) + (1u64 << (n - 1))) as i64);
        let count = _mm_set_epi64x(0, n as i64);
        let low = _mm256_set1_epi64x(r.lo as i64 - r.zero as i64 + moved);
        let high = _mm256_set1_epi64x(r.hi as i64 - r.zero as i64 + moved);
        let back = _mm256_set1_epi64x(r.zero as i64 - moved);
        let (m, b) = (_mm256_set1_epi64x(mult as i64), _mm256_set1_epi32(bias));
        // Four 64-bit products in, four clamped int8 values (in 64-bit lanes) out.
        let finish = |product: __m256i| {
            let t = _mm256_srl_epi64(_mm256_add_epi64(product, offset), count);
            let t = _mm256_blendv_epi8(t, low, _mm256_cmpgt_epi64(low, t));
            let t = _mm256_blendv_epi8(t, high, _mm256_cmpgt_epi64(t, high));
            _mm256_add_epi64(t, back)
        };
        let n_full = sums.len().min(out.len()) / 8;
        for i in 0..n_full {
            // SAFETY: i < n_full, so the 8 lanes at 8·i lie inside both slices.
            let acc = _mm256_loadu_si256(sums.as_ptr().add(8 * i) as *const __m256i);
            let acc = _mm256_add_epi32(acc, b);
            let even = finish(_mm256_mul_epi32(acc, m));
            let odd = finish(_mm256_mul_epi32(_mm256_srli_epi64::<32>(acc), m));
            let y = _mm256_blend_epi32::<0b1010_1010>(even, _mm256_slli_epi64::<32>(odd));
            let y16 = _mm256_packs_epi32(y, y);
            let y8 = _mm256_packs_epi16(y16, y16);
            let lanes = (_mm256_cvtsi256_si32(y8) as u32 as u64)
                | ((_mm256_extract_epi32::<4>(y8) as u32 as u64) << 32);
            core::ptr::write_unaligned(out.as_mut_ptr().add(8 * i) as *mut u64, lanes.to_le());
        }
        for (y, acc) in out[8 * n_full..].iter_mut().zip(&sums[8 * n_full..]) {
            *y = requantize(bias.wrapping_add(*acc), mult, shift, r.zero, r.lo, r.hi);
        }
    }

    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn dot_avx2(weights: &[i8], xs: &[i16]) -> i32 {
        dot_body(weights, xs)
    }
}

/// Output rows of one rayon task: a multiple of [`MR`], few enough that both cores get work on
/// the narrow layers and that a task's packed weights stay in the L2 cache on the wide ones.
fn rows_per_task(rows: usize) -> usize {
    let tasks = 2 * rayon::current_num_threads();
    rows.div_ceil(tasks).next_multiple_of(MR).clamp(MR, 16)
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
    let unfolded = unfold(p, input, q.input_zero, group, parallel);
    let (wide, row_len) = (unfolded.panels.positions(), unfolded.row_len);
    let per_task = if parallel { rows_per_task(rows) } else { rows };
    let run = |(t, chunk): (usize, &mut [i8])| {
        let row0 = first + t * per_task;
        let task_rows = chunk.len() / positions;
        let packed = PackedWeights::new(
            &weights[row0 * taps..(row0 + task_rows) * taps],
            task_rows,
            taps,
        );
        let mut sums = vec![0i32; task_rows * wide];
        gemm::multiply(&packed, &unfolded.panels, &mut sums);
        for (row, (acc, y)) in sums
            .chunks(wide)
            .zip(chunk.chunks_mut(positions))
            .enumerate()
        {
            if row_len == out_w {
                requantize_row(&acc[..positions], q, row0 + row, y);
                continue;
            }
            // Wide rows: each output row's first `out_w` sums; the rest are discarded.
            for (acc, y) in acc.chunks(row_len).zip(y.chunks_mut(out_w)) {
                requantize_row(&acc[..out_w], q, row0 + row, y);
            }
        }
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
        if p.kernel[0] != 1 || p.input.d != 1 {
            return Reference.conv(p, input, weights, q, out);
        }
        let group_len = p.group_out() as usize * (p.output.h * p.output.w) as usize;
        let parallel = p.macs() >= PARALLEL_MACS;
        if p.group_in() == 1 && p.group_out() == 1 {
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
        let n = input.len();
        let xs: Vec<i16> = input
            .iter()
            .map(|x| (*x as i32 - q.input_zero) as i16)
            .collect();
        let r = q.output;
        let row = |(o, y): (usize, &mut i8)| {
            let acc = q.bias[o].wrapping_add(dot(&weights[o * n..(o + 1) * n], &xs));
            *y = requantize(acc, q.mult[o], q.shift[o], r.zero, r.lo, r.hi);
        };
        if (n * out.len()) as u64 >= PARALLEL_MACS {
            out.par_iter_mut().enumerate().for_each(row);
        } else {
            out.iter_mut().enumerate().for_each(row);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::OutputRange;

    /// The vector requantization equals the scalar one at every shift, at the int32 and
    /// multiplier extremes, with fused-ReLU ranges, on lengths with a partial last vector.
    #[test]
    fn vector_requantization_matches_scalar() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for case in 0..4000usize {
            let len = case % 37;
            let extreme = case % 3 == 0;
            let sums: Vec<i32> = (0..len)
                .map(|i| match (extreme, i % 4) {
                    (true, 0) => i32::MIN,
                    (true, 1) => i32::MAX,
                    _ => next() as i32 >> (next() % 31),
                })
                .collect();
            let zero = (next() % 256) as i32 - 128;
            let (a, b) = ((next() % 256) as i32 - 128, (next() % 256) as i32 - 128);
            let q = ChannelQuant {
                input_zero: 0,
                output: OutputRange {
                    zero,
                    lo: a.min(b),
                    hi: a.max(b),
                },
                bias: vec![if extreme { next() as i32 } else { 0 }],
                mult: vec![if extreme {
                    i32::MAX
                } else {
                    (next() >> 33) as i32
                }],
                shift: vec![(case % 62) as i32 - 30],
            };
            let (mut fast, mut slow) = (vec![0i8; len], vec![0i8; len]);
            requantize_row(&sums, &q, 0, &mut fast);
            requantize_row_body(&sums, &q, 0, &mut slow);
            assert_eq!(fast, slow, "{q:?} {sums:?}");
        }
    }
}
