//! A fully-connected layer's weights rearranged once for layers that one execution multiplies
//! again and again (an LSTM's gates: the same two matrices at each of its 28 steps).
//!
//! Row-major weights make each output a horizontal sum across a vector, and with the LSTM's
//! short rows (104 weights) those sums cost as much as the multiplies. Here sixteen rows share
//! each vector instead: block `b` holds rows `16b..16b + 16`, and its quad `g` is the 64 bytes
//! `W[16b + r][4g + j]` at `64g + 4r + j`, so one `vpdpbusd` of four broadcast inputs adds a
//! quad of products to each of sixteen rows' sums and no horizontal sum remains. Each row's
//! weight sum is kept for the zero-point correction (`Σ W·(x - z) = Σ W·x' - (z + 128)·Σ W`,
//! `x' = x + 128`), so a call reads the weights once.
//!
//! CPUs with AVX2 but no `vpdpbusd` take the same block and lane order with a pair of inputs
//! per word instead of a quad ([`PackedForm::Pairs`]): each word is two weights widened to
//! int16, and one `vpmaddwd` of a broadcast pair of `x - z` (int16, exact) adds two products
//! to each of eight rows' sums. No correction, so no row sums.
//!
//! Layers of megabytes that each execution multiplies once (AlexNet's fc6: 38 MB) are bound by
//! memory, not by multiplies: read row-major eight rows at a time they are eight streams, each
//! 16 bytes a step. [`PackedForm::Runs`] interleaves eight rows' runs of sixteen int8 weights
//! so that the same dot products read one stream, in address order.

use alloc::vec;
use alloc::vec::Vec;

/// Rows of one block: the int32 lanes of a 512-bit vector.
pub const BLOCK_ROWS: usize = 16;

/// Bytes of one block's quad: four weights of each of its rows.
pub const QUAD_BYTES: usize = 4 * BLOCK_ROWS;

/// What a packed layer's words hold, and so which kernels read it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PackedForm {
    /// Four int8 weights a word (inputs `4g..4g + 4`), for `vpdpbusd` and its emulation.
    Quads,
    /// Two weights widened to int16 a word (inputs `2g`, `2g + 1`, the first in the low half),
    /// for AVX2 `vpmaddwd`.
    Pairs,
    /// Int8 weights as they are, in runs of [`RUN_INPUTS`] of [`RUN_ROWS`] rows side by side:
    /// the run of row `8b + r` over inputs `16c..16c + 16` at byte `(b · runs + c) · 128 + 16r`.
    /// No row sums.
    Runs,
}

/// Weight bytes from which the native backend lays a layer out as [`PackedForm::Runs`] on
/// AVX2 (and packs none on the `vpdpbusd` tiles, whose row-major path reads such layers
/// well): the layers of megabytes that an execution runs once, bound by memory. Smaller ones
/// (an LSTM's gates, run once a step) keep int16 pairs.
pub const RUNS_FROM_BYTES: usize = 1 << 20;

/// Rows of one block of [`PackedForm::Runs`]: the accumulators one pass keeps.
pub const RUN_ROWS: usize = 8;

/// Inputs of one run of [`PackedForm::Runs`]: what one load widens to sixteen int16 lanes.
pub const RUN_INPUTS: usize = 16;

impl PackedForm {
    /// Inputs of one word (of a run for [`PackedForm::Runs`]).
    pub fn inputs_per_word(self) -> usize {
        match self {
            PackedForm::Quads => 4,
            PackedForm::Pairs => 2,
            PackedForm::Runs => RUN_INPUTS,
        }
    }
}

/// Weights of one fully-connected layer in blocks of [`BLOCK_ROWS`] rows × words of four
/// inputs (or two, [`PackedForm::Pairs`]), zero past the last row and input, with each row's
/// weight sum for the quads' correction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackedFc {
    inputs: usize,
    outputs: usize,
    form: PackedForm,
    /// Block `b`, word `g`, row `r`: word `(b · units + g) · 16 + r`, holding the row's
    /// weights of unit `g` (`units` words a row, as [`PackedForm`] says).
    words: Vec<u32>,
    /// `Σ_k W[row][k]`, wrapping, for each of the `outputs` rows; empty for pairs.
    row_sums: Vec<i32>,
}

impl PackedFc {
    /// Rearranges row-major `weights` of rows of `inputs` weights; `None` when they are no
    /// whole number of rows.
    pub fn new(weights: &[i8], inputs: usize) -> Option<PackedFc> {
        if inputs == 0 || weights.is_empty() || !weights.len().is_multiple_of(inputs) {
            return None;
        }
        let outputs = weights.len() / inputs;
        let quads = inputs.div_ceil(4);
        // Words, not bytes: a quad moves as one four-byte word (packing runs once a layer and
        // execution, but byte moves made it cost as much as a dozen of the layer's calls).
        // Native byte order, so that the words' memory holds the bytes in order.
        let word = |four: &[i8]| {
            let mut bytes = [0u8; 4];
            for (to, w) in bytes.iter_mut().zip(four) {
                *to = *w as u8;
            }
            u32::from_ne_bytes(bytes)
        };
        let mut words = vec![0u32; outputs.div_ceil(BLOCK_ROWS) * quads * BLOCK_ROWS];
        for (row, weights) in weights.chunks_exact(inputs).enumerate() {
            let (block, r) = (row / BLOCK_ROWS, row % BLOCK_ROWS);
            let lane = &mut words[block * quads * BLOCK_ROWS + r..];
            let whole = weights.chunks_exact(4);
            let rest = whole.remainder();
            for (g, four) in whole.enumerate() {
                lane[g * BLOCK_ROWS] = word(four);
            }
            if !rest.is_empty() {
                lane[(quads - 1) * BLOCK_ROWS] = word(rest);
            }
        }
        let row_sums = weights
            .chunks_exact(inputs)
            .map(|row| row.iter().fold(0i32, |s, w| s.wrapping_add(*w as i32)))
            .collect();
        Some(PackedFc {
            inputs,
            outputs,
            form: PackedForm::Quads,
            words,
            row_sums,
        })
    }

    /// Rearranges row-major `weights` of rows of `inputs` weights as int16 pairs
    /// ([`PackedForm::Pairs`]); `None` when they are no whole number of rows. The definition
    /// that a vectorized packer must match.
    pub fn pairs(weights: &[i8], inputs: usize) -> Option<PackedFc> {
        if inputs == 0 || weights.is_empty() || !weights.len().is_multiple_of(inputs) {
            return None;
        }
        let outputs = weights.len() / inputs;
        let units = inputs.div_ceil(2);
        let mut words = vec![0u32; outputs.div_ceil(BLOCK_ROWS) * units * BLOCK_ROWS];
        for (row, weights) in weights.chunks_exact(inputs).enumerate() {
            let (block, r) = (row / BLOCK_ROWS, row % BLOCK_ROWS);
            let lane = &mut words[block * units * BLOCK_ROWS + r..];
            for (g, two) in weights.chunks(2).enumerate() {
                let high = two.get(1).copied().unwrap_or(0);
                lane[g * BLOCK_ROWS] = pair_word(two[0], high);
            }
        }
        Some(PackedFc {
            inputs,
            outputs,
            form: PackedForm::Pairs,
            words,
            row_sums: Vec::new(),
        })
    }

    /// Rearranges row-major `weights` of rows of `inputs` weights into runs
    /// ([`PackedForm::Runs`]), zero past the last row and input; `None` when they are no whole
    /// number of rows.
    pub fn runs(weights: &[i8], inputs: usize) -> Option<PackedFc> {
        if inputs == 0 || weights.is_empty() || !weights.len().is_multiple_of(inputs) {
            return None;
        }
        let outputs = weights.len() / inputs;
        let runs = inputs.div_ceil(RUN_INPUTS);
        let block_bytes = runs * RUN_INPUTS * RUN_ROWS;
        // Read at memory speed, like the weights it copies: huge pages (see crate::memory).
        let len = outputs.div_ceil(RUN_ROWS) * block_bytes / 4;
        let mut words = crate::memory::huge_page_vec(len);
        words.resize(len, 0u32);
        // SAFETY: any byte pattern is a valid u32; u8 has alignment 1; the length is the
        // words' bytes and the borrow is the words'.
        let bytes = unsafe {
            core::slice::from_raw_parts_mut(words.as_mut_ptr() as *mut u8, 4 * words.len())
        };
        for (row, weights) in weights.chunks_exact(inputs).enumerate() {
            let (block, r) = (row / RUN_ROWS, row % RUN_ROWS);
            for (c, run) in weights.chunks(RUN_INPUTS).enumerate() {
                let at = block * block_bytes + c * RUN_INPUTS * RUN_ROWS + RUN_INPUTS * r;
                for (to, w) in bytes[at..at + run.len()].iter_mut().zip(run) {
                    *to = *w as u8;
                }
            }
        }
        Some(PackedFc {
            inputs,
            outputs,
            form: PackedForm::Runs,
            words,
            row_sums: Vec::new(),
        })
    }

    /// A [`PackedForm::Pairs`] layer from the words a vectorized packer made in that layout;
    /// `None` when their number disagrees.
    pub fn from_pair_words(inputs: usize, outputs: usize, words: Vec<u32>) -> Option<PackedFc> {
        let expected = outputs.div_ceil(BLOCK_ROWS) * inputs.div_ceil(2) * BLOCK_ROWS;
        (inputs > 0 && words.len() == expected).then_some(PackedFc {
            inputs,
            outputs,
            form: PackedForm::Pairs,
            words,
            row_sums: Vec::new(),
        })
    }

    /// A packed layer from its parts, as a vectorized packer made them: `words` in the layout
    /// of [`PackedFc::bytes`] over `outputs` rows (rounded up to whole blocks) of `inputs`
    /// weights, and each row's weight sum. `None` when the lengths disagree.
    pub fn from_parts(
        inputs: usize,
        outputs: usize,
        words: Vec<u32>,
        row_sums: Vec<i32>,
    ) -> Option<PackedFc> {
        let expected = outputs.div_ceil(BLOCK_ROWS) * inputs.div_ceil(4) * BLOCK_ROWS;
        (inputs > 0 && words.len() == expected && row_sums.len() == outputs).then_some(PackedFc {
            inputs,
            outputs,
            form: PackedForm::Quads,
            words,
            row_sums,
        })
    }

    /// What the words hold.
    pub fn form(&self) -> PackedForm {
        self.form
    }

    /// Words a row in a block: quads or pairs of inputs, the last one completed with zeros.
    pub fn units(&self) -> usize {
        self.inputs.div_ceil(self.form.inputs_per_word())
    }

    /// The words in block, unit, row order (see [`PackedFc`]).
    pub fn words(&self) -> &[u32] {
        &self.words
    }

    /// Inputs of the layer (weights a row).
    pub fn inputs(&self) -> usize {
        self.inputs
    }

    /// Outputs of the layer (rows).
    pub fn outputs(&self) -> usize {
        self.outputs
    }

    /// Quads of four inputs a row, the last one completed with zero weights.
    pub fn quads(&self) -> usize {
        self.inputs.div_ceil(4)
    }

    /// Heap bytes held: what a cache of these counts against its bound.
    pub fn heap_bytes(&self) -> usize {
        4 * (self.words.len() + self.row_sums.len())
    }

    /// The rearranged weights: block `b`, quad `g`, row `r`, weight `j` at byte
    /// `(b · quads + g) · 64 + 4r + j` (for [`PackedForm::Runs`], see there).
    pub fn bytes(&self) -> &[i8] {
        // SAFETY: any four bytes of a u32 are valid i8s; i8 has alignment 1; the length is the
        // words' bytes and the lifetime is the words'.
        unsafe {
            core::slice::from_raw_parts(self.words.as_ptr() as *const i8, 4 * self.words.len())
        }
    }

    /// Each row's weight sum, wrapping (empty for pairs).
    pub fn row_sums(&self) -> &[i32] {
        &self.row_sums
    }
}

/// One word of [`PackedForm::Pairs`]: `low` and `high` widened to int16, `low` in the low half
/// (where `vpmaddwd` meets the first input of the pair).
pub fn pair_word(low: i8, high: i8) -> u32 {
    (low as i16 as u16 as u32) | ((high as i16 as u16 as u32) << 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_weight_lands_in_its_rows_lane_and_its_quad() {
        let (inputs, outputs) = (7, 18);
        let weights: Vec<i8> = (0..inputs * outputs).map(|i| (i % 251) as i8).collect();
        let p = PackedFc::new(&weights, inputs).unwrap();
        assert_eq!((p.quads(), p.outputs()), (2, 18));
        assert_eq!(p.bytes().len(), 2 * 2 * QUAD_BYTES);
        for row in 0..outputs {
            for k in 0..8 {
                let at = ((row / 16) * 2 + k / 4) * QUAD_BYTES + 4 * (row % 16) + k % 4;
                let expected = if k < inputs {
                    weights[row * inputs + k]
                } else {
                    0
                };
                assert_eq!(p.bytes()[at], expected, "row {row}, input {k}");
            }
        }
        // Rows past the last one are zero.
        assert!(p.bytes()[2 * QUAD_BYTES + 4 * 2..3 * QUAD_BYTES]
            .iter()
            .all(|b| *b == 0));
        assert_eq!(p.row_sums()[1], (7..14).sum::<i32>());
    }

    #[test]
    fn each_pair_of_weights_lands_widened_in_its_rows_lane() {
        let (inputs, outputs) = (5, 18);
        let weights: Vec<i8> = (0..inputs * outputs)
            .map(|i| (i * 37 % 256) as u8 as i8)
            .collect();
        let p = PackedFc::pairs(&weights, inputs).unwrap();
        assert_eq!(
            (p.form(), p.units(), p.outputs()),
            (PackedForm::Pairs, 3, 18)
        );
        assert_eq!(p.words().len(), 2 * 3 * BLOCK_ROWS);
        let w = |row: usize, k: usize| {
            if row < outputs && k < inputs {
                weights[row * inputs + k] as i32
            } else {
                0
            }
        };
        for row in 0..2 * BLOCK_ROWS {
            for g in 0..3 {
                let word = p.words()[((row / 16) * 3 + g) * BLOCK_ROWS + row % 16];
                // Low half: input 2g; high half: input 2g + 1; each sign-extended int16.
                let (low, high) = (word as u16 as i16 as i32, (word >> 16) as u16 as i16 as i32);
                assert_eq!(
                    (low, high),
                    (w(row, 2 * g), w(row, 2 * g + 1)),
                    "row {row}, pair {g}"
                );
            }
        }
        assert!(p.row_sums().is_empty());
        assert_eq!(PackedFc::pairs(&[1, 2, 3], 2), None);
        assert!(PackedFc::from_pair_words(5, 18, vec![0; 95]).is_none());
    }

    #[test]
    fn each_run_of_weights_lands_in_its_block_and_row() {
        let (inputs, outputs) = (37, 19);
        let weights: Vec<i8> = (0..inputs * outputs)
            .map(|i| (i * 37 % 256) as u8 as i8)
            .collect();
        let p = PackedFc::runs(&weights, inputs).unwrap();
        assert_eq!(
            (p.form(), p.units(), p.outputs()),
            (PackedForm::Runs, 3, 19)
        );
        // Three blocks of eight rows, three runs of sixteen a row.
        assert_eq!(p.bytes().len(), 3 * 3 * RUN_ROWS * RUN_INPUTS);
        for row in 0..3 * RUN_ROWS {
            for k in 0..3 * RUN_INPUTS {
                let at = ((row / 8) * 3 + k / 16) * 128 + 16 * (row % 8) + k % 16;
                let expected = if row < outputs && k < inputs {
                    weights[row * inputs + k]
                } else {
                    0
                };
                assert_eq!(p.bytes()[at], expected, "row {row}, input {k}");
            }
        }
        assert!(p.row_sums().is_empty());
        assert_eq!(PackedFc::runs(&[1, 2, 3], 2), None);
        assert_eq!(PackedFc::runs(&[1, 2], 0), None);
    }

    #[test]
    fn ragged_weights_are_refused() {
        assert_eq!(PackedFc::new(&[1, 2, 3], 2), None);
        assert_eq!(PackedFc::new(&[1, 2], 0), None);
        assert_eq!(PackedFc::new(&[], 2), None);
    }
}
