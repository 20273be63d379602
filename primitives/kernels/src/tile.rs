//! Which SIMD tile the native kernels run. By default the widest this CPU has; tests and
//! benchmarks may [`force`] a narrower one (or the VNNI emulation) so that every tile the CPU can
//! execute is checked against the reference, and timed, on the same machine.
//!
//! Every tile computes the same bits: the choice changes speed, never a result.

use core::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

/// A family of inner loops, from plain Rust to AVX-512 VNNI and AMX.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tile {
    /// Plain Rust everywhere: the fallback on CPUs without AVX2.
    Portable,
    /// The exact u8 × s8 GEMM with `vpdpbusd` emulated in plain Rust (AVX2 elsewhere where the
    /// CPU has it): checks the VNNI packing and correction on any CPU. Never chosen by default.
    VnniEmulated,
    /// AVX2 without VNNI: convolutions on the u8 quads through `vpmaddubsw` with fixes, or
    /// split into even and odd bytes for `vpmaddwd` ([`crate::quads::QuadKernel::Avx2`]);
    /// fully connected layers on int16 rows.
    Avx2,
    /// The u8 × s8 GEMM through 256-bit AVX-VNNI `vpdpbusd`.
    AvxVnni,
    /// The u8 × s8 GEMM through 512-bit AVX-512 VNNI `vpdpbusd`.
    Avx512Vnni,
    /// The convolution GEMM through AMX `tdpbsud` tiles, everything else as under
    /// [`Tile::Avx512Vnni`].
    Amx,
}

impl Tile {
    /// Every tile, narrowest first.
    pub const ALL: [Tile; 6] = [
        Tile::Portable,
        Tile::VnniEmulated,
        Tile::Avx2,
        Tile::AvxVnni,
        Tile::Avx512Vnni,
        Tile::Amx,
    ];

    /// The name reports and `--tile` use.
    pub fn name(self) -> &'static str {
        match self {
            Tile::Portable => "portable",
            Tile::VnniEmulated => "vnni-emulated",
            Tile::Avx2 => "avx2",
            Tile::AvxVnni => "avx-vnni",
            Tile::Avx512Vnni => "avx512-vnni",
            Tile::Amx => "amx",
        }
    }

    /// The tile called `name`, if any.
    pub fn parse(name: &str) -> Option<Tile> {
        Tile::ALL.into_iter().find(|t| t.name() == name)
    }

    /// Whether this CPU can execute the tile.
    pub fn supported(self) -> bool {
        match self {
            Tile::Portable | Tile::VnniEmulated => true,
            Tile::Avx2 => cpu().avx2,
            Tile::AvxVnni => cpu().avx2 && cpu().avx_vnni,
            Tile::Avx512Vnni => cpu().avx512_vnni,
            Tile::Amx => cpu().avx512_vnni && crate::amx::available(),
        }
    }

    /// The tiles this CPU can execute, narrowest first.
    pub fn supported_tiles() -> Vec<Tile> {
        Tile::ALL.into_iter().filter(|t| t.supported()).collect()
    }

    /// The widest tile this CPU can execute (what runs unless a tile is forced).
    pub fn best() -> Tile {
        [Tile::Amx, Tile::Avx512Vnni, Tile::AvxVnni, Tile::Avx2]
            .into_iter()
            .find(|t| t.supported())
            .unwrap_or(Tile::Portable)
    }

    /// Whether kernels outside the GEMM (unfolding, requantization, FC, depthwise, pooling)
    /// may use AVX2 under this tile.
    pub fn avx2(self) -> bool {
        self != Tile::Portable && cpu().avx2
    }

    /// Whether kernels outside the GEMM use their AVX-512 versions under this tile (the
    /// tile requires AVX-512 F, BW, DQ, VL and VNNI).
    pub fn avx512(self) -> bool {
        matches!(self, Tile::Avx512Vnni | Tile::Amx)
    }
}

/// What the CPU offers, detected once.
#[derive(Clone, Copy)]
struct Cpu {
    avx2: bool,
    avx_vnni: bool,
    avx512_vnni: bool,
}

fn cpu() -> Cpu {
    static CPU: OnceLock<Cpu> = OnceLock::new();
    *CPU.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            use std::is_x86_feature_detected as has;
            Cpu {
                avx2: has!("avx2"),
                avx_vnni: has!("avxvnni"),
                avx512_vnni: has!("avx512f")
                    && has!("avx512bw")
                    && has!("avx512dq")
                    && has!("avx512vl")
                    && has!("avx512vnni"),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        Cpu {
            avx2: false,
            avx_vnni: false,
            avx512_vnni: false,
        }
    })
}

/// The forced tile's index in [`Tile::ALL`] plus one; 0 when none is forced.
static FORCED: AtomicU8 = AtomicU8::new(0);

/// Runs every later kernel call, on every thread, with `tile` (`None`: the best again). Refuses
/// a tile this CPU cannot execute.
pub fn force(tile: Option<Tile>) -> Result<(), Tile> {
    match tile {
        Some(t) if !t.supported() => Err(t),
        Some(t) => {
            let index = Tile::ALL.iter().position(|x| *x == t).unwrap_or(0);
            FORCED.store(index as u8 + 1, Ordering::Relaxed);
            Ok(())
        }
        None => {
            FORCED.store(0, Ordering::Relaxed);
            Ok(())
        }
    }
}

/// The tile kernel calls run now (asked per row by the requantization: the best tile is worked
/// out once).
#[inline]
pub fn active() -> Tile {
    static BEST: OnceLock<Tile> = OnceLock::new();
    match FORCED.load(Ordering::Relaxed) {
        0 => *BEST.get_or_init(Tile::best),
        i => Tile::ALL[i as usize - 1],
    }
}

/// Whether the kernels outside the GEMM may use AVX2 now.
#[inline]
pub fn avx2() -> bool {
    active().avx2()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_the_best_tile_is_supported() {
        for t in Tile::ALL {
            assert_eq!(Tile::parse(t.name()), Some(t));
        }
        assert!(Tile::best().supported());
        assert!(Tile::supported_tiles().contains(&Tile::VnniEmulated));
        assert_ne!(Tile::best(), Tile::VnniEmulated);
    }
}
