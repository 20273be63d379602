//! The exact u8 × s8 GEMM for CPUs with VNNI: `C[m][p] = Σ_k W[m][k] · (x[k][p] - z)`.
//!
//! `vpdpbusd` multiplies unsigned by signed bytes, four products per int32 lane, and adds them
//! to the lane without saturating. Activations are stored as `x' = x + 128` (u8) and padding as
//! `z + 128`, so that `Σ W·(x - z) = Σ W·x' - (z + 128)·ΣW`: the weight sums are taken once per
//! row when packing and subtracted from each sum. Every product fits int32 and int32 addition
//! wraps associatively, so the result equals the reference bit for bit (SPEC.md "Convolution").
//!
//! Taps go in quads: a packed weight row is one 32-bit word of four int8 weights per quad,
//! broadcast to every lane; an input panel holds, for each of its [`COLS`] positions, the four
//! taps of a quad side by side (one 512-bit register per quad).

use alloc::vec;
use alloc::vec::Vec;

use crate::amx::TileWeights;
use crate::byte_pairs::{byte_pairs, maddubs_lane, BytePairs, Fix};

/// Output rows (channels) of one packed weight block.
pub const ROWS: usize = 8;
/// Output positions of one input panel: sixteen int32 lanes.
pub const COLS: usize = 16;

/// Which instruction runs the tile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuadKernel {
    /// `vpdpbusd` emulated in plain Rust: the definition of the tile, runnable on any CPU.
    Emulated,
    /// 256-bit AVX-VNNI.
    AvxVnni,
    /// 512-bit AVX-512 VNNI.
    Avx512Vnni,
    /// AMX `tdpbsud` tiles ([`crate::amx`]); outside the GEMM (the FC layers), AVX-512 VNNI.
    Amx,
    /// The AMX tiles' layout and steps in plain Rust: checks them on any CPU.
    AmxEmulated,
    /// AVX2 without VNNI, on the u8 panels of the quad tiles (their unfolding and fused
    /// requantization). Weights go in one of two layouts ([`Avx2Form`]): as bytes whose pairs
    /// `vpmaddubsw` sums without saturating, the few other pairs halved and their remainders
    /// added as fixes ([`crate::byte_pairs`]); or, where too many pairs need fixes, split into
    /// int16 pairs of even and odd taps that two `vpmaddwd` multiply. Both give the lane what
    /// one `vpdpbusd` would. Used for convolutions only: fully connected rows stay int16.
    Avx2,
}

impl QuadKernel {
    /// The kernel of the active tile, if it has one (the portable tile runs the int16 paths
    /// instead).
    pub fn for_active_tile() -> Option<QuadKernel> {
        use crate::tile::Tile;
        match crate::tile::active() {
            Tile::Amx => Some(QuadKernel::Amx),
            Tile::Avx512Vnni => Some(QuadKernel::Avx512Vnni),
            Tile::AvxVnni => Some(QuadKernel::AvxVnni),
            Tile::VnniEmulated => Some(QuadKernel::Emulated),
            Tile::Avx2 => Some(QuadKernel::Avx2),
            Tile::Portable => None,
        }
    }

    /// The kernel of the active tile for fully connected layers: those with `vpdpbusd` (or its
    /// emulation). Under the AVX2 tile a row-major FC row meets its input once per output, so
    /// splitting its quads would cost more than the int16 dot products it replaces.
    pub fn for_fully_connected() -> Option<QuadKernel> {
        Self::for_active_tile().filter(|k| *k != QuadKernel::Avx2)
    }
}

/// How [`QuadKernel::Avx2`] lays out its weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Avx2Form {
    /// Bytes with fixes for rows of at least [`MIN_BYTE_TAPS`] taps where at most one quad in
    /// [`MOST_FIXED`] needs a fix; split otherwise.
    Chosen,
    /// Bytes for `vpmaddubsw`, with fixes for the pairs it would saturate on.
    Bytes,
    /// Even and odd int16 pairs for `vpmaddwd`.
    Split,
}

/// Shortest rows that [`Avx2Form::Chosen`] lays out as bytes. Both loops issue the same
/// multiplies per product (two `vpmaddwd`, or a `vpmaddubsw` and a `vpmaddwd`, per 32), which
/// bound them on this class of CPU; the byte loop saves adds and the splitting, a tenth of the
/// loop, and pays for its fixes and for laying the weights out. That wins on long rows with
/// few fixes (AlexNet 10.1 → 9.3 ms, ResNet-18 20.0 → 17.9 on an AVX2-only AMD EPYC) and lost
/// on MobileNetV2's short 1 × 1 rows, whose folded batch norms need fixes for 10–30% of quads
/// (6.15 → 6.5 ms with rows of 128 taps and one fix in eight allowed).
pub const MIN_BYTE_TAPS: usize = 512;

/// Above one fixed quad in this many, [`Avx2Form::Chosen`] keeps the split layout. Trained
/// convolutions with long rows need fixes for 1.5–5% of their quads; weights built to need
/// them everywhere get the split loop, as before the byte loop existed.
pub const MOST_FIXED: usize = 16;

/// The zero point's correction applies to `x' = x + 128`; valid for int8 zero points only.
pub fn zero_fits(zero: i32) -> bool {
    (-128..=127).contains(&zero)
}

/// Some rows of int8 weights for the quad GEMM, with each row's correction
/// `(z + 128) · Σ W[row]` (wrapping). Rows whose length is a multiple of four are read in
/// place, a quad being four consecutive weights; others are packed into whole quads (the last
/// one completed with zero weights), [`ROWS`] rows per block.
pub struct QuadWeights<'a> {
    source: Source<'a>,
    corrections: Vec<i32>,
    quads: usize,
    rows: usize,
}

enum Source<'a> {
    /// Row-major rows of `taps` weights, `taps` a multiple of four.
    Rows(&'a [i8], usize),
    /// Block `b`, quad `q`, row `r` at word `(b · quads + q) · ROWS + r`.
    Packed(Vec<i32>),
    /// Rows laid out for AMX A tiles.
    Tiles(TileWeights<'a>),
    /// For [`QuadKernel::Avx2`]: row `r`'s quad `q` (weights `w0..w3`, zero past the row's
    /// end) as the int16 pairs `(w0, w2)` and `(w1, w3)`, words `2 · (r · quads + q)` and
    /// the one after.
    Split(Vec<i32>),
    /// For [`QuadKernel::Avx2`]: exact `vpmaddubsw` quads, row `r`'s quad `q` at word
    /// `r · quads + q`, and each row's fixes.
    Bytes(BytePairs),
}

impl<'a> QuadWeights<'a> {
    /// The quad view of `rows` rows of `taps` weights (row-major) for inputs of zero point
    /// `zero`, laid out for `kernel`.
    pub fn new(kernel: QuadKernel, weights: &'a [i8], rows: usize, taps: usize, zero: i32) -> Self {
        Self::with_form(kernel, Avx2Form::Chosen, weights, rows, taps, zero)
    }

    /// [`QuadWeights::new`] with [`QuadKernel::Avx2`]'s layout chosen by `form` (tests and
    /// benchmarks pin each one; other kernels ignore it).
    pub fn with_form(
        kernel: QuadKernel,
        form: Avx2Form,
        weights: &'a [i8],
        rows: usize,
        taps: usize,
        zero: i32,
    ) -> Self {
        let weights = &weights[..rows * taps];
        let quads = taps.div_ceil(4);
        // Inputs after a ReLU mostly have the zero point -128: no correction, so no pass over
        // the weights for their sums.
        let corrections = if zero == -128 {
            vec![0; rows]
        } else {
            row_sums(weights, taps)
                .into_iter()
                .map(|sum| sum.wrapping_mul(zero + 128))
                .collect()
        };
        let source = if matches!(kernel, QuadKernel::Amx | QuadKernel::AmxEmulated) {
            Source::Tiles(TileWeights::new(weights, rows, taps))
        } else if kernel == QuadKernel::Avx2 {
            avx2_source(form, weights, rows, taps)
        } else if taps.is_multiple_of(4) {
            Source::Rows(weights, taps)
        } else {
            Source::Packed(pack(weights, rows, taps))
        };
        QuadWeights {
            source,
            corrections,
            quads,
            rows,
        }
    }

    /// Whether [`QuadKernel::Avx2`] runs these weights as bytes with fixes.
    pub fn avx2_bytes(&self) -> bool {
        matches!(self.source, Source::Bytes(_))
    }

    /// The weights as an owned layout, for keeping past the borrowed rows (see
    /// [`crate::native`]'s prepared convolutions); `None` for rows read in place or AMX tiles.
    pub fn into_owned(mut self) -> Option<QuadWeights<'static>> {
        // Trimmed to their lengths: the layouts come from the thread's spare storage, which
        // may be far larger than this layer's, and a kept layout must hold what it reports.
        let source = match core::mem::replace(&mut self.source, Source::Packed(Vec::new())) {
            Source::Packed(mut words) => {
                words.shrink_to_fit();
                Source::Packed(words)
            }
            Source::Split(mut words) => {
                words.shrink_to_fit();
                Source::Split(words)
            }
            Source::Bytes(mut pairs) => {
                pairs.words.shrink_to_fit();
                pairs.fixes.shrink_to_fit();
                pairs.firsts.shrink_to_fit();
                Source::Bytes(pairs)
            }
            Source::Rows(..) | Source::Tiles(..) => return None,
        };
        let mut corrections = core::mem::take(&mut self.corrections);
        corrections.shrink_to_fit();
        Some(QuadWeights {
            source,
            corrections,
            quads: self.quads,
            rows: self.rows,
        })
    }

    /// Heap bytes the layout and corrections hold (their capacities).
    pub fn heap_bytes(&self) -> usize {
        let layout = match &self.source {
            Source::Packed(words) | Source::Split(words) => words.capacity() * 4,
            Source::Bytes(pairs) => {
                pairs.words.capacity() * 4
                    + pairs.fixes.capacity() * core::mem::size_of::<Fix>()
                    + pairs.firsts.capacity() * 4
            }
            Source::Rows(..) | Source::Tiles(..) => 0,
        };
        layout + self.corrections.capacity() * 4
    }

    /// Rows and taps (in quads) of the weights.
    pub fn shape(&self) -> (usize, usize) {
        (self.rows, self.quads)
    }

    /// Where the [`ROWS`] rows from row `first` (a multiple of [`ROWS`]) start, and the bytes
    /// from one quad to the next. Rows past the last one (in a part block) repeat the block's
    /// first row: their sums are discarded.
    fn block(&self, first: usize) -> Block<'_> {
        debug_assert!(first.is_multiple_of(ROWS));
        let block = first / ROWS;
        let row_of = |r: usize| {
            if first + r < self.rows {
                first + r
            } else {
                first
            }
        };
        match &self.source {
            Source::Rows(w, taps) => Block {
                bytes: as_u8(w),
                starts: core::array::from_fn(|r| row_of(r) * taps),
                step: 4,
                width: 4,
                quads: self.quads,
                fixes: None,
            },
            Source::Packed(words) => Block {
                bytes: words_as_bytes(words),
                starts: core::array::from_fn(|r| (block * self.quads * ROWS + r) * 4),
                step: 4 * ROWS,
                width: 4,
                quads: self.quads,
                fixes: None,
            },
            Source::Split(words) => Block {
                bytes: words_as_bytes(words),
                starts: core::array::from_fn(|r| row_of(r) * self.quads * 8),
                step: 8,
                width: 8,
                quads: self.quads,
                fixes: None,
            },
            Source::Bytes(pairs) => Block {
                bytes: words_as_bytes(&pairs.words),
                starts: core::array::from_fn(|r| row_of(r) * self.quads * 4),
                step: 4,
                width: 4,
                quads: self.quads,
                fixes: Some(pairs),
            },
            Source::Tiles(_) => unreachable!("AMX weights go through crate::amx"),
        }
    }
}

/// The weights of one block of rows: quad `q` of row `r` is the `width` bytes at
/// `starts[r] + q · step` (four int8 weights, or for [`Source::Split`] their two int16 pairs),
/// and for [`Source::Bytes`] row `r` adds [`Block::fixes`] after its quads. Under
/// [`QuadKernel::Avx2`] a width of 4 means bytes, 8 the split pairs.
#[derive(Clone, Copy)]
struct Block<'a> {
    bytes: &'a [u8],
    starts: [usize; ROWS],
    step: usize,
    width: usize,
    quads: usize,
    fixes: Option<&'a BytePairs>,
}

impl Block<'_> {
    /// Whether every quad of every row lies inside `bytes`: what the SIMD tiles rely on (with
    /// every fix's quad below `quads`, which [`avx2_source`] checks once).
    fn in_bounds(&self) -> bool {
        let span = (self.quads.max(1) - 1) * self.step + self.width;
        self.starts.iter().all(|s| s + span <= self.bytes.len())
    }

    /// Row `r`'s fixes: none but for [`Source::Bytes`], whose row `r` starts at byte
    /// `row · quads · 4`.
    #[inline(always)]
    fn fixes(&self, r: usize) -> &[Fix] {
        match self.fixes {
            Some(pairs) if self.quads > 0 => {
                let row = self.starts[r] / (4 * self.quads);
                &pairs.fixes[pairs.firsts[row] as usize..pairs.firsts[row + 1] as usize]
            }
            _ => &[],
        }
    }

    /// Quad `q` of row `r` as one word.
    #[inline(always)]
    fn word(&self, r: usize, q: usize) -> i32 {
        let at = self.starts[r] + q * self.step;
        i32::from_le_bytes(self.bytes[at..at + 4].try_into().expect("four bytes"))
    }
}

fn as_u8(w: &[i8]) -> &[u8] {
    crate::as_u8(w)
}

fn words_as_bytes(words: &[i32]) -> &[u8] {
    // SAFETY: any i32 is four valid bytes; u8 has alignment 1; the lifetime is kept.
    unsafe { core::slice::from_raw_parts(words.as_ptr() as *const u8, words.len() * 4) }
}

/// Packs rows whose length is no multiple of four into whole quads, [`ROWS`] rows per block.
fn pack(weights: &[i8], rows: usize, taps: usize) -> Vec<i32> {
    let quads = taps.div_ceil(4);
    let mut words = vec![0i32; rows.div_ceil(ROWS) * quads * ROWS];
    for (r, row) in weights.chunks_exact(taps).enumerate() {
        let base = (r / ROWS) * quads * ROWS + r % ROWS;
        for (q, four) in row.chunks(4).enumerate() {
            let mut bytes = [0u8; 4];
            for (to, w) in bytes.iter_mut().zip(four) {
                *to = *w as u8;
            }
            words[base + q * ROWS] = i32::from_le_bytes(bytes);
        }
    }
    words
}

/// [`QuadKernel::Avx2`]'s weights as `form` asks: for [`Avx2Form::Chosen`], bytes unless more
/// than one quad in [`MOST_FIXED`] needs a fix.
fn avx2_source(form: Avx2Form, weights: &[i8], rows: usize, taps: usize) -> Source<'static> {
    if form == Avx2Form::Split {
        return Source::Split(split_pairs(weights, rows, taps));
    }
    if form == Avx2Form::Chosen && taps < MIN_BYTE_TAPS {
        return Source::Split(split_pairs(weights, rows, taps));
    }
    let words = take_spare(&SPARE_SPLIT, rows * taps.div_ceil(4));
    let pairs = byte_pairs(weights, rows, taps, words);
    // The byte tile reads a panel's quad per fix unchecked.
    assert!(pairs
        .fixes
        .iter()
        .all(|f| (f.quad as usize) < taps.div_ceil(4)));
    if form == Avx2Form::Chosen && pairs.fixes.len() * MOST_FIXED > pairs.words.len() {
        keep_spare(&SPARE_SPLIT, pairs.words, MAX_SPARE_SPLIT);
        return Source::Split(split_pairs(weights, rows, taps));
    }
    Source::Bytes(pairs)
}

/// The weights of `rows` rows of `taps` as [`Source::Split`] lays them out.
fn split_pairs(weights: &[i8], rows: usize, taps: usize) -> Vec<i32> {
    let quads = taps.div_ceil(4);
    // Every word is written below: each row's vector part, then its remaining quads.
    let mut words = take_spare(&SPARE_SPLIT, rows * quads * 2);
    for (row, out) in weights
        .chunks_exact(taps)
        .zip(words.chunks_exact_mut(quads * 2))
    {
        let mut done = 0;
        #[cfg(target_arch = "x86_64")]
        if crate::tile::avx2() {
            // SAFETY: the CPU supports AVX2, checked just above.
            done = unsafe { x86::split_row_avx2(row, out) };
        }
        for (q, pair) in out.chunks_exact_mut(2).enumerate().skip(done) {
            let w = |t: usize| row.get(4 * q + t).map_or(0, |w| *w as i16);
            pair[0] = int16_pair(w(0), w(2));
            pair[1] = int16_pair(w(1), w(3));
        }
    }
    words
}

/// Two int16 values in one word, the low half first, as `vpmaddwd` reads them.
#[inline(always)]
fn int16_pair(lo: i16, hi: i16) -> i32 {
    (lo as u16 as u32 | (hi as u16 as u32) << 16) as i32
}

/// Each row's weight sum, wrapping to int32 (exact: a row of under 2^24 weights cannot
/// overflow, and wrapping is what the reference's sums do anyway).
fn row_sums(weights: &[i8], taps: usize) -> Vec<i32> {
    #[cfg(target_arch = "x86_64")]
    if crate::tile::avx2() {
        // SAFETY: the CPU supports AVX2, checked just above.
        return unsafe { x86::row_sums_avx2(weights, taps) };
    }
    row_sums_scalar(weights, taps)
}

fn row_sums_scalar(weights: &[i8], taps: usize) -> Vec<i32> {
    weights
        .chunks_exact(taps)
        .map(|row| row.iter().fold(0i32, |s, w| s.wrapping_add(*w as i32)))
        .collect()
}

/// Activations `x'[k][p]` (taps × positions, as u8) in panels of [`COLS`] positions: within a
/// panel, tap `k` of position `j` sits at [`QuadInput::slot`]. Slots past the last tap or
/// position may hold anything: they meet zero weights or are discarded.
pub struct QuadInput {
    bytes: Vec<u8>,
    quads: usize,
    positions: usize,
}

impl QuadInput {
    /// Bytes in one panel.
    pub fn panel_len(taps: usize) -> usize {
        taps.div_ceil(4) * COLS * 4
    }

    /// Where tap `k` of a panel's position `j` goes within the panel.
    #[inline(always)]
    pub fn slot(k: usize, j: usize) -> usize {
        ((k / 4) * COLS + j) * 4 + k % 4
    }

    /// Builds the panels with `fill(first_position, panel)`, on the rayon pool with `parallel`.
    ///
    /// The bytes are those of an earlier `QuadInput` dropped on this thread where there is one
    /// (zeroing megabytes of panels that the fill then overwrites was 7% of ResNet-18): what
    /// `fill` leaves alone holds stale but initialized bytes, which the slots' contract allows.
    pub fn build(
        taps: usize,
        positions: usize,
        parallel: bool,
        fill: impl Fn(usize, &mut [u8]) + Sync,
    ) -> Self {
        let len = Self::panel_len(taps);
        let total = positions.div_ceil(COLS) * len;
        let mut bytes = take_spare(&SPARE_PANELS, total);
        crate::gemm::fill_panels(&mut bytes, len, COLS, parallel, fill);
        QuadInput {
            bytes,
            quads: taps.div_ceil(4),
            positions,
        }
    }

    /// Positions (columns) of the product.
    pub fn positions(&self) -> usize {
        self.positions
    }

    /// The panels' bytes, quads per position and positions, for [`crate::amx`].
    pub(crate) fn parts(&self) -> (&[u8], usize, usize) {
        (&self.bytes, self.quads, self.positions)
    }

    fn panel(&self, panel: usize) -> &[u8] {
        let len = self.quads * COLS * 4;
        &self.bytes[panel * len..(panel + 1) * len]
    }
}

impl Drop for QuadInput {
    /// Keeps the larger of this thread's spare and these bytes for the next panels, up to
    /// [`MAX_SPARE`].
    fn drop(&mut self) {
        keep_spare(&SPARE_PANELS, core::mem::take(&mut self.bytes), MAX_SPARE);
    }
}

/// The most panel bytes a thread keeps between layers.
const MAX_SPARE: usize = 32 << 20;

/// The most split-weight words a thread keeps between layers (16 MiB).
const MAX_SPARE_SPLIT: usize = 4 << 20;

/// Storage kept on one thread for the next buffer of its kind.
type Spare<T> = std::thread::LocalKey<core::cell::Cell<Vec<T>>>;

std::thread_local! {
    /// The bytes of this thread's last dropped [`QuadInput`], for the next one.
    static SPARE_PANELS: core::cell::Cell<Vec<u8>> = const { core::cell::Cell::new(Vec::new()) };
    /// The words of this thread's last dropped [`Source::Split`] weights, for the next ones.
    static SPARE_SPLIT: core::cell::Cell<Vec<i32>> = const { core::cell::Cell::new(Vec::new()) };
}

/// `len` elements in this thread's `spare` storage where it has some: stale but initialized
/// values, which the caller overwrites (only growth past the spare's length is zeroed).
/// Outside a thread's life (its locals torn down) there is no spare: fresh zeros.
fn take_spare<T: Copy + Default + 'static>(spare: &'static Spare<T>, len: usize) -> Vec<T> {
    let mut v = spare.try_with(|s| s.take()).unwrap_or_default();
    if v.len() < len {
        v.resize(len, T::default());
    } else {
        v.truncate(len);
    }
    v
}

/// Keeps the larger of this thread's `spare` and `v` (if it holds at most `most` elements).
fn keep_spare<T: 'static>(spare: &'static Spare<T>, v: Vec<T>, most: usize) {
    if v.capacity() <= most {
        // During a thread's teardown there is nowhere to keep it: it is freed.
        let _ = spare.try_with(|s| {
            let old = s.take();
            s.set(if old.capacity() >= v.capacity() {
                old
            } else {
                v
            });
        });
    }
}

impl Drop for QuadWeights<'_> {
    /// Keeps split or byte weights' storage for this thread's next layer: allocating and
    /// zeroing it afresh for every task of every layer was a third of MobileNetV2's memset.
    fn drop(&mut self) {
        if let Source::Split(words) | Source::Bytes(BytePairs { words, .. }) = &mut self.source {
            keep_spare(&SPARE_SPLIT, core::mem::take(words), MAX_SPARE_SPLIT);
        }
    }
}

/// Panels one tile covers: 8 rows × 3 panels keep 24 accumulators, the three panels' quads
/// and a broadcast weight in the 32 AVX-512 registers.
pub const PANELS: usize = 3;

/// Most panels whose sums one block of rows hands to the sink at once: runs of
/// `SPAN · COLS` sums, so that the requantization's cost per call (its constants, the calls)
/// spreads over 192 outputs rather than 48. A multiple of [`PANELS`].
pub const SPAN: usize = 4 * PANELS;

/// Bytes of panels a run of [`SPAN`] may hold: the run's panels are read once per block of
/// rows, so they should stay in the L2 cache (deep layers run [`PANELS`] at a time, as before).
const SPAN_BYTES: usize = 96 << 10;

/// Panels of one run for panels of `quads` quads: as many as [`SPAN_BYTES`] holds, a multiple
/// of [`PANELS`] from [`PANELS`] to [`SPAN`].
fn span(quads: usize) -> usize {
    let fit = SPAN_BYTES / (quads * COLS * 4).max(1);
    (fit / PANELS * PANELS).clamp(PANELS, SPAN)
}

/// Sums of one block of rows over up to [`SPAN`] panels: `acc[row][panel · COLS + j]`.
type Acc = [[i32; SPAN * COLS]; ROWS];

std::thread_local! {
    /// Each thread's [`Acc`], kept between products. Zeroing a fresh 6 KiB one per call cost
    /// MobileNetV2 about 4 MB of memset an inference (636 calls, most on layers that use a
    /// few panels of it). Reuse is safe because every tile stores (never adds to) the whole
    /// panels it computes, and the sinks read only those.
    static ACC: core::cell::RefCell<Acc> = const { core::cell::RefCell::new([[0; SPAN * COLS]; ROWS]) };
}

/// Computes the product for every row of `w` into `sums` (rows × positions, row-major).
pub fn multiply(kernel: QuadKernel, w: &QuadWeights<'_>, x: &QuadInput, sums: &mut [i32]) {
    assert_eq!(
        sums.len(),
        w.rows * x.positions,
        "one sum per row and position"
    );
    let positions = x.positions;
    multiply_with(kernel, w, x, |row, first, lane, correction| {
        let at = row * positions + first;
        for (sum, v) in sums[at..at + lane.len()].iter_mut().zip(lane) {
            *sum = v.wrapping_sub(correction);
        }
    })
}

/// Computes the product tile by tile and hands each row's run of sums to
/// `sink(row, first_position, sums, correction)`, so a caller can requantize them while they
/// are in cache instead of storing a whole sum matrix. The products are `sums - correction`
/// (wrapping): the caller folds the row's correction into its bias, once a run instead of a
/// pass over the sums.
pub fn multiply_with(
    kernel: QuadKernel,
    w: &QuadWeights<'_>,
    x: &QuadInput,
    sink: impl FnMut(usize, usize, &[i32], i32),
) {
    multiply_rows_with(kernel, w, 0..w.rows, x, sink)
}

/// [`multiply_with`] for the weights' rows `rows` only (`rows.start` a multiple of [`ROWS`]),
/// the sink's rows counted from `rows.start`: a task's share of weights laid out once for the
/// whole layer.
pub fn multiply_rows_with(
    kernel: QuadKernel,
    w: &QuadWeights<'_>,
    rows: core::ops::Range<usize>,
    x: &QuadInput,
    mut sink: impl FnMut(usize, usize, &[i32], i32),
) {
    assert_eq!(w.quads, x.quads, "weights and input have the same taps");
    assert!(rows.start.is_multiple_of(ROWS) && rows.start <= rows.end && rows.end <= w.rows);
    if let Source::Tiles(tiles) = &w.source {
        assert_eq!(rows, 0..w.rows, "AMX tiles run whole");
        let emulate = kernel != QuadKernel::Amx;
        return crate::amx::multiply_with(tiles, &w.corrections, x, emulate, sink);
    }
    ACC.with(|kept| match kept.try_borrow_mut() {
        Ok(mut acc) => multiply_into(kernel, w, rows, x, &mut acc, &mut sink),
        // A product inside a sink on this thread (none today) gets its own.
        Err(_) => multiply_into(kernel, w, rows, x, &mut [[0; SPAN * COLS]; ROWS], &mut sink),
    })
}

/// [`multiply_with`]'s loop over tiles, with `acc` for the sums (its contents on entry unused).
fn multiply_into(
    kernel: QuadKernel,
    w: &QuadWeights<'_>,
    rows: core::ops::Range<usize>,
    x: &QuadInput,
    acc: &mut Acc,
    sink: &mut impl FnMut(usize, usize, &[i32], i32),
) {
    let panels = x.positions.div_ceil(COLS);
    let span = span(x.quads);
    for first_panel in (0..panels).step_by(span) {
        let run = span.min(panels - first_panel);
        let first = first_panel * COLS;
        let width = (run * COLS).min(x.positions - first);
        for r0 in rows.clone().step_by(ROWS) {
            for base in (0..run).step_by(PANELS) {
                let count = PANELS.min(run - base);
                // Panels past the last one repeat it; their sums are not used.
                let xs: [&[u8]; PANELS] =
                    core::array::from_fn(|i| x.panel(first_panel + base + i.min(count - 1)));
                let last = first_panel + base + count - 1;
                let narrow = x.positions - last * COLS <= COLS / 2;
                tile(kernel, w.block(r0), xs, (count, narrow), acc, base);
            }
            for (r, lane) in acc.iter().enumerate().take(ROWS.min(rows.end - r0)) {
                sink(
                    r0 + r - rows.start,
                    first,
                    &lane[..width],
                    w.corrections[r0 + r],
                );
            }
        }
    }
}

/// One [`ROWS`] × `count · COLS` tile (`count` ≤ [`PANELS`]) with `kernel`, into `acc`'s
/// columns from panel `base` on. With `narrow`, the last panel holds at most `COLS / 2`
/// positions, and the AVX2 tiles compute only its first half (a 7 × 7 layer's fourth panel
/// holds one position of its 16).
#[inline]
fn tile(
    kernel: QuadKernel,
    w: Block<'_>,
    xs: [&[u8]; PANELS],
    (count, narrow): (usize, bool),
    acc: &mut Acc,
    base: usize,
) {
    let quads = w.quads;
    assert!(w.in_bounds() && xs.iter().all(|x| x.len() >= quads * COLS * 4));
    // The kernels store whole panels of sums from column `base · COLS` on.
    assert!(count <= PANELS && base + count <= SPAN);
    match kernel {
        #[cfg(target_arch = "x86_64")]
        QuadKernel::Avx512Vnni if crate::tile::Tile::Avx512Vnni.supported() => {
            // SAFETY: AVX-512 F + BW + VNNI are present (checked); every weight quad and both
            // panels' `quads` steps are in bounds (asserted).
            unsafe {
                match count {
                    1 => x86::tile_zmm::<1>(w, xs, acc, base),
                    2 => x86::tile_zmm::<2>(w, xs, acc, base),
                    _ => x86::tile_zmm::<3>(w, xs, acc, base),
                }
            }
        }
        #[cfg(target_arch = "x86_64")]
        QuadKernel::AvxVnni if crate::tile::Tile::AvxVnni.supported() => {
            for (half, x) in xs.iter().enumerate().take(count) {
                // SAFETY: AVX2 + AVX-VNNI are present (checked); bounds as above.
                unsafe { x86::tile_ymm(w, x, acc, base + half) }
            }
        }
        #[cfg(target_arch = "x86_64")]
        QuadKernel::Avx2 if crate::tile::Tile::Avx2.supported() => {
            for (half, x) in xs.iter().enumerate().take(count) {
                let at = base + half;
                // SAFETY: AVX2 is present (checked); bounds as above, and every fix's quad is
                // below `quads` (checked when the weights were laid out).
                unsafe {
                    match (w.width == 4, narrow && half + 1 == count) {
                        (true, false) => x86::tile_bytes_avx2::<true>(w, x, acc, at),
                        (true, true) => x86::tile_bytes_avx2::<false>(w, x, acc, at),
                        (false, false) => x86::tile_split_avx2::<true>(w, x, acc, at),
                        (false, true) => x86::tile_split_avx2::<false>(w, x, acc, at),
                    }
                }
            }
        }
        QuadKernel::Avx2 => {
            for (half, x) in xs.iter().enumerate().take(count) {
                if w.width == 4 {
                    tile_bytes_portable(w, x, acc, base + half)
                } else {
                    tile_split_portable(w, x, acc, base + half)
                }
            }
        }
        _ => {
            for (half, x) in xs.iter().enumerate().take(count) {
                tile_emulated(w, x, acc, base + half)
            }
        }
    }
}

/// [`QuadKernel::Avx2`]'s tile in plain Rust over one panel: per lane, the even bytes' pair
/// product plus the odd bytes', as two `vpmaddwd` give it. Runs where the kernel is asked for
/// without AVX2 (never by default).
fn tile_split_portable(w: Block<'_>, xs: &[u8], acc: &mut Acc, half: usize) {
    let pair = |word: i32| [word as i16 as i32, (word >> 16) as i16 as i32];
    for (r, row) in acc.iter_mut().enumerate() {
        let lanes = &mut row[half * COLS..(half + 1) * COLS];
        lanes.fill(0);
        for q in 0..w.quads {
            let at = w.starts[r] + q * w.step;
            let word = |i: usize| {
                i32::from_le_bytes(w.bytes[at + 4 * i..at + 4 * i + 4].try_into().expect("4"))
            };
            let ([w0, w2], [w1, w3]) = (pair(word(0)), pair(word(1)));
            let x = &xs[q * COLS * 4..(q + 1) * COLS * 4];
            for (lane, f) in lanes.iter_mut().zip(x.chunks_exact(4)) {
                let even = f[0] as i32 * w0 + f[2] as i32 * w2;
                let odd = f[1] as i32 * w1 + f[3] as i32 * w3;
                *lane = lane.wrapping_add(even).wrapping_add(odd);
            }
        }
    }
}

/// [`QuadKernel::Avx2`]'s byte tile in plain Rust over one panel: per lane, `vpmaddubsw`'s
/// saturated pair sums of each quad and then of each fix, as the AVX2 loop adds them. Runs
/// where the kernel is asked for without AVX2 (never by default), and checks the fixes.
fn tile_bytes_portable(w: Block<'_>, xs: &[u8], acc: &mut Acc, half: usize) {
    for (r, row) in acc.iter_mut().enumerate() {
        let lanes = &mut row[half * COLS..(half + 1) * COLS];
        lanes.fill(0);
        let quads = (0..w.quads).map(|q| (q, w.word(r, q)));
        let fixes = w.fixes(r).iter().map(|f| (f.quad as usize, f.word));
        for (q, word) in quads.chain(fixes) {
            let w = word.to_le_bytes().map(|b| b as i8);
            let x = &xs[q * COLS * 4..(q + 1) * COLS * 4];
            for (lane, four) in lanes.iter_mut().zip(x.chunks_exact(4)) {
                let four = [four[0], four[1], four[2], four[3]];
                *lane = lane.wrapping_add(maddubs_lane(four, w));
            }
        }
    }
}

/// `vpdpbusd` on one int32 lane: four u8 × s8 products added to the lane, wrapping.
#[inline(always)]
pub fn dpbusd_lane(acc: i32, x: [u8; 4], w: [i8; 4]) -> i32 {
    (0..4).fold(acc, |a, t| a.wrapping_add(x[t] as i32 * w[t] as i32))
}

/// The tile in plain Rust over one panel, into `acc`'s columns of panel `half`.
fn tile_emulated(w: Block<'_>, xs: &[u8], acc: &mut Acc, half: usize) {
    for (r, row) in acc.iter_mut().enumerate() {
        let lanes = &mut row[half * COLS..(half + 1) * COLS];
        lanes.fill(0);
        for q in 0..w.quads {
            let w = w.word(r, q).to_le_bytes().map(|b| b as i8);
            let x = &xs[q * COLS * 4..(q + 1) * COLS * 4];
            for (lane, four) in lanes.iter_mut().zip(x.chunks_exact(4)) {
                *lane = dpbusd_lane(*lane, [four[0], four[1], four[2], four[3]], w);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Acc, Block, COLS, ROWS};
    use alloc::vec::Vec;
    use core::arch::x86_64::*;

    /// `ROWS` × `P` 512-bit accumulators; per quad, `P` input loads and `ROWS` broadcasts feed
    /// `ROWS · P` `vpdpbusd`.
    ///
    /// # Safety
    /// The CPU must support AVX-512 F, BW and VNNI; `ws` must hold `quads · ROWS` words and each
    /// used panel `quads · COLS · 4` bytes.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub(super) unsafe fn tile_zmm<const P: usize>(
        w: Block<'_>,
        xs: [&[u8]; super::PANELS],
        acc: &mut Acc,
        base: usize,
    ) {
        let mut c = [[_mm512_setzero_si512(); P]; ROWS];
        let rows: [*const u8; ROWS] = core::array::from_fn(|r| w.bytes.as_ptr().add(w.starts[r]));
        let mut at = 0;
        let mut x = [xs[0].as_ptr(), xs[1].as_ptr(), xs[2].as_ptr()];
        for _ in 0..w.quads {
            let mut v = [_mm512_setzero_si512(); P];
            for i in 0..P {
                v[i] = _mm512_loadu_si512(x[i] as *const __m512i);
                x[i] = x[i].add(COLS * 4);
            }
            for (row, start) in c.iter_mut().zip(rows) {
                let b = _mm512_set1_epi32((start.add(at) as *const i32).read_unaligned());
                for i in 0..P {
                    row[i] = _mm512_dpbusd_epi32(row[i], v[i], b);
                }
            }
            at += w.step;
        }
        for (out, row) in acc.iter_mut().zip(c) {
            for (i, v) in row.into_iter().enumerate() {
                _mm512_storeu_si512(out.as_mut_ptr().add((base + i) * COLS) as *mut __m512i, v);
            }
        }
    }

    /// Each row's weight sum: `vpsadbw` adds the bytes `w + 128` eight at a time into 64-bit
    /// lanes, and `128 · taps` comes off at the end.
    ///
    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn row_sums_avx2(weights: &[i8], taps: usize) -> Vec<i32> {
        let flip = _mm256_set1_epi8(-128);
        let vectors = taps / 32;
        weights
            .chunks_exact(taps)
            .map(|row| {
                let mut acc = _mm256_setzero_si256();
                for v in 0..vectors {
                    // SAFETY: 32·v + 32 ≤ taps = row.len().
                    let w = _mm256_loadu_si256(row.as_ptr().add(32 * v) as *const __m256i);
                    let sad = _mm256_sad_epu8(_mm256_xor_si256(w, flip), _mm256_setzero_si256());
                    acc = _mm256_add_epi64(acc, sad);
                }
                let mut lanes = [0i64; 4];
                _mm256_storeu_si256(lanes.as_mut_ptr() as *mut __m256i, acc);
                let biased: i64 = lanes.iter().sum::<i64>() - 128 * (32 * vectors) as i64;
                let tail = row[32 * vectors..].iter().map(|w| *w as i64).sum::<i64>();
                (biased + tail) as i32
            })
            .collect()
    }

    /// [`super::QuadKernel::Avx2`]'s tile over one panel, four rows at a time: per quad, the
    /// panel's two vectors split into even and odd bytes (as int16) and, per row, two
    /// broadcast weight pairs and four `vpmaddwd`; eight accumulators, four split inputs and
    /// two broadcasts fill fourteen of the sixteen registers.
    ///
    /// # Safety
    /// The CPU must support AVX2; `w` must be a [`super::Source::Split`] block with every quad
    /// in bounds and `xs` must hold `quads · COLS · 4` bytes.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn tile_split_avx2<const WIDE: bool>(
        w: Block<'_>,
        xs: &[u8],
        acc: &mut Acc,
        half: usize,
    ) {
        let low_bytes = _mm256_set1_epi16(0xff);
        let product = |x: __m256i, even: __m256i, odd: __m256i| {
            _mm256_add_epi32(
                _mm256_madd_epi16(_mm256_and_si256(x, low_bytes), even),
                _mm256_madd_epi16(_mm256_srli_epi16(x, 8), odd),
            )
        };
        for four in 0..ROWS / 4 {
            let mut c = [[_mm256_setzero_si256(); 2]; 4];
            let rows: [*const u8; 4] =
                core::array::from_fn(|r| w.bytes.as_ptr().add(w.starts[4 * four + r]));
            let mut at = 0;
            let mut x = xs.as_ptr();
            for _ in 0..w.quads {
                let lo = _mm256_loadu_si256(x as *const __m256i);
                let hi = if WIDE {
                    _mm256_loadu_si256(x.add(32) as *const __m256i)
                } else {
                    lo
                };
                for (row, start) in c.iter_mut().zip(rows) {
                    let even = _mm256_set1_epi32((start.add(at) as *const i32).read_unaligned());
                    let odd = _mm256_set1_epi32((start.add(at + 4) as *const i32).read_unaligned());
                    row[0] = _mm256_add_epi32(row[0], product(lo, even, odd));
                    if WIDE {
                        row[1] = _mm256_add_epi32(row[1], product(hi, even, odd));
                    }
                }
                at += w.step;
                x = x.add(COLS * 4);
            }
            store_rows::<WIDE>(c, acc, four, half);
        }
    }

    /// Stores four rows' sums into `acc`'s columns of panel `half`: both vectors, or with
    /// `WIDE` off only the first (the panel's other positions are not read).
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn store_rows<const WIDE: bool>(
        c: [[__m256i; 2]; 4],
        acc: &mut Acc,
        four: usize,
        half: usize,
    ) {
        for (r, [lo, hi]) in c.into_iter().enumerate() {
            let out = acc[4 * four + r].as_mut_ptr().add(half * COLS);
            _mm256_storeu_si256(out as *mut __m256i, lo);
            if WIDE {
                _mm256_storeu_si256(out.add(8) as *mut __m256i, hi);
            }
        }
    }

    /// [`super::QuadKernel::Avx2`]'s byte tile over one panel, four rows at a time: per quad,
    /// the panel's two vectors and, per row, one broadcast quad, two `vpmaddubsw` (exact: see
    /// [`crate::byte_pairs`]), two `vpmaddwd` against ones and two `vpaddd`; then each row's
    /// fixes the same way, one quad of the panel each.
    ///
    /// # Safety
    /// The CPU must support AVX2; `w` must be a [`super::Source::Bytes`] block with every quad
    /// and fix in bounds and `xs` must hold `quads · COLS · 4` bytes.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn tile_bytes_avx2<const WIDE: bool>(
        w: Block<'_>,
        xs: &[u8],
        acc: &mut Acc,
        half: usize,
    ) {
        let ones = _mm256_set1_epi16(1);
        let product = |x: __m256i, b: __m256i| _mm256_madd_epi16(_mm256_maddubs_epi16(x, b), ones);
        // Adds quad `x`'s products with the broadcast weights `b` to a row's sums.
        let add = |row: &mut [__m256i; 2], x: *const u8, b: __m256i| {
            row[0] = _mm256_add_epi32(row[0], product(_mm256_loadu_si256(x as *const _), b));
            if WIDE {
                let hi = _mm256_loadu_si256(x.add(32) as *const _);
                row[1] = _mm256_add_epi32(row[1], product(hi, b));
            }
        };
        for four in 0..ROWS / 4 {
            let mut c = [[_mm256_setzero_si256(); 2]; 4];
            let rows: [*const u8; 4] =
                core::array::from_fn(|r| w.bytes.as_ptr().add(w.starts[4 * four + r]));
            let mut at = 0;
            let mut x = xs.as_ptr();
            for _ in 0..w.quads {
                for (row, start) in c.iter_mut().zip(rows) {
                    add(
                        row,
                        x,
                        _mm256_set1_epi32((start.add(at) as *const i32).read_unaligned()),
                    );
                }
                at += w.step;
                x = x.add(COLS * 4);
            }
            for (r, row) in c.iter_mut().enumerate() {
                for fix in w.fixes(4 * four + r) {
                    let x = xs.as_ptr().add(fix.quad as usize * COLS * 4);
                    add(row, x, _mm256_set1_epi32(fix.word));
                }
            }
            store_rows::<WIDE>(c, acc, four, half);
        }
    }

    /// [`super::split_pairs`] for one row, eight quads (32 weights) a vector: each 16-bit
    /// word's low byte sign-extended gives the even pairs, its high byte the odd ones, and
    /// unpacking interleaves them as `(even, odd)` per quad. Returns the quads done.
    ///
    /// # Safety
    /// The CPU must support AVX2; `out` must hold two words per quad of `row`.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn split_row_avx2(row: &[i8], out: &mut [i32]) -> usize {
        let vectors = row.len() / 32;
        assert!(out.len() >= vectors * 16);
        for v in 0..vectors {
            // SAFETY: 32·v + 32 ≤ row.len(), and 16·v + 16 ≤ out.len() (asserted).
            let w = _mm256_loadu_si256(row.as_ptr().add(32 * v) as *const __m256i);
            let even = _mm256_srai_epi16(_mm256_slli_epi16(w, 8), 8);
            let odd = _mm256_srai_epi16(w, 8);
            // Per 128-bit lane: quads 0, 1 (lo) and 2, 3 (hi) of the lane's four.
            let (lo, hi) = (
                _mm256_unpacklo_epi32(even, odd),
                _mm256_unpackhi_epi32(even, odd),
            );
            let to = out.as_mut_ptr().add(16 * v) as *mut __m256i;
            _mm256_storeu_si256(to, _mm256_permute2x128_si256::<0x20>(lo, hi));
            _mm256_storeu_si256(to.add(1), _mm256_permute2x128_si256::<0x31>(lo, hi));
        }
        vectors * 8
    }

    /// One panel with 256-bit AVX-VNNI, four rows at a time (eight accumulators fit the sixteen
    /// registers with the loads), into `acc`'s columns of panel `half`.
    ///
    /// # Safety
    /// The CPU must support AVX2 and AVX-VNNI; `ws` must hold `quads · ROWS` words and `xs`
    /// `quads · COLS · 4` bytes.
    #[target_feature(enable = "avx2,avxvnni")]
    pub(super) unsafe fn tile_ymm(w: Block<'_>, xs: &[u8], acc: &mut Acc, half: usize) {
        for four in 0..ROWS / 4 {
            let mut c = [[_mm256_setzero_si256(); 2]; 4];
            let rows: [*const u8; 4] =
                core::array::from_fn(|r| w.bytes.as_ptr().add(w.starts[4 * four + r]));
            let mut at = 0;
            let mut x = xs.as_ptr();
            for _ in 0..w.quads {
                let lo = _mm256_loadu_si256(x as *const __m256i);
                let hi = _mm256_loadu_si256(x.add(32) as *const __m256i);
                for (row, start) in c.iter_mut().zip(rows) {
                    let b = _mm256_set1_epi32((start.add(at) as *const i32).read_unaligned());
                    row[0] = _mm256_dpbusd_avx_epi32(row[0], lo, b);
                    row[1] = _mm256_dpbusd_avx_epi32(row[1], hi, b);
                }
                at += w.step;
                x = x.add(COLS * 4);
            }
            for (r, [lo, hi]) in c.into_iter().enumerate() {
                let out = acc[4 * four + r].as_mut_ptr().add(half * COLS);
                _mm256_storeu_si256(out as *mut __m256i, lo);
                _mm256_storeu_si256(out.add(8) as *mut __m256i, hi);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tile::Tile;

    /// A small layer laid out after a large one on the same thread takes the large one's spare
    /// storage; kept, it holds no more than its own layout, and says so.
    #[test]
    fn a_kept_layout_holds_what_it_reports() {
        let (taps, small_rows) = (600, 8);
        for form in [Avx2Form::Split, Avx2Form::Bytes] {
            let big = spread_i8(512 * taps, 7, 1, 37);
            drop(QuadWeights::with_form(
                QuadKernel::Avx2,
                form,
                &big,
                512,
                taps,
                0,
            ));
            let small = &big[..small_rows * taps];
            let kept = QuadWeights::with_form(QuadKernel::Avx2, form, small, small_rows, taps, 0)
                .into_owned()
                .expect("an owned layout");
            // Two int16 words a quad (split) or one word a quad and its fixes (bytes), and a
            // correction a row: under 5 KB here; the large layer's spare is 300 KB or more.
            let own = small_rows * taps.div_ceil(4) * 8 + small_rows * 4;
            assert!(
                kept.heap_bytes() <= own + 2048,
                "{form:?}: {}",
                kept.heap_bytes()
            );
        }
    }

    /// `len` bytes, every `every`-th the extreme `edge`, the rest spread by `step` over 0..=255.
    fn spread(len: usize, every: usize, edge: u8, step: usize) -> Vec<u8> {
        (0..len)
            .map(|i| {
                if i % every == 0 {
                    edge
                } else {
                    (i * step % 256) as u8
                }
            })
            .collect()
    }

    /// [`spread`] as int8.
    fn spread_i8(len: usize, every: usize, edge: i8, step: usize) -> Vec<i8> {
        spread(len, every, edge as u8, step)
            .into_iter()
            .map(|b| b as i8)
            .collect()
    }

    fn kernels_here() -> Vec<QuadKernel> {
        let mut k = vec![QuadKernel::Emulated, QuadKernel::AmxEmulated];
        if Tile::Avx2.supported() {
            k.push(QuadKernel::Avx2);
        }
        if Tile::AvxVnni.supported() {
            k.push(QuadKernel::AvxVnni);
        }
        if Tile::Avx512Vnni.supported() {
            k.push(QuadKernel::Avx512Vnni);
        }
        if Tile::Amx.supported() {
            k.push(QuadKernel::Amx);
        }
        k
    }

    /// The packed product with its correction equals a direct triple loop over `x - z`, for
    /// every kernel this CPU runs (the emulation everywhere), on sizes that leave part blocks,
    /// part panels, an odd panel count and taps that are no multiple of four, at the extremes.
    #[test]
    fn every_quad_kernel_here_matches_direct_sums() {
        let mut ran = Vec::new();
        let forms = |k: QuadKernel| match k {
            QuadKernel::Avx2 => vec![Avx2Form::Bytes, Avx2Form::Split, Avx2Form::Chosen],
            _ => vec![Avx2Form::Chosen],
        };
        for (kernel, form) in kernels_here()
            .into_iter()
            .flat_map(|k| forms(k).into_iter().map(move |f| (k, f)))
        {
            for (rows, taps, positions, zero) in [
                (1, 1, 1, 0),
                (5, 9, 17, -128),
                (8, 576, 40, 127),
                (7, 3, 33, 5),
                (10, 75, 19, -3),
                (16, 1001, 64, -128),
                (9, 1024, 50, 77),
                (3, 68, 7, -1),
                (40, 300, 81, 9),
                (33, 64, 16, 0),
                (70, 27, 97, -77),
                // A last panel of nine positions: one past what the half tiles cover.
                (6, 40, 25, 3),
            ] {
                let w = spread_i8(rows * taps, 3, -128, 37);
                let x = spread_i8(taps * positions, 5, -128, 53);
                // Stale words in this thread's kept split-weight storage must not matter.
                SPARE_SPLIT.set(vec![0x5a5a_5a5a; 2 * rows * taps + 64]);
                let pw = QuadWeights::with_form(kernel, form, &w, rows, taps, zero);
                assert_eq!(
                    pw.corrections,
                    row_sums_scalar(&w, taps)
                        .into_iter()
                        .map(|s| s.wrapping_mul(zero + 128))
                        .collect::<Vec<_>>()
                );
                // Stale bytes in the slots the fill leaves alone must not matter: the spare
                // panels this thread reuses are poisoned first.
                drop(QuadInput::build(
                    taps + 64,
                    positions + 40,
                    false,
                    |_, panel| panel.fill(0xa5),
                ));
                let px = QuadInput::build(taps, positions, rows % 2 == 1, |first, panel| {
                    for k in 0..taps {
                        for j in 0..COLS.min(positions - first) {
                            let v = x[k * positions + first + j];
                            panel[QuadInput::slot(k, j)] = (v as i32 + 128) as u8;
                        }
                    }
                });
                // Likewise the sums a previous product left in this thread's accumulators.
                ACC.with_borrow_mut(|acc| acc.iter_mut().for_each(|row| row.fill(0x5a5a_5a5a)));
                let mut got = vec![0i32; rows * positions];
                multiply(kernel, &pw, &px, &mut got);
                for r in 0..rows {
                    for p in 0..positions {
                        let want = (0..taps).fold(0i32, |s, k| {
                            let v = x[k * positions + p] as i32 - zero;
                            s.wrapping_add(w[r * taps + k] as i32 * v)
                        });
                        let at = format!("{kernel:?} {form:?} row {r} pos {p}");
                        assert_eq!(got[r * positions + p], want, "{at}");
                    }
                }
            }
            ran.push(format!("{kernel:?} ({form:?})"));
        }
        println!(
            "u8 x s8 quad kernels checked on this CPU: {}",
            ran.join(", ")
        );
    }

    /// The plain-Rust split tile, which only a CPU without AVX2 would run, on the split
    /// weights: each lane equals the direct sum `Σ W·x'` (before the correction), at the
    /// extremes and with taps that are no multiple of four.
    #[test]
    fn the_portable_split_tile_matches_direct_sums() {
        for (rows, taps) in [(8, 1), (8, 7), (5, 64), (8, 99)] {
            let w = spread_i8(rows * taps, 3, -128, 37);
            let x = spread(taps * COLS, 5, 255, 53);
            let pw =
                QuadWeights::with_form(QuadKernel::Avx2, Avx2Form::Split, &w, rows, taps, -128);
            let px = QuadInput::build(taps, COLS, false, |_, panel| {
                panel.fill(0);
                for k in 0..taps {
                    for j in 0..COLS {
                        panel[QuadInput::slot(k, j)] = x[k * COLS + j];
                    }
                }
            });
            let mut acc = [[0i32; SPAN * COLS]; ROWS];
            tile_split_portable(pw.block(0), px.panel(0), &mut acc, 1);
            for (r, lanes) in acc.iter().enumerate().take(rows) {
                for j in 0..COLS {
                    let want = (0..taps).fold(0i32, |s, k| {
                        s.wrapping_add(w[r * taps + k] as i32 * x[k * COLS + j] as i32)
                    });
                    assert_eq!(
                        lanes[COLS + j],
                        want,
                        "rows {rows} taps {taps} row {r} lane {j}"
                    );
                }
            }
        }
    }

    /// The plain-Rust byte tile, which emulates `vpmaddubsw`'s saturation, on weights whose
    /// pairs mostly saturate (127s and -128s against inputs of 255): with their fixes each
    /// lane equals the direct sum, and without them it would not, so the fixes are what make
    /// the layout exact.
    #[test]
    fn the_portable_byte_tile_is_exact_only_with_its_fixes() {
        for (rows, taps) in [(8, 1), (8, 7), (5, 64), (8, 99)] {
            let w = spread_i8(rows * taps, 2, 127, 37)
                .into_iter()
                .enumerate()
                .map(|(i, v)| if i % 5 == 1 { -128 } else { v })
                .collect::<Vec<_>>();
            let x = spread(taps * COLS, 3, 255, 53);
            let pw =
                QuadWeights::with_form(QuadKernel::Avx2, Avx2Form::Bytes, &w, rows, taps, -128);
            assert!(pw.avx2_bytes());
            let px = QuadInput::build(taps, COLS, false, |_, panel| {
                panel.fill(0);
                for k in 0..taps {
                    for j in 0..COLS {
                        panel[QuadInput::slot(k, j)] = x[k * COLS + j];
                    }
                }
            });
            let want = |r: usize, j: usize| {
                (0..taps).fold(0i32, |s, k| {
                    s.wrapping_add(w[r * taps + k] as i32 * x[k * COLS + j] as i32)
                })
            };
            let mut acc = [[0i32; SPAN * COLS]; ROWS];
            tile_bytes_portable(pw.block(0), px.panel(0), &mut acc, 1);
            for (r, lanes) in acc.iter().enumerate().take(rows) {
                for j in 0..COLS {
                    assert_eq!(
                        lanes[COLS + j],
                        want(r, j),
                        "rows {rows} taps {taps} row {r}"
                    );
                }
            }
            if taps > 1 {
                let unfixed = Block {
                    fixes: None,
                    ..pw.block(0)
                };
                tile_bytes_portable(unfixed, px.panel(0), &mut acc, 1);
                let wrong = (0..rows).any(|r| (0..COLS).any(|j| acc[r][COLS + j] != want(r, j)));
                assert!(
                    wrong,
                    "rows {rows} taps {taps}: the fixes made no difference"
                );
            }
        }
    }

    /// The layout long rows of trained weights get (few fixes), and the one short rows or
    /// weights built to need fixes everywhere get: bytes for the first, the split pairs for the
    /// others.
    #[test]
    fn the_chosen_avx2_form_follows_the_taps_and_fixes() {
        let rows = 16;
        // Small weights with a rare large one, like a trained layer's.
        let trained = |taps: usize| -> Vec<i8> {
            (0..rows * taps)
                .map(|i| {
                    if i % 211 == 0 {
                        127
                    } else {
                        ((i * 7919) % 41) as i8 - 20
                    }
                })
                .collect()
        };
        let chosen =
            |w: &[i8], taps| QuadWeights::new(QuadKernel::Avx2, w, rows, taps, 0).avx2_bytes();
        let long = trained(MIN_BYTE_TAPS);
        let fixes = byte_pairs(&long, rows, MIN_BYTE_TAPS, Vec::new())
            .fixes
            .len();
        assert!(fixes > 0 && fixes * MOST_FIXED <= rows * MIN_BYTE_TAPS / 4);
        assert!(chosen(&long, MIN_BYTE_TAPS));
        assert!(!chosen(&trained(MIN_BYTE_TAPS - 4), MIN_BYTE_TAPS - 4));
        assert!(!chosen(&vec![127i8; rows * MIN_BYTE_TAPS], MIN_BYTE_TAPS));
    }

    /// Sums that wrap: 2^17 taps of -128 · 255 overflow int32; every kernel wraps like the
    /// reference.
    #[test]
    fn quad_sums_wrap_like_the_reference() {
        let (rows, taps, positions, zero) = (8, 1 << 17, 16, -128);
        let w = vec![-128i8; rows * taps];
        let px = QuadInput::build(taps, positions, false, |_, panel| panel.fill(255));
        let want = (0..taps).fold(0i32, |s, _| s.wrapping_add(-128 * 255));
        for kernel in kernels_here() {
            let pw = QuadWeights::new(kernel, &w, rows, taps, zero);
            let mut got = vec![0i32; rows * positions];
            multiply(kernel, &pw, &px, &mut got);
            assert!(got.iter().all(|s| *s == want), "{kernel:?}");
        }
    }
}
