//! The native fast path: lowering to dense int16 × int8 dot products whose inner loops the
//! compiler vectorises (AVX2 on this target), with rayon across output channels once a call is
//! big enough to pay for the threads.
//!
//! Bit-identity with [`Reference`] follows from the spec: products are exact in int32 and the
//! accumulation wraps, so any summation order gives the same int32 and the same requantized byte.

use alloc::vec;
use alloc::vec::Vec;

use rayon::prelude::*;

use crate::arith::requantize;
use crate::{
    check_conv, check_fc, ChannelQuant, ConvParams, ConvTransposeParams, KernelError, Kernels,
    PairQuant, PoolParams, Reference,
};

/// Below this many multiply-accumulates a call runs on the calling thread: measured on LeNet-5,
/// handing a quarter-million-MAC layer to rayon costs more than it saves.
const PARALLEL_MACS: u64 = 1 << 21;

/// The native backend.
#[derive(Clone, Copy, Debug, Default)]
pub struct Native;

/// `acc[p] += w · col[p]` over a row: the hot loop, written so it vectorises.
#[inline(always)]
fn axpy(acc: &mut [i32], w: i32, col: &[i16]) {
    for (a, x) in acc.iter_mut().zip(col) {
        *a = a.wrapping_add(w * *x as i32);
    }
}

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

/// Unfolds one group's input into a K × P matrix of `x - z_in` (0 in padding), K = taps, P = outputs.
fn im2col(p: &ConvParams, input: &[i8], zero: i32, group: u32) -> Vec<i16> {
    let (i, o) = (p.input, p.output);
    let [_, kh, kw] = p.kernel;
    let [_, sh, sw] = p.stride;
    let [_, ph, pw] = p.pad;
    let [_, dh, dw] = p.dilation;
    let positions = (o.h * o.w) as usize;
    let taps = p.weights_per_output() as usize;
    let mut col = vec![0i16; taps * positions];
    let mut row = 0usize;
    for ci in 0..p.group_in() {
        let c = (group * p.group_in() + ci) as usize;
        let plane = &input[c * (i.h * i.w) as usize..(c + 1) * (i.h * i.w) as usize];
        for b in 0..kh {
            for e in 0..kw {
                let dst = &mut col[row * positions..(row + 1) * positions];
                for oh in 0..o.h {
                    let ih = oh as i64 * sh as i64 - ph as i64 + (b * dh) as i64;
                    if !(0..i.h as i64).contains(&ih) {
                        continue;
                    }
                    let src = &plane[ih as usize * i.w as usize..(ih as usize + 1) * i.w as usize];
                    let out_row = &mut dst[(oh * o.w) as usize..((oh + 1) * o.w) as usize];
                    for (ow, v) in out_row.iter_mut().enumerate() {
                        let iw = ow as i64 * sw as i64 - pw as i64 + (e * dw) as i64;
                        if (0..i.w as i64).contains(&iw) {
                            *v = (src[iw as usize] as i32 - zero) as i16;
                        }
                    }
                }
                row += 1;
            }
        }
    }
    col
}

/// Transposes an unfolded K × P matrix to P × K, so each output is one contiguous dot product.
fn transpose(col: &[i16], taps: usize, positions: usize) -> Vec<i16> {
    let mut rows = vec![0i16; col.len()];
    for t in 0..taps {
        for p in 0..positions {
            rows[p * taps + t] = col[t * positions + p];
        }
    }
    rows
}

/// One output channel as P dot products over the taps: better when taps are many or outputs few.
fn conv_channel_rows(
    oc: usize,
    rows: &[i16],
    weights: &[i8],
    q: &ChannelQuant,
    taps: usize,
    out: &mut [i8],
) {
    let w = &weights[oc * taps..(oc + 1) * taps];
    let r = &q.output;
    for (p, y) in out.iter_mut().enumerate() {
        let acc = q.bias[oc].wrapping_add(dot(w, &rows[p * taps..(p + 1) * taps]));
        *y = requantize(acc, q.mult[oc], q.shift[oc], r.zero, r.lo, r.hi);
    }
}

/// One output channel of a 2-D conv from the unfolded input, with the widest SIMD the CPU has.
fn conv_channel(
    oc: usize,
    col: &[i16],
    weights: &[i8],
    q: &ChannelQuant,
    taps: usize,
    out: &mut [i8],
) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked just above.
        return unsafe { x86::conv_channel_avx2(oc, col, weights, q, taps, out) };
    }
    conv_channel_body(oc, col, weights, q, taps, out)
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

    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn conv_channel_avx2(
        oc: usize,
        col: &[i16],
        weights: &[i8],
        q: &ChannelQuant,
        taps: usize,
        out: &mut [i8],
    ) {
        conv_channel_body(oc, col, weights, q, taps, out)
    }

    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn dot_avx2(weights: &[i8], xs: &[i16]) -> i32 {
        dot_body(weights, xs)
    }
}

#[inline(always)]
fn conv_channel_body(
    oc: usize,
    col: &[i16],
    weights: &[i8],
    q: &ChannelQuant,
    taps: usize,
    out: &mut [i8],
) {
    let positions = out.len();
    let mut acc = vec![q.bias[oc]; positions];
    for (t, w) in weights[oc * taps..(oc + 1) * taps].iter().enumerate() {
        if *w != 0 {
            axpy(
                &mut acc,
                *w as i32,
                &col[t * positions..(t + 1) * positions],
            );
        }
    }
    let r = &q.output;
    for (y, a) in out.iter_mut().zip(&acc) {
        *y = requantize(*a, q.mult[oc], q.shift[oc], r.zero, r.lo, r.hi);
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
        let positions = (p.output.h * p.output.w) as usize;
        let taps = p.weights_per_output() as usize;
        let group_out = p.group_out() as usize;
        let parallel = p.macs() >= PARALLEL_MACS;
        // Few taps over many positions (first layers): broadcast each weight along a row of
        // outputs. Many taps or few positions (deep layers): one dot product per output.
        let by_rows = taps >= 32 || positions < 32;
        for g in 0..p.groups {
            let mut col = im2col(p, input, q.input_zero, g);
            if by_rows {
                col = transpose(&col, taps, positions);
            }
            let first = g as usize * group_out;
            let outs = &mut out[first * positions..(first + group_out) * positions];
            let run = |(j, chunk): (usize, &mut [i8])| {
                if by_rows {
                    conv_channel_rows(first + j, &col, weights, q, taps, chunk)
                } else {
                    conv_channel(first + j, &col, weights, q, taps, chunk)
                }
            };
            if parallel {
                outs.par_chunks_mut(positions).enumerate().for_each(run);
            } else {
                outs.chunks_mut(positions).enumerate().for_each(run);
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
        Reference.pool(p, input, out)
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
