//! The elastic Buffer (paper §3.3): a stack of int8 feature-map frames.
//!
//! Layer instructions replace the top frame with their output, so the Buffer holds only the
//! live tensors and its size follows the feature maps up and down. Live and peak bytes are
//! tracked; the byte and frame limits are checked before any allocation.

use alloc::vec::Vec;

use smartvm_isa::Shape;

use crate::error::ErrorKind;

/// A frame as a snapshot keeps it: shape (C, D, H, W) and elements.
pub type SavedFrame = ([u32; 4], Vec<i8>);

/// One feature map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Shape, channels first.
    pub shape: Shape,
    /// Elements, `shape.elements()` of them.
    pub data: Vec<i8>,
}

impl Frame {
    /// A flat frame holding `data`.
    pub fn flat(data: Vec<i8>) -> Frame {
        Frame {
            shape: Shape::flat(data.len() as u32),
            data,
        }
    }
}

/// The frame stack with its accounting.
#[derive(Clone, Debug)]
pub struct Buffer {
    frames: Vec<Frame>,
    live: u64,
    peak: u64,
    pushed: u64,
    limit: u64,
    max_limit: u64,
    max_frames: usize,
    /// Storage of dropped small frames, handed to the next frames: a recurrent model makes and
    /// drops thousands of small frames a run, and the allocator was a sixth of its time.
    spare: Vec<Vec<i8>>,
}

/// Storage for `len` bytes: a kept one that holds them without wasting more than
/// `max(len, 4 KiB)`, so that a frame never holds much more memory than the bytes it is charged
/// for, still holding its old bytes; else a new, empty one.
fn take_spare(spare: &mut Vec<Vec<i8>>, len: usize) -> Vec<i8> {
    let most = len.saturating_mul(2).max(4096);
    match spare
        .iter()
        .position(|v| v.capacity() >= len && v.capacity() <= most)
    {
        Some(i) => spare.swap_remove(i),
        None => Vec::with_capacity(len),
    }
}

/// Most dropped frames kept for reuse.
const SPARE_FRAMES: usize = 32;
/// Bytes the spares may always hold outside the limit.
const SPARE_BYTES: usize = 512 * 1024;
/// Most bytes the spares hold outside the limit, however large the program's peak.
const MAX_SPARE_BYTES: usize = 4 << 20;

impl Buffer {
    /// An empty Buffer with a byte limit and a frame limit.
    pub fn new(limit: u32, max_frames: u32) -> Buffer {
        Buffer {
            frames: Vec::new(),
            live: 0,
            peak: 0,
            pushed: 0,
            limit: limit as u64,
            max_limit: limit as u64,
            max_frames: max_frames as usize,
            spare: Vec::new(),
        }
    }

    /// Its state for a snapshot: frames (shape as C, D, H, W), live, peak, pushed and current
    /// limit.
    pub(crate) fn into_saved(self) -> (Vec<SavedFrame>, [u64; 4]) {
        let frames = self
            .frames
            .into_iter()
            .map(|f| ([f.shape.c, f.shape.d, f.shape.h, f.shape.w], f.data))
            .collect();
        (frames, [self.live, self.peak, self.pushed, self.limit])
    }

    /// A Buffer with `save`d state, within this configuration's limits.
    pub(crate) fn restore(
        limit: u32,
        max_frames: u32,
        frames: &[SavedFrame],
        counters: [u64; 4],
    ) -> Result<Buffer, ErrorKind> {
        let [live, peak, pushed, current] = counters;
        let frames: Vec<Frame> = frames
            .iter()
            .map(|([c, d, h, w], data)| Frame {
                shape: Shape::new(*c, *d, *h, *w),
                data: data.clone(),
            })
            .collect();
        let held: u64 = frames.iter().map(|f| f.data.len() as u64).sum();
        let shaped = frames
            .iter()
            .all(|f| f.shape.elements() == Some(f.data.len() as u64));
        if held != live || !shaped || current > limit as u64 || frames.len() > max_frames as usize {
            return Err(ErrorKind::BufferLimit);
        }
        Ok(Buffer {
            frames,
            live,
            peak,
            pushed,
            limit: current,
            max_limit: limit as u64,
            max_frames: max_frames as usize,
            spare: Vec::new(),
        })
    }

    /// Bytes held now.
    pub fn live_bytes(&self) -> u64 {
        self.live
    }

    /// Most bytes held at any moment, counting a layer's input and output together.
    pub fn peak_bytes(&self) -> u64 {
        self.peak
    }

    /// Bytes of all frames ever pushed: the Buffer's size had it never freed one.
    pub fn pushed_bytes(&self) -> u64 {
        self.pushed
    }

    /// Number of frames.
    pub fn depth(&self) -> usize {
        self.frames.len()
    }

    /// BUF_INIT: drops every frame and sets a new byte limit, never above the configured one.
    pub fn init(&mut self, limit: u64) -> Result<(), ErrorKind> {
        if limit > self.max_limit {
            return Err(ErrorKind::BufferLimit);
        }
        self.frames.clear();
        self.live = 0;
        self.limit = limit;
        Ok(())
    }

    /// Checks that `extra` more bytes fit next to the live ones and records the peak.
    pub fn reserve(&mut self, extra: u64) -> Result<(), ErrorKind> {
        let total = self.live.checked_add(extra).ok_or(ErrorKind::BufferLimit)?;
        if total > self.limit {
            return Err(ErrorKind::BufferLimit);
        }
        self.peak = self.peak.max(total);
        Ok(())
    }

    /// Pushes a frame.
    pub fn push(&mut self, frame: Frame) -> Result<(), ErrorKind> {
        if self.frames.len() >= self.max_frames {
            return Err(ErrorKind::BufferLimit);
        }
        self.reserve(frame.data.len() as u64)?;
        self.live += frame.data.len() as u64;
        self.pushed += frame.data.len() as u64;
        self.frames.push(frame);
        Ok(())
    }

    /// Pops the top frame, releasing its bytes.
    pub fn pop(&mut self) -> Result<Frame, ErrorKind> {
        let frame = self.frames.pop().ok_or(ErrorKind::BufferUnderflow)?;
        self.live -= frame.data.len() as u64;
        Ok(frame)
    }

    /// Pops the top frame and keeps its storage for a later frame.
    pub fn discard(&mut self) -> Result<(), ErrorKind> {
        let frame = self.pop()?;
        let most = self.spare_bound();
        if frame.data.capacity() <= most {
            self.spare.push(frame.data);
            // The oldest go first: recent frames' sizes are the likeliest to come again.
            while self.spare.len() > SPARE_FRAMES || self.spare_bytes() > most {
                self.spare.remove(0);
            }
        }
        Ok(())
    }

    /// Bytes the spares may hold: 512 KiB, or twice as many as the program once held live
    /// (its peak), up to 4 MiB. A model's feature maps of every size are then reused from
    /// layer to layer (with the peak alone, MobileNetV2's largest maps crowded out the rest),
    /// and no program holds more than three times the memory it was charged for.
    fn spare_bound(&self) -> usize {
        SPARE_BYTES.max((2 * self.peak as usize).min(MAX_SPARE_BYTES))
    }

    /// The most bytes of dropped frames a Buffer of byte limit `limit` keeps for reuse, outside
    /// the limit (for the runtime's memory budget): its peak is within the limit, so its
    /// spares within twice that, and never past 4 MiB.
    pub fn most_spare_bytes(limit: u64) -> u64 {
        (SPARE_BYTES as u64).max(limit.saturating_mul(2).min(MAX_SPARE_BYTES as u64))
    }

    /// Takes `spares` (another Buffer's kept storage) as its own, within the most any Buffer
    /// keeps (32 frames, 4 MiB): the leading ones that fit.
    pub(crate) fn adopt_spares(&mut self, spares: Vec<Vec<i8>>) {
        let mut bytes = 0;
        self.spare = spares
            .into_iter()
            .take_while(|v| {
                bytes += v.capacity();
                bytes <= MAX_SPARE_BYTES
            })
            .take(SPARE_FRAMES)
            .collect();
    }

    /// Gives up its kept storage (for [`Buffer::adopt_spares`]).
    pub(crate) fn take_spares(&mut self) -> Vec<Vec<i8>> {
        core::mem::take(&mut self.spare)
    }

    /// Bytes the kept storage holds.
    fn spare_bytes(&self) -> usize {
        self.spare.iter().map(Vec::capacity).sum()
    }

    /// Empty storage for `len` bytes: see [`take_spare`].
    fn spare_for(&mut self, len: usize) -> Vec<i8> {
        let mut data = take_spare(&mut self.spare, len);
        data.clear();
        data
    }

    /// Storage for a layer's output of `len` bytes, a dropped frame's where one is kept,
    /// holding that frame's old bytes: the kernels write every output byte, so zeroing it first
    /// (3% of MobileNetV2, on one thread while the others waited) bought nothing. Debug builds
    /// fill it with a marker instead, so that a kernel that left a byte unwritten fails the
    /// tests that compare outputs.
    pub fn for_output(&mut self, len: usize) -> Vec<i8> {
        let mut data = take_spare(&mut self.spare, len);
        if data.len() < len {
            data.resize(len, 0);
        } else {
            data.truncate(len);
        }
        #[cfg(debug_assertions)]
        data.fill(0x5b);
        data
    }

    /// Storage for a new frame holding a copy of `bytes`, a dropped frame's where one is kept.
    pub fn copied(&mut self, bytes: &[i8]) -> Vec<i8> {
        let mut data = self.spare_for(bytes.len());
        data.extend_from_slice(bytes);
        data
    }

    /// A copy of the frame `depth` below the top, in a dropped frame's storage where one is kept.
    pub fn copy_of(&mut self, depth: usize) -> Result<Frame, ErrorKind> {
        let len = self.get(depth)?.data.len();
        let mut data = self.spare_for(len);
        let frame = self.get(depth)?;
        data.extend_from_slice(&frame.data);
        Ok(Frame {
            shape: frame.shape,
            data,
        })
    }

    /// A flat frame copying `len` bytes at `offset` of the top frame (BUF_SLICE).
    pub fn slice_of_top(&mut self, offset: usize, len: usize) -> Result<Frame, ErrorKind> {
        let top = self.frames.last().ok_or(ErrorKind::BufferUnderflow)?;
        let bytes = top
            .data
            .get(offset..offset.saturating_add(len))
            .ok_or(ErrorKind::BadOperand)?;
        let mut data = take_spare(&mut self.spare, bytes.len());
        data.clear();
        data.extend_from_slice(bytes);
        Ok(Frame::flat(data))
    }

    /// The frame `depth` below the top (0 = top).
    pub fn get(&self, depth: usize) -> Result<&Frame, ErrorKind> {
        let n = self.frames.len();
        if depth >= n {
            return Err(ErrorKind::BufferUnderflow);
        }
        Ok(&self.frames[n - 1 - depth])
    }

    /// The top frame.
    pub fn top(&self) -> Result<&Frame, ErrorKind> {
        self.get(0)
    }

    /// The top frame, mutably (its length must not change).
    pub fn top_mut(&mut self) -> Result<&mut Frame, ErrorKind> {
        self.frames.last_mut().ok_or(ErrorKind::BufferUnderflow)
    }

    /// Replaces the top `count` frames with `frame` (a layer's output replacing its inputs).
    /// The output's bytes must have been [`reserve`](Self::reserve)d while the inputs were live.
    pub fn replace(&mut self, count: usize, frame: Frame) -> Result<(), ErrorKind> {
        for _ in 0..count {
            self.discard()?;
        }
        self.push(frame)
    }

    /// Swaps the top frame with the one `depth` below it.
    pub fn swap(&mut self, depth: usize) -> Result<(), ErrorKind> {
        let n = self.frames.len();
        if depth == 0 || depth >= n {
            return Err(ErrorKind::BufferUnderflow);
        }
        self.frames.swap(n - 1, n - 1 - depth);
        Ok(())
    }

    /// Shortens the top frame by `bytes`, leaving it flat.
    pub fn shrink_top(&mut self, bytes: u64) -> Result<(), ErrorKind> {
        let top = self.frames.last_mut().ok_or(ErrorKind::BufferUnderflow)?;
        let len = top.data.len() as u64;
        if bytes > len {
            return Err(ErrorKind::BadOperand);
        }
        let keep = (len - bytes) as usize;
        top.data.truncate(keep);
        top.data.shrink_to_fit();
        top.shape = Shape::flat(keep as u32);
        self.live -= bytes;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(bytes: &[i8]) -> Frame {
        Frame::flat(bytes.to_vec())
    }

    #[test]
    fn reused_storage_holds_exactly_the_new_bytes() {
        let mut b = Buffer::new(1 << 20, 16);
        b.push(frame(&[7; 300])).unwrap();
        b.discard().unwrap();
        assert_eq!(b.live_bytes(), 0);
        assert_eq!(b.for_output(200).len(), 200);
        b.push(frame(&[7; 300])).unwrap();
        b.discard().unwrap();
        b.push(frame(&[5; 300])).unwrap();
        b.discard().unwrap();
        assert_eq!(b.copied(&[1, 2, 3]), vec![1, 2, 3]);
        b.push(frame(&[9, 8, 7, 6])).unwrap();
        b.push(frame(&[4; 10])).unwrap();
        b.discard().unwrap();
        let slice = b.slice_of_top(1, 2).unwrap();
        assert_eq!((slice.data, slice.shape), (vec![8, 7], Shape::flat(2)));
        let copy = b.copy_of(0).unwrap();
        assert_eq!(copy.data, vec![9, 8, 7, 6]);
    }

    #[test]
    fn a_frame_never_holds_much_more_than_its_bytes() {
        let mut b = Buffer::new(1 << 20, 16);
        for _ in 0..8 {
            b.push(frame(&[1; 60_000])).unwrap();
        }
        for _ in 0..8 {
            b.discard().unwrap();
        }
        // 60 KB of spare storage is not handed to a 10-byte frame, nor to a 20 KB one.
        assert!(b.for_output(10).capacity() <= 4096);
        assert!(b.for_output(20_000).capacity() <= 40_000);
        assert!(b.for_output(40_000).capacity() >= 40_000);
    }

    #[test]
    fn adopted_spares_stay_within_the_frame_count_and_four_mib() {
        let mut b = Buffer::new(1 << 26, 64);
        b.adopt_spares(vec![vec![0; 1 << 20]; 6]);
        assert_eq!(b.spare.len(), 4);
        assert!(b.spare_bytes() <= MAX_SPARE_BYTES);
        b.adopt_spares(vec![vec![0; 100]; SPARE_FRAMES + 8]);
        assert_eq!(b.spare.len(), SPARE_FRAMES);
        assert_eq!(b.take_spares().len(), SPARE_FRAMES);
        assert!(b.spare.is_empty());
    }

    #[test]
    fn spares_hold_at_most_twice_the_peak_and_never_past_four_mib() {
        // A program that held one 600 KB frame at a time keeps two such frames.
        let mut b = Buffer::new(1 << 26, 64);
        for _ in 0..3 {
            b.push(frame(&vec![1; 600_000])).unwrap();
            b.discard().unwrap();
        }
        assert_eq!(b.spare_bytes(), 1_200_000);
        // A frame past 4 MiB is never kept.
        b.push(frame(&vec![1; MAX_SPARE_BYTES + 1])).unwrap();
        b.discard().unwrap();
        assert_eq!(b.spare_bytes(), 1_200_000);
        let mut b = Buffer::new(1 << 26, 64);
        for _ in 0..2 * SPARE_FRAMES {
            b.push(frame(&[1; 100])).unwrap();
        }
        for _ in 0..2 * SPARE_FRAMES {
            b.discard().unwrap();
        }
        assert_eq!(b.spare.len(), SPARE_FRAMES);
        // One that held 2 MB live keeps up to 4 MB: large feature maps are reused.
        let mut b = Buffer::new(1 << 26, 64);
        for _ in 0..2 {
            b.push(frame(&vec![1; 1_000_000])).unwrap();
        }
        for _ in 0..2 {
            b.discard().unwrap();
        }
        b.push(frame(&vec![1; 1_000_000])).unwrap();
        b.push(frame(&vec![1; 1_000_000])).unwrap();
        b.discard().unwrap();
        b.discard().unwrap();
        assert_eq!(b.spare_bytes(), 4_000_000);
        let kept = b.spare[0].as_ptr();
        let reused = b.for_output(900_000);
        assert_eq!(reused.as_ptr(), kept, "the oldest fitting spare is reused");
        // And one that held 40 MB keeps no more than 4 MiB.
        let mut b = Buffer::new(1 << 26, 64);
        for _ in 0..20 {
            b.push(frame(&vec![1; 2_000_000])).unwrap();
        }
        for _ in 0..20 {
            b.discard().unwrap();
        }
        assert!(b.spare_bytes() <= MAX_SPARE_BYTES);
        assert_eq!(b.spare.len(), 2);
        assert!(b.spare_bytes() as u64 <= Buffer::most_spare_bytes(1 << 26));
        // A Buffer whose limit is 1 MB may keep twice that, as the 600 KB case above shows.
        assert_eq!(Buffer::most_spare_bytes(1_000_000), 2_000_000);
        assert_eq!(Buffer::most_spare_bytes(1_000), SPARE_BYTES as u64);
    }
}
