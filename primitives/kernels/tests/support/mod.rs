//! Test support shared by the cross-backend suites: a seeded generator of tensors and qblocks.
#![allow(dead_code)]

use std::sync::Mutex;

use smartvm_kernels::tile::{self, Tile};
use smartvm_kernels::{ChannelQuant, OutputRange};

/// SplitMix64: a tiny deterministic generator so a failing seed reproduces exactly.
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Mostly uniform int8, with a good share of the extremes.
    pub fn i8(&mut self, extreme: bool) -> i8 {
        let r = self.next();
        if extreme && r.is_multiple_of(3) {
            if r & 8 == 0 {
                -128
            } else {
                127
            }
        } else {
            (r >> 8) as i8
        }
    }
    pub fn quant(&mut self, channels: usize, extreme: bool) -> ChannelQuant {
        let zero = if extreme { -128 } else { self.i8(false) as i32 };
        let out_zero = self.i8(false) as i32;
        ChannelQuant {
            input_zero: zero,
            output: OutputRange {
                zero: out_zero,
                lo: -128,
                hi: 127,
            },
            bias: (0..channels)
                .map(|_| {
                    if extreme {
                        self.next() as i32
                    } else {
                        (self.next() % 20001) as i32 - 10000
                    }
                })
                .collect(),
            mult: (0..channels)
                .map(|_| (self.next() % (1 << 31)) as i32)
                .collect(),
            shift: (0..channels)
                .map(|_| (self.next() % 62) as i32 - 30)
                .collect(),
        }
    }
}

/// Runs `f` (which calls the native backend) once under every tile this CPU executes, the VNNI
/// emulation included, and returns each tile with its result. Tests of one binary take turns:
/// the forced tile is process-wide.
pub fn on_every_tile<T>(f: impl Fn() -> T) -> Vec<(Tile, T)> {
    static TURN: Mutex<()> = Mutex::new(());
    let _turn = TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let results = Tile::supported_tiles()
        .into_iter()
        .map(|t| {
            tile::force(Some(t)).expect("a supported tile");
            (t, f())
        })
        .collect();
    tile::force(None).expect("the best tile");
    results
}
