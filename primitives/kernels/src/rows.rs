//! Row-shift kernels for the native backend: depthwise convolution and pooling, where each
//! window tap is a whole (possibly strided) input row combined into a row of outputs. Unfolding
//! would cost as much as the work itself for these few-tap layers; this form vectorises.
//!
//! Both follow the reference's arithmetic exactly: wrapping int32 sums for the convolution, and
//! for pooling the maximum over the valid cells (`-128` when none) or their rounded mean.

use alloc::vec;
use alloc::vec::Vec;
use core::cell::Cell;

use rayon::prelude::*;

use crate::arith::div_round_half_up;
use crate::grids::GridShape;
use crate::requant::requantize_row;
use crate::{ChannelQuant, ConvParams, PoolKind, PoolParams};

/// The output columns `lo..hi` whose input column `ow · stride + shift` lies in `0..width`.
fn valid_columns(shift: i64, stride: u32, width: u32, outputs: u32) -> (usize, usize) {
    let s = stride as i64;
    let lo = (-shift).max(0).div_euclid(s) + ((-shift).max(0) % s != 0) as i64;
    let hi = (width as i64 - shift + s - 1)
        .div_euclid(s)
        .clamp(0, outputs as i64);
    (lo.min(hi) as usize, hi as usize)
}

/// The input values tap `shift` adds to output columns `lo..`, every `stride`-th one.
fn strided(row: &[i8], lo: usize, stride: u32, shift: i64) -> impl Iterator<Item = &i8> {
    let start = (lo as i64 * stride as i64 + shift) as usize;
    row[start..].iter().step_by(stride as usize)
}

/// A depthwise convolution (`groups` = input channels = output channels), `channels_per_task`
/// channels per rayon task (all on the calling thread when `parallel` is off).
pub fn depthwise(
    p: &ConvParams,
    input: &[i8],
    weights: &[i8],
    q: &ChannelQuant,
    out: &mut [i8],
    parallel: bool,
) {
    let plane_out = (p.output.h * p.output.w) as usize;
    let channels = p.output.c as usize;
    let per_task = if parallel {
        channels.div_ceil(4 * rayon::current_num_threads()).max(1)
    } else {
        channels
    };
    let run = |(t, chunk): (usize, &mut [i8])| {
        let mut scratch = DepthwiseScratch::new(p);
        for (i, plane) in chunk.chunks_mut(plane_out).enumerate() {
            depthwise_channel(p, input, weights, q, t * per_task + i, &mut scratch, plane);
        }
    };
    if parallel {
        out.par_chunks_mut(per_task * plane_out)
            .enumerate()
            .for_each(run);
    } else {
        out.chunks_mut(per_task * plane_out)
            .enumerate()
            .for_each(run);
    }
}

/// Per-task buffers of [`depthwise`], reused across its channels: one channel's stride-phase
/// grids (see [`crate::grids`]) and the int32 sums of its wide output plane, each with room for
/// a last whole run of [`CHUNK`] sums (its extra sums read cells past the plane's and are
/// dropped); and the taps' offsets in the grids, the same for every channel. Each tap is then
/// one run over the whole plane rather than a row. Before, a plane's last partial run took a
/// loop of its own per tap, and each channel worked out the offsets again: MobileNetV2's
/// 960 × 7 × 7 layer (63 wide sums a channel) went 0.24 → 0.14 ms on one thread.
struct DepthwiseScratch {
    shape: GridShape,
    cells: Vec<i16>,
    sums: Vec<i32>,
    offsets: Vec<usize>,
}

impl DepthwiseScratch {
    fn new(p: &ConvParams) -> Self {
        let shape = GridShape::of(p);
        let [_, kh, kw] = p.kernel.map(|k| k as usize);
        Self {
            shape,
            cells: vec![0; shape.channel_len() + CHUNK],
            sums: vec![0; shape.wide_len(p).next_multiple_of(CHUNK)],
            offsets: (0..kh * kw).map(|t| shape.tap(p, t / kw, t % kw)).collect(),
        }
    }
}

/// Outputs whose sums [`depthwise_chunks`] keeps in registers across a window's taps.
const CHUNK: usize = 32;

/// One channel of a depthwise convolution into its output `plane`.
fn depthwise_channel(
    p: &ConvParams,
    input: &[i8],
    weights: &[i8],
    q: &ChannelQuant,
    c: usize,
    scratch: &mut DepthwiseScratch,
    plane: &mut [i8],
) {
    #[cfg(target_arch = "x86_64")]
    if crate::tile::active().avx512() {
        // SAFETY: that tile is active only where AVX-512 F + BW are present.
        unsafe { depthwise_channel_avx512(p, input, weights, q, c, scratch) };
        return requantize_row(&scratch.sums[..plane.len()], q, c, 0, plane);
    }
    #[cfg(target_arch = "x86_64")]
    if crate::tile::avx2() {
        // SAFETY: the CPU supports AVX2, checked just above.
        unsafe { depthwise_channel_avx2(p, input, weights, q, c, scratch) };
        return requantize_row(&scratch.sums[..plane.len()], q, c, 0, plane);
    }
    depthwise_channel_body(p, input, weights, q, c, scratch);
    requantize_row(&scratch.sums[..plane.len()], q, c, 0, plane)
}

/// [`depthwise_channel_body`] compiled for AVX-512.
///
/// # Safety
/// The CPU must support AVX-512 F and BW.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn depthwise_channel_avx512(
    p: &ConvParams,
    input: &[i8],
    weights: &[i8],
    q: &ChannelQuant,
    c: usize,
    scratch: &mut DepthwiseScratch,
) {
    depthwise_channel_body(p, input, weights, q, c, scratch)
}

/// [`depthwise_channel_body`] compiled for AVX2.
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn depthwise_channel_avx2(
    p: &ConvParams,
    input: &[i8],
    weights: &[i8],
    q: &ChannelQuant,
    c: usize,
    scratch: &mut DepthwiseScratch,
) {
    depthwise_channel_body(p, input, weights, q, c, scratch)
}

/// The int32 sums (bias not yet added) of channel `c`, compacted to the output plane's shape at
/// the front of `scratch.sums`.
#[inline(always)]
fn depthwise_channel_body(
    p: &ConvParams,
    input: &[i8],
    weights: &[i8],
    q: &ChannelQuant,
    c: usize,
    scratch: &mut DepthwiseScratch,
) {
    let (i, o) = (p.input, p.output);
    let [_, kh, kw] = p.kernel.map(|k| k as usize);
    let plane = &input[c * (i.h * i.w) as usize..(c + 1) * (i.h * i.w) as usize];
    let taps = &weights[c * kh * kw..(c + 1) * kh * kw];
    let shape = scratch.shape;
    let zero = q.input_zero;
    shape.fill_shifted(p, plane, &mut scratch.cells, zero);
    let sums = &mut scratch.sums[..];
    let n = kh * kw;
    if n > MAX_TAPS {
        depthwise_taps_outer(p, taps, &scratch.cells, sums);
    } else {
        depthwise_chunks(&scratch.offsets, taps, &scratch.cells, sums);
    }
    let ow = o.w as usize;
    for oh in 1..o.h as usize {
        sums.copy_within(oh * shape.phase_len..oh * shape.phase_len + ow, oh * ow);
    }
}

/// A window's sums over the wide plane (`sums`, a whole number of [`CHUNK`]s) in runs of
/// [`CHUNK`] outputs, each run's sums kept in registers across the taps; tap `t` reads the
/// cells from `offsets[t]` on.
#[inline(always)]
fn depthwise_chunks(offsets: &[usize], taps: &[i8], cells: &[i16], sums: &mut [i32]) {
    let mut wide_taps = [0i16; MAX_TAPS];
    for (to, w) in wide_taps.iter_mut().zip(taps) {
        *to = *w as i16;
    }
    let taps_at = offsets.iter().zip(&wide_taps[..offsets.len()]);
    for (pos, run) in sums.chunks_exact_mut(CHUNK).enumerate() {
        let pos = pos * CHUNK;
        let mut acc = [0i32; CHUNK];
        for (&start, &w) in taps_at.clone() {
            let xs: &[i16; CHUNK] = cells[start + pos..start + pos + CHUNK]
                .try_into()
                .expect("CHUNK cells");
            // |w · (x - z_in)| ≤ 128 · 255 fits int16: the product is exact before widening.
            for (a, x) in acc.iter_mut().zip(xs) {
                *a = a.wrapping_add((w * *x) as i32);
            }
        }
        run.copy_from_slice(&acc);
    }
}

/// Depthwise windows of more than this many taps run tap by tap over the whole plane.
const MAX_TAPS: usize = 64;

/// A large window's sums: each tap one multiply-add pass over the wide plane.
fn depthwise_taps_outer(p: &ConvParams, taps: &[i8], cells: &[i16], sums: &mut [i32]) {
    let shape = GridShape::of(p);
    let kw = p.kernel[2] as usize;
    let wide = sums.len();
    sums.fill(0);
    for (t, w) in taps.iter().enumerate() {
        let start = shape.tap(p, t / kw, t % kw);
        let w = *w as i16;
        for (a, x) in sums.iter_mut().zip(&cells[start..start + wide]) {
            *a = a.wrapping_add((w * *x) as i32);
        }
    }
}

/// One channel plane of a pooling layer.
pub fn pool_plane(p: &PoolParams, plane: &[i8], out: &mut [i8]) {
    if p.kind != PoolKind::Average {
        return max_pool_plane(p, plane, out);
    }
    window_pool_plane(p, plane, out)
}

/// Max pooling in two separable passes. Cells outside the input (padding, or past it in ceil
/// mode) count as -128, which never changes a maximum and is what a window with no valid cell
/// gives. Each input row is split into its column phases modulo the stride, so that every
/// window column is a contiguous run: the row maxima vectorise. Then each output row is the
/// maximum of its window's row maxima. With AVX2 and a stride of 1 or 2 (every pool of the
/// zoo), rows first instead: see `x86::max_pool_plane_rows_avx2`.
fn max_pool_plane(p: &PoolParams, plane: &[i8], out: &mut [i8]) {
    #[cfg(target_arch = "x86_64")]
    if crate::tile::active().avx512() && p.stride <= 2 {
        // SAFETY: that tile is active only where AVX-512 F + BW are present.
        return unsafe { x86::max_pool_plane_avx512(p, plane, out) };
    }
    #[cfg(target_arch = "x86_64")]
    if crate::tile::avx2() {
        // SAFETY: the CPU supports AVX2, checked just above.
        return unsafe {
            if p.stride <= 2 {
                x86::max_pool_plane_rows_avx2(p, plane, out)
            } else {
                max_pool_plane_avx2(p, plane, out)
            }
        };
    }
    max_pool_plane_body(p, plane, out)
}

/// [`max_pool_plane_body`] compiled for AVX2 (byte maxima need SSE4.1 at least).
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn max_pool_plane_avx2(p: &PoolParams, plane: &[i8], out: &mut [i8]) {
    max_pool_plane_body(p, plane, out)
}

#[inline(always)]
fn max_pool_plane_body(p: &PoolParams, plane: &[i8], out: &mut [i8]) {
    let (i, o) = (p.input, p.output);
    let (k, s, pad) = (p.k as usize, p.stride as usize, p.pad as usize);
    let (iw, ow) = (i.w as usize, o.w as usize);
    if ow == 0 || iw == 0 {
        return;
    }
    // Padded columns the windows reach, split into `s` phases of `phase_len` cells.
    let reach = (iw + 2 * pad).max((ow - 1) * s + k);
    let phase_len = reach.div_ceil(s);
    // The thread's storage from its last plane: two allocations a plane were a good part of
    // a 13 × 13 plane's time.
    let mut scratch = POOL_SCRATCH.try_with(Cell::take).unwrap_or_default();
    scratch.clear();
    scratch.resize(s * phase_len + i.h as usize * ow, i8::MIN);
    let (phases, row_max) = scratch.split_at_mut(s * phase_len);
    for (row, maxima) in plane.chunks_exact(iw).zip(row_max.chunks_exact_mut(ow)) {
        if s == 2 {
            let (even, odd) = phases.split_at_mut(phase_len);
            let (to_even, to_odd) = if pad % 2 == 0 {
                (&mut even[pad / 2..], &mut odd[pad / 2..])
            } else {
                (&mut odd[pad / 2..], &mut even[pad.div_ceil(2)..])
            };
            deinterleave2(row, to_even, to_odd);
        }
        for f in (0..s).filter(|_| s != 2) {
            // The first input column whose padded column is ≡ f (mod s).
            let x0 = (f + s - pad % s) % s;
            if x0 >= iw {
                continue;
            }
            let at = f * phase_len + (x0 + pad) / s;
            for (cell, x) in phases[at..].iter_mut().zip(row[x0..].iter().step_by(s)) {
                *cell = *x;
            }
        }
        for e in 0..k {
            let start = (e % s) * phase_len + e / s;
            for (m, x) in maxima.iter_mut().zip(&phases[start..start + ow]) {
                *m = (*m).max(*x);
            }
        }
    }
    for (oh, out_row) in out.chunks_exact_mut(ow).enumerate() {
        out_row.fill(i8::MIN);
        for b in 0..k {
            let ih = (oh * s + b) as i64 - pad as i64;
            if !(0..i.h as i64).contains(&ih) {
                continue;
            }
            let maxima = &row_max[ih as usize * ow..(ih as usize + 1) * ow];
            for (y, m) in out_row.iter_mut().zip(maxima) {
                *y = (*y).max(*m);
            }
        }
    }
    if scratch.capacity() <= MAX_POOL_SCRATCH {
        let _ = POOL_SCRATCH.try_with(|kept| kept.set(scratch));
    }
}

/// The most bytes of pooling scratch a thread keeps between planes.
const MAX_POOL_SCRATCH: usize = 1 << 20;

std::thread_local! {
    /// Each thread's max-pooling phases and row maxima, kept between planes.
    static POOL_SCRATCH: Cell<Vec<i8>> = const { Cell::new(Vec::new()) };
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use alloc::vec::Vec;
    use core::arch::x86_64::*;

    use crate::PoolParams;

    /// Max pooling of stride 1 or 2, rows first: for each output row, the maxima of its
    /// window's input rows (one masked 64-byte step per 64 columns), then each window's
    /// maximum along that row, whole vectors of windows at a time; with stride 2 the even
    /// bytes are picked by narrowing 16-bit lanes (`vpmovwb`). Cells outside the input count
    /// as -128, as in [`super::max_pool_plane_body`]: the same results, for a fifth of the
    /// instructions on AlexNet's 55 × 55 and 27 × 27 planes.
    ///
    /// # Safety
    /// The CPU must support AVX-512 F and BW; `p.stride` ≤ 2.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub(super) unsafe fn max_pool_plane_avx512(p: &PoolParams, plane: &[i8], out: &mut [i8]) {
        let (i, o) = (p.input, p.output);
        let (k, s, pad) = (p.k as usize, p.stride as usize, p.pad as usize);
        let (iw, ih, ow) = (i.w as usize, i.h as usize, o.w as usize);
        assert!(s == 1 || s == 2);
        if ow == 0 || iw == 0 {
            return;
        }
        // The padded row of column maxima, with room for whole vectors past the last window.
        let reach = (iw + 2 * pad).max((ow - 1) * s + k);
        // On the stack for planes up to about 380 columns: the call is per plane, so a heap
        // allocation would be made hundreds of times a layer.
        let len = reach.next_multiple_of(64) + 64 + k;
        let (mut stack, mut heap) = ([i8::MIN; 512], Vec::new());
        let maxima: &mut [i8] = if len <= stack.len() {
            &mut stack[..len]
        } else {
            heap.resize(len, i8::MIN);
            &mut heap
        };
        let floor = _mm512_set1_epi8(i8::MIN);
        let part = |len: usize| -> u64 {
            if len >= 64 {
                u64::MAX
            } else {
                (1u64 << len) - 1
            }
        };
        for (oh, out_row) in out.chunks_exact_mut(ow).enumerate() {
            let first = (oh * s) as i64 - pad as i64;
            let rows = (first.max(0)..(first + k as i64).min(ih as i64)).map(|r| r as usize);
            for c in (0..iw).step_by(64) {
                let mask = part(iw - c);
                let mut m = floor;
                for r in rows.clone() {
                    // SAFETY: the mask keeps the load to row r's columns c..iw.
                    let x = _mm512_maskz_loadu_epi8(mask, plane.as_ptr().add(r * iw + c));
                    m = _mm512_mask_max_epi8(m, mask, m, x);
                }
                // SAFETY: columns pad + c.. of `maxima`, at most `iw` of them: inside.
                _mm512_mask_storeu_epi8(maxima.as_mut_ptr().add(pad + c), mask, m);
            }
            // Windows j..j + 64 / s: bytes j·s.. of `maxima` and the k - 1 next, all inside
            // (`maxima` has 64 + k bytes past the last window's start).
            let step = 64 / s;
            for j in (0..ow).step_by(step) {
                let at = maxima.as_ptr().add(j * s);
                let mut m = _mm512_loadu_si512(at as *const __m512i);
                for e in 1..k {
                    m = _mm512_max_epi8(m, _mm512_loadu_si512(at.add(e) as *const __m512i));
                }
                let mask = part(ow - j);
                // SAFETY: the masks keep the stores to windows j..ow.
                if s == 1 {
                    _mm512_mask_storeu_epi8(out_row.as_mut_ptr().add(j), mask, m);
                } else {
                    let even = _mm512_cvtepi16_epi8(m);
                    _mm256_mask_storeu_epi8(out_row.as_mut_ptr().add(j), mask as u32, even);
                }
            }
        }
    }

    /// Max pooling of stride 1 or 2 with AVX2, rows first as in [`max_pool_plane_avx512`]:
    /// per output row, the maxima of its window's input rows 32 columns a step into a padded
    /// row, then each window's maximum along it, 32 windows a step; with stride 2 the even
    /// bytes are picked by masking 16-bit lanes and one unsigned pack. AlexNet's 27 × 27 and
    /// 13 × 13 planes are narrower than a vector: the separable passes over input rows that
    /// stride 3 and up take ran them a byte at a time.
    ///
    /// Whole vectors are loaded past a row's last column where the plane goes on (those
    /// columns of the padded row are reset to -128 before the windows read them), and stored
    /// past an output row's last window where the plane's output goes on (the next row
    /// overwrites them); at the plane's end they go through a vector on the stack.
    ///
    /// # Safety
    /// The CPU must support AVX2; `p.stride` ≤ 2, and `plane` and `out` one channel's input
    /// and output of `p`.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn max_pool_plane_rows_avx2(p: &PoolParams, plane: &[i8], out: &mut [i8]) {
        let (i, o) = (p.input, p.output);
        let (k, s, pad) = (p.k as usize, p.stride as usize, p.pad as usize);
        let (iw, ih, ow) = (i.w as usize, i.h as usize, o.w as usize);
        assert!((s == 1 || s == 2) && plane.len() == iw * ih && out.len() == ow * o.h as usize);
        if ow == 0 || iw == 0 {
            return;
        }
        // The padded row: `pad` cells of -128, the column maxima written 32 at a time, then
        // -128 up to the last window's reach and past every vector the windows load.
        let written = pad + iw.next_multiple_of(32);
        let reach = (iw + 2 * pad).max((ow - 1) * s + k);
        let loaded = ow.next_multiple_of(32) * s + k + 32;
        let len = written.max(reach).max(loaded) + 32;
        // On the stack for planes up to about 400 columns: the call is per plane.
        let (mut stack, mut heap) = ([i8::MIN; 1024], Vec::new());
        let maxima: &mut [i8] = if len <= stack.len() {
            &mut stack[..len]
        } else {
            heap.resize(len, i8::MIN);
            &mut heap
        };
        let floor = _mm256_set1_epi8(i8::MIN);
        let load = |at: *const i8| _mm256_loadu_si256(at as *const __m256i);
        // 32 bytes of `plane` from `at`, those past its end as -128.
        let load_plane = |at: usize| {
            if at + 32 <= plane.len() {
                return load(plane.as_ptr().add(at));
            }
            let mut tail = [i8::MIN; 32];
            tail[..plane.len() - at].copy_from_slice(&plane[at..]);
            load(tail.as_ptr())
        };
        let low_bytes = _mm256_set1_epi16(0x00ff);
        for oh in 0..o.h as usize {
            let first = (oh * s) as i64 - pad as i64;
            let rows = (first.max(0)..(first + k as i64).min(ih as i64)).map(|r| r as usize);
            for c in (0..iw).step_by(32) {
                let mut m = floor;
                for r in rows.clone() {
                    m = _mm256_max_epi8(m, load_plane(r * iw + c));
                }
                // SAFETY: pad + c + 32 ≤ written ≤ len.
                _mm256_storeu_si256(maxima.as_mut_ptr().add(pad + c) as *mut __m256i, m);
            }
            for at in (pad + iw..written.max(reach)).step_by(32) {
                // SAFETY: at + 32 < max(written, reach) + 32 ≤ len.
                _mm256_storeu_si256(maxima.as_mut_ptr().add(at) as *mut __m256i, floor);
            }
            let row = oh * ow;
            for j in (0..ow).step_by(32) {
                // SAFETY: the loads end by s·j + (k - 1) + 32·s ≤ loaded ≤ len.
                let at = maxima.as_ptr().add(j * s);
                let windows = if s == 1 {
                    let mut m = load(at);
                    for e in 1..k {
                        m = _mm256_max_epi8(m, load(at.add(e)));
                    }
                    m
                } else {
                    let (mut a, mut b) = (load(at), load(at.add(32)));
                    for e in 1..k {
                        a = _mm256_max_epi8(a, load(at.add(e)));
                        b = _mm256_max_epi8(b, load(at.add(32 + e)));
                    }
                    // Windows 0..8, 16..24 | 8..16, 24..32, then in order.
                    let packed = _mm256_packus_epi16(
                        _mm256_and_si256(a, low_bytes),
                        _mm256_and_si256(b, low_bytes),
                    );
                    _mm256_permute4x64_epi64::<0b11_01_10_00>(packed)
                };
                if row + j + 32 <= out.len() {
                    // SAFETY: inside `out`; bytes past this row's windows are rewritten by the
                    // rows after it.
                    _mm256_storeu_si256(out.as_mut_ptr().add(row + j) as *mut __m256i, windows);
                } else {
                    let mut tail = [0i8; 32];
                    _mm256_storeu_si256(tail.as_mut_ptr() as *mut __m256i, windows);
                    let n = ow - j;
                    out[row + j..row + j + n].copy_from_slice(&tail[..n]);
                }
            }
        }
    }
}

/// `even[j] = row[2j]`, `odd[j] = row[2j + 1]`: with AVX2, 32 bytes a step through one byte
/// shuffle and one lane permute.
#[inline(always)]
fn deinterleave2(row: &[i8], even: &mut [i8], odd: &mut [i8]) {
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if crate::tile::avx2() {
        use core::arch::x86_64::*;
        let steps = (row.len() / 32).min(even.len() / 16).min(odd.len() / 16);
        // SAFETY: AVX2 is present (checked); step i reads row[32i..32i + 32] and writes
        // even/odd[16i..16i + 16], all inside their slices by the bound on `steps`.
        unsafe {
            let mask = _mm256_setr_epi8(
                0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15, 0, 2, 4, 6, 8, 10, 12, 14, 1,
                3, 5, 7, 9, 11, 13, 15,
            );
            for i in 0..steps {
                let v = _mm256_loadu_si256(row.as_ptr().add(32 * i) as *const __m256i);
                let t = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_shuffle_epi8(v, mask));
                _mm_storeu_si128(
                    even.as_mut_ptr().add(16 * i) as *mut __m128i,
                    _mm256_castsi256_si128(t),
                );
                _mm_storeu_si128(
                    odd.as_mut_ptr().add(16 * i) as *mut __m128i,
                    _mm256_extracti128_si256::<1>(t),
                );
            }
        }
        done = 16 * steps;
    }
    for (j, x) in row.iter().enumerate().skip(2 * done) {
        if j % 2 == 0 {
            even[j / 2] = *x;
        } else {
            odd[j / 2] = *x;
        }
    }
}

/// Pooling window by window over shifted input rows (average pooling: the valid cells' count
/// differs at the edges).
fn window_pool_plane(p: &PoolParams, plane: &[i8], out: &mut [i8]) {
    let (i, o) = (p.input, p.output);
    let mut max = vec![i8::MIN; o.w as usize];
    let mut sum = vec![0i32; o.w as usize];
    let mut count = vec![0i32; o.w as usize];
    // Per window column: its shift and the output columns it reaches.
    let columns: Vec<(i64, usize, usize)> = (0..p.k as i64)
        .map(|e| {
            let shift = e - p.pad as i64;
            let (lo, hi) = valid_columns(shift, p.stride, i.w, o.w);
            (shift, lo, hi)
        })
        .filter(|(_, lo, hi)| lo < hi)
        .collect();
    for (oh, out_row) in out.chunks_mut(o.w as usize).enumerate() {
        max.fill(i8::MIN);
        sum.fill(0);
        count.fill(0);
        for b in 0..p.k as i64 {
            let ih = oh as i64 * p.stride as i64 - p.pad as i64 + b;
            if !(0..i.h as i64).contains(&ih) {
                continue;
            }
            let row = &plane[ih as usize * i.w as usize..(ih as usize + 1) * i.w as usize];
            for &(shift, lo, hi) in &columns {
                let xs = strided(row, lo, p.stride, shift);
                match p.kind {
                    PoolKind::Max | PoolKind::MaxCeil => {
                        for (m, x) in max[lo..hi].iter_mut().zip(xs) {
                            *m = (*m).max(*x);
                        }
                    }
                    PoolKind::Average => {
                        for ((s, n), x) in sum[lo..hi].iter_mut().zip(&mut count[lo..hi]).zip(xs) {
                            *s += *x as i32;
                            *n += 1;
                        }
                    }
                }
            }
        }
        match p.kind {
            PoolKind::Max | PoolKind::MaxCeil => out_row.copy_from_slice(&max),
            PoolKind::Average => {
                for ((y, s), n) in out_row.iter_mut().zip(&sum).zip(&count) {
                    *y = div_round_half_up(*s as i64, (*n as i64).max(1)) as i8;
                }
            }
        }
    }
}
