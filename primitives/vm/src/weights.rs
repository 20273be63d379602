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

    /// Whether the last `None` from [`Self::block`] meant that this slice's budget of weight
    /// bytes is spent rather than a missing block: a chain job's source refuses a read that
    /// would pass its share of the block's proof, and the run pauses before the instruction
    /// (or inside a banded layer) to go on in a later block. `false` for every other source.
    fn slice_spent(&self) -> bool {
        false
    }
}

/// What a `None` from `source.block(index)` means: the slice's end, or a missing block.
pub(crate) fn unavailable<W: WeightSource>(source: &W, index: u32) -> ErrorKind {
    if source.slice_spent() {
        ErrorKind::SliceEnd
    } else {
        ErrorKind::MissingWeightBlock { index }
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

/// A source with a budget of weight bytes per slice, as a chain job's share of a block's proof:
/// a read that would pass it is refused, and the run pauses before it
/// ([`WeightSource::slice_spent`]). `per_block` bytes are counted on top of each block's length
/// (a storage proof's key and trie nodes). The CLI and the tests use it to cut runs the way the
/// pallet does.
pub struct ByteBudget<'a, W> {
    inner: &'a W,
    per_block: u64,
    left: core::cell::Cell<u64>,
    spent: core::cell::Cell<bool>,
}

impl<'a, W: WeightSource> ByteBudget<'a, W> {
    /// `inner` with `bytes` to read in the first slice.
    pub fn new(inner: &'a W, bytes: u64, per_block: u64) -> Self {
        ByteBudget {
            inner,
            per_block,
            left: core::cell::Cell::new(bytes),
            spent: core::cell::Cell::new(false),
        }
    }

    /// Starts the next slice with `bytes` to read.
    pub fn refill(&self, bytes: u64) {
        self.left.set(bytes);
        self.spent.set(false);
    }
}

impl<W: WeightSource> WeightSource for ByteBudget<'_, W> {
    fn block(&self, index: u32) -> Option<Cow<'_, [u8]>> {
        let bytes = self.inner.block(index)?;
        let cost = (bytes.len() as u64).saturating_add(self.per_block);
        match self.left.get().checked_sub(cost) {
            Some(left) => {
                self.left.set(left);
                self.spent.set(false);
                Some(bytes)
            }
            None => {
                self.spent.set(true);
                None
            }
        }
    }

    fn slice_spent(&self) -> bool {
        self.spent.get()
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
        Self::new_in(
            blocks,
            Vec::with_capacity(blocks.iter().map(Vec::len).sum()),
        )
    }

    /// [`Self::new`] into `storage` (emptied first), which the caller may have reserved with
    /// care: the CLI asks for huge pages, under which a large layer's weights stream from
    /// memory faster (fewer TLB misses).
    pub fn new_in(blocks: &[Vec<u8>], mut storage: Vec<u8>) -> Self {
        storage.clear();
        let mut pack = WeightPack {
            bytes: storage,
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
        .ok_or_else(|| unavailable(source, first))?;
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
            .ok_or_else(|| unavailable(source, index))?;
        if bytes.len() + block.len() > len {
            return Err(mismatch);
        }
        bytes.extend_from_slice(&block);
        count += 1;
    }
    Ok((Cow::Owned(bytes), count))
}

/// Reads a layer's consecutive blocks a piece at a time, so a layer larger than one runtime
/// allocation, or than one slice's share of a block's proof, can still be computed in bands. It
/// checks what [`gather`] checks: the blocks from `first` on add up to exactly the layer's
/// length, within [`MAX_BLOCKS`]. Plain data, so a paused run keeps it in its snapshot.
#[derive(Clone, Debug, PartialEq, Eq, codec::Encode, codec::Decode)]
pub struct LayerStream {
    first: u32,
    next: u32,
    blocks: u32,
    /// Layer bytes not yet read from the source.
    unread: u64,
    /// Bytes read but not yet handed out: the tail of the last block, or the head of a band
    /// whose reading a slice's end interrupted.
    carry: Vec<u8>,
    /// Blocks read and not yet charged: a band pays for its blocks once it has all its bytes.
    unpaid: u32,
}

impl LayerStream {
    /// A stream over the `len` bytes of the layer starting at block `first`.
    pub(crate) fn new(first: u32, len: u64) -> Self {
        LayerStream {
            first,
            next: first,
            blocks: 0,
            unread: len,
            carry: Vec::new(),
            unpaid: 0,
        }
    }

    /// Reads blocks until the stream holds the next `n` bytes of the layer; returns how many
    /// blocks were read and not yet charged. A failed call keeps what it read.
    pub(crate) fn fill<W: WeightSource>(&mut self, source: &W, n: usize) -> Result<u32, ErrorKind> {
        let mismatch = ErrorKind::WeightSizeMismatch {
            first_block: self.first,
        };
        while self.carry.len() < n {
            if self.blocks as usize >= MAX_BLOCKS {
                return Err(mismatch);
            }
            let index = self.next;
            let block = source
                .block(index)
                .ok_or_else(|| unavailable(source, index))?;
            self.unread = self
                .unread
                .checked_sub(block.len() as u64)
                .ok_or(mismatch)?;
            self.carry.extend_from_slice(&block);
            self.next = index.checked_add(1).ok_or(mismatch)?;
            self.blocks += 1;
            self.unpaid += 1;
        }
        Ok(self.unpaid)
    }

    /// Hands out the next `n` bytes, which [`Self::fill`] made present, once they are paid for.
    pub(crate) fn split(&mut self, n: usize) -> Vec<u8> {
        let n = n.min(self.carry.len());
        let rest = self.carry.split_off(n);
        self.unpaid = 0;
        core::mem::replace(&mut self.carry, rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    /// A pack answers every span exactly as gathering the blocks one by one does: the same bytes
    /// and block count, or an error (then the pack declines and the gather reports it).
    #[test]
    fn pack_spans_agree_with_gathering() {
        let blocks: Vec<Vec<u8>> = [3usize, 5, 1, 4, 4, 7]
            .iter()
            .enumerate()
            .map(|(b, n)| (0..*n).map(|i| (b * 16 + i) as u8).collect())
            .collect();
        let list = BlockList(&blocks);
        // A pack laid out in storage the caller reserved (and that held bytes) is the same.
        for pack in [
            WeightPack::new(&blocks),
            WeightPack::new_in(&blocks, vec![0xee; 40]),
        ] {
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
}
