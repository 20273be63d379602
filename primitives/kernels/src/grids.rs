//! Stride-phase grids: a 2-D convolution's padded input plane (as `x - z_in` in int16, or `x + 128`
//! in u8 for the VNNI GEMM), split by
//! row and column phase modulo the strides so that every tap of every output position is one
//! read at a fixed offset.
//!
//! With strides `(sh, sw)`, grid `(fr, fc)` cell `(i, j)` holds padded input `(i·sh + fr,
//! j·sw + fc)`; padding cells hold 0, which is exactly what a padding tap contributes. Output
//! `(oh, ow)` reads, for tap `(b, e)`, grid `((b·dh) % sh, (e·dw) % sw)` at cell
//! `(oh + b·dh / sh, ow + e·dw / sw)`. Laying the outputs out "wide", `oh · phase_len + ow`,
//! makes that read `wide position + tap offset` for every tap: a whole panel or plane of
//! outputs is a contiguous run per tap. The wide columns past the output width read whatever
//! follows and are discarded.

use crate::ConvParams;

/// Where one channel's grids live and how taps address them.
#[derive(Clone, Copy, Debug)]
pub struct GridShape {
    /// Row and column strides.
    strides: [usize; 2],
    /// Rows of one grid, plus one slack row for the wide reads.
    grid_rows: usize,
    /// Cells in a grid row, and the row length of the wide output layout.
    pub phase_len: usize,
}

impl GridShape {
    /// The grids of `p`'s (2-D) input.
    pub fn of(p: &ConvParams) -> Self {
        let [_, sh, sw] = p.stride.map(|s| s as usize);
        let [_, ph, pw] = p.pad.map(|s| s as usize);
        Self {
            strides: [sh, sw],
            grid_rows: (p.input.h as usize + 2 * ph).div_ceil(sh) + 1,
            phase_len: (p.input.w as usize + 2 * pw).div_ceil(sw),
        }
    }

    fn grid_len(&self) -> usize {
        self.grid_rows * self.phase_len
    }

    /// Cells of one channel's grids.
    pub fn channel_len(&self) -> usize {
        self.strides[0] * self.strides[1] * self.grid_len()
    }

    /// Outputs in the wide layout: `p.output.h` rows of [`phase_len`](Self::phase_len).
    pub fn wide_len(&self, p: &ConvParams) -> usize {
        p.output.h as usize * self.phase_len
    }

    /// Offset of tap `(b, e)` within a channel's grids.
    pub fn tap(&self, p: &ConvParams, b: usize, e: usize) -> usize {
        let [sh, sw] = self.strides;
        let (row, col) = (b * p.dilation[1] as usize, e * p.dilation[2] as usize);
        let grid = (row % sh) * sw + col % sw;
        grid * self.grid_len() + (row / sh) * self.phase_len + col / sw
    }

    /// Writes one channel's input `plane` (H × W int8) into its grids `cells`, each input `x`
    /// as `value(x)`. Padding cells are not written: they must already hold the padding value
    /// (a fresh buffer, or one reused for the same shape).
    pub fn fill<T: Copy>(
        &self,
        p: &ConvParams,
        plane: &[i8],
        cells: &mut [T],
        value: impl Fn(i8) -> T + Copy,
    ) {
        #[cfg(target_arch = "x86_64")]
        if crate::tile::avx2() {
            // SAFETY: the CPU supports AVX2, checked just above.
            return unsafe { self.fill_avx2(p, plane, cells, value) };
        }
        self.fill_body(p, plane, cells, value)
    }

    /// [`fill`](Self::fill) with `x + 128` as u8 (the VNNI GEMM's grids). With a column
    /// stride of 4 (AlexNet's conv1) on AVX-512, 64 input bytes a step are sorted into their
    /// four column phases by one byte shuffle and one dword permutation, where the portable
    /// loop moved them one by one (a sixth of that layer's time).
    /// Column stride 2 splits even and odd columns with two byte narrowings (`vpmovwb`).
    pub fn fill_flipped(&self, p: &ConvParams, plane: &[i8], cells: &mut [u8]) {
        #[cfg(target_arch = "x86_64")]
        if crate::tile::active().avx512() {
            // SAFETY (both): that tile is active only where AVX-512 F + BW are present.
            match self.strides[1] {
                2 => return unsafe { x86::fill_stride2_avx512(self, p, plane, cells, x86::Flip) },
                4 => return unsafe { x86::fill_stride4_avx512(self, p, plane, cells) },
                _ => {}
            }
        }
        #[cfg(target_arch = "x86_64")]
        if self.strides[1] == 2 && crate::tile::avx2() {
            // SAFETY: the CPU supports AVX2, checked just above.
            return unsafe { x86::fill_stride2_avx2(self, p, plane, cells, x86::Flip) };
        }
        self.fill(p, plane, cells, |x| x as u8 ^ 0x80)
    }

    /// [`fill`](Self::fill) with `x - zero` as int16 (the depthwise and int16 GEMM grids); on
    /// AVX-512 with a column stride of 2 (MobileNetV2's downsampling depthwise layers, whose
    /// time was two fifths this fill), as [`fill_flipped`](Self::fill_flipped) does.
    pub fn fill_shifted(&self, p: &ConvParams, plane: &[i8], cells: &mut [i16], zero: i32) {
        #[cfg(target_arch = "x86_64")]
        if self.strides[1] == 2 && crate::tile::active().avx512() {
            let shift = x86::Shift(zero as i16);
            // SAFETY: that tile is active only where AVX-512 F + BW are present.
            return unsafe { x86::fill_stride2_avx512(self, p, plane, cells, shift) };
        }
        #[cfg(target_arch = "x86_64")]
        if self.strides[1] == 2 && crate::tile::avx2() {
            let shift = x86::Shift(zero as i16);
            // SAFETY: the CPU supports AVX2, checked just above.
            return unsafe { x86::fill_stride2_avx2(self, p, plane, cells, shift) };
        }
        self.fill(p, plane, cells, |x| (x as i32 - zero) as i16)
    }

    /// [`fill_body`](Self::fill_body) compiled for AVX2.
    ///
    /// # Safety
    /// The CPU must support AVX2.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn fill_avx2<T: Copy>(
        &self,
        p: &ConvParams,
        plane: &[i8],
        cells: &mut [T],
        value: impl Fn(i8) -> T + Copy,
    ) {
        self.fill_body(p, plane, cells, value)
    }

    /// Each input row of `plane` with the cell where its padded row starts in column phase 0:
    /// padded row `r` is row `r / sh` of the grids of row phase `r % sh`. Counted along, not
    /// divided: two divisions a row cost more than filling a 7-column row.
    fn rows<'p>(
        &self,
        p: &ConvParams,
        plane: &'p [i8],
    ) -> impl Iterator<Item = (&'p [i8], usize)> + 'p {
        let [sh, sw] = self.strides;
        let ph = p.pad[1] as usize;
        let (phase_step, row_step) = (sw * self.grid_len(), self.phase_len);
        let (mut phase, mut grid_row) = (ph % sh, ph / sh);
        plane
            .chunks_exact((p.input.w as usize).max(1))
            .map(move |row| {
                let at = phase * phase_step + grid_row * row_step;
                phase += 1;
                if phase == sh {
                    phase = 0;
                    grid_row += 1;
                }
                (row, at)
            })
    }

    #[inline(always)]
    fn fill_body<T: Copy>(
        &self,
        p: &ConvParams,
        plane: &[i8],
        cells: &mut [T],
        value: impl Fn(i8) -> T + Copy,
    ) {
        let sw = self.strides[1];
        let pw = p.pad[2] as usize;
        let (width, grid_len) = (p.input.w as usize, self.grid_len());
        let shifted = |x: &i8| value(*x);
        for (row, grid_row) in self.rows(p, plane) {
            match sw {
                1 => {
                    let at = grid_row + pw;
                    for (v, x) in cells[at..at + width].iter_mut().zip(row) {
                        *v = shifted(x);
                    }
                }
                2 => {
                    // Even and odd input columns go to padded phases pw % 2 and the other one.
                    let even = grid_row + (pw % 2) * grid_len + pw / 2;
                    let odd = grid_row + (1 - pw % 2) * grid_len + pw.div_ceil(2);
                    let pairs = width / 2;
                    for (k, two) in row[..2 * pairs].chunks_exact(2).enumerate() {
                        cells[even + k] = shifted(&two[0]);
                        cells[odd + k] = shifted(&two[1]);
                    }
                    if width % 2 == 1 {
                        cells[even + pairs] = shifted(&row[width - 1]);
                    }
                }
                _ => {
                    for fc in 0..sw {
                        // The first input column whose padded column is ≡ fc (mod sw).
                        let x0 = (fc + sw - pw % sw) % sw;
                        if x0 >= width {
                            continue;
                        }
                        let at = grid_row + fc * grid_len + (x0 + pw) / sw;
                        let run = (width - x0).div_ceil(sw);
                        for (v, x) in cells[at..at + run]
                            .iter_mut()
                            .zip(row[x0..].iter().step_by(sw))
                        {
                            *v = shifted(x);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use core::arch::x86_64::*;

    use super::GridShape;
    use crate::ConvParams;

    /// How 32 input bytes become 32 cells, and stores them.
    pub(super) trait Cells: Copy {
        type Cell;
        /// Stores `bytes`' first `count` values as cells at `to`.
        ///
        /// # Safety
        /// AVX-512 F + BW; `to` has room for `count` ≤ 32 cells.
        unsafe fn store(self, bytes: __m256i, to: &mut [Self::Cell], count: usize);
    }

    /// `x + 128` as u8.
    #[derive(Clone, Copy)]
    pub(super) struct Flip;

    /// `x - zero` as int16 (exact: both fit int8 widened).
    #[derive(Clone, Copy)]
    pub(super) struct Shift(pub i16);

    impl Cells for Flip {
        type Cell = u8;
        #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
        unsafe fn store(self, bytes: __m256i, to: &mut [u8], count: usize) {
            let v = _mm256_xor_si256(bytes, _mm256_set1_epi8(i8::MIN));
            let mask = if count >= 32 {
                u32::MAX
            } else {
                (1u32 << count) - 1
            };
            // SAFETY (caller): the mask keeps the store to `to`'s `count` bytes.
            _mm256_mask_storeu_epi8(to.as_mut_ptr() as *mut i8, mask, v);
        }
    }

    impl Cells for Shift {
        type Cell = i16;
        #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
        unsafe fn store(self, bytes: __m256i, to: &mut [i16], count: usize) {
            let v = _mm512_sub_epi16(_mm512_cvtepi8_epi16(bytes), _mm512_set1_epi16(self.0));
            let mask = if count >= 32 {
                u32::MAX
            } else {
                (1u32 << count) - 1
            };
            // SAFETY (caller): the mask keeps the store to `to`'s `count` cells.
            _mm512_mask_storeu_epi16(to.as_mut_ptr(), mask, v);
        }
    }

    /// How 16 input bytes become 16 cells on AVX2.
    pub(super) trait Cells16: Copy {
        type Cell: Copy;
        /// One input's cell (where a run has no room for a vector store).
        fn one(self, x: i8) -> Self::Cell;
        /// Stores the first `count` (≤ 16) cells of `bytes` at `to`, leaving the cells after
        /// them as they were (read and blended back).
        ///
        /// # Safety
        /// AVX2; `to` has room for 16 cells.
        unsafe fn store(self, bytes: __m128i, to: *mut Self::Cell, count: usize);
    }

    impl Cells16 for Flip {
        type Cell = u8;
        fn one(self, x: i8) -> u8 {
            x as u8 ^ 0x80
        }
        #[target_feature(enable = "avx2")]
        #[inline]
        unsafe fn store(self, bytes: __m128i, to: *mut u8, count: usize) {
            let mut v = _mm_xor_si128(bytes, _mm_set1_epi8(i8::MIN));
            if count < 16 {
                let iota = _mm_setr_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
                let keep = _mm_cmpgt_epi8(_mm_set1_epi8(count as i8), iota);
                v = _mm_blendv_epi8(_mm_loadu_si128(to as *const __m128i), v, keep);
            }
            _mm_storeu_si128(to as *mut __m128i, v);
        }
    }

    impl Cells16 for Shift {
        type Cell = i16;
        fn one(self, x: i8) -> i16 {
            x as i16 - self.0
        }
        #[target_feature(enable = "avx2")]
        #[inline]
        unsafe fn store(self, bytes: __m128i, to: *mut i16, count: usize) {
            let mut v = _mm256_sub_epi16(_mm256_cvtepi8_epi16(bytes), _mm256_set1_epi16(self.0));
            if count < 16 {
                let iota = _mm256_setr_epi16(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
                let keep = _mm256_cmpgt_epi16(_mm256_set1_epi16(count as i16), iota);
                v = _mm256_blendv_epi8(_mm256_loadu_si256(to as *const __m256i), v, keep);
            }
            _mm256_storeu_si256(to as *mut __m256i, v);
        }
    }

    /// Writes `count` cells from `at` of `cells`: input columns `first`, `first + step`, …
    /// of `row`, given as the vector `bytes`. A vector store where 16 cells fit from `at`
    /// (the grids' slack row leaves room after all but the last few rows), one cell at a time
    /// otherwise.
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn put<C: Cells16>(
        cell: C,
        bytes: __m128i,
        cells: &mut [C::Cell],
        at: usize,
        count: usize,
        row: &[i8],
        (first, step): (usize, usize),
    ) {
        if at + 16 <= cells.len() {
            // SAFETY: 16 cells from `at` lie inside `cells`.
            cell.store(bytes, cells.as_mut_ptr().add(at), count);
        } else {
            let xs = row[first..].iter().step_by(step);
            for (to, x) in cells[at..at + count].iter_mut().zip(xs) {
                *to = cell.one(*x);
            }
        }
    }

    /// [`GridShape::fill`] for a column stride of 2 on AVX2, where LLVM's loop moved one cell
    /// at a time (two fifths of MobileNetV2's 96 × 112 × 112 downsampling depthwise layer). A
    /// step takes 32 input columns: one byte shuffle and one quadword permutation put the even
    /// columns in the low 16 bytes and the odd ones in the high 16, each 16 consecutive cells
    /// of one phase (as [`fill_stride2_avx512`] argues). A row's last, partial step blends its
    /// cells into what the grids held, so the padding after the row is kept; it loads through
    /// a zeroed stack copy only where the plane ends within the step. (Column stride 1 stays
    /// with LLVM's loop: a version of this for it measured no faster.)
    ///
    /// # Safety
    /// The CPU must support AVX2; `shape` is `p`'s, with a column stride of 2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn fill_stride2_avx2<C: Cells16>(
        shape: &GridShape,
        p: &ConvParams,
        plane: &[i8],
        cells: &mut [C::Cell],
        cell: C,
    ) {
        assert_eq!(shape.strides[1], 2);
        let pw = p.pad[2] as usize;
        let (width, grid_len) = (p.input.w as usize, shape.grid_len());
        let (full, rest) = (width / 32, width % 32);
        // Per 16-byte lane: the eight even bytes, then the eight odd ones.
        let split = _mm256_broadcastsi128_si256(_mm_setr_epi8(
            0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15,
        ));
        let halves = |v: __m256i| {
            let v = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_shuffle_epi8(v, split));
            [_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v)]
        };
        // Input column `x` is padded column `x + pw`: phase `(x + pw) % 2`, cell `(x + pw) / 2`.
        let (even_at, odd_at) = (
            (pw % 2) * grid_len + pw / 2,
            (1 - pw % 2) * grid_len + pw.div_ceil(2),
        );
        for (ih, (row, grid_row)) in shape.rows(p, plane).enumerate() {
            let src = plane.as_ptr().add(ih * width);
            let (even, odd) = (grid_row + even_at, grid_row + odd_at);
            // Both phases' runs of the row lie inside the grids.
            assert!(even.max(odd) + width.div_ceil(2) <= cells.len());
            let to = cells.as_mut_ptr();
            for j in 0..full {
                // SAFETY: the step's 32 input columns lie inside the row, and its 16 cells per
                // phase inside that phase's run (asserted).
                let [e, o] = halves(_mm256_loadu_si256(src.add(32 * j) as *const __m256i));
                cell.store(e, to.add(even + 16 * j), 16);
                cell.store(o, to.add(odd + 16 * j), 16);
            }
            if rest == 0 {
                continue;
            }
            let k = 32 * full;
            let mut staged = [0i8; 32];
            let from = if ih * width + k + 32 <= plane.len() {
                src.add(k)
            } else {
                staged[..rest].copy_from_slice(&row[k..]);
                staged.as_ptr()
            };
            // SAFETY: `from` has 32 readable bytes (the plane's, or the stack copy's).
            let [e, o] = halves(_mm256_loadu_si256(from as *const __m256i));
            put(cell, e, cells, even + k / 2, rest.div_ceil(2), row, (k, 2));
            if rest > 1 {
                put(cell, o, cells, odd + k / 2, rest / 2, row, (k + 1, 2));
            }
        }
    }

    /// [`GridShape::fill`] for a column stride of 2: input column `x` goes to padded column
    /// `x + pw`, phase `(x + pw) % 2`, cell `(x + pw) / 2`. In a step of 64 columns, the even
    /// ones (the low bytes of 16-bit lanes, narrowed by `vpmovwb`) and the odd ones (the high
    /// bytes) are 32 consecutive cells each.
    ///
    /// # Safety
    /// The CPU must support AVX-512 F and BW; `shape` is `p`'s, with a column stride of 2.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    pub(super) unsafe fn fill_stride2_avx512<C: Cells>(
        shape: &GridShape,
        p: &ConvParams,
        plane: &[i8],
        cells: &mut [C::Cell],
        cell: C,
    ) {
        for_each_step::<2>(shape, p, plane, |v, rest, starts| {
            let halves = [
                _mm512_cvtepi16_epi8(v),
                _mm512_cvtepi16_epi8(_mm512_srli_epi16::<8>(v)),
            ];
            for (g, bytes) in halves.into_iter().enumerate() {
                let count = rest.saturating_sub(g).div_ceil(2).min(32);
                if count > 0 {
                    cell.store(bytes, &mut cells[starts[g]..starts[g] + count], count);
                }
            }
        })
    }

    /// Calls `step(v, rest, starts)` for each 64-column step of each input row of `plane`, for
    /// a column stride of `S`: `v` holds the step's columns (zeros past the row), `rest` is how
    /// many columns the row has from the step's first, and `starts[g]` is the cell of the
    /// step's first column ≡ g (mod S): input column `x` is padded column `x + pw`, phase
    /// `(x + pw) % S`, cell `(x + pw) / S`, so a step's columns ≡ g are `64 / S` consecutive
    /// cells of one phase.
    ///
    /// # Safety
    /// The CPU must support AVX-512 F and BW; `shape` is `p`'s, with a column stride of `S`.
    #[target_feature(enable = "avx512f,avx512bw")]
    #[inline]
    unsafe fn for_each_step<const S: usize>(
        shape: &GridShape,
        p: &ConvParams,
        plane: &[i8],
        mut step: impl FnMut(__m512i, usize, [usize; S]),
    ) {
        assert_eq!(shape.strides[1], S);
        let pw = p.pad[2] as usize;
        let (width, grid_len) = (p.input.w as usize, shape.grid_len());
        for (row, grid_row) in shape.rows(p, plane) {
            for k in 0..width.div_ceil(64) {
                let rest = width - 64 * k;
                let mask = if rest >= 64 {
                    u64::MAX
                } else {
                    (1u64 << rest) - 1
                };
                // SAFETY: the mask keeps the load to the row's columns 64·k..width.
                let v = _mm512_maskz_loadu_epi8(mask, row.as_ptr().add(64 * k));
                let starts = core::array::from_fn(|g| {
                    grid_row + ((g + pw) % S) * grid_len + (g + pw) / S + (64 / S) * k
                });
                step(v, rest, starts);
            }
        }
    }

    /// [`GridShape::fill_flipped`] for a column stride of 4. Input column `x` goes to padded
    /// column `x + pw`: phase `(x + pw) % 4`, cell `(x + pw) / 4`. Within a step of 64 columns
    /// (a multiple of 4 from the row start), the columns with `x % 4 = g` are sixteen
    /// consecutive cells of one phase, starting at cell `16·step + (g + pw) / 4`.
    ///
    /// # Safety
    /// The CPU must support AVX-512 F and BW; `shape` is `p`'s, with a column stride of 4.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub(super) unsafe fn fill_stride4_avx512(
        shape: &GridShape,
        p: &ConvParams,
        plane: &[i8],
        cells: &mut [u8],
    ) {
        // Each 16-byte lane sorted by column mod 4 (four bytes each), then the lanes' groups
        // gathered: 128-bit lane g of the result holds the sixteen columns ≡ g.
        let by_phase = _mm512_broadcast_i32x4(_mm_setr_epi8(
            0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15,
        ));
        let gather = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
        let flip = _mm512_set1_epi8(i8::MIN);
        for_each_step::<4>(shape, p, plane, |v, rest, starts| {
            let v = _mm512_xor_si512(v, flip);
            let v = _mm512_permutexvar_epi32(gather, _mm512_shuffle_epi8(v, by_phase));
            let groups: [__m128i; 4] = [
                _mm512_extracti32x4_epi32::<0>(v),
                _mm512_extracti32x4_epi32::<1>(v),
                _mm512_extracti32x4_epi32::<2>(v),
                _mm512_extracti32x4_epi32::<3>(v),
            ];
            for (g, group) in groups.into_iter().enumerate() {
                // Columns g, g + 4, … of the step, below the row's width.
                let count = rest.saturating_sub(g).div_ceil(4).min(16);
                if count > 0 {
                    let to = &mut cells[starts[g]..starts[g] + count];
                    // SAFETY: the mask keeps the store to `to`'s `count` bytes.
                    let mask = ((1u32 << count) - 1) as u16;
                    _mm_mask_storeu_epi8(to.as_mut_ptr() as *mut i8, mask, group);
                }
            }
        })
    }
}
