//! Structured differential fuzzing of every kernel instruction through the VM.
//!
//! The `execute` target feeds arbitrary bytes, so a well-formed convolution with a varied shape
//! is rare there (it ran 2.5 M executions and missed the CONV_3D panic). This target builds
//! valid programs instead: an input frame of a random shape, then one to four kernel
//! instructions (every conv, pool, fully-connected and matmul form) with geometry anywhere in
//! the admitted window range, weight blocks of the matching size (sometimes split across
//! blocks), qblocks with extreme but valid values, and now and then a deliberately wrong
//! operand. It runs on the reference, native and wasm-tuned scalar backends and asserts the
//! outcomes are equal (output, gas, or the same typed error). A panic in any backend is a
//! finding too.
#![no_main]

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use smartvm_isa::{asm, Shape};
use smartvm_kernels::arith::{MAX_SHIFT, MIN_SHIFT};
use smartvm_kernels::params::MAX_WINDOW;
use smartvm_kernels::{
    ChannelQuant, ConvParams, ConvTransposeParams, Native, OutputRange, PairQuant, PoolKind,
    PoolParams, Reference, Scalar,
};
use smartvm_vm::{execute, BlockList, Config, Executable};

/// Most multiply-accumulates one generated layer may do, so an execution stays in milliseconds.
const MAX_LAYER_MACS: u64 = 1 << 21;

/// A program under construction: its source, its weight blocks and the top frame's shape
/// (`None` once a deliberately bad instruction makes it unknown).
struct Builder {
    source: String,
    blocks: Vec<Vec<u8>>,
    shape: Option<Shape>,
}

impl Builder {
    fn push(&mut self, words: &[i64]) {
        for w in words {
            self.source.push_str(&format!("PUSH {w}\n"));
        }
    }

    fn op(&mut self, name: &str) {
        self.source.push_str(name);
        self.source.push('\n');
    }

    /// Adds `bytes` as one or more consecutive blocks (layers may span blocks); returns the first.
    fn weights(&mut self, u: &mut Unstructured, bytes: Vec<u8>) -> Result<i64> {
        let first = self.blocks.len() as i64;
        let pieces = if bytes.len() > 1 {
            u.int_in_range(1..=3)?
        } else {
            1
        };
        let cut = bytes.len().div_ceil(pieces).max(1);
        for piece in bytes.chunks(cut) {
            self.blocks.push(piece.to_vec());
        }
        if bytes.is_empty() {
            self.blocks.push(Vec::new());
        }
        Ok(first)
    }

    /// A layer's weights (`len` bytes) and its qblock for `channels` outputs; their indices.
    fn layer(&mut self, u: &mut Unstructured, len: usize, channels: u32) -> Result<(i64, i64)> {
        let weights = tensor(u, len)?;
        let w = self.weights(u, weights)?;
        let q = channel_quant(u, channels)?;
        Ok((w, self.block(q)))
    }

    fn block(&mut self, bytes: Vec<u8>) -> i64 {
        self.blocks.push(bytes);
        self.blocks.len() as i64 - 1
    }
}

/// int8 data: fuzzer bytes, or one of the extremes throughout.
fn tensor(u: &mut Unstructured, len: usize) -> Result<Vec<u8>> {
    Ok(match u.int_in_range(0..=4u8)? {
        0 => vec![0x80; len],
        1 => vec![0x7f; len],
        2 => (0..len)
            .map(|i| if i % 2 == 0 { 0x80 } else { 0x7f })
            .collect(),
        _ => {
            let mut v = vec![0u8; len];
            for b in v.iter_mut() {
                *b = u.arbitrary().unwrap_or(0x55);
            }
            v
        }
    })
}

fn int8(u: &mut Unstructured) -> Result<i32> {
    Ok(u.int_in_range(-128..=127i32)?)
}

fn range(u: &mut Unstructured) -> Result<OutputRange> {
    let (a, b) = (int8(u)?, int8(u)?);
    Ok(OutputRange {
        zero: int8(u)?,
        lo: a.min(b),
        hi: a.max(b),
    })
}

/// A multiplier and shift at the edges of the admitted range as often as inside it.
fn scale(u: &mut Unstructured) -> Result<(i32, i32)> {
    let mult = match u.int_in_range(0..=3u8)? {
        0 => i32::MAX,
        1 => 0,
        _ => u.int_in_range(0..=i32::MAX)?,
    };
    let shift = match u.int_in_range(0..=3u8)? {
        0 => MIN_SHIFT,
        1 => MAX_SHIFT,
        _ => u.int_in_range(MIN_SHIFT..=MAX_SHIFT)?,
    };
    Ok((mult, shift))
}

fn channel_quant(u: &mut Unstructured, channels: u32) -> Result<Vec<u8>> {
    let mut q = ChannelQuant {
        input_zero: int8(u)?,
        output: range(u)?,
        bias: Vec::new(),
        mult: Vec::new(),
        shift: Vec::new(),
    };
    for _ in 0..channels {
        let bias = match u.int_in_range(0..=3u8)? {
            0 => i32::MAX,
            1 => i32::MIN,
            _ => u.arbitrary()?,
        };
        let (m, s) = scale(u)?;
        q.bias.push(bias);
        q.mult.push(m);
        q.shift.push(s);
    }
    Ok(q.encode())
}

/// A window parameter: small mostly, anywhere up to [`MAX_WINDOW`] (and one past it) sometimes.
fn window(u: &mut Unstructured, min: u32) -> Result<u32> {
    Ok(match u.int_in_range(0..=7u8)? {
        0 => u.int_in_range(min..=MAX_WINDOW)?,
        1 => MAX_WINDOW + 1,
        _ => u.int_in_range(min..=min + 3)?,
    })
}

/// A divisor of both `a` and `b` (a group count), or sometimes any small number.
fn groups(u: &mut Unstructured, a: u32, b: u32) -> Result<u32> {
    if u.ratio(1, 8)? {
        return u.int_in_range(0..=4);
    }
    let common: Vec<u32> = (1..=a.min(b))
        .filter(|g| a % g == 0 && b % g == 0)
        .collect();
    Ok(*u.choose(&common)?)
}

/// Appends one kernel instruction that works on the top frame.
fn layer(u: &mut Unstructured, b: &mut Builder) -> Result<()> {
    let Some(shape) = b.shape else { return Ok(()) };
    match u.int_in_range(0..=7u8)? {
        0 | 1 | 2 => {
            // CONV_MUL, CONV_3D, CONV_SING
            let kind = u.int_in_range(0..=2u8)?;
            let out_c = if kind == 2 {
                shape.c
            } else {
                u.int_in_range(1..=8)?
            };
            let g = if kind == 2 {
                shape.c
            } else {
                groups(u, shape.c, out_c)?
            };
            let (k, stride, pad, dil) =
                (window(u, 1)?, window(u, 1)?, window(u, 0)?, window(u, 1)?);
            let make = if kind == 1 {
                ConvParams::conv3d
            } else {
                ConvParams::conv2d
            };
            let p = make(shape, out_c, k, stride, pad, dil, g);
            if p.is_ok_and(|p| p.macs() > MAX_LAYER_MACS) {
                return Ok(());
            }
            let (w, q) = b.layer(u, p.map(|p| p.weight_len() as usize).unwrap_or(16), out_c)?;
            if kind == 2 {
                b.push(&[k as i64, stride as i64, pad as i64, dil as i64, w, q]);
                b.op("CONV_SING");
            } else {
                let (o, g) = (out_c as i64, g as i64);
                b.push(&[o, k as i64, stride as i64, pad as i64, dil as i64, g, w, q]);
                b.op(if kind == 0 { "CONV_MUL" } else { "CONV_3D" });
            }
            b.shape = p.ok().map(|p| p.output);
        }
        3 => {
            let out_c = u.int_in_range(1..=8)?;
            let g = groups(u, shape.c, out_c)?;
            let (k, stride, pad) = (window(u, 1)?, window(u, 1)?, window(u, 0)?);
            let out_pad = u.int_in_range(0..=stride.saturating_sub(1).min(MAX_WINDOW))?;
            let p = ConvTransposeParams::new(shape, out_c, k, stride, pad, out_pad, g);
            if p.is_ok_and(|p| {
                p.macs() > MAX_LAYER_MACS || p.output.elements().unwrap_or(0) > 1 << 20
            }) {
                return Ok(());
            }
            let (w, q) = b.layer(u, p.map(|p| p.weight_len() as usize).unwrap_or(16), out_c)?;
            b.push(&[
                out_c as i64,
                k as i64,
                stride as i64,
                pad as i64,
                out_pad as i64,
                g as i64,
                w,
                q,
            ]);
            b.op("CONV_TPD");
            b.shape = p.ok().map(|p| p.output);
        }
        4 => {
            let (name, kind) = *u.choose(&[
                ("POOL_MAX", PoolKind::Max),
                ("POOL_OL", PoolKind::MaxCeil),
                ("POOL_AVG", PoolKind::Average),
            ])?;
            let (k, stride) = (window(u, 1)?, window(u, 1)?);
            let pad = u.int_in_range(0..=k)?;
            let p = PoolParams::new(shape, k, stride, pad, kind);
            if p.is_ok_and(|p| p.output.elements().unwrap_or(0) * (k * k) as u64 > MAX_LAYER_MACS) {
                return Ok(());
            }
            b.push(&[k as i64, stride as i64, pad as i64]);
            b.op(name);
            b.shape = p.ok().map(|p| p.output);
        }
        5 => {
            let inputs = shape.elements().unwrap_or(0);
            let out_n = u.int_in_range(1..=64u32)?;
            if inputs * out_n as u64 > MAX_LAYER_MACS {
                return Ok(());
            }
            let (w, q) = b.layer(u, (inputs * out_n as u64) as usize, out_n)?;
            b.push(&[out_n as i64, w, q]);
            b.op("FULL_CON");
            b.shape = Some(Shape::flat(out_n));
        }
        6 => {
            // MAT_MUL: the top frame is A (rows × W); B (W × N) comes from Memory.
            let rows = shape.c as u64 * shape.d as u64 * shape.h as u64;
            let (k, n) = (shape.w, u.int_in_range(1..=32u32)?);
            if rows * k as u64 * n as u64 > MAX_LAYER_MACS || k as u64 * n as u64 > 1 << 16 {
                return Ok(());
            }
            b.push(&[0, (k * n) as i64]);
            b.op("MTOB");
            b.push(&[1, 1, k as i64, n as i64]);
            b.op("BUF_SHAPE");
            let (mult, shift) = scale(u)?;
            let q = PairQuant {
                a_zero: int8(u)?,
                b_zero: int8(u)?,
                output: range(u)?,
                mult,
                shift,
            };
            let q = b.block(q.encode());
            b.push(&[q]);
            b.op("MAT_MUL");
            b.shape = Some(Shape::new(1, 1, rows as u32, n));
        }
        _ => {
            // Reshape to a random factorisation of the same size (e.g. give D > 1 for CONV_3D).
            let n = shape.elements().unwrap_or(1) as u32;
            let divisors: Vec<u32> = (1..=n.min(64)).filter(|d| n % d == 0).collect();
            let c = *u.choose(&divisors)?;
            let rest = n / c;
            let divisors: Vec<u32> = (1..=rest.min(64)).filter(|d| rest % d == 0).collect();
            let d = *u.choose(&divisors)?;
            let new = Shape::new(c, d, 1, rest / d);
            b.push(&[new.c as i64, new.d as i64, new.h as i64, new.w as i64]);
            b.op("BUF_SHAPE");
            b.shape = Some(new);
        }
    }
    Ok(())
}

fn build(u: &mut Unstructured) -> Result<(String, Vec<Vec<u8>>, Vec<u8>)> {
    let dim = |u: &mut Unstructured, max: u32| -> Result<u32> {
        Ok(if u.ratio(1, 6)? {
            u.int_in_range(1..=max)?
        } else {
            u.int_in_range(1..=8)?
        })
    };
    let shape = Shape::new(dim(u, 16)?, dim(u, 8)?, dim(u, 70)?, dim(u, 70)?);
    let len = shape.elements().unwrap_or(1);
    if len > 1 << 15 {
        return Err(libfuzzer_sys::arbitrary::Error::IncorrectFormat);
    }
    let input = tensor(u, len as usize)?;
    let mut b = Builder {
        source: String::new(),
        blocks: Vec::new(),
        shape: Some(shape),
    };
    b.push(&[0, len as i64]);
    b.op("MTOB");
    b.push(&[
        shape.c as i64,
        shape.d as i64,
        shape.h as i64,
        shape.w as i64,
    ]);
    b.op("BUF_SHAPE");
    for _ in 0..u.int_in_range(1..=4)? {
        layer(u, &mut b)?;
    }
    let out = b.shape.and_then(|s| s.elements()).unwrap_or(1).min(256);
    b.push(&[0, out as i64]);
    b.op("BTOS1");
    b.op("STOP");
    let header = format!(
        ".input {} {} {} {}\n.output {out}\n",
        shape.c, shape.d, shape.h, shape.w
    );
    Ok((header + &b.source, b.blocks, input))
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok((source, blocks, input)) = build(&mut u) else {
        return;
    };
    let program =
        asm::assemble(&source).unwrap_or_else(|e| panic!("generated source: {e:?}\n{source}"));
    let exe =
        Executable::new(program).unwrap_or_else(|e| panic!("generated program: {e:?}\n{source}"));
    let config = Config {
        max_memory: 1 << 20,
        max_buffer: 8 << 20,
        max_frames: 8,
        ..Config::default()
    };
    let input = smartvm_kernels::as_i8(&input);
    let a = execute(
        &exe,
        input,
        &BlockList(&blocks),
        &Reference,
        &config,
        1 << 40,
    );
    let b = execute(&exe, input, &BlockList(&blocks), &Native, &config, 1 << 40);
    assert_eq!(a, b, "backends disagree on\n{source}");
    // The validators' wasm-tuned kernels.
    let c = execute(&exe, input, &BlockList(&blocks), &Scalar, &config, 1 << 40);
    assert_eq!(a, c, "the scalar backend disagrees on\n{source}");
});
