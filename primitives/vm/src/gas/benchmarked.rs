//! The benchmarked gas schedule, written by `make weights` (`smartvm fit-schedule`): do not
//! edit by hand. Provisional values until the first benchmark run on this schedule's shape.

use super::{Schedule, WorkPrice};

/// Milligas per unit: call, multiply-accumulate, inner loop, output, byte.
const fn price(call: u64, mac: u64, row: u64, output: u64, byte: u64) -> WorkPrice {
    WorkPrice {
        call,
        mac,
        row,
        output,
        byte,
    }
}

/// The schedule the chain charges.
pub fn schedule() -> Schedule {
    Schedule {
        class: [0, 2, 3, 5, 8, 10, 1, 3, 50, 0, 10],
        kernels: [
            price(100_000, 200, 2_000, 2_000, 200),
            price(100_000, 400, 2_000, 2_000, 200),
            price(100_000, 2_000, 0, 2_000, 200),
            price(100_000, 2_000, 0, 2_000, 200),
            price(100_000, 200, 0, 2_000, 200),
            price(100_000, 200, 0, 2_000, 200),
            price(100_000, 2_000, 0, 2_000, 200),
            price(100_000, 0, 0, 4_000, 200),
            price(100_000, 0, 0, 4_000, 200),
            price(100_000, 0, 0, 20_000, 200),
            price(100_000, 0, 0, 1_000, 200),
            price(100_000, 0, 0, 500, 200),
            price(100_000, 0, 0, 2_000, 200),
            price(10_000, 0, 0, 0, 200),
        ],
        per_block: 200,
        weight_byte: 200,
        memory_word: 3_000,
    }
}
