//! Unfolding a 2-D convolution's input into GEMM panels (`gemm::PackedInput`): tap `k` =
//! (input channel, kernel row, kernel column) of an output position is `x - z_in`, or 0 where
//! the tap falls in padding.
//!
//! Pointwise layers (1×1, stride 1, no padding) read their panels straight from the int8 input.
//! Every other layer first writes its input into stride-phase grids ([`crate::grids`]) and
//! lays its outputs out wide, so that each tap of a panel's 16 positions is one contiguous run
//! of the grids: a panel is tap pairs interleaved, with no bounds or padding tests.

use alloc::vec;
use alloc::vec::Vec;

use rayon::prelude::*;

use crate::gemm::{PackedInput, NR};
use crate::grids::GridShape;
use crate::quads::{QuadInput, COLS};
use crate::ConvParams;

/// A 1 × 1 layer with stride 1 and no padding: output position = input position, so its
/// panels are read straight from the input.
fn pointwise(p: &ConvParams) -> bool {
    p.kernel == [1, 1, 1] && p.stride[1..] == [1, 1] && p.pad[1..] == [0, 0]
}

/// One group's unfolded input, with the layout of its GEMM positions.
pub struct Unfolded {
    /// The panels.
    pub panels: PackedInput,
    /// Length of an output row among the GEMM positions: the output width for pointwise
    /// layers, the grids' wide row otherwise (its columns past the output width are discarded).
    pub row_len: usize,
}

/// Unfolds group `group` of `input` for `p`, on the rayon pool with `parallel`.
pub fn unfold(p: &ConvParams, input: &[i8], zero: i32, group: usize, parallel: bool) -> Unfolded {
    let (i, o) = (p.input, p.output);
    let plane = (i.h * i.w) as usize;
    let channels = p.group_in() as usize;
    let taps = p.weights_per_output() as usize;
    let group_input = &input[group * channels * plane..(group + 1) * channels * plane];
    if pointwise(p) {
        // Output position = input position: a panel is channel pairs interleaved.
        let panels = PackedInput::build(taps, plane, parallel, |first, panel| {
            pointwise_panel(group_input, plane, first, zero, panel)
        });
        return Unfolded {
            panels,
            row_len: o.w as usize,
        };
    }
    let fill = |shape: &GridShape, plane: &[i8], grid: &mut [i16]| {
        shape.fill_shifted(p, plane, grid, zero)
    };
    let grids = Grids::fill(p, group_input, 0, fill, parallel);
    let panels = PackedInput::build(taps, grids.wide_len, parallel, |first, panel| {
        wide_panel(&grids.cells, &grids.offsets, first, panel)
    });
    Unfolded {
        panels,
        row_len: grids.row_len,
    }
}

/// What a group's u8 quad panels are made from: the int8 input itself (pointwise layers) or
/// u8 stride-phase grids. Panels can be built for any run of positions, so that a task can
/// build the panels it multiplies (they stay in its core's cache).
pub struct QuadPlan<'a> {
    source: QuadSource<'a>,
    taps: usize,
    /// GEMM positions of the whole group.
    pub positions: usize,
    /// As [`Unfolded::row_len`].
    pub row_len: usize,
}

enum QuadSource<'a> {
    Pointwise {
        input: &'a [i8],
        plane: usize,
    },
    /// Grids, read for compact positions (`oh · out_w + ow`): a panel's runs are cut where
    /// its positions cross output rows.
    Grids {
        grids: Grids<u8>,
        out_w: usize,
    },
}

impl<'a> QuadPlan<'a> {
    /// Plans group `group` of `input` for `p` (filling its grids, on the rayon pool with
    /// `parallel`); `zero` must fit int8.
    pub fn new(p: &ConvParams, input: &'a [i8], zero: i32, group: usize, parallel: bool) -> Self {
        let (i, o) = (p.input, p.output);
        let plane = (i.h * i.w) as usize;
        let channels = p.group_in() as usize;
        let taps = p.weights_per_output() as usize;
        let group_input = &input[group * channels * plane..(group + 1) * channels * plane];
        if pointwise(p) {
            return QuadPlan {
                source: QuadSource::Pointwise {
                    input: group_input,
                    plane,
                },
                taps,
                positions: plane,
                row_len: o.w as usize,
            };
        }
        let padding = (zero + 128) as u8;
        let fill =
            |shape: &GridShape, plane: &[i8], grid: &mut [u8]| shape.fill_flipped(p, plane, grid);
        let grids = Grids::fill(p, group_input, padding, fill, parallel);
        let out_w = o.w as usize;
        QuadPlan {
            positions: o.h as usize * out_w,
            row_len: out_w,
            source: QuadSource::Grids { grids, out_w },
            taps,
        }
    }

    /// The panels of positions `start..start + count` (`start` a multiple of the panel width).
    pub fn panels(&self, start: usize, count: usize, parallel: bool) -> QuadInput {
        QuadInput::build(self.taps, count, parallel, |first, panel| {
            match &self.source {
                QuadSource::Pointwise { input, plane } => {
                    pointwise_quads(input, *plane, start + first, panel)
                }
                QuadSource::Grids { grids, out_w } => {
                    let layout = Compact {
                        out_w: *out_w,
                        wide_row: grids.row_len,
                        positions: self.positions,
                    };
                    compact_quads(grids, layout, start + first, panel)
                }
            }
        })
    }
}

/// A group's input in stride-phase grids, and where each tap reads them.
struct Grids<T> {
    cells: Vec<T>,
    offsets: Vec<usize>,
    /// The largest of `offsets`: how far past a panel's first position its runs reach.
    furthest: usize,
    wide_len: usize,
    row_len: usize,
}

impl<T: Copy + Send + Sync> Grids<T> {
    /// Grids holding what `fill_channel` writes for each input channel and `padding` elsewhere.
    fn fill(
        p: &ConvParams,
        group_input: &[i8],
        padding: T,
        fill_channel: impl Fn(&GridShape, &[i8], &mut [T]) + Sync,
        parallel: bool,
    ) -> Self {
        let plane = (p.input.h * p.input.w) as usize;
        let channels = p.group_in() as usize;
        let shape = GridShape::of(p);
        let channel_len = shape.channel_len();
        // Slack past the last channel: the wide reads of the last panel run up to NR cells over.
        let mut cells = vec![padding; channels * channel_len + NR];
        let fill = |(ci, grid): (usize, &mut [T])| {
            fill_channel(&shape, &group_input[ci * plane..(ci + 1) * plane], grid)
        };
        if parallel {
            cells
                .par_chunks_mut(channel_len)
                .take(channels)
                .enumerate()
                .for_each(fill);
        } else {
            cells
                .chunks_mut(channel_len)
                .take(channels)
                .enumerate()
                .for_each(fill);
        }
        let [_, kh, kw] = p.kernel.map(|k| k as usize);
        let offsets: Vec<usize> = (0..channels)
            .flat_map(|ci| {
                (0..kh)
                    .flat_map(move |b| (0..kw).map(move |e| ci * channel_len + shape.tap(p, b, e)))
            })
            .collect();
        Grids {
            cells,
            furthest: offsets.iter().copied().max().unwrap_or(0),
            offsets,
            wide_len: shape.wide_len(p),
            row_len: shape.phase_len,
        }
    }
}

/// The quad panel of positions `first..` of a pointwise layer: tap quad `m` holds channels
/// `4m..4m + 4` side by side, each as `x + 128`.
fn pointwise_quads(channels: &[i8], plane: usize, first: usize, panel: &mut [u8]) {
    let width = COLS.min(plane - first);
    for (four, out) in channels
        .chunks(4 * plane)
        .zip(panel.chunks_exact_mut(4 * COLS))
    {
        let out: &mut [u8; 4 * COLS] = out.try_into().expect("one quad of the panel");
        if width == COLS && four.len() == 4 * plane {
            let run = |t: usize| -> &[u8; COLS] {
                let at = t * plane + first;
                crate::as_u8(&four[at..at + COLS])
                    .try_into()
                    .expect("COLS inputs")
            };
            interleave4([run(0), run(1), run(2), run(3)], 0x80, out);
            continue;
        }
        for (t, channel) in four.chunks(plane).enumerate() {
            for (j, x) in channel[first..first + width].iter().enumerate() {
                out[4 * j + t] = *x as u8 ^ 0x80;
            }
        }
    }
}

/// How compact GEMM positions (`oh · out_w + ow`, every one an output) sit in the grids' wide
/// layout (`oh · wide_row + ow`).
#[derive(Clone, Copy)]
struct Compact {
    out_w: usize,
    wide_row: usize,
    positions: usize,
}

/// Most runs a panel's positions are cut into before [`compact_quads`] reads it position by
/// position: rows of at least five outputs.
const MOST_RUNS: usize = 4;

/// The quad panel of compact positions `first..first + COLS` from the u8 grids. The wide
/// layout puts each output row's `wide_row - out_w` unused columns between rows, which a GEMM
/// over wide positions multiplied and threw away: 23% of a 13 × 13 layer's panels, 15% of a
/// 27 × 27 one's with a 5 × 5 window. Here a panel within one output row is one run per tap, as
/// before; one that crosses rows is up to [`MOST_RUNS`] runs per tap, put side by side in a
/// vector (positions past the last hold whatever the first run's load brought).
fn compact_quads(grids: &Grids<u8>, layout: Compact, first: usize, panel: &mut [u8]) {
    let Compact {
        out_w,
        wide_row,
        positions,
    } = layout;
    let (oh, ow) = (first / out_w, first % out_w);
    let wide = oh * wide_row + ow;
    if ow + COLS <= out_w || out_w == 0 {
        return wide_quads(&grids.cells, (&grids.offsets, grids.furthest), wide, panel);
    }
    // The runs: (first wide cell, first lane, lanes), one per output row the panel touches.
    let mut runs = [(0usize, 0usize, 0usize); MOST_RUNS];
    let (mut count, mut lane, mut p) = (0, 0, first);
    while lane < COLS && p < positions {
        let (oh, ow) = (p / out_w, p % out_w);
        let len = (out_w - ow).min(COLS - lane).min(positions - p);
        if count == MOST_RUNS {
            return position_quads(grids, layout, first, panel);
        }
        runs[count] = (oh * wide_row + ow, lane, len);
        (count, lane, p) = (count + 1, lane + len, p + len);
    }
    let runs = &runs[..count];
    // A vector load for run `r` of tap `k` starts at `runs[r].0 - runs[r].1 + k`, so that the
    // run lands on its lanes: never before the grids (a later run's first lane is at most its
    // row's first wide cell), and inside them when the furthest tap's 16 bytes are.
    let reach = runs.iter().map(|r| r.0 - r.1).max().unwrap_or(0) + grids.furthest + COLS;
    assert!(reach <= grids.cells.len(), "runs inside the grids");
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SSE2 is part of x86-64; every load lies inside `cells` (asserted above), and a
    // run's first lane is at most its first wide cell.
    unsafe {
        x86::gather_quads(&grids.cells, &grids.offsets, runs, panel)
    };
    #[cfg(not(target_arch = "x86_64"))]
    for (taps, out) in grids
        .offsets
        .chunks(4)
        .zip(panel.chunks_exact_mut(4 * COLS))
    {
        let gather = |k: usize| {
            let mut v = [0u8; COLS];
            for &(at, lane, len) in runs {
                v[lane..lane + len].copy_from_slice(&grids.cells[at + k..at + k + len]);
            }
            v
        };
        let out: &mut [u8; 4 * COLS] = out.try_into().expect("one quad of the panel");
        let tap = |t: usize| gather(*taps.get(t).unwrap_or(&taps[0]));
        let (a, b, c, d) = (tap(0), tap(1), tap(2), tap(3));
        interleave4([&a, &b, &c, &d], 0, out);
    }
}

/// [`compact_quads`] for rows too short for its runs: each position's taps read one by one.
fn position_quads(grids: &Grids<u8>, layout: Compact, first: usize, panel: &mut [u8]) {
    let last = layout.positions.min(first + COLS);
    for (j, p) in (first..last).enumerate() {
        let wide = (p / layout.out_w) * layout.wide_row + p % layout.out_w;
        for (k, offset) in grids.offsets.iter().enumerate() {
            panel[QuadInput::slot(k, j)] = grids.cells[wide + offset];
        }
    }
    // A part last quad's slots meet zero weights; they must only hold initialized bytes, which
    // the panel's do.
}

/// The quad panel of wide positions `first..first + COLS` from the u8 grids: tap `k` is the
/// run at `first + offsets[k]`, `furthest` the largest offset.
fn wide_quads(
    cells: &[u8],
    (offsets, furthest): (&[usize], usize),
    first: usize,
    panel: &mut [u8],
) {
    // One bounds check for the panel instead of one per run: every run lies inside `cells`.
    debug_assert_eq!(offsets.iter().max().copied().unwrap_or(0), furthest);
    assert!(
        first + furthest + COLS <= cells.len(),
        "runs inside the grids"
    );
    // SAFETY: `first + k + COLS ≤ cells.len()` for every offset `k` (asserted above), and a
    // `[u8; COLS]` has the alignment of u8.
    let run = |k: usize| unsafe { &*(cells.as_ptr().add(first + k) as *const [u8; COLS]) };
    let mut quads = offsets.chunks_exact(4);
    let mut outs = panel.chunks_exact_mut(4 * COLS);
    for (taps, out) in quads.by_ref().zip(outs.by_ref()) {
        let out: &mut [u8; 4 * COLS] = out.try_into().expect("one quad of the panel");
        interleave4(
            [run(taps[0]), run(taps[1]), run(taps[2]), run(taps[3])],
            0,
            out,
        );
    }
    let rest = quads.remainder();
    if let (Some(first_tap), Some(out)) = (rest.first(), outs.next()) {
        // The last part quad repeats its first tap; those slots meet zero weights.
        let out: &mut [u8; 4 * COLS] = out.try_into().expect("one quad of the panel");
        let tap = |t: usize| run(*rest.get(t).unwrap_or(first_tap));
        interleave4([tap(0), tap(1), tap(2), tap(3)], 0, out);
    }
}

/// `out[4j + t] = runs[t][j] ^ flip`: four runs of [`COLS`] bytes side by side, with SSE2
/// byte and word unpacks on x86-64.
#[inline]
fn interleave4(runs: [&[u8; COLS]; 4], flip: u8, out: &mut [u8; 4 * COLS]) {
    #[cfg(target_arch = "x86_64")]
    {
        use core::arch::x86_64::*;
        // SAFETY: SSE2 is part of x86-64; every load and store is of 16 bytes inside its array.
        unsafe {
            let f = _mm_set1_epi8(flip as i8);
            let load =
                |r: &[u8; COLS]| _mm_xor_si128(_mm_loadu_si128(r.as_ptr() as *const __m128i), f);
            let [a, b, c, d] = runs.map(load);
            let (ab_lo, ab_hi) = (_mm_unpacklo_epi8(a, b), _mm_unpackhi_epi8(a, b));
            let (cd_lo, cd_hi) = (_mm_unpacklo_epi8(c, d), _mm_unpackhi_epi8(c, d));
            let to = out.as_mut_ptr() as *mut __m128i;
            _mm_storeu_si128(to, _mm_unpacklo_epi16(ab_lo, cd_lo));
            _mm_storeu_si128(to.add(1), _mm_unpackhi_epi16(ab_lo, cd_lo));
            _mm_storeu_si128(to.add(2), _mm_unpacklo_epi16(ab_hi, cd_hi));
            _mm_storeu_si128(to.add(3), _mm_unpackhi_epi16(ab_hi, cd_hi));
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    for (j, four) in out.chunks_exact_mut(4).enumerate() {
        for (t, v) in four.iter_mut().enumerate() {
            *v = runs[t][j] ^ flip;
        }
    }
}

/// The panel of positions `first..` of a pointwise layer over `channels` (plane after plane):
/// tap pair `m` holds channels `2m` and `2m + 1` side by side.
fn pointwise_panel(channels: &[i8], plane: usize, first: usize, zero: i32, panel: &mut [i16]) {
    #[cfg(target_arch = "x86_64")]
    if crate::tile::avx2() {
        // SAFETY: the CPU supports AVX2, checked just above.
        return unsafe { pointwise_panel_avx2(channels, plane, first, zero, panel) };
    }
    pointwise_panel_body(channels, plane, first, zero, panel)
}

/// [`pointwise_panel_body`] compiled for AVX2.
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn pointwise_panel_avx2(
    channels: &[i8],
    plane: usize,
    first: usize,
    zero: i32,
    panel: &mut [i16],
) {
    pointwise_panel_body(channels, plane, first, zero, panel)
}

#[inline(always)]
fn pointwise_panel_body(channels: &[i8], plane: usize, first: usize, zero: i32, panel: &mut [i16]) {
    let width = NR.min(plane - first);
    let shifted = |x: &i8| (*x as i32 - zero) as i16;
    let mut pairs = channels
        .chunks(2 * plane)
        .zip(panel.chunks_exact_mut(2 * NR));
    if width == NR {
        // Full panels: fixed-length loops the compiler turns into widen-and-interleave shuffles.
        for (two, out) in &mut pairs {
            let a: &[i8; NR] = two[first..first + NR].try_into().expect("NR columns");
            if two.len() == 2 * plane {
                let b: &[i8; NR] = two[plane + first..plane + first + NR]
                    .try_into()
                    .expect("NR columns");
                for j in 0..NR {
                    out[2 * j] = shifted(&a[j]);
                    out[2 * j + 1] = shifted(&b[j]);
                }
            } else {
                for j in 0..NR {
                    out[2 * j] = shifted(&a[j]);
                }
            }
        }
        return;
    }
    for (two, out) in pairs {
        for (c, channel) in two.chunks(plane).enumerate() {
            for (j, x) in channel[first..first + width].iter().enumerate() {
                out[2 * j + c] = shifted(x);
            }
        }
    }
}

/// The panel of wide positions `first..first + NR` from the grids `cells`: tap `k` of them is
/// the run at `first + offsets[k]`.
fn wide_panel(cells: &[i16], offsets: &[usize], first: usize, panel: &mut [i16]) {
    #[cfg(target_arch = "x86_64")]
    if crate::tile::avx2() {
        // SAFETY: the CPU supports AVX2, checked just above.
        return unsafe { wide_panel_avx2(cells, offsets, first, panel) };
    }
    wide_panel_body(cells, offsets, first, panel)
}

/// [`wide_panel_body`] compiled for AVX2.
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn wide_panel_avx2(cells: &[i16], offsets: &[usize], first: usize, panel: &mut [i16]) {
    wide_panel_body(cells, offsets, first, panel)
}

#[inline(always)]
fn wide_panel_body(cells: &[i16], offsets: &[usize], first: usize, panel: &mut [i16]) {
    let run = |k: usize| -> &[i16; NR] {
        let at = first + offsets[k];
        cells[at..at + NR].try_into().expect("NR cells")
    };
    for (m, out) in panel.chunks_exact_mut(2 * NR).enumerate() {
        let a = run(2 * m);
        if 2 * m + 1 < offsets.len() {
            let b = run(2 * m + 1);
            for j in 0..NR {
                out[2 * j] = a[j];
                out[2 * j + 1] = b[j];
            }
        } else {
            for j in 0..NR {
                out[2 * j] = a[j];
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use core::arch::x86_64::*;

    use crate::quads::COLS;

    /// [`super::compact_quads`]' panel for runs that cross output rows: per tap, each run's
    /// 16-byte load placed so the run lands on its lanes, merged under the run's lane mask,
    /// then four taps interleaved as [`super::interleave4`] does. A part last quad repeats its
    /// first tap (those slots meet zero weights).
    ///
    /// # Safety
    /// Every `runs[r].0 - runs[r].1 + offset + 16` for every offset must be at most
    /// `cells.len()`, and `runs[r].1 ≤ runs[r].0`.
    #[inline]
    pub(super) unsafe fn gather_quads(
        cells: &[u8],
        offsets: &[usize],
        runs: &[(usize, usize, usize)],
        panel: &mut [u8],
    ) {
        let lanes = _mm_setr_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        // Per run: where its loads start (less the tap offset) and its lanes as a mask.
        let mut starts = [0usize; super::MOST_RUNS];
        let mut masks = [_mm_setzero_si128(); super::MOST_RUNS];
        for (r, &(at, lane, len)) in runs.iter().enumerate() {
            starts[r] = at - lane;
            let from = _mm_cmpgt_epi8(lanes, _mm_set1_epi8(lane as i8 - 1));
            let to = _mm_cmplt_epi8(lanes, _mm_set1_epi8((lane + len) as i8));
            masks[r] = _mm_and_si128(from, to);
        }
        let base = cells.as_ptr();
        let tap = |k: usize| {
            let mut v = _mm_loadu_si128(base.add(starts[0] + k) as *const __m128i);
            for r in 1..runs.len() {
                let w = _mm_loadu_si128(base.add(starts[r] + k) as *const __m128i);
                v = _mm_or_si128(_mm_and_si128(masks[r], w), _mm_andnot_si128(masks[r], v));
            }
            v
        };
        for (taps, out) in offsets.chunks(4).zip(panel.chunks_exact_mut(4 * COLS)) {
            let at = |t: usize| *taps.get(t).unwrap_or(&taps[0]);
            let (a, b, c, d) = (tap(at(0)), tap(at(1)), tap(at(2)), tap(at(3)));
            // The unpacks of `interleave4`, written out again: a helper taking the four
            // vectors cost LeNet-5's small panels 15%.
            let (ab_lo, ab_hi) = (_mm_unpacklo_epi8(a, b), _mm_unpackhi_epi8(a, b));
            let (cd_lo, cd_hi) = (_mm_unpacklo_epi8(c, d), _mm_unpackhi_epi8(c, d));
            let to = out.as_mut_ptr() as *mut __m128i;
            _mm_storeu_si128(to, _mm_unpacklo_epi16(ab_lo, cd_lo));
            _mm_storeu_si128(to.add(1), _mm_unpackhi_epi16(ab_lo, cd_lo));
            _mm_storeu_si128(to.add(2), _mm_unpacklo_epi16(ab_hi, cd_hi));
            _mm_storeu_si128(to.add(3), _mm_unpackhi_epi16(ab_hi, cd_hi));
        }
    }
}
