//! IDX files (MNIST / Fashion-MNIST), plain or gzip-compressed.

use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context, Result};

/// An IDX array of unsigned bytes: its dimensions and data.
pub struct Idx {
    /// Dimensions, outermost first.
    pub dims: Vec<usize>,
    /// Values in row-major order.
    pub data: Vec<u8>,
}

impl Idx {
    /// Reads `path`, decompressing it when it ends in `.gz`.
    pub fn read(path: &Path) -> Result<Idx> {
        let file =
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let mut raw = Vec::new();
        if path.extension().is_some_and(|e| e == "gz") {
            flate2::read::GzDecoder::new(file).read_to_end(&mut raw)
        } else {
            std::io::BufReader::new(file).read_to_end(&mut raw)
        }
        .with_context(|| format!("reading {}", path.display()))?;
        if raw.len() < 4 || raw[0] != 0 || raw[1] != 0 || raw[2] != 0x08 {
            bail!("{}: not an unsigned-byte IDX file", path.display());
        }
        let n = raw[3] as usize;
        let header = 4 + 4 * n;
        if raw.len() < header {
            bail!("{}: truncated IDX header", path.display());
        }
        let dims: Vec<usize> = (0..n)
            .map(|i| {
                u32::from_be_bytes(raw[4 + 4 * i..8 + 4 * i].try_into().unwrap_or([0; 4])) as usize
            })
            .collect();
        let len: usize = dims.iter().product();
        if raw.len() != header + len {
            bail!(
                "{}: {} data bytes for dimensions {dims:?}",
                path.display(),
                raw.len() - header
            );
        }
        Ok(Idx {
            dims,
            data: raw[header..].to_vec(),
        })
    }

    /// The `i`-th item of the outermost dimension.
    pub fn item(&self, i: usize) -> &[u8] {
        let size: usize = self.dims.iter().skip(1).product();
        &self.data[i * size..(i + 1) * size]
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.dims.first().copied().unwrap_or(0)
    }
}
