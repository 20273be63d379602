//! The program container: what is uploaded to the chain and stored as one value.
//!
//! Layout (all integers little-endian):
//! `"SMVM"` magic, version byte, input shape (4 × u32: C, D, H, W), output length (u32),
//! code length (u32) and code bytes, block count (u32) and per block its length (u32) and
//! BLAKE2b-256 hash. Nothing may follow. The manifest lets the chain check every uploaded weight
//! block against what the program's author compiled.

use alloc::vec::Vec;

/// Container magic bytes.
pub const MAGIC: [u8; 4] = *b"SMVM";
/// Container version this crate reads and writes.
pub const VERSION: u8 = 1;
/// Largest code section accepted.
pub const MAX_CODE_LEN: usize = 256 * 1024;
/// Most weight blocks one program may reference.
pub const MAX_BLOCKS: usize = 4096;
/// Largest single weight block, so one storage value stays small in a proof.
pub const MAX_BLOCK_LEN: u32 = 64 * 1024;
/// Largest input or output tensor, in elements.
pub const MAX_TENSOR_LEN: u64 = 16 * 1024 * 1024;

/// A tensor shape, channels first: C × D × H × W (D is 1 for images).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Shape {
    /// Channels.
    pub c: u32,
    /// Depth (1 except for 3-D data).
    pub d: u32,
    /// Height.
    pub h: u32,
    /// Width.
    pub w: u32,
}

impl Shape {
    /// A shape from its four dimensions.
    pub const fn new(c: u32, d: u32, h: u32, w: u32) -> Shape {
        Shape { c, d, h, w }
    }

    /// A flat vector of `n` elements (N × 1 × 1 × 1).
    pub const fn flat(n: u32) -> Shape {
        Shape {
            c: n,
            d: 1,
            h: 1,
            w: 1,
        }
    }

    /// Element count, or `None` if it does not fit in u64 arithmetic sanity bounds.
    pub fn elements(&self) -> Option<u64> {
        (self.c as u64)
            .checked_mul(self.d as u64)?
            .checked_mul(self.h as u64)?
            .checked_mul(self.w as u64)
    }
}

/// One weight block the program expects to find in storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockInfo {
    /// Length in bytes.
    pub len: u32,
    /// BLAKE2b-256 of the bytes.
    pub hash: [u8; 32],
}

/// A decoded program: code plus the metadata the chain checks inputs and uploads against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Program {
    /// Shape of the int8 input tensor placed in Memory at offset 0.
    pub input: Shape,
    /// Number of int8 output elements the program must produce.
    pub output_len: u32,
    /// Bytecode.
    pub code: Vec<u8>,
    /// Weight-block manifest, indexed by block number.
    pub blocks: Vec<BlockInfo>,
}

/// Why bytes are not a well-formed program container.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgramError {
    /// Wrong magic bytes.
    BadMagic,
    /// A version this build does not read.
    UnsupportedVersion(u8),
    /// The bytes end early.
    Truncated,
    /// Bytes follow the manifest.
    TrailingBytes,
    /// Code longer than [`MAX_CODE_LEN`] or empty.
    CodeSize,
    /// More than [`MAX_BLOCKS`] blocks.
    TooManyBlocks,
    /// A block longer than [`MAX_BLOCK_LEN`] or empty.
    BlockSize { index: u32 },
    /// Input or output shape is empty or larger than [`MAX_TENSOR_LEN`].
    TensorSize,
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ProgramError> {
        if self.bytes.len() < n {
            return Err(ProgramError::Truncated);
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, ProgramError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

impl Program {
    /// Parses and bounds-checks a container. It does not validate the code: see [`crate::validate`].
    pub fn decode(bytes: &[u8]) -> Result<Program, ProgramError> {
        let mut r = Reader { bytes };
        if r.take(4).map_err(|_| ProgramError::BadMagic)? != MAGIC {
            return Err(ProgramError::BadMagic);
        }
        let version = r.take(1)?[0];
        if version != VERSION {
            return Err(ProgramError::UnsupportedVersion(version));
        }
        let input = Shape::new(r.u32()?, r.u32()?, r.u32()?, r.u32()?);
        let output_len = r.u32()?;
        match input.elements() {
            Some(n) if n > 0 && n <= MAX_TENSOR_LEN => {}
            _ => return Err(ProgramError::TensorSize),
        }
        if output_len == 0 || output_len as u64 > MAX_TENSOR_LEN {
            return Err(ProgramError::TensorSize);
        }
        let code_len = r.u32()? as usize;
        if code_len == 0 || code_len > MAX_CODE_LEN {
            return Err(ProgramError::CodeSize);
        }
        let code = r.take(code_len)?.to_vec();
        let count = r.u32()? as usize;
        if count > MAX_BLOCKS {
            return Err(ProgramError::TooManyBlocks);
        }
        let mut blocks = Vec::with_capacity(count);
        for index in 0..count as u32 {
            let len = r.u32()?;
            if len == 0 || len > MAX_BLOCK_LEN {
                return Err(ProgramError::BlockSize { index });
            }
            let mut hash = [0u8; 32];
            hash.copy_from_slice(r.take(32)?);
            blocks.push(BlockInfo { len, hash });
        }
        if !r.bytes.is_empty() {
            return Err(ProgramError::TrailingBytes);
        }
        Ok(Program {
            input,
            output_len,
            code,
            blocks,
        })
    }

    /// Serialises the container; `decode(encode(p)) == p` for every program `decode` accepts.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(33 + self.code.len() + 36 * self.blocks.len());
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        for dim in [
            self.input.c,
            self.input.d,
            self.input.h,
            self.input.w,
            self.output_len,
        ] {
            out.extend_from_slice(&dim.to_le_bytes());
        }
        out.extend_from_slice(&(self.code.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.code);
        out.extend_from_slice(&(self.blocks.len() as u32).to_le_bytes());
        for block in &self.blocks {
            out.extend_from_slice(&block.len.to_le_bytes());
            out.extend_from_slice(&block.hash);
        }
        out
    }

    /// Builds the manifest for a set of weight blocks.
    pub fn manifest_of<B: AsRef<[u8]>>(blocks: &[B]) -> Vec<BlockInfo> {
        blocks
            .iter()
            .map(|b| BlockInfo {
                len: b.as_ref().len() as u32,
                hash: crate::block_hash(b.as_ref()),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Program {
        Program {
            input: Shape::new(1, 1, 32, 32),
            output_len: 10,
            code: vec![0x00],
            blocks: Program::manifest_of(&[vec![1u8, 2, 3], vec![4u8]]),
        }
    }

    #[test]
    fn container_round_trips() {
        let p = sample();
        assert_eq!(Program::decode(&p.encode()), Ok(p));
    }

    #[test]
    fn every_truncation_is_rejected() {
        let bytes = sample().encode();
        for cut in 0..bytes.len() {
            assert!(
                Program::decode(&bytes[..cut]).is_err(),
                "prefix {cut} accepted"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(Program::decode(&longer), Err(ProgramError::TrailingBytes));
    }

    #[test]
    fn bad_headers_are_named() {
        let mut bytes = sample().encode();
        bytes[4] = 9;
        assert_eq!(
            Program::decode(&bytes),
            Err(ProgramError::UnsupportedVersion(9))
        );
        bytes[0] = b'X';
        assert_eq!(Program::decode(&bytes), Err(ProgramError::BadMagic));
        let mut empty_input = sample();
        empty_input.input.h = 0;
        assert_eq!(
            Program::decode(&empty_input.encode()),
            Err(ProgramError::TensorSize)
        );
    }
}
