//! The convolution GEMM on Intel AMX: `tdpbsud` multiplies a 16 × 64-byte tile of signed
//! weights by a 16 × 64-byte tile of unsigned activations into a 16 × 16 tile of int32 sums,
//! 16,384 multiply-accumulates an instruction (AVX-512 VNNI's `vpdpbusd` does 64).
//!
//! The arithmetic is the quad GEMM's ([`crate::quads`]): weights as s8, activations as
//! `x' = x + 128`, four products per int32, added without saturation, the zero point's
//! correction `(z + 128)·ΣW` subtracted per row. So the bits equal the reference's.
//!
//! Layouts: the B tile is sixteen quad rows of a [`QuadInput`] panel exactly as the VNNI tiles
//! read it (sixteen positions × four taps = 64 bytes a row). The A tile wants sixteen weight
//! rows of sixteen quads: weights are copied into [`TileWeights`], rows padded to a multiple of
//! 32 and taps to a multiple of 64 with zeros, so a tile never reads past them and the quads past
//! a panel's end meet zero weights.

use alloc::borrow::Cow;
use alloc::vec;
use alloc::vec::Vec;

use crate::quads::{QuadInput, COLS};

/// Weight rows of one A tile (and C tile).
const TILE_ROWS: usize = 16;
/// Bytes of one tile row: sixteen quads.
const ROW_BYTES: usize = 64;
/// Bytes a B tile covers in a panel: sixteen quad rows of [`COLS`] positions.
const PANEL_STEP: usize = TILE_ROWS * COLS * 4;
/// Weight rows and positions of one block: 2 × 2 C tiles, two A and two B tiles: the eight
/// tile registers.
pub const BLOCK: usize = 2 * TILE_ROWS;

/// Weight rows laid out for A tiles: row `r` at `r · stride`, `stride` a multiple of 64, whole
/// blocks of rows. Read in place when the rows already are so; otherwise a copy padded with
/// zeros.
pub struct TileWeights<'a> {
    bytes: Cow<'a, [u8]>,
    stride: usize,
    rows: usize,
}

impl<'a> TileWeights<'a> {
    /// The A-tile view of `rows` row-major rows of `taps` weights.
    pub fn new(weights: &'a [i8], rows: usize, taps: usize) -> Self {
        let stride = steps(taps.div_ceil(4)) * ROW_BYTES;
        let weights = &weights[..rows * taps];
        let bytes = if stride == taps && rows.is_multiple_of(BLOCK) {
            Cow::Borrowed(crate::as_u8(weights))
        } else {
            let mut bytes = vec![0u8; rows.next_multiple_of(BLOCK) * stride];
            for (to, row) in bytes
                .chunks_exact_mut(stride)
                .zip(weights.chunks_exact(taps))
            {
                for (t, w) in to.iter_mut().zip(row) {
                    *t = *w as u8;
                }
            }
            Cow::Owned(bytes)
        };
        TileWeights {
            bytes,
            stride,
            rows,
        }
    }
}

/// Whether `rows` rows of `taps` weights fill AMX tiles well enough to beat AVX-512 VNNI:
/// at least one whole 32-row block and one whole 64-tap step.
pub fn fills_tiles(rows: usize, taps: usize) -> bool {
    rows >= BLOCK && taps >= ROW_BYTES
}

/// Tile steps (sixteen quads each) that cover `quads` quads.
fn steps(quads: usize) -> usize {
    quads.div_ceil(TILE_ROWS).max(1)
}

/// Computes `W · x'` block by block and hands each row's run of sums with the correction still
/// to subtract to `sink(row, first_position, sums, corrections[row])`, as
/// [`crate::quads::multiply_with`] does.
/// With `emulate`, the tile instructions run as plain Rust (any CPU); otherwise the CPU must
/// have AMX with the tile data granted ([`available`]).
pub fn multiply_with(
    w: &TileWeights<'_>,
    corrections: &[i32],
    x: &QuadInput,
    emulate: bool,
    mut sink: impl FnMut(usize, usize, &[i32], i32),
) {
    let (bytes, quads, positions) = x.parts();
    let steps = steps(quads);
    assert!(w.stride == steps * ROW_BYTES && corrections.len() >= w.rows);
    let panel_len = QuadInput::panel_len(quads * 4);
    let panels = positions.div_ceil(COLS);
    // A walk of `steps` B tiles from the last panels' starts may pass the panel buffer's end:
    // those panels are copied into `spare` with zeros after them.
    let walk = steps * PANEL_STEP;
    let (mut spare, mut spare_start) = (Vec::new(), None);
    let mut c = [[0i32; BLOCK]; BLOCK];
    let row_blocks = w.rows.div_ceil(BLOCK);
    let pairs = panels.div_ceil(2);
    // The larger operand is walked once: with more weight bytes than panel bytes, each block
    // of rows meets every panel pair while it is in cache, otherwise each pair meets every
    // block of rows.
    let rows_outer = w.bytes.len() > bytes.len();
    #[cfg(target_arch = "x86_64")]
    let _tiles = (!emulate).then(|| {
        assert!(available(), "AMX tiles granted");
        // SAFETY: AMX is present and granted to this process (asserted).
        unsafe { x86::Configured::new() }
    });
    #[cfg(not(target_arch = "x86_64"))]
    assert!(emulate, "AMX exists only on x86-64");
    for i in 0..row_blocks * pairs {
        let (rb, pair) = if rows_outer {
            (i / pairs, i % pairs)
        } else {
            (i % row_blocks, i / row_blocks)
        };
        let (p0, r0) = (2 * pair, rb * BLOCK);
        let p1 = (p0 + 1).min(panels - 1);
        let start = p0 * panel_len;
        let (panel_bytes, offset) = if (p1 * panel_len + walk) <= bytes.len() {
            (bytes, start)
        } else {
            if spare_start != Some(start) {
                spare.clear();
                spare.extend_from_slice(&bytes[start..]);
                spare.resize((p1 - p0) * panel_len + walk, 0);
                spare_start = Some(start);
            }
            (&spare[..], 0)
        };
        let b = [offset, offset + (p1 - p0) * panel_len];
        let first = p0 * COLS;
        let width = BLOCK.min(positions - first);
        let a = r0 * w.stride;
        if emulate {
            block_emulated(&w.bytes[a..], w.stride, panel_bytes, b, steps, &mut c);
        } else {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: tiles are configured on this thread (`_tiles`); the A walk reads 32 rows
            // of `stride` bytes from `a`, inside the whole blocks of weight rows; the B walks
            // read `walk` bytes from each of `b`, inside `panel_bytes` (checked above).
            unsafe {
                x86::block(
                    w.bytes.as_ptr().add(a),
                    w.stride,
                    [
                        panel_bytes.as_ptr().add(b[0]),
                        panel_bytes.as_ptr().add(b[1]),
                    ],
                    steps,
                    &mut c,
                )
            };
        }
        for (r, lane) in c.iter().enumerate().take(BLOCK.min(w.rows - r0)) {
            sink(r0 + r, first, &lane[..width], corrections[r0 + r]);
        }
    }
}

/// One 32 × 32 block in plain Rust, tile step by tile step as `tdpbsud` computes it:
/// `c[r][16·h + j] = Σ_q Σ_t A[r][4q + t] · B_h[q][4j + t]`, wrapping.
fn block_emulated(
    a: &[u8],
    stride: usize,
    panels: &[u8],
    b: [usize; 2],
    steps: usize,
    c: &mut [[i32; BLOCK]; BLOCK],
) {
    for (r, sums) in c.iter_mut().enumerate() {
        let row = &a[r * stride..r * stride + steps * ROW_BYTES];
        for (h, start) in b.iter().enumerate() {
            for j in 0..COLS {
                let mut sum = 0i32;
                for q in 0..steps * TILE_ROWS {
                    let x = &panels[start + q * COLS * 4 + 4 * j..][..4];
                    let w = &row[4 * q..4 * q + 4];
                    sum = crate::quads::dpbusd_lane(
                        sum,
                        [x[0], x[1], x[2], x[3]],
                        [w[0] as i8, w[1] as i8, w[2] as i8, w[3] as i8],
                    );
                }
                sums[h * COLS + j] = sum;
            }
        }
    }
}

/// Whether this CPU has AMX-INT8 with the standard tile palette (eight tiles of 16 rows × 64
/// bytes) and the kernel granted this process the tile data (Linux asks for it first:
/// `arch_prctl(ARCH_REQ_XCOMP_PERM)`). Asked once.
pub fn available() -> bool {
    #[cfg(all(target_arch = "x86_64", target_os = "linux", feature = "std"))]
    {
        static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *AVAILABLE.get_or_init(|| {
            // SAFETY: cpuid and the arch_prctl syscall have no memory effects on this process.
            unsafe { x86::has_amx_int8() && x86::palette_fits() && x86::request_tile_data() }
        })
    }
    #[cfg(not(all(target_arch = "x86_64", target_os = "linux", feature = "std")))]
    false
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use core::arch::asm;
    use core::arch::x86_64::__cpuid_count;

    use super::{BLOCK, COLS, PANEL_STEP, ROW_BYTES, TILE_ROWS};

    /// CPUID.(7, 0):EDX bits 24 (AMX-TILE) and 25 (AMX-INT8).
    pub(super) unsafe fn has_amx_int8() -> bool {
        if __cpuid_count(0, 0).eax < 0x1d {
            return false;
        }
        let edx = __cpuid_count(7, 0).edx;
        edx & (1 << 24) != 0 && edx & (1 << 25) != 0
    }

    /// Palette 1 (CPUID leaf 0x1D, subleaf 1) has the eight 16 × 64-byte tiles the kernel uses.
    pub(super) unsafe fn palette_fits() -> bool {
        let p = __cpuid_count(0x1d, 1);
        let (bytes_per_row, names, max_rows) = (p.ebx & 0xffff, p.ebx >> 16, p.ecx & 0xffff);
        bytes_per_row as usize >= ROW_BYTES && names >= 8 && max_rows as usize >= TILE_ROWS
    }

    /// `arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`: without it Linux faults the
    /// first tile instruction. Granted for the whole process, its threads included.
    pub(super) unsafe fn request_tile_data() -> bool {
        const SYS_ARCH_PRCTL: isize = 158;
        const ARCH_REQ_XCOMP_PERM: usize = 0x1023;
        const XFEATURE_XTILEDATA: usize = 18;
        let ret: isize;
        asm!(
            "syscall",
            inlateout("rax") SYS_ARCH_PRCTL => ret,
            in("rdi") ARCH_REQ_XCOMP_PERM,
            in("rsi") XFEATURE_XTILEDATA,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
        ret == 0
    }

    /// The tile configuration of palette 1: every tile 16 rows of 64 bytes.
    #[repr(C, align(64))]
    struct Config([u8; 64]);

    /// Tiles configured on this thread until dropped (`tilerelease`).
    pub(super) struct Configured;

    impl Configured {
        /// # Safety
        /// The CPU must have AMX and the process the tile data granted.
        pub(super) unsafe fn new() -> Self {
            let mut config = Config([0; 64]);
            config.0[0] = 1;
            for t in 0..8 {
                config.0[16 + 2 * t..18 + 2 * t].copy_from_slice(&(ROW_BYTES as u16).to_le_bytes());
                config.0[48 + t] = TILE_ROWS as u8;
            }
            asm!("ldtilecfg [{}]", in(reg) config.0.as_ptr(), options(nostack, readonly));
            Configured
        }
    }

    impl Drop for Configured {
        fn drop(&mut self) {
            // SAFETY: tiles were configured by `new`, so AMX is present.
            unsafe { asm!("tilerelease", options(nostack, nomem)) };
        }
    }

    /// One 32 × 32 block: C tiles 0..3 (rows 0..16 and 16..32 × positions of panels `b[0]`
    /// and `b[1]`), A tiles 4 and 5 (32 weight rows), B tiles 6 and 7, `steps` tile steps.
    ///
    /// # Safety
    /// Tiles configured on this thread ([`Configured`]); `a` readable for 32 rows of `stride`
    /// bytes, and each `b` for `steps · PANEL_STEP` bytes.
    pub(super) unsafe fn block(
        a: *const u8,
        stride: usize,
        b: [*const u8; 2],
        steps: usize,
        c: &mut [[i32; BLOCK]; BLOCK],
    ) {
        let out = c.as_mut_ptr() as *mut i32;
        let out_stride = BLOCK * 4;
        asm!(
            "tilezero tmm0",
            "tilezero tmm1",
            "tilezero tmm2",
            "tilezero tmm3",
            "2:",
            "tileloadd tmm4, [{a0} + {sa}*1]",
            "tileloadd tmm5, [{a1} + {sa}*1]",
            "tileloadd tmm6, [{b0} + {sb}*1]",
            "tileloadd tmm7, [{b1} + {sb}*1]",
            "tdpbsud tmm0, tmm4, tmm6",
            "tdpbsud tmm1, tmm4, tmm7",
            "tdpbsud tmm2, tmm5, tmm6",
            "tdpbsud tmm3, tmm5, tmm7",
            "add {a0}, {row}",
            "add {a1}, {row}",
            "add {b0}, {step}",
            "add {b1}, {step}",
            "dec {n}",
            "jnz 2b",
            "tilestored [{c0} + {sc}*1], tmm0",
            "tilestored [{c1} + {sc}*1], tmm1",
            "tilestored [{c2} + {sc}*1], tmm2",
            "tilestored [{c3} + {sc}*1], tmm3",
            a0 = inout(reg) a => _,
            a1 = inout(reg) a.add(TILE_ROWS * stride) => _,
            b0 = inout(reg) b[0] => _,
            b1 = inout(reg) b[1] => _,
            n = inout(reg) steps => _,
            sa = in(reg) stride,
            sb = in(reg) COLS * 4,
            row = const ROW_BYTES,
            step = const PANEL_STEP,
            c0 = in(reg) out,
            c1 = in(reg) out.add(TILE_ROWS),
            c2 = in(reg) out.add(TILE_ROWS * BLOCK),
            c3 = in(reg) out.add(TILE_ROWS * BLOCK + TILE_ROWS),
            sc = in(reg) out_stride,
            out("tmm0") _, out("tmm1") _, out("tmm2") _, out("tmm3") _,
            out("tmm4") _, out("tmm5") _, out("tmm6") _, out("tmm7") _,
            options(nostack),
        );
    }
}
