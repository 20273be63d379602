//! The packed integer GEMM behind the native convolution: `C[m][p] = Σ_k W[m][k] · X[k][p]` with
//! int8 weights, int16 activations and wrapping int32 sums.
//!
//! Taps are taken in pairs so that one AVX2 `vpmaddwd` does 16 exact multiply-accumulates (one
//! AVX-512 VNNI `vpdpwssd` 32, accumulation included, where the CPU has it): a
//! weight pair is broadcast as one 32-bit word, and the activation panel keeps, for each run of
//! [`NR`] positions, the two taps of a pair side by side. Every product of an int8 weight and a
//! zero-point-shifted activation (|x| ≤ 255) and every pair sum fits int32 exactly, and int32
//! addition wraps associatively, so the result is the reference's bit for bit in any order.

use alloc::vec;
use alloc::vec::Vec;

/// Output rows (channels) one micro-kernel call produces at most.
pub const MR: usize = 4;
/// Output positions one micro-kernel call produces: two AVX2 registers of int32.
pub const NR: usize = 16;

/// Two int16 values in one word, the low half first, as `vpmaddwd` reads them.
#[inline(always)]
fn pair(lo: i16, hi: i16) -> i32 {
    (lo as u16 as u32 | (hi as u16 as u32) << 16) as i32
}

/// The weights of some output rows, laid out tap pair by tap pair, [`MR`] rows per block.
pub struct PackedWeights {
    words: Vec<i32>,
    pairs: usize,
    rows: usize,
}

impl PackedWeights {
    /// Packs `rows` rows of `taps` int8 weights (row-major); an odd last tap pairs with zero.
    pub fn new(weights: &[i8], rows: usize, taps: usize) -> Self {
        let pairs = taps.div_ceil(2);
        let blocks = rows.div_ceil(MR);
        let mut words = vec![0i32; blocks * pairs * MR];
        for (block, out) in words.chunks_exact_mut(pairs * MR).enumerate() {
            let (r0, n) = (block * MR, MR.min(rows - block * MR));
            let block_rows = &weights[r0 * taps..(r0 + n) * taps];
            let mut done = 0;
            #[cfg(target_arch = "x86_64")]
            if n == MR && crate::tile::avx2() {
                // SAFETY: the CPU supports AVX2, checked just above.
                done = unsafe { x86::pack_block_avx2(block_rows, taps, out) };
            }
            for (lane, row) in block_rows.chunks_exact(taps).enumerate() {
                for kp in done..pairs {
                    let lo = row[2 * kp] as i16;
                    let hi = row.get(2 * kp + 1).map_or(0, |w| *w as i16);
                    out[kp * MR + lane] = pair(lo, hi);
                }
            }
        }
        PackedWeights { words, pairs, rows }
    }

    fn block(&self, block: usize) -> &[i32] {
        &self.words[block * self.pairs * MR..(block + 1) * self.pairs * MR]
    }
}

/// Activations `X[k][p]` (taps × positions) in panels of [`NR`] positions: within a panel, tap
/// `k` of the panel's position `j` sits at `(k / 2 · NR + j) · 2 + k % 2` (see [`PackedInput::slot`]).
/// Positions past the end and an odd last tap stay zero.
pub struct PackedInput {
    halves: Vec<i16>,
    pairs: usize,
    positions: usize,
}

impl PackedInput {
    /// Int16 values in one panel.
    pub fn panel_len(taps: usize) -> usize {
        taps.div_ceil(2) * NR * 2
    }

    /// Where tap `k` of a panel's position `j` goes within the panel.
    #[inline(always)]
    pub fn slot(k: usize, j: usize) -> usize {
        ((k / 2) * NR + j) * 2 + k % 2
    }

    /// Builds the panels with `fill(first_position, panel)`, on the rayon pool with `parallel`.
    pub fn build(
        taps: usize,
        positions: usize,
        parallel: bool,
        fill: impl Fn(usize, &mut [i16]) + Sync,
    ) -> Self {
        let halves = build_panels(Self::panel_len(taps), positions, NR, parallel, fill);
        PackedInput {
            halves,
            pairs: taps.div_ceil(2),
            positions,
        }
    }

    /// Positions (columns) of the product.
    pub fn positions(&self) -> usize {
        self.positions
    }

    fn panel(&self, panel: usize) -> &[i16] {
        let len = self.pairs * NR * 2;
        &self.halves[panel * len..(panel + 1) * len]
    }
}

/// Zeroed panels of `len` values, one per `width` positions, each filled by
/// `fill(first_position, panel)`, on the rayon pool with `parallel`: what both GEMMs' inputs
/// are made of.
pub(crate) fn build_panels<T: Copy + Default + Send>(
    len: usize,
    positions: usize,
    width: usize,
    parallel: bool,
    fill: impl Fn(usize, &mut [T]) + Sync,
) -> Vec<T> {
    let mut values = vec![T::default(); positions.div_ceil(width) * len];
    fill_panels(&mut values, len, width, parallel, fill);
    values
}

/// Fills `values`, panels of `len` values one per `width` positions, with
/// `fill(first_position, panel)`, on the rayon pool with `parallel`.
pub(crate) fn fill_panels<T: Send>(
    values: &mut [T],
    len: usize,
    width: usize,
    parallel: bool,
    fill: impl Fn(usize, &mut [T]) + Sync,
) {
    use rayon::prelude::*;
    let run = |(panel, chunk): (usize, &mut [T])| fill(panel * width, chunk);
    if parallel {
        values.par_chunks_mut(len).enumerate().for_each(run);
    } else {
        values.chunks_mut(len).enumerate().for_each(run);
    }
}

/// Computes the product for every row of `w` into `sums` (rows × positions, row-major).
pub fn multiply(w: &PackedWeights, x: &PackedInput, sums: &mut [i32]) {
    assert_eq!(w.pairs, x.pairs, "weights and input have the same taps");
    assert_eq!(
        sums.len(),
        w.rows * x.positions,
        "one sum per row and position"
    );
    let panels = x.positions.div_ceil(NR);
    let mut acc = [[0i32; NR]; MR];
    for panel in 0..panels {
        let xs = x.panel(panel);
        let (first, width) = (panel * NR, NR.min(x.positions - panel * NR));
        for r0 in (0..w.rows).step_by(MR) {
            micro_kernel(w.block(r0 / MR), xs, w.pairs, &mut acc);
            for (r, lane) in acc.iter().enumerate().take(MR.min(w.rows - r0)) {
                let at = (r0 + r) * x.positions + first;
                sums[at..at + width].copy_from_slice(&lane[..width]);
            }
        }
    }
}

/// The tile native kernels run now: "avx512-vnni", "avx-vnni", "avx2", "vnni-emulated" or
/// "portable" (see [`crate::tile`]).
pub fn simd_level() -> &'static str {
    crate::tile::active().name()
}

/// One [`MR`] × [`NR`] tile over all tap pairs: AVX-512 VNNI `vpdpwssd` under that tile (this
/// int16 GEMM then runs only for zero points outside int8), AVX2 under the AVX2 tiles.
#[inline]
fn micro_kernel(ws: &[i32], xs: &[i16], pairs: usize, acc: &mut [[i32; NR]; MR]) {
    use crate::tile::Tile;
    assert!(ws.len() >= pairs * MR && xs.len() >= pairs * NR * 2);
    #[cfg(target_arch = "x86_64")]
    {
        let tile = crate::tile::active();
        if tile.avx512() {
            // SAFETY: the tile is active only where AVX-512 F + VNNI are present; both slices
            // hold `pairs` steps (asserted).
            return unsafe { x86::micro_kernel_vnni(ws, xs, pairs, acc) };
        }
        if tile.avx2() && tile != Tile::VnniEmulated {
            // SAFETY: AVX2 is present (checked) and both slices hold `pairs` steps (asserted).
            return unsafe { x86::micro_kernel_avx2(ws, xs, pairs, acc) };
        }
    }
    micro_kernel_portable(ws, xs, pairs, acc)
}

/// The same tile in plain Rust: the fallback on CPUs without AVX2 and the definition of the tile.
fn micro_kernel_portable(ws: &[i32], xs: &[i16], pairs: usize, acc: &mut [[i32; NR]; MR]) {
    *acc = [[0; NR]; MR];
    for kp in 0..pairs {
        let x = &xs[kp * NR * 2..(kp + 1) * NR * 2];
        for (r, row) in acc.iter_mut().enumerate() {
            let w = ws[kp * MR + r];
            let (w0, w1) = (w as i16 as i32, (w >> 16) as i16 as i32);
            for (a, v) in row.iter_mut().zip(x.chunks_exact(2)) {
                *a = a.wrapping_add(w0 * v[0] as i32 + w1 * v[1] as i32);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{MR, NR};
    use core::arch::x86_64::*;

    /// Packs the tap pairs of a full block (`MR` rows of `taps` int8 weights) eight at a time:
    /// each row's 16 bytes widen to eight int16 pair words, and a 4 × 8 word transpose puts
    /// them in pair-major, row-minor order. Returns the pairs packed; the caller packs the rest.
    ///
    /// # Safety
    /// The CPU must support AVX2; `rows` must hold `MR · taps` weights and `out` `MR` words per
    /// tap pair.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn pack_block_avx2(rows: &[i8], taps: usize, out: &mut [i32]) -> usize {
        assert!(rows.len() >= MR * taps && out.len() >= MR * taps.div_ceil(2));
        let chunks = taps / 16;
        for c in 0..chunks {
            // SAFETY: 16·c + 16 ≤ taps, so every load stays inside its row (asserted above).
            let at = |lane: usize| rows.as_ptr().add(lane * taps + 16 * c) as *const __m128i;
            let a0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(at(0)));
            let a1 = _mm256_cvtepi8_epi16(_mm_loadu_si128(at(1)));
            let a2 = _mm256_cvtepi8_epi16(_mm_loadu_si128(at(2)));
            let a3 = _mm256_cvtepi8_epi16(_mm_loadu_si128(at(3)));
            let (t0, t1) = (_mm256_unpacklo_epi32(a0, a1), _mm256_unpackhi_epi32(a0, a1));
            let (t2, t3) = (_mm256_unpacklo_epi32(a2, a3), _mm256_unpackhi_epi32(a2, a3));
            // u_j holds pair j (low 128 bits) and pair j + 4 (high 128 bits) of the four rows.
            let (u0, u1) = (_mm256_unpacklo_epi64(t0, t2), _mm256_unpackhi_epi64(t0, t2));
            let (u2, u3) = (_mm256_unpacklo_epi64(t1, t3), _mm256_unpackhi_epi64(t1, t3));
            let to = out.as_mut_ptr().add(32 * c) as *mut __m256i;
            _mm256_storeu_si256(to, _mm256_permute2x128_si256::<0x20>(u0, u1));
            _mm256_storeu_si256(to.add(1), _mm256_permute2x128_si256::<0x20>(u2, u3));
            _mm256_storeu_si256(to.add(2), _mm256_permute2x128_si256::<0x31>(u0, u1));
            _mm256_storeu_si256(to.add(3), _mm256_permute2x128_si256::<0x31>(u2, u3));
        }
        chunks * 8
    }

    /// Four 512-bit accumulators (4 rows × 16 positions), one fused multiply-add per row and
    /// tap pair.
    ///
    /// # Safety
    /// The CPU must support AVX-512 F and VNNI; `ws` must hold `pairs · MR` words and `xs`
    /// `pairs · NR · 2` values.
    #[target_feature(enable = "avx512f,avx512vnni")]
    pub(super) unsafe fn micro_kernel_vnni(
        ws: &[i32],
        xs: &[i16],
        pairs: usize,
        acc: &mut [[i32; NR]; MR],
    ) {
        let (mut c0, mut c1) = (_mm512_setzero_si512(), _mm512_setzero_si512());
        let (mut c2, mut c3) = (_mm512_setzero_si512(), _mm512_setzero_si512());
        let (mut w, mut x) = (ws.as_ptr(), xs.as_ptr());
        for _ in 0..pairs {
            let v = _mm512_loadu_si512(x as *const __m512i);
            c0 = _mm512_dpwssd_epi32(c0, v, _mm512_set1_epi32(*w));
            c1 = _mm512_dpwssd_epi32(c1, v, _mm512_set1_epi32(*w.add(1)));
            c2 = _mm512_dpwssd_epi32(c2, v, _mm512_set1_epi32(*w.add(2)));
            c3 = _mm512_dpwssd_epi32(c3, v, _mm512_set1_epi32(*w.add(3)));
            w = w.add(MR);
            x = x.add(NR * 2);
        }
        for (out, c) in acc.iter_mut().zip([c0, c1, c2, c3]) {
            _mm512_storeu_si512(out.as_mut_ptr() as *mut __m512i, c);
        }
    }

    /// Eight int32 accumulators (4 rows × 16 positions) kept in registers across the tap pairs.
    ///
    /// # Safety
    /// The CPU must support AVX2; `ws` must hold `pairs · MR` words and `xs` `pairs · NR · 2`.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn micro_kernel_avx2(
        ws: &[i32],
        xs: &[i16],
        pairs: usize,
        acc: &mut [[i32; NR]; MR],
    ) {
        let (mut c00, mut c01) = (_mm256_setzero_si256(), _mm256_setzero_si256());
        let (mut c10, mut c11) = (_mm256_setzero_si256(), _mm256_setzero_si256());
        let (mut c20, mut c21) = (_mm256_setzero_si256(), _mm256_setzero_si256());
        let (mut c30, mut c31) = (_mm256_setzero_si256(), _mm256_setzero_si256());
        let (mut w, mut x) = (ws.as_ptr(), xs.as_ptr());
        for _ in 0..pairs {
            let x0 = _mm256_loadu_si256(x as *const __m256i);
            let x1 = _mm256_loadu_si256(x.add(16) as *const __m256i);
            let b = _mm256_set1_epi32(*w);
            c00 = _mm256_add_epi32(c00, _mm256_madd_epi16(x0, b));
            c01 = _mm256_add_epi32(c01, _mm256_madd_epi16(x1, b));
            let b = _mm256_set1_epi32(*w.add(1));
            c10 = _mm256_add_epi32(c10, _mm256_madd_epi16(x0, b));
            c11 = _mm256_add_epi32(c11, _mm256_madd_epi16(x1, b));
            let b = _mm256_set1_epi32(*w.add(2));
            c20 = _mm256_add_epi32(c20, _mm256_madd_epi16(x0, b));
            c21 = _mm256_add_epi32(c21, _mm256_madd_epi16(x1, b));
            let b = _mm256_set1_epi32(*w.add(3));
            c30 = _mm256_add_epi32(c30, _mm256_madd_epi16(x0, b));
            c31 = _mm256_add_epi32(c31, _mm256_madd_epi16(x1, b));
            w = w.add(MR);
            x = x.add(NR * 2);
        }
        let rows = [[c00, c01], [c10, c11], [c20, c21], [c30, c31]];
        for (out, [lo, hi]) in acc.iter_mut().zip(rows) {
            _mm256_storeu_si256(out.as_mut_ptr() as *mut __m256i, lo);
            _mm256_storeu_si256(out.as_mut_ptr().add(8) as *mut __m256i, hi);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every micro-kernel tile this CPU can run, called directly (not through the dispatch,
    /// which picks only the widest), equals the portable definition at the extremes; the test
    /// prints which tiles ran, so a log says what a CPU without AVX-512 VNNI did not check.
    #[test]
    fn every_tile_this_cpu_runs_matches_the_portable_tile() {
        let (rows, taps, positions) = (4, 1001, NR);
        let w: Vec<i8> = (0..rows * taps)
            .map(|i| if i % 2 == 0 { -128 } else { 127 })
            .collect();
        let col: Vec<i16> = (0..taps * positions)
            .map(|i| if i % 3 == 0 { -255 } else { 255 })
            .collect();
        let pw = PackedWeights::new(&w, rows, taps);
        let px = PackedInput::build(taps, positions, false, |first, panel| {
            for k in 0..taps {
                for j in 0..NR.min(positions - first) {
                    panel[PackedInput::slot(k, j)] = col[k * positions + first + j];
                }
            }
        });
        let mut portable = [[0; NR]; MR];
        micro_kernel_portable(pw.block(0), px.panel(0), pw.pairs, &mut portable);
        let mut ran = vec!["portable"];
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx2") {
                let mut avx2 = [[0; NR]; MR];
                // SAFETY: AVX2 checked; the blocks hold `pairs` steps.
                unsafe { x86::micro_kernel_avx2(pw.block(0), px.panel(0), pw.pairs, &mut avx2) };
                assert_eq!(portable, avx2, "AVX2 tile");
                ran.push("avx2");
            }
            if crate::tile::Tile::Avx512Vnni.supported() {
                let mut vnni = [[0; NR]; MR];
                // SAFETY: AVX-512 F + VNNI checked; the blocks hold `pairs` steps.
                unsafe { x86::micro_kernel_vnni(pw.block(0), px.panel(0), pw.pairs, &mut vnni) };
                assert_eq!(portable, vnni, "AVX-512 VNNI tile");
                ran.push("avx512-vnni");
            }
        }
        println!(
            "int16 pair tiles checked against the portable tile on this CPU: {} (native kernels use the {} tile)",
            ran.join(", "),
            simd_level()
        );
    }

    /// The packed product equals a direct triple loop, on sizes that leave partial row blocks,
    /// partial panels and an odd tap, at the int16/int8 extremes.
    #[test]
    fn packed_product_matches_direct_sums() {
        for (rows, taps, positions) in [
            (1, 1, 1),
            (5, 9, 17),
            (4, 576, 40),
            (7, 3, 33),
            (10, 75, 19),
        ] {
            let w: Vec<i8> = (0..rows * taps)
                .map(|i| {
                    if i % 3 == 0 {
                        -128
                    } else {
                        (i * 37 % 255) as i8
                    }
                })
                .collect();
            let col: Vec<i16> = (0..taps * positions)
                .map(|i| {
                    if i % 5 == 0 {
                        -255
                    } else {
                        (i * 53 % 511) as i16 - 255
                    }
                })
                .collect();
            let mut got = vec![0i32; rows * positions];
            let pw = PackedWeights::new(&w, rows, taps);
            let px = PackedInput::build(taps, positions, rows % 2 == 1, |first, panel| {
                for k in 0..taps {
                    for j in 0..NR.min(positions - first) {
                        panel[PackedInput::slot(k, j)] = col[k * positions + first + j];
                    }
                }
            });
            multiply(&pw, &px, &mut got);
            for r in 0..rows {
                for p in 0..positions {
                    let want = (0..taps).fold(0i32, |s, k| {
                        s.wrapping_add(w[r * taps + k] as i32 * col[k * positions + p] as i32)
                    });
                    assert_eq!(got[r * positions + p], want, "row {r} position {p}");
                }
            }
            let mut portable = [[0; NR]; MR];
            let mut simd = [[0; NR]; MR];
            micro_kernel_portable(pw.block(0), px.panel(0), pw.pairs, &mut portable);
            micro_kernel(pw.block(0), px.panel(0), pw.pairs, &mut simd);
            assert_eq!(portable, simd);
            #[cfg(target_arch = "x86_64")]
            if std::is_x86_feature_detected!("avx2") {
                let mut avx2 = [[0; NR]; MR];
                // SAFETY: AVX2 checked; the blocks hold `pairs` steps.
                unsafe { x86::micro_kernel_avx2(pw.block(0), px.panel(0), pw.pairs, &mut avx2) };
                assert_eq!(portable, avx2, "AVX2 tile");
            }
        }
    }
}
