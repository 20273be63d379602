//! The benchmarked gas schedule, written by `make weights` (`smartvm fit-schedule` over
//! the `vm_layer` benchmark run in the runtime's wasm with the `Scalar` kernels, the relay
//! validators' path): do not edit by hand.
//!
//! Measured on Intel(R) Xeon(R) Processor, 2 cores.
//! 5000 ps of ref_time per gas; each class's costliest entry charged 1.10x its time.

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
            price(3967026, 180, 934, 586, 0),
            // conv_strided
            price(14233907, 259, 482, 0, 205),
            // conv_transpose
            price(0, 1641, 0, 33875, 0),
            // pool
            price(2611207, 369, 0, 1152, 0),
            // global_pool
            price(943591, 17, 0, 426, 17),
            // fully_connected
            price(5077226, 190, 0, 32, 0),
            // matmul
            price(0, 381, 0, 0, 0),
            // add
            price(1878081, 0, 0, 246, 83),
            // mul
            price(1216224, 0, 0, 152, 52),
            // softmax
            price(4583394, 0, 0, 702, 352),
            // table
            price(1144308, 0, 0, 46, 46),
            // clip
            price(3283840, 0, 0, 53, 53),
            // scale
            price(1471562, 0, 0, 186, 186),
            // move
            price(1350487, 0, 0, 0, 47),
        ],
        per_block: 200,
        weight_byte: 47,
        memory_word: 3000,
    }
}
