//! The weight pack: a model's weight blocks in one file, as the CLI reads and writes them.
//!
//! Layout: `"SMWP"`, block count (u32 LE), then per block its length (u32 LE) and bytes.
//! On chain the same blocks live one per storage entry; the pack is only the off-chain carrier.

use alloc::vec::Vec;

use crate::program::{MAX_BLOCKS, MAX_BLOCK_LEN};

/// Pack magic bytes.
pub const PACK_MAGIC: [u8; 4] = *b"SMWP";

/// Why bytes are not a weight pack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PackError {
    /// Wrong magic bytes.
    BadMagic,
    /// The bytes end early or have trailing bytes.
    Malformed,
    /// More than [`MAX_BLOCKS`] blocks.
    TooManyBlocks,
    /// A block is empty or longer than [`MAX_BLOCK_LEN`].
    BlockSize { index: u32 },
}

/// Serialises blocks into a pack.
pub fn encode_pack<B: AsRef<[u8]>>(blocks: &[B]) -> Vec<u8> {
    let total: usize = blocks.iter().map(|b| b.as_ref().len() + 4).sum();
    let mut out = Vec::with_capacity(8 + total);
    out.extend_from_slice(&PACK_MAGIC);
    out.extend_from_slice(&(blocks.len() as u32).to_le_bytes());
    for block in blocks {
        out.extend_from_slice(&(block.as_ref().len() as u32).to_le_bytes());
        out.extend_from_slice(block.as_ref());
    }
    out
}

/// Parses a pack into its blocks.
pub fn decode_pack(bytes: &[u8]) -> Result<Vec<Vec<u8>>, PackError> {
    if bytes.len() < 8 || bytes[..4] != PACK_MAGIC {
        return Err(PackError::BadMagic);
    }
    let count = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) as usize;
    if count > MAX_BLOCKS {
        return Err(PackError::TooManyBlocks);
    }
    let mut rest = &bytes[8..];
    let mut blocks = Vec::with_capacity(count);
    for index in 0..count as u32 {
        if rest.len() < 4 {
            return Err(PackError::Malformed);
        }
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
        if len == 0 || len > MAX_BLOCK_LEN {
            return Err(PackError::BlockSize { index });
        }
        rest = &rest[4..];
        if rest.len() < len as usize {
            return Err(PackError::Malformed);
        }
        blocks.push(rest[..len as usize].to_vec());
        rest = &rest[len as usize..];
    }
    if !rest.is_empty() {
        return Err(PackError::Malformed);
    }
    Ok(blocks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_round_trips_and_rejects_truncation() {
        let blocks = vec![vec![1u8, 2, 3], vec![0xff; 7]];
        let bytes = encode_pack(&blocks);
        assert_eq!(decode_pack(&bytes), Ok(blocks));
        for cut in 0..bytes.len() {
            assert!(decode_pack(&bytes[..cut]).is_err());
        }
    }
}
