//! Where weight blocks come from: an in-memory pack off chain, storage in the pallet.

use alloc::borrow::Cow;
use alloc::vec::Vec;

use smartvm_isa::MAX_BLOCKS;

use crate::error::ErrorKind;

/// A source of weight blocks, indexed like the program's manifest.
pub trait WeightSource {
    /// The bytes of block `index`, or `None` if it does not exist.
    fn block(&self, index: u32) -> Option<Cow<'_, [u8]>>;
}

/// Blocks held in memory (the CLI's weight pack, tests).
#[derive(Clone, Copy, Debug)]
pub struct BlockList<'a>(pub &'a [Vec<u8>]);

impl WeightSource for BlockList<'_> {
    fn block(&self, index: u32) -> Option<Cow<'_, [u8]>> {
        self.0
            .get(index as usize)
            .map(|b| Cow::Borrowed(b.as_slice()))
    }
}

/// Reads consecutive blocks from `first` until exactly `len` bytes are gathered.
/// Returns the bytes and how many blocks were read.
pub(crate) fn gather<W: WeightSource>(
    source: &W,
    first: u32,
    len: usize,
) -> Result<(Cow<'_, [u8]>, u32), ErrorKind> {
    let head = source
        .block(first)
        .ok_or(ErrorKind::MissingWeightBlock { index: first })?;
    if head.len() == len {
        return Ok((head, 1));
    }
    let mismatch = ErrorKind::WeightSizeMismatch { first_block: first };
    if head.len() > len {
        return Err(mismatch);
    }
    let mut bytes = Vec::with_capacity(len);
    bytes.extend_from_slice(&head);
    let mut index = first;
    let mut count = 1u32;
    while bytes.len() < len {
        index = index.checked_add(1).ok_or(mismatch)?;
        if count as usize >= MAX_BLOCKS {
            return Err(mismatch);
        }
        let block = source
            .block(index)
            .ok_or(ErrorKind::MissingWeightBlock { index })?;
        if bytes.len() + block.len() > len {
            return Err(mismatch);
        }
        bytes.extend_from_slice(&block);
        count += 1;
    }
    Ok((Cow::Owned(bytes), count))
}
