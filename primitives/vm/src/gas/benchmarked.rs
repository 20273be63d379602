//! The benchmarked gas schedule, written by `make weights` (`smartvm fit-schedule` over
//! the `vm_layer` benchmark run in the runtime's wasm with the `Scalar` kernels, the relay
//! validators' path): do not edit by hand.
//!
//! Measured on Intel(R) Xeon(R) Processor, 2 cores.
//! 5000 ps of ref_time per gas; each class's costliest entry charged 1.05x its time.

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
            // conv
            price(2199368, 165, 797, 631, 0),
            // conv_strided
            price(2968755, 261, 443, 0, 212),
            // conv_transpose
            price(0, 1417, 0, 30419, 0),
            // pool
            price(2271968, 362, 0, 789, 74),
            // global_pool
            price(2977894, 17, 0, 251, 16),
            // fully_connected
            price(4994922, 179, 0, 0, 0),
            // matmul
            price(0, 293, 0, 0, 4),
            // add
            price(1494264, 0, 0, 186, 64),
            // mul
            price(1327607, 0, 0, 149, 51),
            // softmax
            price(4395416, 0, 0, 639, 321),
            // table
            price(1200229, 0, 0, 41, 41),
            // clip
            price(1312983, 0, 0, 47, 47),
            // scale
            price(1430771, 0, 0, 170, 170),
            // move
            price(1035755, 0, 0, 0, 38),
        ],
        per_block: 200,
        weight_byte: 38,
        memory_word: 364,
        memory_grow: 673225,
    }
}
