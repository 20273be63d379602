//! Element-wise operations (SPEC.md "Element-wise", "Activations", "Buffer arithmetic").
//!
//! They are memory-bound and trivially vectorised by the compiler, so every backend shares this
//! one implementation instead of carrying copies.

use alloc::vec::Vec;

use crate::arith::{div_round_half_up, round_shift, saturate};
use crate::{AddQuant, KernelError, PairQuant, Shape, SoftmaxTable};

/// Largest factor BUF_SCL0 / BUF_SCL1 accept.
pub const MAX_SCALE_FACTOR: i64 = 1 << 16;

fn same_len(a: &[i8], b: &[i8], out: &[i8]) -> Result<(), KernelError> {
    if a.len() == b.len() && a.len() == out.len() {
        Ok(())
    } else {
        Err(KernelError::ShapeMismatch)
    }
}

/// Runs `body` compiled for AVX-512 (F, DQ, BW, VL) when the native backend's tile has it,
/// else as built: the same source either way, so the same bytes. With 64-bit multiplies and
/// arithmetic shifts in vectors, the compiler vectorises the loops below, which baseline
/// x86-64 keeps scalar.
#[inline(always)]
fn widest<R>(body: impl FnOnce() -> R) -> R {
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    if crate::tile::active().avx512() {
        #[target_feature(enable = "avx512f,avx512dq,avx512bw,avx512vl")]
        unsafe fn avx512<R>(body: impl FnOnce() -> R) -> R {
            body()
        }
        // SAFETY: that tile is active only where AVX-512 F, BW, DQ and VL are present.
        return unsafe { avx512(body) };
    }
    body()
}

/// Residual add with requantization.
pub fn add(a: &[i8], b: &[i8], q: &AddQuant, out: &mut [i8]) -> Result<(), KernelError> {
    same_len(a, b, out)?;
    widest(|| add_body(a, b, q, out));
    Ok(())
}

#[inline(always)]
fn add_body(a: &[i8], b: &[i8], q: &AddQuant, out: &mut [i8]) {
    let n = (31 + q.shift) as u32;
    let (lo, hi) = (q.output.lo as i64, q.output.hi as i64);
    for ((y, x), z) in out.iter_mut().zip(a).zip(b) {
        let t = (*x as i64 - q.a_zero as i64) * q.a_mult as i64
            + (*z as i64 - q.b_zero as i64) * q.b_mult as i64;
        *y = (q.output.zero as i64 + round_shift(t, n)).clamp(lo, hi) as i8;
    }
}

/// Element-wise product with requantization.
pub fn mul(a: &[i8], b: &[i8], q: &PairQuant, out: &mut [i8]) -> Result<(), KernelError> {
    same_len(a, b, out)?;
    widest(|| mul_body(a, b, q, out));
    Ok(())
}

#[inline(always)]
fn mul_body(a: &[i8], b: &[i8], q: &PairQuant, out: &mut [i8]) {
    let n = (31 + q.shift) as u32;
    let (lo, hi) = (q.output.lo as i64, q.output.hi as i64);
    for ((y, x), z) in out.iter_mut().zip(a).zip(b) {
        let t = (*x as i64 - q.a_zero as i64) * (*z as i64 - q.b_zero as i64) * q.mult as i64;
        *y = (q.output.zero as i64 + round_shift(t, n)).clamp(lo, hi) as i8;
    }
}

/// Table lookup indexed by the raw byte: `y = table[x as u8]`.
pub fn lut(table: &[u8], data: &mut [i8]) -> Result<(), KernelError> {
    let table: &[u8; 256] = table.try_into().map_err(|_| KernelError::BadQuant)?;
    for x in data.iter_mut() {
        *x = table[*x as u8 as usize] as i8;
    }
    Ok(())
}

/// Clamp to `[lo, hi]` (ReLU is `lo = zero point, hi = 127`).
pub fn clip(data: &mut [i8], lo: i64, hi: i64) -> Result<(), KernelError> {
    if !(-128..=127).contains(&lo) || !(-128..=127).contains(&hi) || lo > hi {
        return Err(KernelError::BadOperand);
    }
    for x in data.iter_mut() {
        *x = (*x).clamp(lo as i8, hi as i8);
    }
    Ok(())
}

/// BUF_SCL0: saturating multiplication by `times`.
pub fn scale_up(data: &mut [i8], times: i64) -> Result<(), KernelError> {
    if !(1..=MAX_SCALE_FACTOR).contains(&times) {
        return Err(KernelError::BadOperand);
    }
    for x in data.iter_mut() {
        *x = saturate(*x as i32 * times as i32);
    }
    Ok(())
}

/// BUF_SCL1: division by `times`, rounded half up.
pub fn scale_down(data: &mut [i8], times: i64) -> Result<(), KernelError> {
    if !(1..=MAX_SCALE_FACTOR).contains(&times) {
        return Err(KernelError::BadOperand);
    }
    for x in data.iter_mut() {
        *x = div_round_half_up(*x as i64, times) as i8;
    }
    Ok(())
}

/// BUF_BIAS: saturating per-channel addition; `bias.len()` is the channel count.
pub fn add_channel_bias(data: &mut [i8], bias: &[i8]) -> Result<(), KernelError> {
    if bias.is_empty() || !data.len().is_multiple_of(bias.len()) {
        return Err(KernelError::ShapeMismatch);
    }
    let per_channel = data.len() / bias.len();
    for (chunk, b) in data.chunks_mut(per_channel.max(1)).zip(bias) {
        for x in chunk {
            *x = saturate(*x as i32 + *b as i32);
        }
    }
    Ok(())
}

/// Global average pooling to one value per channel.
pub fn global_avg_pool(shape: Shape, input: &[i8], out: &mut [i8]) -> Result<(), KernelError> {
    let cells = (shape.d as usize) * (shape.h as usize) * (shape.w as usize);
    if cells == 0 || shape.elements() != Some(input.len() as u64) || out.len() != shape.c as usize {
        return Err(KernelError::ShapeMismatch);
    }
    for (y, channel) in out.iter_mut().zip(input.chunks(cells)) {
        let sum: i64 = channel.iter().map(|v| *v as i64).sum();
        *y = div_round_half_up(sum, cells as i64) as i8;
    }
    Ok(())
}

/// Softmax over channels at every position, output scale 1/256 and zero point -128.
pub fn softmax(
    shape: Shape,
    table: &SoftmaxTable,
    input: &[i8],
    out: &mut [i8],
) -> Result<(), KernelError> {
    let positions = (shape.d as usize) * (shape.h as usize) * (shape.w as usize);
    if positions == 0 || shape.elements() != Some(input.len() as u64) || out.len() != input.len() {
        return Err(KernelError::ShapeMismatch);
    }
    let channels = shape.c as usize;
    let mut e = Vec::with_capacity(channels);
    for p in 0..positions {
        let at = |c: usize| c * positions + p;
        let max = (0..channels).map(|c| input[at(c)]).max().unwrap_or(0) as i32;
        e.clear();
        e.extend((0..channels).map(|c| table.0[(max - input[at(c)] as i32) as usize] as i64));
        let sum: i64 = e.iter().sum();
        for (c, ec) in e.iter().enumerate() {
            let v = -128 + (512 * ec + sum).div_euclid(2 * sum);
            out[at(c)] = v.clamp(-128, 127) as i8;
        }
    }
    Ok(())
}
