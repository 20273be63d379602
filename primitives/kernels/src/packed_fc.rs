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

use alloc::vec;
use alloc::vec::Vec;

/// Rows of one block: the int32 lanes of a 512-bit vector.
pub const BLOCK_ROWS: usize = 16;

/// Bytes of one block's quad: four weights of each of its rows.
pub const QUAD_BYTES: usize = 4 * BLOCK_ROWS;

/// Weights of one fully-connected layer in blocks of [`BLOCK_ROWS`] rows × quads of four
/// inputs, zero past the last row and input, with each row's weight sum.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackedFc {
    inputs: usize,
    outputs: usize,
    /// Block `b`, quad `g`, row `r`: word `(b · quads + g) · 16 + r`, whose bytes in memory
    /// order are the row's weights `4g..4g + 4`.
    words: Vec<u32>,
    /// `Σ_k W[row][k]`, wrapping, for each of the `outputs` rows.
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
            words,
            row_sums,
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
            words,
            row_sums,
        })
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
    /// `(b · quads + g) · 64 + 4r + j`.
    pub fn bytes(&self) -> &[i8] {
        // SAFETY: any four bytes of a u32 are valid i8s; i8 has alignment 1; the length is the
        // words' bytes and the lifetime is the words'.
        unsafe {
            core::slice::from_raw_parts(self.words.as_ptr() as *const i8, 4 * self.words.len())
        }
    }

    /// Each row's weight sum, wrapping.
    pub fn row_sums(&self) -> &[i32] {
        &self.row_sums
    }
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
    fn ragged_weights_are_refused() {
        assert_eq!(PackedFc::new(&[1, 2, 3], 2), None);
        assert_eq!(PackedFc::new(&[1, 2], 0), None);
        assert_eq!(PackedFc::new(&[], 2), None);
    }
}
