//! Weights laid out so that AVX2's `vpmaddubsw` multiplies them exactly.
//!
//! `vpmaddubsw` multiplies 32 unsigned input bytes by 32 signed weight bytes and adds each
//! adjacent pair of products into an int16, *saturating*: with inputs `x' = x + 128` up to 255
//! a pair of weights `(a, b)` can overflow int16 (`255 · 127 · 2`). It cannot for any input
//! exactly when the pair's positive weights add up to at most 128 and its negative ones to at
//! least −128 (`255 · 128 = 32,640`). Trained weights rarely break that: 1–3% of the pairs of
//! the zoo's convolutions. Those pairs are halved (`s = w >> 1`, `|s| ≤ 64`) and the remainder
//! (`w − s`, also within ±64, so exact too) goes to a short list of fixes per row that the tile
//! adds after its main loop. Per 32 products that is one `vpmaddubsw`, one `vpmaddwd` against
//! ones and one `vpaddd`, where the split int16 quads take two `vpmaddwd`, two `vpaddd` and a
//! share of the splitting: the vector pipes, not the multipliers, bound both loops here.

use alloc::vec::Vec;

/// A row's quad whose weights were halved: the remainder's four bytes, added by the tile as one
/// more quad (zero bytes for a pair that needed no fix).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fix {
    /// The quad, counted from the row's first.
    pub quad: u32,
    /// The remainder's four weights as `vpmaddubsw` reads them.
    pub word: i32,
}

/// Rows of weights as exact `vpmaddubsw` quads: quad `q` of row `r` is word `r · quads + q`
/// (zero weights past the row's end), and row `r`'s fixes are `fixes[firsts[r]..firsts[r + 1]]`.
pub struct BytePairs {
    /// The halved-where-needed quads.
    pub words: Vec<i32>,
    /// Every row's fixes, row by row.
    pub fixes: Vec<Fix>,
    /// Where each row's fixes start in `fixes`, and one past the last row's end.
    pub firsts: Vec<u32>,
}

/// Whether `vpmaddubsw` adds `x0 · a + x1 · b` without saturating for every pair of u8 inputs.
#[inline(always)]
pub fn pair_is_exact(a: i8, b: i8) -> bool {
    let (a, b) = (a as i32, b as i32);
    a.max(0) + b.max(0) <= 128 && a.min(0) + b.min(0) >= -128
}

/// A quad as the part the main loop multiplies and, where a pair is not exact, the remainder
/// for a fix: the part plus the remainder is the quad, and both pairs of each are exact.
pub fn split_quad(quad: [i8; 4]) -> ([i8; 4], Option<[i8; 4]>) {
    let mut part = quad;
    let mut rest = [0i8; 4];
    let mut fixed = false;
    for pair in [0, 2] {
        if !pair_is_exact(quad[pair], quad[pair + 1]) {
            for t in pair..pair + 2 {
                part[t] = quad[t] >> 1;
                rest[t] = quad[t] - part[t];
            }
            fixed = true;
        }
    }
    (part, fixed.then_some(rest))
}

/// One `vpmaddubsw` lane pair and the `vpmaddwd` against ones after it: the sum of the two
/// saturated pair sums, as the AVX2 tile computes one int32 lane. The definition the
/// plain-Rust tile runs, so a CPU without AVX2 checks the same saturation.
#[inline(always)]
pub fn maddubs_lane(x: [u8; 4], w: [i8; 4]) -> i32 {
    let pair = |t: usize| {
        let sum = x[t] as i32 * w[t] as i32 + x[t + 1] as i32 * w[t + 1] as i32;
        sum.clamp(i16::MIN as i32, i16::MAX as i32)
    };
    pair(0) + pair(2)
}

/// `rows` rows of `taps` weights (row-major) as [`BytePairs`], in `words` (any contents; it is
/// resized to `rows · ⌈taps / 4⌉`).
pub fn byte_pairs(weights: &[i8], rows: usize, taps: usize, mut words: Vec<i32>) -> BytePairs {
    let quads = taps.div_ceil(4);
    words.resize(rows * quads, 0);
    let weights = &weights[..rows * taps];
    let mut fixes = Vec::new();
    if taps.is_multiple_of(4) {
        // Whole quads: the rows are one run of quads, split in one pass (a 1 × 1 layer's rows
        // of 16 taps are too short for a vector each), and each fix's quad counted from the
        // first row's start until the rows are told apart below.
        split_run(weights, &mut words, 0, &mut fixes);
    } else {
        for (r, (row, out)) in weights
            .chunks_exact(taps)
            .zip(words.chunks_exact_mut(quads))
            .enumerate()
        {
            split_run(row, out, r * quads, &mut fixes);
        }
    }
    let mut firsts = Vec::with_capacity(rows + 1);
    firsts.push(0);
    let mut at = 0;
    for row in 0..rows {
        let end = (row + 1) * quads;
        while at < fixes.len() && (fixes[at].quad as usize) < end {
            fixes[at].quad -= (row * quads) as u32;
            at += 1;
        }
        firsts.push(at as u32);
    }
    BytePairs {
        words,
        fixes,
        firsts,
    }
}

/// Splits the quads of `weights` (zero past its end) into `out`, a word each, pushing the fixes
/// with their quads counted from `first`.
fn split_run(weights: &[i8], out: &mut [i32], first: usize, fixes: &mut Vec<Fix>) {
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if crate::tile::avx2() {
        // SAFETY: the CPU supports AVX2, checked just above.
        done = unsafe { x86::split_vectors(weights, out, first, fixes) };
    }
    for (q, word) in out.iter_mut().enumerate().skip(done) {
        let quad = core::array::from_fn(|t| weights.get(4 * q + t).copied().unwrap_or(0));
        let (part, rest) = split_quad(quad);
        *word = i32::from_le_bytes(part.map(|w| w as u8));
        if let Some(rest) = rest {
            fixes.push(Fix {
                quad: (first + q) as u32,
                word: i32::from_le_bytes(rest.map(|w| w as u8)),
            });
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::Fix;
    use alloc::vec::Vec;
    use core::arch::x86_64::*;

    /// [`super::split_quad`] for the whole vectors of eight quads at the start of `row`, into
    /// `out` and `fixes` (quads counted from `first`); returns the quads done. Two `vpmaddubsw` against ones give each
    /// pair's positive and negative sums; a vector with an inexact pair (most have none) has
    /// those pairs' bytes halved by 16-bit shifts and blended in, and its nonzero remainders
    /// pushed as fixes.
    ///
    /// # Safety
    /// The CPU must support AVX2; `out` must hold a word per quad of `row`.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn split_vectors(
        row: &[i8],
        out: &mut [i32],
        first: usize,
        fixes: &mut Vec<Fix>,
    ) -> usize {
        let vectors = (row.len() / 32).min(out.len() / 8);
        let (zero, ones) = (_mm256_setzero_si256(), _mm256_set1_epi8(1));
        let (most, least) = (_mm256_set1_epi16(128), _mm256_set1_epi16(-128));
        let low_bytes = _mm256_set1_epi16(0xff);
        for v in 0..vectors {
            // SAFETY: 32·v + 32 ≤ row.len() and 8·v + 8 ≤ out.len().
            let w = _mm256_loadu_si256(row.as_ptr().add(32 * v) as *const __m256i);
            let up = _mm256_maddubs_epi16(ones, _mm256_max_epi8(w, zero));
            let down = _mm256_maddubs_epi16(ones, _mm256_min_epi8(w, zero));
            let inexact = _mm256_or_si256(
                _mm256_cmpgt_epi16(up, most),
                _mm256_cmpgt_epi16(least, down),
            );
            let to = out.as_mut_ptr().add(8 * v) as *mut __m256i;
            if _mm256_testz_si256(inexact, inexact) != 0 {
                _mm256_storeu_si256(to, w);
                continue;
            }
            // Each byte shifted right by one, sign kept: the even bytes through the high
            // halves of the 16-bit lanes, the odd ones in place.
            let even = _mm256_srai_epi16(_mm256_slli_epi16(w, 8), 9);
            let odd = _mm256_srai_epi16(w, 9);
            let half =
                _mm256_or_si256(_mm256_and_si256(even, low_bytes), _mm256_slli_epi16(odd, 8));
            let part = _mm256_blendv_epi8(w, half, inexact);
            _mm256_storeu_si256(to, part);
            let rest = _mm256_sub_epi8(w, part);
            let mut words = [0i32; 8];
            _mm256_storeu_si256(words.as_mut_ptr() as *mut __m256i, rest);
            // One bit per quad with a remainder: a loop over those, not a test of all eight.
            let zero_words = _mm256_cmpeq_epi32(rest, zero);
            let mut fixed = !_mm256_movemask_ps(_mm256_castsi256_ps(zero_words)) as u32 & 0xff;
            while fixed != 0 {
                let i = fixed.trailing_zeros() as usize;
                fixes.push(Fix {
                    quad: (first + 8 * v + i) as u32,
                    word: words[i],
                });
                fixed &= fixed - 1;
            }
        }
        8 * vectors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every pair of int8 weights: the rule says exact exactly when no pair of u8 inputs makes
    /// the int16 sum saturate (the extremes 0 and 255 decide it).
    #[test]
    fn the_rule_matches_saturation_for_every_pair() {
        for a in i8::MIN..=i8::MAX {
            for b in i8::MIN..=i8::MAX {
                let saturates = [(255, 255), (255, 0), (0, 255)].iter().any(|&(x0, x1)| {
                    let sum = x0 * a as i32 + x1 * b as i32;
                    sum != sum.clamp(i16::MIN as i32, i16::MAX as i32)
                });
                assert_eq!(pair_is_exact(a, b), !saturates, "({a}, {b})");
            }
        }
    }

    /// The part and the remainder add up to the quad, and both are exact, for quads drawn
    /// across the whole range; quads that were exact already get no remainder.
    #[test]
    fn split_quads_add_up_and_are_exact() {
        let values: Vec<i8> = (-128..=127)
            .step_by(7)
            .chain([127, -128, 64, 65, -64, -65])
            .collect();
        for &a in &values {
            for &b in &values {
                let quad = [a, b, b, a];
                let (part, rest) = split_quad(quad);
                assert_eq!(rest.is_none(), pair_is_exact(a, b) && pair_is_exact(b, a));
                let rest = rest.unwrap_or([0; 4]);
                for t in 0..4 {
                    assert_eq!(part[t] as i32 + rest[t] as i32, quad[t] as i32);
                }
                for p in [0, 2] {
                    assert!(
                        pair_is_exact(part[p], part[p + 1]),
                        "{quad:?} part {part:?}"
                    );
                    assert!(
                        pair_is_exact(rest[p], rest[p + 1]),
                        "{quad:?} rest {rest:?}"
                    );
                }
            }
        }
    }

    /// The vector scan and the scalar split give the same words and fixes (rows long enough
    /// for several vectors, with inexact pairs in some vectors and not others, and part quads).
    #[test]
    fn layout_equals_the_quad_by_quad_split() {
        for taps in [1, 7, 20, 32, 33, 36, 96, 130, 259] {
            let rows = 5;
            let weights: Vec<i8> = (0..rows * taps)
                .map(|i| match i % 97 {
                    0 => 127,
                    1 => 100,
                    50 => -128,
                    51 => -90,
                    _ => ((i * 37) % 61) as i8 - 30,
                })
                .collect();
            let got = byte_pairs(&weights, rows, taps, alloc::vec![0x5a5a; 3]);
            let quads = taps.div_ceil(4);
            let (mut words, mut fixes, mut firsts) = (Vec::new(), Vec::new(), alloc::vec![0]);
            for row in weights.chunks_exact(taps) {
                for q in 0..quads {
                    let quad = core::array::from_fn(|t| row.get(4 * q + t).copied().unwrap_or(0));
                    let (part, rest) = split_quad(quad);
                    words.push(i32::from_le_bytes(part.map(|w| w as u8)));
                    if let Some(rest) = rest {
                        let word = i32::from_le_bytes(rest.map(|w| w as u8));
                        fixes.push(Fix {
                            quad: q as u32,
                            word,
                        });
                    }
                }
                firsts.push(fixes.len() as u32);
            }
            assert!(fixes.len() < rows * quads, "some quads need no fix");
            assert_eq!(got.words, words, "taps {taps}");
            assert_eq!(got.fixes, fixes, "taps {taps}");
            assert_eq!(got.firsts, firsts, "taps {taps}");
        }
    }

    /// The emulated lane saturates each pair sum as `vpmaddubsw` does.
    #[test]
    fn the_emulated_lane_saturates_each_pair() {
        assert_eq!(maddubs_lane([255, 255, 1, 2], [127, 127, 3, 4]), 32767 + 11);
        assert_eq!(maddubs_lane([255, 255, 0, 0], [-128, -128, 0, 0]), -32768);
        assert_eq!(maddubs_lane([255, 255, 255, 255], [64, 64, -64, -64]), 0);
    }
}
