//! The gas schedule: what each instruction costs.
//!
//! Static costs come from the opcode table's gas class. Kernels add a charge per
//! multiply-accumulate and per byte touched; weight reads per block and per byte; Memory per
//! 32-byte word of growth. The numbers here are the interpreter's defaults; the pallet derives
//! its weights from benchmarks of the same quantities.

use smartvm_isa::{GasClass, TABLE};

/// Prices of one execution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schedule {
    /// Static cost of each class: Zero, Base, VeryLow, Low, Mid, High, JumpDest, Memory,
    /// WeightRead, Kernel, Buffer (in that order).
    pub class: [u64; 11],
    /// Gas per 1000 multiply-accumulates of a kernel.
    pub per_kilo_mac: u64,
    /// Gas per byte a kernel or Buffer move reads or writes.
    pub per_byte: u64,
    /// Gas per weight block fetched by a kernel.
    pub per_block: u64,
    /// Gas per 32-byte word of Memory growth.
    pub per_memory_word: u64,
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule {
            class: [0, 2, 3, 5, 8, 10, 1, 3, 50, 100, 10],
            per_kilo_mac: 3_000,
            per_byte: 1,
            per_block: 200,
            per_memory_word: 3,
        }
    }
}

fn class_index(class: GasClass) -> usize {
    match class {
        GasClass::Zero => 0,
        GasClass::Base => 1,
        GasClass::VeryLow => 2,
        GasClass::Low => 3,
        GasClass::Mid => 4,
        GasClass::High => 5,
        GasClass::JumpDest => 6,
        GasClass::Memory => 7,
        GasClass::WeightRead => 8,
        GasClass::Kernel => 9,
        GasClass::Buffer => 10,
    }
}

impl Schedule {
    /// Static cost per opcode byte, for one table lookup per instruction.
    pub fn static_costs(&self) -> [u64; 256] {
        let mut costs = [0u64; 256];
        for row in TABLE {
            costs[row.byte as usize] = self.class[class_index(row.gas)];
        }
        costs
    }

    /// Dynamic cost of a kernel doing `macs` multiply-accumulates over `bytes` of data.
    pub fn kernel(&self, macs: u64, bytes: u64) -> u64 {
        macs.saturating_mul(self.per_kilo_mac)
            .div_ceil(1000)
            .saturating_add(bytes.saturating_mul(self.per_byte))
    }

    /// Dynamic cost of fetching `blocks` weight blocks holding `bytes` bytes.
    pub fn weights(&self, blocks: u64, bytes: u64) -> u64 {
        blocks
            .saturating_mul(self.per_block)
            .saturating_add(bytes.saturating_mul(self.per_byte))
    }
}

/// The running gas meter.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Meter {
    pub(crate) limit: u64,
    pub(crate) used: u64,
}

impl Meter {
    /// Charges `amount`, failing without charging if it would pass the limit.
    #[inline(always)]
    pub(crate) fn charge(&mut self, amount: u64) -> bool {
        match self.used.checked_add(amount) {
            Some(total) if total <= self.limit => {
                self.used = total;
                true
            }
            _ => false,
        }
    }
}
