//! Vector requantization for the native backend (SPEC.md "Requantization", as
//! [`crate::arith::requantize`] does it one value at a time): a channel's row of sums with one
//! scale, or a row of outputs that each have their own channel's scale (fully connected).
//!
//! AVX2 has neither a 64-bit arithmetic shift nor 64-bit min/max, so each product is offset by
//! 2^62 to make it non-negative: then the logical shift floors exactly (2^62 is a multiple of
//! 2^n for n ≤ 62), and the clamp bounds move by the same 2^(62-n).

use crate::arith::requantize;
use crate::ChannelQuant;

/// Requantizes one output channel's int32 sums (bias not yet added) less `less` (a GEMM's
/// zero-point correction, wrapping; 0 for none), with AVX2 where present.
pub fn requantize_row(sums: &[i32], q: &ChannelQuant, oc: usize, less: i32, out: &mut [i8]) {
    #[cfg(target_arch = "x86_64")]
    if crate::tile::active().avx512() {
        // SAFETY: that tile is active only where AVX-512 F + BW are present.
        return unsafe { x86::requantize_row_avx512(sums, q, oc, less, out) };
    }
    #[cfg(target_arch = "x86_64")]
    if crate::tile::avx2() {
        // SAFETY: the CPU supports AVX2, checked just above.
        return unsafe { x86::requantize_row_avx2(sums, q, oc, less, out) };
    }
    requantize_row_scalar(sums, q, oc, less, out)
}

fn requantize_row_scalar(sums: &[i32], q: &ChannelQuant, oc: usize, less: i32, out: &mut [i8]) {
    let (bias, mult, shift, r) = (
        q.bias[oc].wrapping_sub(less),
        q.mult[oc],
        q.shift[oc],
        q.output,
    );
    for (y, acc) in out.iter_mut().zip(sums) {
        *y = requantize(bias.wrapping_add(*acc), mult, shift, r.zero, r.lo, r.hi);
    }
}

/// Requantizes output `o`'s sum (bias not yet added) with channel `o`'s scale, for every `o`.
pub fn requantize_channels(sums: &[i32], q: &ChannelQuant, out: &mut [i8]) {
    #[cfg(target_arch = "x86_64")]
    if crate::tile::active().avx512() {
        // SAFETY: that tile is active only where AVX-512 F + BW are present.
        return unsafe { x86::requantize_channels_avx512(sums, q, out) };
    }
    #[cfg(target_arch = "x86_64")]
    if crate::tile::avx2() {
        // SAFETY: the CPU supports AVX2, checked just above.
        return unsafe { x86::requantize_channels_avx2(sums, q, out) };
    }
    requantize_channels_scalar(sums, q, 0, out)
}

fn requantize_channels_scalar(sums: &[i32], q: &ChannelQuant, first: usize, out: &mut [i8]) {
    let r = q.output;
    for (o, (y, acc)) in out.iter_mut().zip(sums).enumerate().skip(first) {
        *y = requantize(
            q.bias[o].wrapping_add(*acc),
            q.mult[o],
            q.shift[o],
            r.zero,
            r.lo,
            r.hi,
        );
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use core::arch::x86_64::*;

    use super::*;
    use crate::OutputRange;

    /// Four 64-bit products and their shifts `n` in, four clamped int8 values (in 64-bit lanes)
    /// out.
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn finish(product: __m256i, n: __m256i, r: OutputRange) -> __m256i {
        let one = _mm256_set1_epi64x(1);
        let moved = _mm256_sllv_epi64(one, _mm256_sub_epi64(_mm256_set1_epi64x(62), n));
        let round = _mm256_sllv_epi64(one, _mm256_sub_epi64(n, one));
        let offset = _mm256_add_epi64(_mm256_set1_epi64x(1 << 62), round);
        let t = _mm256_srlv_epi64(_mm256_add_epi64(product, offset), n);
        let low = _mm256_add_epi64(_mm256_set1_epi64x(r.lo as i64 - r.zero as i64), moved);
        let high = _mm256_add_epi64(_mm256_set1_epi64x(r.hi as i64 - r.zero as i64), moved);
        let t = _mm256_blendv_epi8(t, low, _mm256_cmpgt_epi64(low, t));
        let t = _mm256_blendv_epi8(t, high, _mm256_cmpgt_epi64(t, high));
        _mm256_sub_epi64(
            _mm256_add_epi64(t, _mm256_set1_epi64x(r.zero as i64)),
            moved,
        )
    }

    /// Eight sums (bias added) requantized with per-lane multipliers and `n = 31 + shift`
    /// (eight int32 each), as eight int8 bytes in one little-endian word.
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn requantize8(acc: __m256i, mult: __m256i, n: __m256i, r: OutputRange) -> u64 {
        let low32 = _mm256_set1_epi64x(0xffff_ffff);
        let even = finish(_mm256_mul_epi32(acc, mult), _mm256_and_si256(n, low32), r);
        let odd = finish(
            _mm256_mul_epi32(_mm256_srli_epi64::<32>(acc), _mm256_srli_epi64::<32>(mult)),
            _mm256_srli_epi64::<32>(n),
            r,
        );
        let y = _mm256_blend_epi32::<0b1010_1010>(even, _mm256_slli_epi64::<32>(odd));
        let y16 = _mm256_packs_epi32(y, y);
        let y8 = _mm256_packs_epi16(y16, y16);
        (_mm256_cvtsi256_si32(y8) as u32 as u64)
            | ((_mm256_extract_epi32::<4>(y8) as u32 as u64) << 32)
    }

    /// Eight int32 lanes of `v` from `8 · i`.
    ///
    /// # Safety
    /// `8 · i + 8 ≤ v.len()`.
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn load8(v: &[i32], i: usize) -> __m256i {
        _mm256_loadu_si256(v.as_ptr().add(8 * i) as *const __m256i)
    }

    /// [`requantize_row_scalar`] eight lanes at a time.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn requantize_row_avx2(
        sums: &[i32],
        q: &ChannelQuant,
        oc: usize,
        less: i32,
        out: &mut [i8],
    ) {
        // The scale's admitted ranges (what parsing checks), shift ≥ 0: the rounded product
        // fits int32; and an int8 output range (also checked at parsing): the clamp is int8.
        let r = q.output;
        let int8 = [r.zero, r.lo, r.hi]
            .iter()
            .all(|v| i8::try_from(*v).is_ok());
        if q.mult[oc] >= 0 && (0..=crate::arith::MAX_SHIFT).contains(&q.shift[oc]) && int8 {
            return requantize_row_narrow(sums, q, oc, less, out);
        }
        let full = sums.len().min(out.len()) / 8;
        let bias = _mm256_set1_epi32(q.bias[oc].wrapping_sub(less));
        let (mult, n) = (
            _mm256_set1_epi32(q.mult[oc]),
            _mm256_set1_epi32(31 + q.shift[oc]),
        );
        for i in 0..full {
            // SAFETY: i < full, so the 8 lanes at 8·i lie inside both slices.
            let acc = load8(sums, i);
            let bytes = requantize8(_mm256_add_epi32(acc, bias), mult, n, q.output);
            core::ptr::write_unaligned(out.as_mut_ptr().add(8 * i) as *mut u64, bytes.to_le());
        }
        requantize_row_scalar(&sums[8 * full..], q, oc, less, &mut out[8 * full..]);
    }

    /// [`requantize_row_avx2`] for a shift of at least 0 (`n ≥ 31`), the usual case: with
    /// `mult ≥ 0` every rounded product then fits int32 (at most `2^31 - 2` and at least
    /// `1 - 2^31` for `n = 31`), so after the 64-bit multiply and shift the lanes go back to
    /// 32 bits: half the instructions of the general path. The quad GEMM hands it runs of whole
    /// panels (multiples of 16 sums, up to 192), which the steps of 32 and 16 store as whole
    /// vectors.
    #[target_feature(enable = "avx2")]
    unsafe fn requantize_row_narrow(
        sums: &[i32],
        q: &ChannelQuant,
        oc: usize,
        less: i32,
        out: &mut [i8],
    ) {
        if q.shift[oc] == 0 {
            requantize_row_narrow_with::<false>(sums, q, oc, less, out)
        } else {
            requantize_row_narrow_with::<true>(sums, q, oc, less, out)
        }
    }

    /// [`requantize_row_narrow`]'s body; `SHIFTED` when `n ≥ 32`.
    ///
    /// Per eight sums, for `n ≥ 32`: the rounded products' high halves, the even lanes' moved
    /// down, shifted right arithmetically by `n - 32` (one instruction fewer than the offset
    /// and logical shifts `n = 31` needs). For `n = 31` the odd lanes' products are shifted
    /// left by one, which leaves each result in its lane's high half where the blend takes
    /// it. The clamp costs nothing per eight: packing to int16 saturates (a result past the
    /// int16 range is past every int8 bound, on the same side), the output zero point is a
    /// saturating int16 add, packing to int8 saturates to -128..=127, and a fused activation's
    /// narrower range is one byte min and max per 32 outputs.
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn requantize_row_narrow_with<const SHIFTED: bool>(
        sums: &[i32],
        q: &ChannelQuant,
        oc: usize,
        less: i32,
        out: &mut [i8],
    ) {
        let len = sums.len().min(out.len());
        let n = (31 + q.shift[oc]) as i64;
        let bias = _mm256_set1_epi32(q.bias[oc].wrapping_sub(less));
        let mult = _mm256_set1_epi32(q.mult[oc]);
        // `p + 2^62` is non-negative, so the logical shift floors; it adds `2^(62 - n)` to
        // the result, taken off again in 32 bits (wrapping, exact since the result fits).
        let offset = _mm256_set1_epi64x((1i64 << 62) + (1i64 << (n - 1)));
        let count = _mm_cvtsi64_si128(n);
        let high_count = _mm_cvtsi64_si128(if SHIFTED { n - 32 } else { 1 });
        let moved = _mm256_set1_epi32((1i64 << (62 - n)) as i32);
        let r = q.output;
        let zero = _mm256_set1_epi16(r.zero as i16);
        let (low, high) = (_mm256_set1_epi8(r.lo as i8), _mm256_set1_epi8(r.hi as i8));
        let round = _mm256_set1_epi64x(1i64 << (n - 1));
        let eight = |acc: __m256i| {
            let acc = _mm256_add_epi32(acc, bias);
            if SHIFTED {
                // Each product's high half is `⌊(p + 2^(n-1)) / 2^32⌋` (two's complement), and an
                // arithmetic shift by `n - 32` finishes the floor: no offset to take off.
                let even = _mm256_add_epi64(_mm256_mul_epi32(acc, mult), round);
                let odd =
                    _mm256_add_epi64(_mm256_mul_epi32(_mm256_srli_epi64::<32>(acc), mult), round);
                let high = _mm256_blend_epi32::<0b1010_1010>(_mm256_srli_epi64::<32>(even), odd);
                return _mm256_sra_epi32(high, high_count);
            }
            let even =
                _mm256_srl_epi64(_mm256_add_epi64(_mm256_mul_epi32(acc, mult), offset), count);
            let odd =
                _mm256_add_epi64(_mm256_mul_epi32(_mm256_srli_epi64::<32>(acc), mult), offset);
            let odd = _mm256_sll_epi64(odd, high_count);
            _mm256_sub_epi32(_mm256_blend_epi32::<0b1010_1010>(even, odd), moved)
        };
        // Two vectors of results as int16, saturated, with the zero point added (saturating).
        let words = |a: __m256i, b: __m256i| _mm256_adds_epi16(_mm256_packs_epi32(a, b), zero);
        let clamp = |bytes: __m256i| _mm256_min_epi8(_mm256_max_epi8(bytes, low), high);
        // SAFETY (the closure's callers): the 8 lanes at `i + 8k` lie inside `sums`.
        let at =
            |i: usize, k: usize| _mm256_loadu_si256(sums.as_ptr().add(i + 8 * k) as *const __m256i);
        let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        let mut i = 0;
        while i + 32 <= len {
            // SAFETY: i + 32 ≤ len, so the 32 lanes at i lie inside both slices.
            let ab = words(eight(at(i, 0)), eight(at(i, 1)));
            let cd = words(eight(at(i, 2)), eight(at(i, 3)));
            // In-lane packing leaves the four-value groups as a0 b0 c0 d0 | a1 b1 c1 d1.
            let bytes = clamp(_mm256_packs_epi16(ab, cd));
            let bytes = _mm256_permutevar8x32_epi32(bytes, order);
            _mm256_storeu_si256(out.as_mut_ptr().add(i) as *mut __m256i, bytes);
            i += 32;
        }
        if i + 16 <= len {
            // SAFETY: i + 16 ≤ len. Packing leaves the four-value groups as a0 b0 | a1 b1
            // in the low eight bytes of each lane; `order` gathers a0 a1 b0 b1.
            let ab = words(eight(at(i, 0)), eight(at(i, 1)));
            let bytes = clamp(_mm256_packs_epi16(ab, ab));
            let bytes = _mm256_permutevar8x32_epi32(bytes, order);
            _mm_storeu_si128(
                out.as_mut_ptr().add(i) as *mut __m128i,
                _mm256_castsi256_si128(bytes),
            );
            i += 16;
        }
        if i + 8 <= len {
            // SAFETY: i + 8 ≤ len.
            let y = eight(at(i, 0));
            let y8 = clamp(_mm256_packs_epi16(words(y, y), _mm256_setzero_si256()));
            let word = (_mm256_cvtsi256_si32(y8) as u32 as u64)
                | ((_mm256_extract_epi32::<4>(y8) as u32 as u64) << 32);
            core::ptr::write_unaligned(out.as_mut_ptr().add(i) as *mut u64, word.to_le());
            i += 8;
        }
        if i < len {
            requantize_row_scalar(&sums[i..len], q, oc, less, &mut out[i..len]);
        }
    }

    /// [`requantize_channels_scalar`] eight lanes at a time.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn requantize_channels_avx2(sums: &[i32], q: &ChannelQuant, out: &mut [i8]) {
        let len = sums
            .len()
            .min(out.len())
            .min(q.bias.len())
            .min(q.mult.len())
            .min(q.shift.len());
        let full = len / 8;
        let load =
            |v: &[i32], i: usize| _mm256_loadu_si256(v.as_ptr().add(8 * i) as *const __m256i);
        for i in 0..full {
            // SAFETY: i < full, so the 8 lanes at 8·i lie inside every slice.
            let acc = _mm256_add_epi32(load(sums, i), load(&q.bias, i));
            let (mult, shift) = (load(&q.mult, i), load(&q.shift, i));
            let n = _mm256_add_epi32(shift, _mm256_set1_epi32(31));
            // Multipliers ≥ 0 and shifts ≥ 0 in all eight lanes: the 32-bit finish applies.
            let negative = _mm256_or_si256(mult, shift);
            let bytes = if _mm256_movemask_ps(_mm256_castsi256_ps(negative)) == 0 {
                requantize8_narrow(acc, mult, n, q.output)
            } else {
                requantize8(acc, mult, n, q.output)
            };
            core::ptr::write_unaligned(out.as_mut_ptr().add(8 * i) as *mut u64, bytes.to_le());
        }
        requantize_channels_scalar(sums, q, 8 * full, out);
    }

    /// [`requantize8`] for lanes whose multipliers and shifts are all at least 0 (`n ≥ 31`),
    /// as [`requantize_row_narrow`] argues: each rounded product fits int32, so only the
    /// multiply and the shift are 64-bit (per lane, `vpsrlvq`), and the clamp is 32-bit. A
    /// fully connected layer's per-output scales (an LSTM's gates) take it.
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn requantize8_narrow(acc: __m256i, mult: __m256i, n: __m256i, r: OutputRange) -> u64 {
        let one = _mm256_set1_epi64x(1);
        let low32 = _mm256_set1_epi64x(0xffff_ffff);
        // `p + 2^62 + 2^(n-1)` is non-negative, so the logical shift floors and rounds; it
        // adds `2^(62 - n)`, whose low 32 bits come off again per lane (`vpsllvd` gives 0
        // for counts past 31, which is right modulo 2^32).
        let shifted = |p: __m256i, n: __m256i| {
            let round = _mm256_sllv_epi64(one, _mm256_sub_epi64(n, one));
            let offset = _mm256_add_epi64(_mm256_set1_epi64x(1 << 62), round);
            _mm256_srlv_epi64(_mm256_add_epi64(p, offset), n)
        };
        let even = shifted(_mm256_mul_epi32(acc, mult), _mm256_and_si256(n, low32));
        let odd = shifted(
            _mm256_mul_epi32(_mm256_srli_epi64::<32>(acc), _mm256_srli_epi64::<32>(mult)),
            _mm256_srli_epi64::<32>(n),
        );
        let t = _mm256_blend_epi32::<0b1010_1010>(even, _mm256_slli_epi64::<32>(odd));
        let moved = _mm256_sllv_epi32(
            _mm256_set1_epi32(1),
            _mm256_sub_epi32(_mm256_set1_epi32(62), n),
        );
        let v = _mm256_sub_epi32(t, moved);
        let v = _mm256_max_epi32(v, _mm256_set1_epi32(r.lo - r.zero));
        let v = _mm256_min_epi32(v, _mm256_set1_epi32(r.hi - r.zero));
        let y = _mm256_add_epi32(v, _mm256_set1_epi32(r.zero));
        let y8 = _mm256_packs_epi16(_mm256_packs_epi32(y, y), _mm256_setzero_si256());
        (_mm256_cvtsi256_si32(y8) as u32 as u64)
            | ((_mm256_extract_epi32::<4>(y8) as u32 as u64) << 32)
    }
    /// Eight 64-bit products and their shifts `n` in, eight clamped int8 values (in 64-bit
    /// lanes) out.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn finish16(product: __m512i, n: __m512i, r: OutputRange) -> __m512i {
        let one = _mm512_set1_epi64(1);
        let round = _mm512_sllv_epi64(one, _mm512_sub_epi64(n, one));
        let t = _mm512_srav_epi64(_mm512_add_epi64(product, round), n);
        let t = _mm512_add_epi64(t, _mm512_set1_epi64(r.zero as i64));
        let t = _mm512_max_epi64(t, _mm512_set1_epi64(r.lo as i64));
        _mm512_min_epi64(t, _mm512_set1_epi64(r.hi as i64))
    }

    /// Sixteen sums (bias added) requantized with per-lane multipliers and `n = 31 + shift`
    /// (sixteen int32 each): the even and odd lanes' 64-bit products are shifted
    /// arithmetically and clamped in 64 bits, then narrowed to bytes.
    #[target_feature(enable = "avx512f,avx512bw")]
    #[inline]
    unsafe fn requantize16(acc: __m512i, mult: __m512i, n: __m512i, r: OutputRange) -> __m128i {
        let low32 = _mm512_set1_epi64(0xffff_ffff);
        let even = finish16(_mm512_mul_epi32(acc, mult), _mm512_and_si512(n, low32), r);
        let odd = finish16(
            _mm512_mul_epi32(_mm512_srli_epi64::<32>(acc), _mm512_srli_epi64::<32>(mult)),
            _mm512_srli_epi64::<32>(n),
            r,
        );
        let y = _mm512_mask_blend_epi32(0xaaaa, even, _mm512_slli_epi64::<32>(odd));
        _mm512_cvtepi32_epi8(y)
    }

    /// Sixteen int32 lanes of `v` from `16 · i`.
    ///
    /// # Safety
    /// `16 · i + 16 ≤ v.len()`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn load16(v: &[i32], i: usize) -> __m512i {
        _mm512_loadu_si512(v.as_ptr().add(16 * i) as *const __m512i)
    }

    /// [`requantize_row_scalar`] sixteen lanes at a time.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    pub(super) unsafe fn requantize_row_avx512(
        sums: &[i32],
        q: &ChannelQuant,
        oc: usize,
        less: i32,
        out: &mut [i8],
    ) {
        let full = sums.len().min(out.len()) / 16;
        let row = RowScale::new(q, oc, less);
        for i in 0..full {
            // SAFETY: i < full, so the 16 lanes at 16·i lie inside both slices.
            let bytes = row.requantize16(load16(sums, i));
            _mm_storeu_si128(out.as_mut_ptr().add(16 * i) as *mut __m128i, bytes);
        }
        let rest = sums.len().min(out.len()) - 16 * full;
        if rest > 0 {
            // The last part vector through masks: nothing past either slice is touched.
            let mask = ((1u32 << rest) - 1) as u16;
            let acc = _mm512_maskz_loadu_epi32(mask, sums.as_ptr().add(16 * full));
            _mm_mask_storeu_epi8(out.as_mut_ptr().add(16 * full), mask, row.requantize16(acc));
        }
    }

    /// One channel's requantization with everything that does not depend on the sum worked
    /// out once: the rounding term, the shift counts and the clamp bounds.
    ///
    /// With `n = 31 + shift ≥ 32` (a scale under one half: most layers), the rounded shift
    /// is the high 32 bits of `product + round`, shifted arithmetically by `n - 32` in 32-bit
    /// lanes: exact, since `floor(floor(x / 2^32) / 2^(n-32)) = floor(x / 2^n)` and the result
    /// fits 31 bits. Otherwise both halves are shifted and clamped in 64 bits.
    struct RowScale {
        bias: __m512i,
        mult: __m512i,
        round: __m512i,
        /// `n` (64-bit path) or `n - 32` (32-bit path).
        count: __m128i,
        high_half: bool,
        low: __m512i,
        high: __m512i,
        zero: __m512i,
    }

    impl RowScale {
        #[target_feature(enable = "avx512f")]
        unsafe fn new(q: &ChannelQuant, oc: usize, less: i32) -> Self {
            let n = (31 + q.shift[oc]) as u32;
            let r = q.output;
            let high_half = n >= 32;
            let (low, high) = if high_half {
                (_mm512_set1_epi32(r.lo), _mm512_set1_epi32(r.hi))
            } else {
                (
                    _mm512_set1_epi64(r.lo as i64 - r.zero as i64),
                    _mm512_set1_epi64(r.hi as i64 - r.zero as i64),
                )
            };
            RowScale {
                bias: _mm512_set1_epi32(q.bias[oc].wrapping_sub(less)),
                mult: _mm512_set1_epi32(q.mult[oc]),
                round: _mm512_set1_epi64(1i64 << (n - 1)),
                count: _mm_cvtsi64_si128(if high_half { n - 32 } else { n } as i64),
                high_half,
                low,
                high,
                zero: _mm512_set1_epi32(r.zero),
            }
        }

        /// Sixteen sums (bias not yet added) to sixteen int8 bytes.
        #[target_feature(enable = "avx512f,avx512bw")]
        #[inline]
        unsafe fn requantize16(&self, sums: __m512i) -> __m128i {
            let acc = _mm512_add_epi32(sums, self.bias);
            let even = _mm512_add_epi64(_mm512_mul_epi32(acc, self.mult), self.round);
            let odd = _mm512_add_epi64(
                _mm512_mul_epi32(_mm512_srli_epi64::<32>(acc), self.mult),
                self.round,
            );
            if self.high_half {
                // The high dwords of the even lanes move down; the odd lanes' are in place.
                let hi = _mm512_mask_blend_epi32(0xaaaa, _mm512_srli_epi64::<32>(even), odd);
                let t = _mm512_add_epi32(_mm512_sra_epi32(hi, self.count), self.zero);
                let y = _mm512_min_epi32(_mm512_max_epi32(t, self.low), self.high);
                return _mm512_cvtepi32_epi8(y);
            }
            let shifted = |t: __m512i| {
                let t = _mm512_sra_epi64(t, self.count);
                _mm512_min_epi64(_mm512_max_epi64(t, self.low), self.high)
            };
            let (even, odd) = (shifted(even), shifted(odd));
            let y = _mm512_mask_blend_epi32(0xaaaa, even, _mm512_slli_epi64::<32>(odd));
            _mm512_cvtepi32_epi8(_mm512_add_epi32(y, self.zero))
        }
    }

    /// [`requantize_channels_scalar`] sixteen lanes at a time.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub(super) unsafe fn requantize_channels_avx512(
        sums: &[i32],
        q: &ChannelQuant,
        out: &mut [i8],
    ) {
        let len = sums
            .len()
            .min(out.len())
            .min(q.bias.len())
            .min(q.mult.len())
            .min(q.shift.len());
        let full = len / 16;
        for i in 0..full {
            // SAFETY: i < full, so the 16 lanes at 16·i lie inside every slice.
            let acc = _mm512_add_epi32(load16(sums, i), load16(&q.bias, i));
            let n = _mm512_add_epi32(load16(&q.shift, i), _mm512_set1_epi32(31));
            let bytes = requantize16(acc, load16(&q.mult, i), n, q.output);
            _mm_storeu_si128(out.as_mut_ptr().add(16 * i) as *mut __m128i, bytes);
        }
        requantize_channels_scalar(sums, q, 16 * full, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::OutputRange;

    /// Both vector requantizations equal the scalar one at every shift, at the int32 and
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
            let len = case % 53;
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
            let mut channel = |_| {
                (
                    if extreme { next() as i32 } else { 0 },
                    if extreme && next() % 2 == 0 {
                        i32::MAX
                    } else {
                        (next() >> 33) as i32
                    },
                    // Every admitted shift, or (half the cases) only those ≥ 0, so that
                    // whole vectors take the 32-bit paths.
                    if case % 2 == 0 {
                        (next() % 62) as i32 - 30
                    } else {
                        (next() % 32) as i32
                    },
                )
            };
            let channels: Vec<(i32, i32, i32)> = (0..len.max(1)).map(&mut channel).collect();
            let q = ChannelQuant {
                input_zero: 0,
                output: OutputRange {
                    zero,
                    lo: a.min(b),
                    hi: a.max(b),
                },
                bias: channels.iter().map(|c| c.0).collect(),
                mult: channels.iter().map(|c| c.1).collect(),
                shift: channels.iter().map(|c| c.2).collect(),
            };
            // A GEMM's correction (half the cases), checked against sums it was taken from.
            let less = if case % 4 < 2 { 0 } else { next() as i32 };
            let corrected: Vec<i32> = sums.iter().map(|s| s.wrapping_sub(less)).collect();
            let (mut fast, mut slow) = (vec![0i8; len], vec![0i8; len]);
            requantize_row(&sums, &q, 0, less, &mut fast);
            requantize_row_scalar(&corrected, &q, 0, 0, &mut slow);
            assert_eq!(fast, slow, "one channel: {q:?} {sums:?} less {less}");
            requantize_row_scalar(&sums, &q, 0, less, &mut fast);
            assert_eq!(fast, slow, "scalar, less {less}");
            requantize_channels(&sums, &q, &mut fast);
            requantize_channels_scalar(&sums, &q, 0, &mut slow);
            assert_eq!(fast, slow, "per-output channels: {q:?} {sums:?}");
            #[cfg(target_arch = "x86_64")]
            {
                use crate::tile::Tile;
                requantize_row_scalar(&corrected, &q, 0, 0, &mut slow);
                if Tile::Avx2.supported() {
                    // SAFETY: AVX2 checked.
                    unsafe { x86::requantize_row_avx2(&sums, &q, 0, less, &mut fast) };
                    assert_eq!(fast, slow, "AVX2 row: {q:?} {sums:?}");
                }
                if Tile::Avx512Vnni.supported() {
                    // SAFETY: AVX-512 F + BW checked (the tile requires them).
                    unsafe { x86::requantize_row_avx512(&sums, &q, 0, less, &mut fast) };
                    assert_eq!(fast, slow, "AVX-512 row: {q:?} {sums:?}");
                }
                requantize_channels_scalar(&sums, &q, 0, &mut slow);
                if Tile::Avx2.supported() {
                    // SAFETY: AVX2 checked.
                    unsafe { x86::requantize_channels_avx2(&sums, &q, &mut fast) };
                    assert_eq!(fast, slow, "AVX2 channels: {q:?} {sums:?}");
                }
                if Tile::Avx512Vnni.supported() {
                    // SAFETY: AVX-512 F + BW checked.
                    unsafe { x86::requantize_channels_avx512(&sums, &q, &mut fast) };
                    assert_eq!(fast, slow, "AVX-512 channels: {q:?} {sums:?}");
                }
            }
        }
    }
}
