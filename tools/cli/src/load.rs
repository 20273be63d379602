//! Reading programs, weight packs and inputs from files, with errors that name the file.

use std::path::Path;

use anyhow::{bail, Context, Result};
use smartvm_isa::{asm, block_hash, pack::decode_pack, Program, Shape};

/// Reads a program: `.sasm` source is assembled, anything else is decoded as a container.
/// With `weights`, a source program's manifest is filled from the pack.
pub fn program(path: &Path, weights: Option<&Path>) -> Result<Program> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut program = if path.extension().is_some_and(|e| e == "sasm") {
        let text =
            String::from_utf8(bytes).with_context(|| format!("{} is not UTF-8", path.display()))?;
        asm::assemble(&text).with_context(|| format!("assembling {}", path.display()))?
    } else {
        Program::decode(&bytes)
            .map_err(|e| anyhow::anyhow!("{}: not a SmartVM program: {e:?}", path.display()))?
    };
    if let Some(w) = weights {
        if program.blocks.is_empty() {
            program.blocks = Program::manifest_of(&blocks(w)?);
        }
    }
    Ok(program)
}

/// Reads a weight pack.
pub fn blocks(path: &Path) -> Result<Vec<Vec<u8>>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    decode_pack(&bytes).map_err(|e| anyhow::anyhow!("{}: not a weight pack: {e:?}", path.display()))
}

/// Checks every block against the program's manifest, naming the first that differs.
pub fn check_manifest(program: &Program, blocks: &[Vec<u8>]) -> Result<()> {
    if program.blocks.len() != blocks.len() {
        bail!(
            "the program expects {} weight blocks, the pack has {}",
            program.blocks.len(),
            blocks.len()
        );
    }
    for (i, (want, got)) in program.blocks.iter().zip(blocks).enumerate() {
        if want.len as usize != got.len() || want.hash != block_hash(got) {
            bail!("weight block {i} does not match the program's manifest");
        }
    }
    Ok(())
}

/// Reads input number `index` from a file of raw int8 tensors of `len` elements each.
pub fn input(path: &Path, len: usize, index: usize) -> Result<Vec<i8>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if len == 0 || bytes.len() % len != 0 {
        bail!(
            "{} holds {} bytes, not a whole number of {len}-byte inputs",
            path.display(),
            bytes.len()
        );
    }
    let count = bytes.len() / len;
    if index >= count {
        bail!(
            "{} holds {count} inputs; index {index} is out of range",
            path.display()
        );
    }
    Ok(bytes[index * len..(index + 1) * len]
        .iter()
        .map(|b| *b as i8)
        .collect())
}

/// Input and output quantization of a compiled model (its quant.json).
pub type Quant = crate::compile::ModelQuant;

/// Reads input number `index` for a model whose input has `shape`, as the program takes it.
///
/// Raw files are the program's bytes already. PNG pixels and float32 `.npy` values become them
/// as the model's quant.json says (`quant`, or the one beside `program`): raw bytes for a
/// program with its normalization folded in, else quantized floats (PNG as pixel / 255). That
/// quant.json is returned too, so outputs can be dequantized.
pub fn model_input(
    path: &Path,
    quant: Option<&Path>,
    program: &Path,
    shape: Shape,
    index: usize,
) -> Result<(Vec<i8>, Option<Quant>)> {
    let len = shape.elements().unwrap_or(0) as usize;
    let is_png = path.extension().is_some_and(|e| e == "png");
    let is_npy = path.extension().is_some_and(|e| e == "npy");
    if !is_png && !is_npy {
        return Ok((input(path, len, index)?, None));
    }
    let quant_path = quant
        .map(Path::to_path_buf)
        .unwrap_or_else(|| program.with_file_name("quant.json"));
    let quant = crate::compile::read_quant(&quant_path)?;
    let values = if is_png {
        crate::image::read_png(path, shape)?
    } else {
        smartvm_compiler::read_npy(path)?.1
    };
    if len == 0 || values.len() % len != 0 || index >= values.len() / len {
        bail!(
            "{} does not hold input {index} of {len} values",
            path.display()
        );
    }
    let one = &values[index * len..(index + 1) * len];
    let encoded = if is_png {
        quant.encode_pixels(one)
    } else {
        quant.encode_values(one)
    };
    Ok((encoded, Some(quant)))
}
