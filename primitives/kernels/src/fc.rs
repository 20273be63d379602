//! Fully connected layers on the native backend: int32 dot products of each weight row with the
//! zero-point-shifted input, then one vector requantization of all outputs (each with its own
//! channel's scale). With AVX2, `vpmaddwd` does 16 exact multiply-accumulates per instruction
//! and four rows share every input load; rayon splits rows once a layer pays for the threads.

use alloc::vec::Vec;
use core::cell::Cell;

use rayon::prelude::*;

use crate::packed_fc::{PackedFc, PackedForm, BLOCK_ROWS, QUAD_BYTES, RUN_INPUTS, RUN_ROWS};
use crate::quads::{self, QuadKernel};
use crate::requant::requantize_channels;
use crate::tile::Tile;
use crate::ChannelQuant;

/// Rows of one rayon task.
const ROWS_PER_TASK: usize = 64;

/// `out[o] = requantize(bias[o] + Σ_k weights[o][k] · (input[k] - z_in))`; the caller has checked
/// the shapes. Runs on the rayon pool with `parallel`.
///
/// On VNNI tiles (and their emulation) the sums go through `vpdpbusd`: `Σ W·(x - z)` as
/// `Σ W·x' - Σ W·(z + 128)` with `x' = x + 128`, the correction from the same pass as dot
/// products with `z + 128` in every byte. Elsewhere, int16 `vpmaddwd` dot products.
pub fn fully_connected(
    input: &[i8],
    weights: &[i8],
    q: &ChannelQuant,
    out: &mut [i8],
    parallel: bool,
) {
    let n = input.len();
    let Some(kernel) = QuadKernel::for_fully_connected().filter(|_| quads::zero_fits(q.input_zero))
    else {
        // Zero-padded to whole 16-lane vectors: the padding multiplies the weight tail by 0.
        let padded = n.next_multiple_of(16);
        return int16_dots(
            input,
            (padded, ROWS_PER_TASK),
            q,
            out,
            parallel,
            |xs, row, sums| dots(&weights[row * n..(row + sums.len()) * n], n, xs, sums),
        );
    };
    with_scratch(&SUMS, out.len(), |sums| {
        // Zero-padded to whole 64-byte vectors: the padding meets the tail with weight · 0.
        with_scratch(&BYTES, n.next_multiple_of(64), |xs| {
            for (x, v) in xs.iter_mut().zip(input) {
                *x = *v as u8 ^ 0x80;
            }
            // In 0..=255: `zero_fits` admitted the zero point.
            let bias = (q.input_zero + 128) as u8;
            row_tasks(weights, n, sums, parallel, |rows, chunk| {
                quad_dots(kernel, rows, n, xs, bias, chunk)
            });
        });
        requantize_channels(sums, q, out)
    })
}

/// [`fully_connected`] over weights [`PackedFc`] rearranged, sixteen rows to a vector: the same
/// int32 sums, so the same outputs. `false` (and nothing written) for quads where the active
/// tile has no `vpdpbusd` kernel or the input zero point is no int8: the caller then runs the
/// row-major path. Pairs run on every tile (with AVX2 where the tile allows it).
pub fn fully_connected_packed(
    input: &[i8],
    packed: &PackedFc,
    q: &ChannelQuant,
    out: &mut [i8],
    parallel: bool,
) -> bool {
    match packed.form() {
        PackedForm::Pairs => {
            fully_connected_pairs(input, packed, q, out, parallel);
            return true;
        }
        PackedForm::Runs => return fully_connected_runs(input, packed, q, out, parallel),
        PackedForm::Quads => {}
    }
    let Some(kernel) = QuadKernel::for_fully_connected().filter(|_| quads::zero_fits(q.input_zero))
    else {
        return false;
    };
    with_scratch(&SUMS, out.len(), |sums| {
        // Zero-padded to whole quads: the padding meets zero weights.
        with_scratch(&BYTES, 4 * packed.quads(), |xs| {
            for (x, v) in xs.iter_mut().zip(input) {
                *x = *v as u8 ^ 0x80;
            }
            // In 0..=255: `zero_fits` admitted the zero point.
            let bias = (q.input_zero + 128) as u8;
            if parallel {
                let rows = PACKED_BLOCKS_PER_TASK * BLOCK_ROWS;
                sums.par_chunks_mut(rows)
                    .enumerate()
                    .for_each(|(t, chunk)| {
                        packed_dots(kernel, packed, xs, bias, t * PACKED_BLOCKS_PER_TASK, chunk)
                    });
            } else {
                packed_dots(kernel, packed, xs, bias, 0, sums);
            }
        });
        requantize_channels(sums, q, out)
    });
    true
}

/// [`fully_connected_packed`] for [`PackedForm::Pairs`]: the inputs less their zero point as
/// int16 (exact: |x - z| ≤ 255), two a word, multiplied straight into each row's sum.
fn fully_connected_pairs(
    input: &[i8],
    packed: &PackedFc,
    q: &ChannelQuant,
    out: &mut [i8],
    parallel: bool,
) {
    let rows = PACKED_BLOCKS_PER_TASK * BLOCK_ROWS;
    int16_dots(
        input,
        (2 * packed.units(), rows),
        q,
        out,
        parallel,
        |xs, row, sums| pair_dots(packed, xs, row / BLOCK_ROWS, sums),
    )
}

/// The int16 packed paths' frame: the inputs less their zero point as int16 (exact:
/// |x - z| ≤ 255), zero-padded to `padded` values (the padding meets zero weights); then
/// `dots(xs, first_row, sums)` over tasks of `task_rows` rows (on the rayon pool with
/// `parallel`), and the requantization.
fn int16_dots(
    input: &[i8],
    (padded, task_rows): (usize, usize),
    q: &ChannelQuant,
    out: &mut [i8],
    parallel: bool,
    dots: impl Fn(&[i16], usize, &mut [i32]) + Sync,
) {
    with_scratch(&SUMS, out.len(), |sums| {
        with_scratch(&WORDS, padded, |xs| {
            for (x, v) in xs.iter_mut().zip(input) {
                *x = (*v as i32 - q.input_zero) as i16;
            }
            let xs = &*xs;
            let run = |(t, chunk): (usize, &mut [i32])| dots(xs, t * task_rows, chunk);
            if parallel {
                sums.par_chunks_mut(task_rows).enumerate().for_each(run);
            } else {
                sums.chunks_mut(task_rows).enumerate().for_each(run);
            }
        });
        requantize_channels(sums, q, out)
    })
}

/// [`fully_connected_packed`] for [`PackedForm::Runs`]: the same int16 `vpmaddwd` dot products
/// as the row-major path, eight rows at a time, over one stream of weights. `false` (nothing
/// done) where the tile has no AVX2.
fn fully_connected_runs(
    input: &[i8],
    packed: &PackedFc,
    q: &ChannelQuant,
    out: &mut [i8],
    parallel: bool,
) -> bool {
    #[cfg(target_arch = "x86_64")]
    if crate::tile::avx2() {
        let padded = RUN_INPUTS * packed.units();
        int16_dots(
            input,
            (padded, ROWS_PER_TASK),
            q,
            out,
            parallel,
            |xs, row, sums| {
                // SAFETY: the CPU supports AVX2, checked above.
                unsafe { x86::run_dots_avx2(packed, xs, row / RUN_ROWS, sums) }
            },
        );
        return true;
    }
    let _ = (input, packed, q, out, parallel);
    false
}

/// `sums[row] = Σ_k W[row][k] · xs[k]` (wrapping) for the rows of `sums` from block
/// `first_block` on, over [`PackedForm::Pairs`] weights and `xs` padded to whole pairs.
fn pair_dots(packed: &PackedFc, xs: &[i16], first_block: usize, sums: &mut [i32]) {
    #[cfg(target_arch = "x86_64")]
    if crate::tile::avx2() {
        // SAFETY: the CPU supports AVX2, checked just above.
        return unsafe { x86::pair_dots_avx2(packed, xs, first_block, sums) };
    }
    pair_dots_portable(packed, xs, first_block, sums)
}

/// [`pair_dots`] in plain Rust, a word (two products) at a time as `vpmaddwd` adds them.
fn pair_dots_portable(packed: &PackedFc, xs: &[i16], first_block: usize, sums: &mut [i32]) {
    let units = packed.units();
    let block_words = units * BLOCK_ROWS;
    for (b, sums) in sums.chunks_mut(BLOCK_ROWS).enumerate() {
        let block = first_block + b;
        let words = &packed.words()[block * block_words..(block + 1) * block_words];
        for (r, sum) in sums.iter_mut().enumerate() {
            *sum = words.chunks_exact(BLOCK_ROWS).zip(xs.chunks_exact(2)).fold(
                0i32,
                |acc, (unit, x)| {
                    let (low, high) = (unit[r] as u16 as i16, (unit[r] >> 16) as u16 as i16);
                    acc.wrapping_add(low as i32 * x[0] as i32 + high as i32 * x[1] as i32)
                },
            );
        }
    }
}

/// [`PackedFc::pairs`], with AVX2 where the tile allows it: eight rows' runs of sixteen
/// weights widened and transposed as 8 × 8 words. Packing runs once a layer and execution, so
/// it sits inside every timed LSTM run; the plain packer moves the weights two at a time.
pub fn pack_pairs(weights: &[i8], inputs: usize) -> Option<PackedFc> {
    #[cfg(target_arch = "x86_64")]
    if crate::tile::avx2()
        && inputs > 0
        && weights.len().is_multiple_of(inputs)
        && !weights.is_empty()
    {
        let outputs = weights.len() / inputs;
        // SAFETY: the CPU supports AVX2, checked just above.
        let words = unsafe { x86::pack_pairs_avx2(weights, inputs) };
        return PackedFc::from_pair_words(inputs, outputs, words);
    }
    PackedFc::pairs(weights, inputs)
}

/// [`PackedFc::new`], with AVX-512 under the tiles that have it: sixteen rows' 64-byte runs
/// transposed as 16 × 16 words, each row's weight sum from the same vectors.
pub fn pack(weights: &[i8], inputs: usize) -> Option<PackedFc> {
    #[cfg(target_arch = "x86_64")]
    if crate::tile::active().avx512() && inputs > 0 && weights.len().is_multiple_of(inputs) {
        let outputs = weights.len() / inputs;
        // SAFETY: that tile is active only where AVX-512 F, BW and VNNI are present.
        let (words, sums) = unsafe { x86::pack_zmm(weights, inputs) };
        return PackedFc::from_parts(inputs, outputs, words, sums);
    }
    PackedFc::new(weights, inputs)
}

/// Blocks of one rayon task of the packed path: one pass of the AVX-512 kernel.
const PACKED_BLOCKS_PER_TASK: usize = 8;

/// The sums of `sums.len()` rows of `packed` from block `first_block` on (see
/// [`packed_dots_emulated`]).
fn packed_dots(
    kernel: QuadKernel,
    packed: &PackedFc,
    xs: &[u8],
    bias: u8,
    first_block: usize,
    sums: &mut [i32],
) {
    #[cfg(target_arch = "x86_64")]
    match kernel {
        QuadKernel::Avx512Vnni | QuadKernel::Amx if Tile::Avx512Vnni.supported() => {
            // SAFETY: AVX-512 F, BW, VL and VNNI are present (the tile requires them), checked just above.
            return unsafe { x86::packed_dots_zmm(packed, xs, bias, first_block, sums) };
        }
        QuadKernel::AvxVnni if Tile::AvxVnni.supported() => {
            // SAFETY: AVX2 + AVX-VNNI are present, checked just above.
            return unsafe { x86::packed_dots_ymm(packed, xs, bias, first_block, sums) };
        }
        _ => {}
    }
    let _ = kernel;
    packed_dots_emulated(packed, xs, bias, first_block, sums)
}

/// `sums[row] = Σ_k W[row][k] · (x'[k] - bias)` for the rows of `sums` from `first_block` on,
/// with `x'` as unsigned bytes zero-padded to whole quads: the `vpdpbusd` kernels' arithmetic
/// through the emulated instruction, so that a CPU without VNNI still checks the packed layout
/// and the correction.
fn packed_dots_emulated(
    packed: &PackedFc,
    xs: &[u8],
    bias: u8,
    first_block: usize,
    sums: &mut [i32],
) {
    let block_bytes = packed.quads() * QUAD_BYTES;
    for (b, sums) in sums.chunks_mut(BLOCK_ROWS).enumerate() {
        let block = first_block + b;
        let quads = &packed.bytes()[block * block_bytes..(block + 1) * block_bytes];
        for (r, sum) in sums.iter_mut().enumerate() {
            let dot = quads.chunks_exact(QUAD_BYTES).zip(xs.chunks_exact(4)).fold(
                0i32,
                |acc, (quad, x)| {
                    let w = [
                        quad[4 * r],
                        quad[4 * r + 1],
                        quad[4 * r + 2],
                        quad[4 * r + 3],
                    ];
                    quads::dpbusd_lane(acc, [x[0], x[1], x[2], x[3]], w)
                },
            );
            let row_sum = packed.row_sums()[block * BLOCK_ROWS + r];
            *sum = dot.wrapping_sub(row_sum.wrapping_mul(bias as i32));
        }
    }
}

std::thread_local! {
    // The calling thread's scratch, kept between layers: an LSTM runs dozens of small layers an
    // inference, and two heap allocations a call were a sixth of its time.
    static SUMS: Cell<Vec<i32>> = const { Cell::new(Vec::new()) };
    static BYTES: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
    static WORDS: Cell<Vec<i16>> = const { Cell::new(Vec::new()) };
}

/// Runs `f` on `len` zeros of the thread's `scratch` (fresh ones during the thread's teardown or
/// after a layer too large to keep them).
fn with_scratch<T: Copy + Default, R>(
    scratch: &'static std::thread::LocalKey<Cell<Vec<T>>>,
    len: usize,
    f: impl FnOnce(&mut [T]) -> R,
) -> R {
    let mut kept = scratch.try_with(Cell::take).unwrap_or_default();
    kept.clear();
    kept.resize(len, T::default());
    let result = f(&mut kept);
    // A layer's scratch is kept only when small: one huge layer must not leave a worker thread
    // holding its megabytes.
    if kept.capacity() * core::mem::size_of::<T>() <= MAX_KEPT_SCRATCH {
        let _ = scratch.try_with(|cell| cell.set(kept));
    }
    result
}

/// The most scratch bytes of each kind a thread keeps between layers.
const MAX_KEPT_SCRATCH: usize = 1 << 20;

/// Runs `dots(weight_rows, their_sums)` over tasks of [`ROWS_PER_TASK`] rows of `n` weights.
fn row_tasks(
    weights: &[i8],
    n: usize,
    sums: &mut [i32],
    parallel: bool,
    dots: impl Fn(&[i8], &mut [i32]) + Sync,
) {
    let run = |(t, chunk): (usize, &mut [i32])| {
        let first = t * ROWS_PER_TASK;
        dots(&weights[first * n..(first + chunk.len()) * n], chunk)
    };
    if parallel {
        sums.par_chunks_mut(ROWS_PER_TASK).enumerate().for_each(run);
    } else {
        sums.chunks_mut(ROWS_PER_TASK).enumerate().for_each(run);
    }
}

/// `sums[r] = Σ_k rows[r][k] · (xs[k] - bias)` over `n` weights a row, wrapping.
fn quad_dots(kernel: QuadKernel, rows: &[i8], n: usize, xs: &[u8], bias: u8, sums: &mut [i32]) {
    #[cfg(target_arch = "x86_64")]
    match kernel {
        QuadKernel::Avx512Vnni | QuadKernel::Amx if Tile::Avx512Vnni.supported() => {
            // SAFETY: AVX-512 F, BW, VL and VNNI are present (the tile requires them), checked just above.
            // A zero point of -128 (inputs from a ReLU or a [0, 1] image) needs no correction.
            // Rows of at most 32 weights go two to a vector.
            return unsafe {
                match (bias == 0, n <= 32) {
                    (true, false) => x86::quad_dots_zmm::<false>(rows, n, xs, bias, sums),
                    (false, false) => x86::quad_dots_zmm::<true>(rows, n, xs, bias, sums),
                    (true, true) => x86::short_dots_zmm::<false>(rows, n, xs, bias, sums),
                    (false, true) => x86::short_dots_zmm::<true>(rows, n, xs, bias, sums),
                }
            };
        }
        QuadKernel::AvxVnni if Tile::AvxVnni.supported() => {
            // SAFETY: AVX2 + AVX-VNNI are present, checked just above.
            return unsafe { x86::quad_dots_ymm(rows, n, xs, bias, sums) };
        }
        _ => {}
    }
    let _ = kernel;
    for (sum, row) in sums.iter_mut().zip(rows.chunks_exact(n)) {
        *sum = emulated_dot(row, xs, bias);
    }
}

/// `Σ w·x' - Σ w·bias` of one row (wrapping), four products at a time as `vpdpbusd` adds them:
/// the correction is a second `vpdpbusd` of the same weights with the bias in every byte.
fn emulated_dot(row: &[i8], xs: &[u8], bias: u8) -> i32 {
    let (mut dot, mut correction) = (0i32, 0i32);
    for (w, x) in row.chunks(4).zip(xs.chunks(4)) {
        let (mut four_w, mut four_x) = ([0i8; 4], [0u8; 4]);
        four_w[..w.len()].copy_from_slice(w);
        four_x[..w.len()].copy_from_slice(&x[..w.len()]);
        dot = quads::dpbusd_lane(dot, four_x, four_w);
        correction = quads::dpbusd_lane(correction, [bias; 4], four_w);
    }
    dot.wrapping_sub(correction)
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

    use alloc::vec::Vec;

    use crate::packed_fc::{PackedFc, PackedForm, BLOCK_ROWS, RUN_INPUTS, RUN_ROWS};

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

    /// [`super::dots`] with `vpmaddwd`, eight rows at a time (then four, then one): eight
    /// streams of weights keep more of the memory's bandwidth busy than four (AlexNet's fc6,
    /// 38 MB, is read at memory speed), with eight accumulators, the input and a weight vector
    /// in ten of the sixteen registers.
    ///
    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn dots_avx2(rows: &[i8], n: usize, xs: &[i16], sums: &mut [i32]) {
        assert!(xs.len() >= n.next_multiple_of(16) && rows.len() >= sums.len() * n);
        let vectors = n.div_ceil(16);
        let eights = sums.len() / 8 * 8;
        for (e, eight) in sums[..eights].chunks_exact_mut(8).enumerate() {
            dot_rows::<8>(rows, 8 * e * n, (n, vectors), xs, eight);
        }
        let fours = eights + (sums.len() - eights) / 4 * 4;
        for (q, four) in sums[eights..fours].chunks_exact_mut(4).enumerate() {
            dot_rows::<4>(rows, (eights + 4 * q) * n, (n, vectors), xs, four);
        }
        // SAFETY: c < vectors, so the 16 lanes at 16·c lie inside `xs` (asserted above).
        let x = |c: usize| _mm256_loadu_si256(xs.as_ptr().add(16 * c) as *const __m256i);
        for (r, sum) in sums.iter_mut().enumerate().skip(fours) {
            let mut acc = _mm256_setzero_si256();
            for c in 0..vectors {
                let w = weights16(rows, r * n + 16 * c);
                acc = _mm256_add_epi32(acc, _mm256_madd_epi16(w, x(c)));
            }
            let half = _mm_add_epi32(
                _mm256_castsi256_si128(acc),
                _mm256_extracti128_si256::<1>(acc),
            );
            let half = _mm_hadd_epi32(half, half);
            *sum = _mm_cvtsi128_si32(_mm_hadd_epi32(half, half));
        }
    }

    /// `sums[row]` for the rows of `sums` from block `first_block` on, over
    /// [`PackedForm::Runs`] weights and `xs` padded to whole runs: per block, eight
    /// accumulators and, per run, one input vector and eight 16-byte loads from one 128-byte
    /// stretch, so the block's weights are read in address order.
    ///
    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn run_dots_avx2(
        packed: &PackedFc,
        xs: &[i16],
        first_block: usize,
        sums: &mut [i32],
    ) {
        let runs = packed.units();
        let block_bytes = runs * RUN_INPUTS * RUN_ROWS;
        let blocks = sums.len().div_ceil(RUN_ROWS);
        assert!(
            packed.form() == PackedForm::Runs
                && xs.len() >= RUN_INPUTS * runs
                && packed.bytes().len() >= (first_block + blocks) * block_bytes
        );
        for (b, out) in sums.chunks_mut(RUN_ROWS).enumerate() {
            // SAFETY: block first_block + b and every run of it lie inside the bytes, and run
            // c's sixteen inputs inside `xs` (asserted above).
            let block = packed.bytes().as_ptr().add((first_block + b) * block_bytes);
            let mut acc = [_mm256_setzero_si256(); RUN_ROWS];
            for c in 0..runs {
                let x = _mm256_loadu_si256(xs.as_ptr().add(RUN_INPUTS * c) as *const __m256i);
                let run = block.add(c * RUN_INPUTS * RUN_ROWS);
                for (r, a) in acc.iter_mut().enumerate() {
                    let w = _mm_loadu_si128(run.add(RUN_INPUTS * r) as *const __m128i);
                    *a = _mm256_add_epi32(*a, _mm256_madd_epi16(_mm256_cvtepi8_epi16(w), x));
                }
            }
            let mut eight = [0i32; RUN_ROWS];
            lane_totals(&acc, &mut eight);
            out.copy_from_slice(&eight[..out.len()]);
        }
    }

    /// The dot products of the `R` rows of `n` weights from `rows[at..]` (`R` a multiple of
    /// four) with `xs` (`vectors` vectors of 16), into `out`.
    ///
    /// # Safety
    /// The CPU must support AVX2; `xs` must hold `16 · vectors` values and `out` `R` sums.
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn dot_rows<const R: usize>(
        rows: &[i8],
        at: usize,
        (n, vectors): (usize, usize),
        xs: &[i16],
        out: &mut [i32],
    ) {
        let mut acc = [_mm256_setzero_si256(); R];
        // SAFETY (callers): c < vectors, so the 16 lanes at 16·c lie inside `xs`.
        let x = |c: usize| _mm256_loadu_si256(xs.as_ptr().add(16 * c) as *const __m256i);
        if at + (R - 1) * n + 16 * vectors <= rows.len() {
            // Every load lies inside `rows`: no tail tests in the loop, so the accumulators
            // stay in registers.
            for c in 0..vectors {
                let (xv, k) = (x(c), at + 16 * c);
                for (i, a) in acc.iter_mut().enumerate() {
                    // SAFETY: k + i·n + 16 ≤ at + (R - 1)·n + 16·vectors ≤ rows.len().
                    let w = _mm_loadu_si128(rows.as_ptr().add(k + i * n) as *const __m128i);
                    *a = _mm256_add_epi32(*a, _mm256_madd_epi16(_mm256_cvtepi8_epi16(w), xv));
                }
            }
        } else {
            for c in 0..vectors {
                let (xv, k) = (x(c), at + 16 * c);
                for (i, a) in acc.iter_mut().enumerate() {
                    let w = weights16(rows, k + i * n);
                    *a = _mm256_add_epi32(*a, _mm256_madd_epi16(w, xv));
                }
            }
        }
        lane_totals(&acc, out);
    }

    /// `out[i]` = the sum of `acc[i]`'s eight lanes, four accumulators a reduction tree
    /// (`acc.len()` a multiple of four, `out` as long).
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn lane_totals(acc: &[__m256i], out: &mut [i32]) {
        assert!(acc.len().is_multiple_of(4) && out.len() == acc.len());
        for (a, four) in acc.chunks_exact(4).zip(out.chunks_exact_mut(4)) {
            let s = _mm256_hadd_epi32(_mm256_hadd_epi32(a[0], a[1]), _mm256_hadd_epi32(a[2], a[3]));
            let total = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256::<1>(s));
            // SAFETY: `four` holds four i32s.
            _mm_storeu_si128(four.as_mut_ptr() as *mut __m128i, total);
        }
    }

    /// Two rounds of unpacks: 128-bit lane L of the first result holds the sums of lane L of
    /// `v[0]`, `v[1]`, `v[2]` and `v[3]`, in that order; of the second, of `v[4..8]`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn lane_sums(v: [__m512i; 8]) -> [__m512i; 2] {
        let pair = |a: __m512i, b: __m512i| {
            _mm512_add_epi32(_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b))
        };
        let quad = |a: __m512i, b: __m512i| {
            _mm512_add_epi32(_mm512_unpacklo_epi64(a, b), _mm512_unpackhi_epi64(a, b))
        };
        [
            quad(pair(v[0], v[1]), pair(v[2], v[3])),
            quad(pair(v[4], v[5]), pair(v[6], v[7])),
        ]
    }

    /// The eight lane sums of `v[0..8]`, in order, in one 256-bit vector: a transpose-and-add
    /// tree (three rounds of unpacks and lane shuffles) instead of eight horizontal reductions.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn sum8(v: [__m512i; 8]) -> __m256i {
        // Each 128-bit lane of u0 holds partial sums of rows 0, 1, 2, 3; of u1, rows 4..8.
        let [u0, u1] = lane_sums(v);
        // w's 128-bit lanes: rows 0..4 twice (lanes 0, 1), rows 4..8 twice (lanes 2, 3).
        let w = _mm512_add_epi32(
            _mm512_shuffle_i32x4::<0b10_00_10_00>(u0, u1),
            _mm512_shuffle_i32x4::<0b11_01_11_01>(u0, u1),
        );
        let t = _mm512_add_epi32(
            _mm512_shuffle_i32x4::<0b00_00_10_00>(w, w),
            _mm512_shuffle_i32x4::<0b00_00_11_01>(w, w),
        );
        _mm512_castsi512_si256(t)
    }

    /// Rows of `n` weights against `xs` (`x + 128`, zero-padded to 64 bytes), eight rows
    /// sharing each input load; each row's last part vector is a masked load, so nothing past
    /// the row is read. The correction `bias · Σ w` is a second `vpdpbusd` of the same weights
    /// with the bias in every byte, subtracted lane-wise, so one transpose tree sums both;
    /// without `CORRECT` (the caller's bias is 0) there is none.
    ///
    /// # Safety
    /// The CPU must support AVX-512 F, BW, VL and VNNI.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    pub(super) unsafe fn quad_dots_zmm<const CORRECT: bool>(
        rows: &[i8],
        n: usize,
        xs: &[u8],
        bias: u8,
        sums: &mut [i32],
    ) {
        assert!(xs.len() >= n.next_multiple_of(64) && rows.len() >= sums.len() * n);
        let (full, rest) = (n / 64, n % 64);
        let tail = (1u64 << rest).wrapping_sub(1);
        let biases = _mm512_set1_epi8(bias as i8);
        for (block, out) in sums.chunks_mut(8).enumerate() {
            let mut dot = [_mm512_setzero_si512(); 8];
            let mut correction = [_mm512_setzero_si512(); 8];
            // Rows past the last one (a part block) repeat it; their sums are dropped.
            let last = out.len() - 1;
            let row: [*const i8; 8] =
                core::array::from_fn(|r| rows.as_ptr().add((8 * block + r.min(last)) * n));
            for c in 0..full {
                let xv = _mm512_loadu_si512(xs.as_ptr().add(64 * c) as *const __m512i);
                for r in 0..8 {
                    // SAFETY: 64·c + 64 ≤ n: inside the row.
                    let w = _mm512_loadu_si512(row[r].add(64 * c) as *const __m512i);
                    dot[r] = _mm512_dpbusd_epi32(dot[r], xv, w);
                    if CORRECT {
                        correction[r] = _mm512_dpbusd_epi32(correction[r], biases, w);
                    }
                }
            }
            if rest > 0 {
                let xv = _mm512_loadu_si512(xs.as_ptr().add(64 * full) as *const __m512i);
                for r in 0..8 {
                    // SAFETY: the mask keeps the load to the row's last `rest` bytes.
                    let w = _mm512_maskz_loadu_epi8(tail, row[r].add(64 * full));
                    dot[r] = _mm512_dpbusd_epi32(dot[r], xv, w);
                    if CORRECT {
                        correction[r] = _mm512_dpbusd_epi32(correction[r], biases, w);
                    }
                }
            }
            let totals = sum8(core::array::from_fn(|r| {
                _mm512_sub_epi32(dot[r], correction[r])
            }));
            // SAFETY: the mask keeps the store to the block's `out.len()` ≤ 8 sums.
            let mask = ((1u16 << out.len()) - 1) as u8;
            _mm256_mask_storeu_epi32(out.as_mut_ptr(), mask, totals);
        }
    }

    /// The sixteen lane sums of sixteen rows held two to a vector (row `2j` in the low half of
    /// `v[j]`, row `2j + 1` in the high half), in row order: three rounds of unpacks and lane
    /// shuffles, then one permutation.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn sum16_pairs(v: [__m512i; 8]) -> __m512i {
        // 128-bit lane L of u0 holds lane L's sums of v[0..4]; of u1, of v[4..8].
        let [u0, u1] = lane_sums(v);
        // A row's two 128-bit lanes added: rows 0, 2, 4, 6 | 1, 3, 5, 7 | 8, 10, .. | 9, 11, ..
        let w = _mm512_add_epi32(
            _mm512_shuffle_i32x4::<0b10_00_10_00>(u0, u1),
            _mm512_shuffle_i32x4::<0b11_01_11_01>(u0, u1),
        );
        let order = _mm512_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7, 8, 12, 9, 13, 10, 14, 11, 15);
        _mm512_permutexvar_epi32(order, w)
    }

    /// [`quad_dots_zmm`] for rows of at most 32 weights: two rows to a vector (one in each
    /// 256-bit half, against `xs` in both), sixteen rows a block, so each row costs half the
    /// multiplies and half the reduction.
    ///
    /// # Safety
    /// The CPU must support AVX-512 F, BW, VL and VNNI; `n` ≤ 32.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    pub(super) unsafe fn short_dots_zmm<const CORRECT: bool>(
        rows: &[i8],
        n: usize,
        xs: &[u8],
        bias: u8,
        sums: &mut [i32],
    ) {
        assert!(n <= 32 && xs.len() >= 32 && rows.len() >= sums.len() * n);
        let low = (1u64 << n) - 1;
        let high = low << 32;
        // `xs` holds zeros past `n`, so both halves meet the weights' masked zeros.
        let xv = _mm512_broadcast_i64x4(_mm256_loadu_si256(xs.as_ptr() as *const __m256i));
        let biases = _mm512_set1_epi8(bias as i8);
        for (block, out) in sums.chunks_mut(16).enumerate() {
            let last = out.len() - 1;
            // Rows past the last one (a part block) repeat it; their sums are dropped.
            let row = |r: usize| rows.as_ptr().add((16 * block + r.min(last)) * n);
            let mut dot = [_mm512_setzero_si512(); 8];
            let mut correction = [_mm512_setzero_si512(); 8];
            for j in 0..8 {
                // SAFETY: the masks keep each load to its row's `n` bytes; the high half's
                // address is the row's start less 32, computed without leaving the slice's
                // provenance (`wrapping_sub`), and no byte before the row is read.
                let w = _mm512_maskz_loadu_epi8(low, row(2 * j));
                let w = _mm512_mask_loadu_epi8(w, high, row(2 * j + 1).wrapping_sub(32));
                dot[j] = _mm512_dpbusd_epi32(dot[j], xv, w);
                if CORRECT {
                    correction[j] = _mm512_dpbusd_epi32(correction[j], biases, w);
                }
            }
            let totals = sum16_pairs(core::array::from_fn(|j| {
                _mm512_sub_epi32(dot[j], correction[j])
            }));
            // SAFETY: the mask keeps the store to the block's `out.len()` ≤ 16 sums.
            let mask = ((1u32 << out.len()) - 1) as u16;
            _mm512_mask_storeu_epi32(out.as_mut_ptr(), mask, totals);
        }
    }

    /// [`quad_dots_zmm`] with 256-bit AVX-VNNI, whole 32-byte vectors of each row, the rest
    /// of a row emulated.
    ///
    /// # Safety
    /// The CPU must support AVX2 and AVX-VNNI.
    #[target_feature(enable = "avx2,avxvnni")]
    pub(super) unsafe fn quad_dots_ymm(
        rows: &[i8],
        n: usize,
        xs: &[u8],
        bias: u8,
        sums: &mut [i32],
    ) {
        assert!(xs.len() >= n.next_multiple_of(64) && rows.len() >= sums.len() * n);
        let full = n / 32;
        let biases = _mm256_set1_epi8(bias as i8);
        for (sum, row) in sums.iter_mut().zip(rows.chunks_exact(n)) {
            let (mut dot, mut correction) = (_mm256_setzero_si256(), _mm256_setzero_si256());
            for c in 0..full {
                // SAFETY: 32·c + 32 ≤ n, inside the row and inside `xs`.
                let w = _mm256_loadu_si256(row.as_ptr().add(32 * c) as *const __m256i);
                let xv = _mm256_loadu_si256(xs.as_ptr().add(32 * c) as *const __m256i);
                dot = _mm256_dpbusd_avx_epi32(dot, xv, w);
                correction = _mm256_dpbusd_avx_epi32(correction, biases, w);
            }
            let mut lanes = [0i32; 8];
            let difference = _mm256_sub_epi32(dot, correction);
            _mm256_storeu_si256(lanes.as_mut_ptr() as *mut __m256i, difference);
            let head = lanes.iter().fold(0i32, |a, b| a.wrapping_add(*b));
            *sum = head.wrapping_add(super::emulated_dot(
                &row[32 * full..],
                &xs[32 * full..],
                bias,
            ));
        }
    }

    /// Blocks of [`PackedForm::Pairs`] a pass of [`pair_dots_avx2`] keeps in flight: eight
    /// accumulators, two a block, and the broadcast pair fill twelve of the sixteen registers.
    const PAIR_BLOCKS_IN_FLIGHT: usize = 4;

    /// [`super::pair_dots`] with `vpmaddwd`: each block as two vectors of eight rows,
    /// [`PAIR_BLOCKS_IN_FLIGHT`] blocks sharing each broadcast pair of inputs.
    ///
    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn pair_dots_avx2(
        packed: &PackedFc,
        xs: &[i16],
        first_block: usize,
        sums: &mut [i32],
    ) {
        let units = packed.units();
        let blocks = sums.len().div_ceil(BLOCK_ROWS);
        assert!(
            packed.form() == PackedForm::Pairs
                && xs.len() >= 2 * units
                && packed.words().len() >= (first_block + blocks) * units * BLOCK_ROWS
        );
        let mut done = 0;
        while done < blocks {
            let rows = &mut sums[done * BLOCK_ROWS..];
            // SAFETY (each arm): the blocks from `first_block + done` lie inside the words and
            // `xs` holds every pair (asserted above).
            done += match blocks - done {
                PAIR_BLOCKS_IN_FLIGHT.. => {
                    pair_blocks::<PAIR_BLOCKS_IN_FLIGHT>(packed, first_block + done, xs, rows)
                }
                2.. => pair_blocks::<2>(packed, first_block + done, xs, rows),
                _ => pair_blocks::<1>(packed, first_block + done, xs, rows),
            };
        }
    }

    /// `N` blocks of pairs from `block` into the first (up to) `16·N` of `sums`; returns `N`.
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn pair_blocks<const N: usize>(
        packed: &PackedFc,
        block: usize,
        xs: &[i16],
        sums: &mut [i32],
    ) -> usize {
        let units = packed.units();
        let base = packed.words().as_ptr().add(block * units * BLOCK_ROWS);
        let mut acc = [[_mm256_setzero_si256(); 2]; N];
        for g in 0..units {
            let x = _mm256_set1_epi32((xs.as_ptr().add(2 * g) as *const i32).read_unaligned());
            for (b, acc) in acc.iter_mut().enumerate() {
                let w = base.add((b * units + g) * BLOCK_ROWS) as *const __m256i;
                acc[0] = _mm256_add_epi32(acc[0], _mm256_madd_epi16(_mm256_loadu_si256(w), x));
                acc[1] =
                    _mm256_add_epi32(acc[1], _mm256_madd_epi16(_mm256_loadu_si256(w.add(1)), x));
            }
        }
        for (b, acc) in acc.iter().enumerate() {
            let at = b * BLOCK_ROWS;
            let rows = sums.len().saturating_sub(at).min(BLOCK_ROWS);
            if rows == BLOCK_ROWS {
                // SAFETY: the block's sixteen rows lie inside `sums`.
                _mm256_storeu_si256(sums.as_mut_ptr().add(at) as *mut __m256i, acc[0]);
                _mm256_storeu_si256(sums.as_mut_ptr().add(at + 8) as *mut __m256i, acc[1]);
            } else if rows > 0 {
                let mut lanes = [0i32; BLOCK_ROWS];
                _mm256_storeu_si256(lanes.as_mut_ptr() as *mut __m256i, acc[0]);
                _mm256_storeu_si256(lanes.as_mut_ptr().add(8) as *mut __m256i, acc[1]);
                sums[at..at + rows].copy_from_slice(&lanes[..rows]);
            }
        }
        N
    }

    /// [`super::pack_pairs`]: for each half block of eight rows and each run of eight pairs,
    /// the rows' sixteen weights widened to int16 (eight words each) and transposed so that
    /// each pair's eight words land as one vector. Runs past a row's end go through a
    /// zero-padded copy, rows past the last one are zeros.
    ///
    /// # Safety
    /// The CPU must support AVX2; `inputs > 0` divides `weights.len()`.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn pack_pairs_avx2(weights: &[i8], inputs: usize) -> Vec<u32> {
        let outputs = weights.len() / inputs;
        let units = inputs.div_ceil(2);
        let mut words = alloc::vec![0u32; outputs.div_ceil(BLOCK_ROWS) * units * BLOCK_ROWS];
        let run = |row: usize, c: usize| -> __m256i {
            let at = 16 * c;
            if row >= outputs || at >= inputs {
                return _mm256_setzero_si256();
            }
            let weights = &weights[row * inputs..(row + 1) * inputs];
            let bytes = if at + 16 <= inputs {
                // SAFETY: the 16 bytes at `at` lie inside the row.
                _mm_loadu_si128(weights.as_ptr().add(at) as *const __m128i)
            } else {
                let mut tail = [0i8; 16];
                tail[..inputs - at].copy_from_slice(&weights[at..]);
                _mm_loadu_si128(tail.as_ptr() as *const __m128i)
            };
            _mm256_cvtepi8_epi16(bytes)
        };
        for half in 0..outputs.div_ceil(8) {
            let (block, lane) = (half / 2, 8 * (half % 2));
            for c in 0..units.div_ceil(8) {
                let v: [__m256i; 8] = core::array::from_fn(|i| run(8 * half + i, c));
                // Words of pair 8c + j of rows 8·half.. : column j of the 8 × 8 words.
                let t = |a: usize, b: usize, high: bool| {
                    if high {
                        _mm256_unpackhi_epi32(v[a], v[b])
                    } else {
                        _mm256_unpacklo_epi32(v[a], v[b])
                    }
                };
                let (t0, t1, t2, t3) =
                    (t(0, 1, false), t(0, 1, true), t(2, 3, false), t(2, 3, true));
                let (t4, t5, t6, t7) =
                    (t(4, 5, false), t(4, 5, true), t(6, 7, false), t(6, 7, true));
                let u = [
                    _mm256_unpacklo_epi64(t0, t2),
                    _mm256_unpackhi_epi64(t0, t2),
                    _mm256_unpacklo_epi64(t1, t3),
                    _mm256_unpackhi_epi64(t1, t3),
                    _mm256_unpacklo_epi64(t4, t6),
                    _mm256_unpackhi_epi64(t4, t6),
                    _mm256_unpacklo_epi64(t5, t7),
                    _mm256_unpackhi_epi64(t5, t7),
                ];
                for j in 0..8 {
                    let g = 8 * c + j;
                    if g >= units {
                        break;
                    }
                    let column = if j < 4 {
                        _mm256_permute2x128_si256::<0x20>(u[j], u[j + 4])
                    } else {
                        _mm256_permute2x128_si256::<0x31>(u[j - 4], u[j])
                    };
                    let at = (block * units + g) * BLOCK_ROWS + lane;
                    // SAFETY: g < units and the half block's eight words lie inside `words`.
                    _mm256_storeu_si256(words.as_mut_ptr().add(at) as *mut __m256i, column);
                }
            }
        }
        words
    }

    /// Quads a row, the first row and the blocks of a packed call, checked to lie inside the
    /// packed layer and the inputs: what makes the kernels' unchecked loads sound.
    fn packed_extent(
        packed: &PackedFc,
        xs: &[u8],
        first_block: usize,
        sums: &[i32],
    ) -> (usize, usize, usize) {
        let (quads, row0) = (packed.quads(), first_block * BLOCK_ROWS);
        let blocks = sums.len().div_ceil(BLOCK_ROWS);
        assert!(
            xs.len() >= 4 * quads
                && packed.bytes().len() >= (first_block + blocks) * quads * 64
                && packed.row_sums().len() >= row0 + sums.len()
        );
        (quads, row0, blocks)
    }

    /// Blocks of [`PackedFc`] a pass keeps in flight: eight independent `vpdpbusd` chains
    /// cover the instruction's latency.
    const BLOCKS_IN_FLIGHT: usize = 8;

    /// [`super::packed_dots`] with 512-bit `vpdpbusd`: one vector a block of sixteen rows,
    /// [`BLOCKS_IN_FLIGHT`] blocks sharing each broadcast quad of inputs.
    ///
    /// # Safety
    /// The CPU must support AVX-512 F, BW, VL and VNNI.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    pub(super) unsafe fn packed_dots_zmm(
        packed: &PackedFc,
        xs: &[u8],
        bias: u8,
        first_block: usize,
        sums: &mut [i32],
    ) {
        let (_, row0, blocks) = packed_extent(packed, xs, first_block, sums);
        let mut done = 0;
        while done < blocks {
            let (from, rows) = (done * BLOCK_ROWS, &mut sums[done * BLOCK_ROWS..]);
            let row_sums = &packed.row_sums()[row0 + from..];
            // SAFETY (each arm): the blocks from `first_block + done` lie inside the packed
            // bytes and `xs` holds every quad (asserted above).
            done += match blocks - done {
                BLOCKS_IN_FLIGHT.. => zmm_blocks::<BLOCKS_IN_FLIGHT>(
                    packed,
                    first_block + done,
                    xs,
                    bias,
                    row_sums,
                    rows,
                ),
                4.. => zmm_blocks::<4>(packed, first_block + done, xs, bias, row_sums, rows),
                2.. => zmm_blocks::<2>(packed, first_block + done, xs, bias, row_sums, rows),
                _ => zmm_blocks::<1>(packed, first_block + done, xs, bias, row_sums, rows),
            };
        }
    }

    /// `N` blocks from `block` into the first (up to) `16·N` of `sums`; returns `N`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    #[inline]
    unsafe fn zmm_blocks<const N: usize>(
        packed: &PackedFc,
        block: usize,
        xs: &[u8],
        bias: u8,
        row_sums: &[i32],
        sums: &mut [i32],
    ) -> usize {
        let quads = packed.quads();
        let base = packed.bytes().as_ptr().add(block * quads * 64);
        let mut acc = [_mm512_setzero_si512(); N];
        for g in 0..quads {
            let x = _mm512_set1_epi32((xs.as_ptr().add(4 * g) as *const i32).read_unaligned());
            for (b, acc) in acc.iter_mut().enumerate() {
                let w = _mm512_loadu_si512(base.add((b * quads + g) * 64) as *const __m512i);
                *acc = _mm512_dpbusd_epi32(*acc, x, w);
            }
        }
        let biases = _mm512_set1_epi32(bias as i32);
        for (b, acc) in acc.into_iter().enumerate() {
            let rows = sums.len().saturating_sub(b * BLOCK_ROWS).min(BLOCK_ROWS);
            if rows == 0 {
                break;
            }
            // SAFETY: the mask keeps both accesses to the block's `rows` rows.
            let mask = ((1u32 << rows) - 1) as u16;
            let at = b * BLOCK_ROWS;
            let total = if bias == 0 {
                acc
            } else {
                let weight_sums = _mm512_maskz_loadu_epi32(mask, row_sums.as_ptr().add(at));
                _mm512_sub_epi32(acc, _mm512_mullo_epi32(weight_sums, biases))
            };
            _mm512_mask_storeu_epi32(sums.as_mut_ptr().add(at), mask, total);
        }
        N
    }

    /// [`packed_dots_zmm`] with 256-bit AVX-VNNI: each block as two vectors of eight rows.
    ///
    /// # Safety
    /// The CPU must support AVX2 and AVX-VNNI.
    #[target_feature(enable = "avx2,avxvnni")]
    pub(super) unsafe fn packed_dots_ymm(
        packed: &PackedFc,
        xs: &[u8],
        bias: u8,
        first_block: usize,
        sums: &mut [i32],
    ) {
        let (quads, row0, blocks) = packed_extent(packed, xs, first_block, sums);
        for b in 0..blocks {
            let base = packed.bytes().as_ptr().add((first_block + b) * quads * 64);
            let (mut low, mut high) = (_mm256_setzero_si256(), _mm256_setzero_si256());
            for g in 0..quads {
                // SAFETY: quad `g` of the block and the inputs' quad `g` are inside (asserted).
                let x = _mm256_set1_epi32((xs.as_ptr().add(4 * g) as *const i32).read_unaligned());
                let w = base.add(g * 64);
                low = _mm256_dpbusd_avx_epi32(low, x, _mm256_loadu_si256(w as *const __m256i));
                high = _mm256_dpbusd_avx_epi32(
                    high,
                    x,
                    _mm256_loadu_si256(w.add(32) as *const __m256i),
                );
            }
            let mut lanes = [0i32; BLOCK_ROWS];
            _mm256_storeu_si256(lanes.as_mut_ptr() as *mut __m256i, low);
            _mm256_storeu_si256(lanes.as_mut_ptr().add(8) as *mut __m256i, high);
            let rows = &mut sums[b * BLOCK_ROWS..];
            let weight_sums = &packed.row_sums()[row0 + b * BLOCK_ROWS..];
            for ((sum, lane), w) in rows.iter_mut().zip(lanes).zip(weight_sums) {
                *sum = lane.wrapping_sub(w.wrapping_mul(bias as i32));
            }
        }
    }

    /// Column `c` (`W[0..16][c]`) of sixteen rows' sixteen words `v[row][c]`, handed to `emit`
    /// for each `c`: unpacks of 32- and 64-bit lanes within 128-bit lanes, then two rounds of
    /// 128-bit lane shuffles. `v` is worked in place, and each column goes straight from a
    /// register to `emit`: arrays of vectors returned or copied went through `memcpy`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn transpose16(v: &mut [__m512i; 16], mut emit: impl FnMut(usize, __m512i)) {
        // t[2i], lane L: rows 2i, 2i+1 at columns 4L, 4L+1; t[2i+1]: at 4L+2, 4L+3.
        let mut t = [_mm512_setzero_si512(); 16];
        for i in 0..8 {
            t[2 * i] = _mm512_unpacklo_epi32(v[2 * i], v[2 * i + 1]);
            t[2 * i + 1] = _mm512_unpackhi_epi32(v[2 * i], v[2 * i + 1]);
        }
        // v[4i + j], lane L: rows 4i..4i+4 at column 4L + j.
        for i in 0..4 {
            v[4 * i] = _mm512_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
            v[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
            v[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
            v[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
        }
        for j in 0..4 {
            let a = _mm512_shuffle_i32x4::<0x88>(v[j], v[4 + j]);
            let b = _mm512_shuffle_i32x4::<0xdd>(v[j], v[4 + j]);
            let c = _mm512_shuffle_i32x4::<0x88>(v[8 + j], v[12 + j]);
            let d = _mm512_shuffle_i32x4::<0xdd>(v[8 + j], v[12 + j]);
            emit(j, _mm512_shuffle_i32x4::<0x88>(a, c));
            emit(4 + j, _mm512_shuffle_i32x4::<0x88>(b, d));
            emit(8 + j, _mm512_shuffle_i32x4::<0xdd>(a, c));
            emit(12 + j, _mm512_shuffle_i32x4::<0xdd>(b, d));
        }
    }

    /// [`super::pack`]'s words and row sums: each block's rows read in 64-byte runs (the last
    /// one masked, so a part quad gets zero weights), transposed, stored, and added to the
    /// rows' sums with `vpdpbusd` against ones.
    ///
    /// # Safety
    /// The CPU must support AVX-512 F, BW and VNNI; `inputs` > 0 divides `weights.len()`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub(super) unsafe fn pack_zmm(weights: &[i8], inputs: usize) -> (Vec<u32>, Vec<i32>) {
        let outputs = weights.len() / inputs;
        assert!(inputs > 0 && outputs * inputs == weights.len());
        let (quads, blocks) = (inputs.div_ceil(4), outputs.div_ceil(BLOCK_ROWS));
        // Every word is stored below (each block's quads `16·chunk + c` cover `0..quads`), so
        // the buffer is not zeroed first.
        let mut words: Vec<u32> = Vec::with_capacity(blocks * quads * BLOCK_ROWS);
        let mut sums = vec![0i32; blocks * BLOCK_ROWS];
        let ones = _mm512_set1_epi8(1);
        for b in 0..blocks {
            let rows = (outputs - b * BLOCK_ROWS).min(BLOCK_ROWS);
            let mut total = _mm512_setzero_si512();
            for chunk in 0..quads.div_ceil(16) {
                let at = 64 * chunk;
                let len = (inputs - at).min(64);
                let mask = if len == 64 {
                    u64::MAX
                } else {
                    (1u64 << len) - 1
                };
                let mut runs = [_mm512_setzero_si512(); 16];
                for (r, run) in runs.iter_mut().enumerate().take(rows) {
                    // SAFETY: the mask keeps the load to the row's bytes `at..at + len`.
                    let row = weights.as_ptr().add((b * BLOCK_ROWS + r) * inputs + at);
                    *run = _mm512_maskz_loadu_epi8(mask, row);
                }
                let (count, first) = (quads - 16 * chunk, (b * quads + 16 * chunk) * BLOCK_ROWS);
                let out = words.as_mut_ptr().add(first);
                transpose16(&mut runs, |c, column| {
                    if c < count {
                        // SAFETY: quad 16·chunk + c < quads of block b lies inside `words`'
                        // capacity.
                        _mm512_storeu_si512(out.add(c * BLOCK_ROWS) as *mut __m512i, column);
                    }
                    // Columns past the last quad hold the masked loads' zeros: they add nothing.
                    total = _mm512_dpbusd_epi32(total, ones, column);
                });
            }
            // SAFETY: block b's sixteen sums lie inside `sums`.
            _mm512_storeu_si512(sums.as_mut_ptr().add(b * BLOCK_ROWS) as *mut __m512i, total);
        }
        // SAFETY: the loops above stored every word of the capacity (see its allocation).
        words.set_len(blocks * quads * BLOCK_ROWS);
        sums.truncate(outputs);
        (words, sums)
    }
}
