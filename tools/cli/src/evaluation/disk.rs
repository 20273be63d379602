//! Weight blocks on disk, read with `O_DIRECT`: every fetch is a real device read that the page
//! cache cannot answer, like a node reading cold state. The slow source the prefetch pipeline
//! (paper §3.4) is measured against.

use std::borrow::Cow;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use smartvm_vm::WeightSource;

/// `O_DIRECT` transfers must start, end and land on this alignment.
const ALIGN: usize = 4096;

/// A model's blocks in one file, each starting on an [`ALIGN`] boundary; removed when dropped.
pub struct DiskBlocks {
    file: File,
    path: PathBuf,
    /// Offset and length of each block.
    extents: Vec<(u64, usize)>,
}

impl DiskBlocks {
    /// Writes the blocks to `path` and opens it for direct reads.
    pub fn create(path: &Path, blocks: &[Vec<u8>]) -> Result<Self> {
        let mut extents = Vec::with_capacity(blocks.len());
        let mut out = File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let mut offset = 0u64;
        for block in blocks {
            let padded = block.len().next_multiple_of(ALIGN).max(ALIGN);
            out.write_all(block)?;
            out.write_all(&vec![0u8; padded - block.len()])?;
            extents.push((offset, block.len()));
            offset += padded as u64;
        }
        out.sync_all()?;
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECT)
            .open(path)
            .with_context(|| format!("opening {} with O_DIRECT", path.display()))?;
        Ok(DiskBlocks {
            file,
            path: path.to_path_buf(),
            extents,
        })
    }

    /// Number of blocks.
    pub fn len(&self) -> u32 {
        self.extents.len() as u32
    }
}

impl Drop for DiskBlocks {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl WeightSource for DiskBlocks {
    fn block(&self, index: u32) -> Option<Cow<'_, [u8]>> {
        let (offset, len) = *self.extents.get(index as usize)?;
        let padded = len.next_multiple_of(ALIGN).max(ALIGN);
        let mut buf = vec![0u8; padded + ALIGN];
        let start = buf.as_ptr().align_offset(ALIGN);
        self.file
            .read_exact_at(&mut buf[start..start + padded], offset)
            .ok()?;
        buf.truncate(start + len);
        buf.drain(..start);
        Some(Cow::Owned(buf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Blocks of awkward sizes (empty, under and over the alignment) come back byte for byte,
    /// and the file is removed afterwards.
    #[test]
    fn direct_reads_return_what_was_written() {
        let blocks: Vec<Vec<u8>> = [0usize, 1, 4095, 4096, 4097, 70_000]
            .iter()
            .map(|n| (0..*n).map(|i| (i * 7 + n) as u8).collect())
            .collect();
        // O_DIRECT needs a real file system: next to the test binary, not in a tmpfs /tmp.
        let exe = std::env::current_exe().unwrap();
        let path = exe.with_file_name(format!("direct-io-test-{}.blocks", std::process::id()));
        let disk = DiskBlocks::create(&path, &blocks).expect("O_DIRECT works on this file system");
        assert_eq!(disk.len(), blocks.len() as u32);
        for (i, block) in blocks.iter().enumerate() {
            assert_eq!(
                disk.block(i as u32).as_deref(),
                Some(block.as_slice()),
                "block {i}"
            );
        }
        assert!(disk.block(blocks.len() as u32).is_none());
        drop(disk);
        assert!(!path.exists());
    }
}
