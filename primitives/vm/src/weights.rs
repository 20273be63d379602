//! Where weight blocks come from: an in-memory pack off chain, storage in the pallet, or (with
//! `std`) a read-ahead thread in front of a slow source (`prefetch`).

use alloc::borrow::Cow;
use alloc::vec::Vec;

use smartvm_isa::MAX_BLOCKS;

use crate::error::ErrorKind;

/// A source of weight blocks, indexed like the program's manifest.
pub trait WeightSource {
    /// The bytes of block `index`, or `None` if it does not exist.
    fn block(&self, index: u32) -> Option<Cow<'_, [u8]>>;

    /// Exactly `len` bytes from block `first` on as one borrowed slice, with how many blocks
    /// they span, for a source that keeps consecutive blocks side by side in memory: a layer
    /// spread over many blocks then costs no copy. `None` (the default) makes the reader gather
    /// the blocks one by one, which also reports every malformed span.
    fn span(&self, _first: u32, _len: usize) -> Option<(&[u8], u32)> {
        None
    }
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

/// All blocks of a model in one allocation (the CLI's weight pack): the native path reads each
/// layer's weights in place, however many blocks they span.
#[derive(Clone, Debug, Default)]
pub struct WeightPack {
    bytes: Vec<u8>,
    /// End offset of each block in `bytes`.
    ends: Vec<usize>,
}

impl WeightPack {
    /// Lays the blocks out end to end.
    pub fn new(blocks: &[Vec<u8>]) -> Self {
        let mut pack = WeightPack {
            bytes: Vec::with_capacity(blocks.iter().map(Vec::len).sum()),
            ends: Vec::with_capacity(blocks.len()),
        };
        for block in blocks {
            pack.bytes.extend_from_slice(block);
            pack.ends.push(pack.bytes.len());
        }
        pack
    }

    fn start(&self, index: usize) -> usize {
        index.checked_sub(1).map_or(0, |i| self.ends[i])
    }
}

impl WeightSource for WeightPack {
    fn block(&self, index: u32) -> Option<Cow<'_, [u8]>> {
        let end = *self.ends.get(index as usize)?;
        Some(Cow::Borrowed(&self.bytes[self.start(index as usize)..end]))
    }

    fn span(&self, first: u32, len: usize) -> Option<(&[u8], u32)> {
        let first = first as usize;
        if first >= self.ends.len() {
            return None;
        }
        let start = self.start(first);
        let end = start.checked_add(len)?;
        // The first block ending exactly at `end`: where a gather would stop.
        let last = first + self.ends[first..].partition_point(|e| *e < end);
        let count = last.checked_sub(first)? + 1;
        (self.ends.get(last) == Some(&end) && count <= MAX_BLOCKS)
            .then(|| (&self.bytes[start..end], count as u32))
    }
}

/// Reads consecutive blocks from `first` until exactly `len` bytes are gathered.
/// Returns the bytes and how many blocks were read.
pub(crate) fn gather<W: WeightSource>(
    source: &W,
    first: u32,
    len: usize,
) -> Result<(Cow<'_, [u8]>, u32), ErrorKind> {
    if let Some((bytes, count)) = source.span(first, len) {
        return Ok((Cow::Borrowed(bytes), count));
    }
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

/// Reads a layer's consecutive blocks a piece at a time, so a layer larger than one runtime
/// allocation can still be computed in bands. It checks what [`gather`] checks: the blocks from
/// `first` on add up to exactly the layer's length, within [`MAX_BLOCKS`].
pub(crate) struct LayerStream {
    first: u32,
    next: u32,
    blocks: u32,
    /// Layer bytes not yet read from the source.
    unread: usize,
    /// Bytes read but not yet handed out: the tail of the last block.
    carry: Vec<u8>,
}

impl LayerStream {
    /// A stream over the `len` bytes of the layer starting at block `first`.
    pub(crate) fn new(first: u32, len: usize) -> Self {
        LayerStream {
            first,
            next: first,
            blocks: 0,
            unread: len,
            carry: Vec::new(),
        }
    }

    /// The next `n` bytes of the layer and how many blocks were read to get them.
    pub(crate) fn take<W: WeightSource>(
        &mut self,
        source: &W,
        n: usize,
    ) -> Result<(Vec<u8>, u32), ErrorKind> {
        let mismatch = ErrorKind::WeightSizeMismatch {
            first_block: self.first,
        };
        let mut read = 0u32;
        while self.carry.len() < n {
            if self.blocks as usize >= MAX_BLOCKS {
                return Err(mismatch);
            }
            let index = self.next;
            let block = source
                .block(index)
                .ok_or(ErrorKind::MissingWeightBlock { index })?;
            self.unread = self.unread.checked_sub(block.len()).ok_or(mismatch)?;
            self.carry.extend_from_slice(&block);
            self.next = index.checked_add(1).ok_or(mismatch)?;
            self.blocks += 1;
            read += 1;
        }
        let rest = self.carry.split_off(n);
        Ok((core::mem::replace(&mut self.carry, rest), read))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pack answers every span exactly as gathering the blocks one by one does: the same bytes
    /// and block count, or an error (then the pack declines and the gather reports it).
    #[test]
    fn pack_spans_agree_with_gathering() {
        let blocks: Vec<Vec<u8>> = [3usize, 5, 1, 4, 4, 7]
            .iter()
            .enumerate()
            .map(|(b, n)| (0..*n).map(|i| (b * 16 + i) as u8).collect())
            .collect();
        let (list, pack) = (BlockList(&blocks), WeightPack::new(&blocks));
        for first in 0..8u32 {
            for len in 0..30usize {
                let by_list = gather(&list, first, len);
                let by_pack = gather(&pack, first, len);
                assert_eq!(by_list, by_pack, "first {first} len {len}");
                if let Ok((_, count)) = by_list {
                    assert!(pack.span(first, len).is_some() || count == 1);
                }
            }
        }
    }
}
