//! PNG inputs: decoded to pixel values 0-255 (as floats, channels first); quant.json then says
//! whether the program takes them as bytes or as pixel / 255 quantized.

use std::path::Path;

use anyhow::{bail, Context, Result};
use smartvm_isa::Shape;

/// Reads a PNG of exactly the program's H × W into C × H × W pixel values 0-255 (C = 1: luma,
/// C = 3: RGB).
pub fn read_png(path: &Path, shape: Shape) -> Result<Vec<f32>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut decoder = png::Decoder::new(std::io::BufReader::new(file));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder
        .read_info()
        .with_context(|| format!("{}: not a PNG", path.display()))?;
    let mut buf = vec![0; reader.output_buffer_size().unwrap_or(0)];
    let info = reader
        .next_frame(&mut buf)
        .with_context(|| format!("decoding {}", path.display()))?;
    let (w, h) = (info.width as usize, info.height as usize);
    if (h, w) != (shape.h as usize, shape.w as usize) || shape.d != 1 {
        bail!(
            "{} is {w}x{h}; the program takes {}x{}",
            path.display(),
            shape.w,
            shape.h
        );
    }
    let per_pixel = info.color_type.samples();
    let pixels = &buf[..info.buffer_size()];
    let channel = |c: usize| -> Vec<f32> {
        pixels
            .chunks(per_pixel)
            .map(|p| p[c.min(per_pixel - 1)] as f32)
            .collect()
    };
    match (shape.c, per_pixel) {
        (1, 1 | 2) => Ok(channel(0)),
        (1, _) => {
            // ITU-R BT.601 luma from RGB.
            let (r, g, b) = (channel(0), channel(1), channel(2));
            Ok(r.iter()
                .zip(&g)
                .zip(&b)
                .map(|((r, g), b)| 0.299 * r + 0.587 * g + 0.114 * b)
                .collect())
        }
        (3, 3 | 4) => Ok((0..3).flat_map(channel).collect()),
        (c, _) => bail!(
            "{}: {per_pixel} samples per pixel for a {c}-channel program",
            path.display()
        ),
    }
}
