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
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    if crate::tile::active().avx512() {
        // SAFETY: that tile is active only where AVX-512 F and BW are present.
        unsafe { x86::add_avx512(a, b, q, out) };
        return Ok(());
    }
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    if crate::tile::avx2()
        && x86::Narrow::fits(q.shift, [q.a_zero, q.b_zero, q.output.zero], x86::ADD_BITS)
    {
        // SAFETY: the CPU supports AVX2 (checked); the shift and zero points are in range.
        unsafe { x86::add_avx2(a, b, q, out) };
        return Ok(());
    }
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
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    if crate::tile::active().avx512() {
        // SAFETY: that tile is active only where AVX-512 F and BW are present.
        unsafe { x86::mul_avx512(a, b, q, out) };
        return Ok(());
    }
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    if crate::tile::avx2()
        && x86::Narrow::fits(q.shift, [q.a_zero, q.b_zero, q.output.zero], x86::MUL_BITS)
    {
        // SAFETY: the CPU supports AVX2 (checked); the shift and zero points are in range.
        unsafe { x86::mul_avx2(a, b, q, out) };
        return Ok(());
    }
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

/// [`add`] and [`mul`] written out for AVX-512 and AVX2: the compiler's vectorisation of the 64-bit
/// bodies spent most of an LSTM's element-wise time on 64 × 64-bit multiplies (`vpmullq`, three
/// µops) where `vpmuldq`'s 32 × 32 → 64 is exact here (each factor fits 32 bits), and on the
/// loop tails. The same arithmetic, checked against an i128 formula on every tile.
#[cfg(all(feature = "std", target_arch = "x86_64"))]
mod x86 {
    use core::arch::x86_64::*;

    use crate::{AddQuant, OutputRange, PairQuant};

    /// [`super::lut`] 64 bytes at a time: `vpermi2b` looks each byte up in both halves of
    /// the table (its low seven bits), and the byte's top bit picks the half. The LSTM's
    /// gates apply five tables of 104 bytes a step.
    ///
    /// # Safety
    /// The CPU must support AVX-512 F, BW and VBMI.
    #[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
    pub(super) unsafe fn lut_avx512(table: &[u8; 256], data: &mut [i8]) {
        let part = |k: usize| _mm512_loadu_si512(table.as_ptr().add(64 * k) as *const __m512i);
        let (t0, t1, t2, t3) = (part(0), part(1), part(2), part(3));
        for chunk in data.chunks_mut(64) {
            let mask = u64::MAX >> (64 - chunk.len());
            // SAFETY: the mask keeps the load and the store to the chunk's bytes.
            let x = _mm512_maskz_loadu_epi8(mask, chunk.as_ptr());
            let low = _mm512_permutex2var_epi8(t0, x, t1);
            let high = _mm512_permutex2var_epi8(t2, x, t3);
            let y = _mm512_mask_blend_epi8(_mm512_movepi8_mask(x), low, high);
            _mm512_mask_storeu_epi8(chunk.as_mut_ptr(), mask, y);
        }
    }

    /// Rounding, shifting and clamping of 64-bit values, the even and odd int32 lanes apart.
    struct Finish {
        round: __m512i,
        count: __m128i,
        low: __m512i,
        high: __m512i,
        zero: __m512i,
    }

    impl Finish {
        #[target_feature(enable = "avx512f")]
        unsafe fn new(shift: i32, r: OutputRange) -> Self {
            let n = (31 + shift) as u32;
            Finish {
                round: _mm512_set1_epi64(1i64 << (n - 1)),
                count: _mm_cvtsi64_si128(n as i64),
                low: _mm512_set1_epi64(r.lo as i64 - r.zero as i64),
                high: _mm512_set1_epi64(r.hi as i64 - r.zero as i64),
                zero: _mm512_set1_epi32(r.zero),
            }
        }

        /// `zero + round_shift(t, n)` clamped, for `t` of the even lanes and of the odd lanes,
        /// to sixteen bytes in lane order.
        #[target_feature(enable = "avx512f,avx512bw")]
        #[inline]
        unsafe fn bytes(&self, even: __m512i, odd: __m512i) -> __m128i {
            let shifted = |t: __m512i| {
                let t = _mm512_sra_epi64(_mm512_add_epi64(t, self.round), self.count);
                _mm512_min_epi64(_mm512_max_epi64(t, self.low), self.high)
            };
            let y = _mm512_mask_blend_epi32(
                0xaaaa,
                shifted(even),
                _mm512_slli_epi64::<32>(shifted(odd)),
            );
            _mm512_cvtepi32_epi8(_mm512_add_epi32(y, self.zero))
        }
    }

    /// |t| < 2^ADD_BITS for a residual add: two products of |x − z| ≤ 255 by mult < 2^31.
    pub(super) const ADD_BITS: i32 = 40;
    /// |t| < 2^MUL_BITS for an element-wise product: (x − za)·(y − zb) < 2^16 times mult.
    pub(super) const MUL_BITS: i32 = 47;

    /// The end of [`super::add`] and [`super::mul`] under AVX2, which has no 64-bit
    /// arithmetic shift, min or max. `t + 2^62` is non-negative (|t| < 2^47), so its logical
    /// shift floors, giving `2^(62 - n) + r` for the rounded `r`. Where |t| < 2^bits and
    /// `n ≥ bits − 30`, |r| ≤ 2^30 + 1: the low 32 bits then hold `r` exactly once the low 32
    /// bits of `2^(62 - n)` come off (zero for n ≤ 30; the subtraction wraps), and the clamp is
    /// 32-bit. That admits every shift ≥ 0 and the negative ones of layers whose output scale
    /// is finer than their inputs' (an LSTM's gate sums, ResNet's residual adds: shift −1).
    pub(super) struct Narrow {
        offset: __m256i,
        count: __m128i,
        moved: __m256i,
        low: __m256i,
        high: __m256i,
        zero: __m256i,
    }

    impl Narrow {
        /// Whether this path applies to values |t| < 2^bits: `n = 31 + shift ≥ bits − 30`
        /// (within the admitted shifts) and int8 zero points.
        pub(super) fn fits(shift: i32, zeros: [i32; 3], bits: i32) -> bool {
            (crate::arith::MIN_SHIFT.max(bits - 61)..=crate::arith::MAX_SHIFT).contains(&shift)
                && zeros.iter().all(|z| (-128..=127).contains(z))
        }

        #[target_feature(enable = "avx2")]
        unsafe fn new(shift: i32, r: OutputRange) -> Self {
            let n = (31 + shift) as i64;
            Narrow {
                offset: _mm256_set1_epi64x((1i64 << 62) + (1i64 << (n - 1))),
                count: _mm_cvtsi64_si128(n),
                moved: _mm256_set1_epi32((1i64 << (62 - n)) as i32),
                low: _mm256_set1_epi32(r.lo - r.zero),
                high: _mm256_set1_epi32(r.hi - r.zero),
                zero: _mm256_set1_epi32(r.zero),
            }
        }

        /// `zero + round_shift(t, n)` clamped, for `t` of the even lanes and of the odd
        /// lanes, as eight int32 lanes in lane order.
        #[target_feature(enable = "avx2")]
        #[inline]
        unsafe fn lanes(&self, even: __m256i, odd: __m256i) -> __m256i {
            let shifted =
                |t: __m256i| _mm256_srl_epi64(_mm256_add_epi64(t, self.offset), self.count);
            let t = _mm256_blend_epi32::<0b1010_1010>(
                shifted(even),
                _mm256_slli_epi64::<32>(shifted(odd)),
            );
            let v = _mm256_sub_epi32(t, self.moved);
            let v = _mm256_min_epi32(_mm256_max_epi32(v, self.low), self.high);
            _mm256_add_epi32(v, self.zero)
        }
    }

    /// Runs `eight(a, b)` (each eight int8 lanes widened to int32) over the slices, eight
    /// lanes a step, and stores the clamped int32 lanes it returns as bytes; the tail goes
    /// through a zero-padded copy.
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn steps_avx2(
        a: &[i8],
        b: &[i8],
        out: &mut [i8],
        eight: impl Fn(__m256i, __m256i) -> __m256i,
    ) {
        let widen = |v: &[i8], at: usize| {
            // SAFETY (caller of the closure): 8 bytes at `at` lie inside `v`.
            _mm256_cvtepi8_epi32(_mm_loadl_epi64(v.as_ptr().add(at) as *const __m128i))
        };
        let bytes = |y: __m256i| {
            let y16 = _mm256_packs_epi32(y, y);
            let y8 = _mm256_packs_epi16(y16, y16);
            (_mm256_cvtsi256_si32(y8) as u32 as u64)
                | ((_mm256_extract_epi32::<4>(y8) as u32 as u64) << 32)
        };
        let full = out.len() / 8;
        for i in 0..full {
            let y = eight(widen(a, 8 * i), widen(b, 8 * i));
            // SAFETY: 8·i + 8 ≤ out.len() = a.len() = b.len().
            core::ptr::write_unaligned(out.as_mut_ptr().add(8 * i) as *mut u64, bytes(y).to_le());
        }
        let rest = out.len() - 8 * full;
        if rest > 0 {
            let (mut x, mut z) = ([0i8; 8], [0i8; 8]);
            x[..rest].copy_from_slice(&a[8 * full..]);
            z[..rest].copy_from_slice(&b[8 * full..]);
            let y = bytes(eight(widen(&x, 0), widen(&z, 0))).to_le_bytes();
            for (o, v) in out[8 * full..].iter_mut().zip(y) {
                *o = v as i8;
            }
        }
    }

    /// [`super::add`] eight lanes a step for [`Narrow::fits`] quantizations.
    ///
    /// # Safety
    /// The CPU must support AVX2; the three slices have one length; `Narrow::fits` holds.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn add_avx2(a: &[i8], b: &[i8], q: &AddQuant, out: &mut [i8]) {
        assert!(a.len() == b.len() && a.len() == out.len());
        let finish = Narrow::new(q.shift, q.output);
        let (za, zb) = (_mm256_set1_epi32(q.a_zero), _mm256_set1_epi32(q.b_zero));
        let (ma, mb) = (_mm256_set1_epi32(q.a_mult), _mm256_set1_epi32(q.b_mult));
        steps_avx2(a, b, out, |x, z| {
            // |x - za| ≤ 255 and 0 ≤ mult < 2^31: each product fits 40 bits.
            let (x, z) = (_mm256_sub_epi32(x, za), _mm256_sub_epi32(z, zb));
            let sum = |x: __m256i, z: __m256i| {
                _mm256_add_epi64(_mm256_mul_epi32(x, ma), _mm256_mul_epi32(z, mb))
            };
            let odd = |v: __m256i| _mm256_srli_epi64::<32>(v);
            finish.lanes(sum(x, z), sum(odd(x), odd(z)))
        });
    }

    /// [`super::mul`] eight lanes a step for [`Narrow::fits`] quantizations: the
    /// zero-shifted product fits 17 bits, so it is formed in 32-bit lanes first.
    ///
    /// # Safety
    /// The CPU must support AVX2; the three slices have one length; `Narrow::fits` holds.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn mul_avx2(a: &[i8], b: &[i8], q: &PairQuant, out: &mut [i8]) {
        assert!(a.len() == b.len() && a.len() == out.len());
        let finish = Narrow::new(q.shift, q.output);
        let (za, zb) = (_mm256_set1_epi32(q.a_zero), _mm256_set1_epi32(q.b_zero));
        let mult = _mm256_set1_epi32(q.mult);
        steps_avx2(a, b, out, |x, z| {
            let p = _mm256_mullo_epi32(_mm256_sub_epi32(x, za), _mm256_sub_epi32(z, zb));
            let odd = _mm256_srli_epi64::<32>(p);
            finish.lanes(_mm256_mul_epi32(p, mult), _mm256_mul_epi32(odd, mult))
        });
    }

    /// Sixteen int8 lanes widened to int32, less `zero`; past `mask`, zeros.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    #[inline]
    unsafe fn widened(v: &[i8], at: usize, mask: u16, zero: __m512i) -> __m512i {
        // SAFETY (caller): the mask keeps the load to `v[at..]`.
        let x = _mm_maskz_loadu_epi8(mask, v.as_ptr().add(at));
        _mm512_sub_epi32(_mm512_cvtepi8_epi32(x), zero)
    }

    /// Runs `sixteen(at, mask)` over `len` elements in steps of sixteen, the last one masked.
    #[inline(always)]
    fn steps(len: usize, mut sixteen: impl FnMut(usize, u16)) {
        for at in (0..len).step_by(16) {
            let rest = len - at;
            sixteen(
                at,
                if rest >= 16 {
                    u16::MAX
                } else {
                    (1u16 << rest) - 1
                },
            );
        }
    }

    /// [`super::add`] sixteen lanes a step.
    ///
    /// # Safety
    /// The CPU must support AVX-512 F, BW and VL; the three slices have one length.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    pub(super) unsafe fn add_avx512(a: &[i8], b: &[i8], q: &AddQuant, out: &mut [i8]) {
        assert!(a.len() == b.len() && a.len() == out.len());
        let finish = Finish::new(q.shift, q.output);
        let (za, zb) = (_mm512_set1_epi32(q.a_zero), _mm512_set1_epi32(q.b_zero));
        let (ma, mb) = (_mm512_set1_epi32(q.a_mult), _mm512_set1_epi32(q.b_mult));
        steps(out.len(), |at, mask| {
            // SAFETY: each mask keeps its loads and store to `..len` of the slices.
            let (x, z) = (widened(a, at, mask, za), widened(b, at, mask, zb));
            let sum = |x: __m512i, z: __m512i| {
                _mm512_add_epi64(_mm512_mul_epi32(x, ma), _mm512_mul_epi32(z, mb))
            };
            let odd = |v: __m512i| _mm512_srli_epi64::<32>(v);
            let y = finish.bytes(sum(x, z), sum(odd(x), odd(z)));
            _mm_mask_storeu_epi8(out.as_mut_ptr().add(at), mask, y);
        });
    }

    /// [`super::mul`] sixteen lanes a step: the zero-shifted product fits 17 bits, so it is
    /// formed in 32-bit lanes before the 32 × 32 → 64-bit multiply.
    ///
    /// # Safety
    /// The CPU must support AVX-512 F, BW and VL; the three slices have one length.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    pub(super) unsafe fn mul_avx512(a: &[i8], b: &[i8], q: &PairQuant, out: &mut [i8]) {
        assert!(a.len() == b.len() && a.len() == out.len());
        let finish = Finish::new(q.shift, q.output);
        let (za, zb) = (_mm512_set1_epi32(q.a_zero), _mm512_set1_epi32(q.b_zero));
        let mult = _mm512_set1_epi32(q.mult);
        steps(out.len(), |at, mask| {
            // SAFETY: each mask keeps its loads and store to `..len` of the slices.
            let (x, z) = (widened(a, at, mask, za), widened(b, at, mask, zb));
            let p = _mm512_mullo_epi32(x, z);
            let odd = _mm512_srli_epi64::<32>(p);
            let y = finish.bytes(_mm512_mul_epi32(p, mult), _mm512_mul_epi32(odd, mult));
            _mm_mask_storeu_epi8(out.as_mut_ptr().add(at), mask, y);
        });
    }
}

/// Table lookup indexed by the raw byte: `y = table[x as u8]`.
pub fn lut(table: &[u8], data: &mut [i8]) -> Result<(), KernelError> {
    let table: &[u8; 256] = table.try_into().map_err(|_| KernelError::BadQuant)?;
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    if crate::tile::active().avx512() && std::is_x86_feature_detected!("avx512vbmi") {
        // SAFETY: that tile is active only where AVX-512 F and BW are present; VBMI is
        // checked just above.
        unsafe { x86::lut_avx512(table, data) };
        return Ok(());
    }
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
