//! Fully connected layers on the native backend: int32 dot products of each weight row with the
//! zero-point-shifted input, then one vector requantization of all outputs (each with its own
//! channel's scale). With AVX2, `vpmaddwd` does 16 exact multiply-accumulates per instruction
//! and four rows share every input load; rayon splits rows once a layer pays for the threads.

use alloc::vec;

use rayon::prelude::*;

use crate::requant::requantize_channels;
use crate::ChannelQuant;

/// Rows of one rayon task.
const ROWS_PER_TASK: usize = 64;

/// `out[o] = requantize(bias[o] + Σ_k weights[o][k] · (input[k] - z_in))`; the caller has checked
/// the shapes. Runs on the rayon pool with `parallel`.
pub fn fully_connected(
    input: &[i8],
    weights: &[i8],
    q: &ChannelQuant,
    out: &mut [i8],
    parallel: bool,
) {
    let n = input.len();
    // Zero-padded to whole 16-lane vectors: the padding multiplies the weight tail by 0.
    let mut xs = vec![0i16; n.next_multiple_of(16)];
    for (x, v) in xs.iter_mut().zip(input) {
        *x = (*v as i32 - q.input_zero) as i16;
    }
    let mut sums = vec![0i32; out.len()];
    let run = |(t, chunk): (usize, &mut [i32])| {
        let first = t * ROWS_PER_TASK;
        dots(
            &weights[first * n..(first + chunk.len()) * n],
            n,
            &xs,
            chunk,
        )
    };
    if parallel {
        sums.par_chunks_mut(ROWS_PER_TASK).enumerate().for_each(run);
    } else {
        sums.chunks_mut(ROWS_PER_TASK).enumerate().for_each(run);
    }
    requantize_channels(&sums, q, out)
}

/// `sums[r]` = wrapping dot product of weight row `r` (of `n`) with `xs` (padded to 16 lanes).
fn dots(rows: &[i8], n: usize, xs: &[i16], sums: &mut [i32]) {
    #[cfg(target_arch = "x86_64")]
    if crate::tile::avx2() {
        // SAFETY: the CPU supports AVX2, checked just above.
        return unsafe { x86::dots_avx2(rows, n, xs, sums) };
    }
    for (sum, row) in sums.iter_mut().zip(rows.chunks_exact(n)) {
        *sum = row
            .iter()
            .zip(xs)
            .fold(0i32, |acc, (w, x)| acc.wrapping_add(*w as i32 * *x as i32));
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use core::arch::x86_64::*;

    /// Sixteen weights from `rows[at..]`, widened to int16; past the slice's end, zeros. Lanes
    /// past a row's end read the next row, which is harmless: they meet the input's zero padding.
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn weights16(rows: &[i8], at: usize) -> __m256i {
        if at + 16 <= rows.len() {
            // SAFETY: the 16 bytes at `at` lie inside `rows`.
            return _mm256_cvtepi8_epi16(_mm_loadu_si128(rows.as_ptr().add(at) as *const __m128i));
        }
        let mut tail = [0i8; 16];
        tail[..rows.len() - at].copy_from_slice(&rows[at..]);
        _mm256_cvtepi8_epi16(_mm_loadu_si128(tail.as_ptr() as *const __m128i))
    }

    /// [`super::dots`] with `vpmaddwd`, four rows at a time.
    ///
    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn dots_avx2(rows: &[i8], n: usize, xs: &[i16], sums: &mut [i32]) {
        assert!(xs.len() >= n.next_multiple_of(16) && rows.len() >= sums.len() * n);
        let vectors = n.div_ceil(16);
        // SAFETY: c < vectors, so the 16 lanes at 16·c lie inside `xs` (asserted above).
        let x = |c: usize| xs.as_ptr().add(16 * c) as *const __m256i;
        let done = sums.len() / 4 * 4;
        for (q, four) in sums[..done].chunks_exact_mut(4).enumerate() {
            let at = 4 * q * n;
            let (mut a0, mut a1, mut a2, mut a3) = (
                _mm256_setzero_si256(),
                _mm256_setzero_si256(),
                _mm256_setzero_si256(),
                _mm256_setzero_si256(),
            );
            if at + 3 * n + 16 * vectors <= rows.len() {
                // Every load of the quad lies inside `rows`: no tail tests in the loop, so the
                // accumulators stay in registers.
                let w = |k: usize| {
                    _mm256_cvtepi8_epi16(_mm_loadu_si128(rows.as_ptr().add(k) as *const __m128i))
                };
                for c in 0..vectors {
                    let (xv, k) = (_mm256_loadu_si256(x(c)), at + 16 * c);
                    a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(w(k), xv));
                    a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(w(k + n), xv));
                    a2 = _mm256_add_epi32(a2, _mm256_madd_epi16(w(k + 2 * n), xv));
                    a3 = _mm256_add_epi32(a3, _mm256_madd_epi16(w(k + 3 * n), xv));
                }
            } else {
                for c in 0..vectors {
                    let (xv, k) = (_mm256_loadu_si256(x(c)), at + 16 * c);
                    a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(weights16(rows, k), xv));
                    a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(weights16(rows, k + n), xv));
                    a2 = _mm256_add_epi32(a2, _mm256_madd_epi16(weights16(rows, k + 2 * n), xv));
                    a3 = _mm256_add_epi32(a3, _mm256_madd_epi16(weights16(rows, k + 3 * n), xv));
                }
            }
            let s = _mm256_hadd_epi32(_mm256_hadd_epi32(a0, a1), _mm256_hadd_epi32(a2, a3));
            let total = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256::<1>(s));
            _mm_storeu_si128(four.as_mut_ptr() as *mut __m128i, total);
        }
        for (r, sum) in sums.iter_mut().enumerate().skip(done) {
            let mut acc = _mm256_setzero_si256();
            for c in 0..vectors {
                let w = weights16(rows, r * n + 16 * c);
                acc = _mm256_add_epi32(acc, _mm256_madd_epi16(w, _mm256_loadu_si256(x(c))));
            }
            let half = _mm_add_epi32(
                _mm256_castsi256_si128(acc),
                _mm256_extracti128_si256::<1>(acc),
            );
            let half = _mm_hadd_epi32(half, half);
            *sum = _mm_cvtsi128_si32(_mm_hadd_epi32(half, half));
        }
    }
}
