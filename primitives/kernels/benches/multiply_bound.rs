//! What exact int8 multiply-accumulation can reach on one core of this CPU with AVX2: loops of
//! the instructions alone, on registers (six independent sums, weights that the compiler must
//! treat as new every step), against which the conv layers' GMAC/s in `benches/layers.rs` and
//! ONNX Runtime's per-node times (`scripts/ort_profile.py`) are read.
//!
//! - `vpmaddwd` + `vpaddd`: 16 exact products a pair (the split quads' arithmetic);
//! - `vpmaddubsw` + `vpmaddwd` (ones) + `vpaddd`: 32 products (the byte quads', and what ONNX
//!   Runtime's AVX2 int8 GEMM issues, saturation aside);
//! - two `vpmaddubsw` added in int16 before one `vpmaddwd`: 64 products, exact only for weights
//!   small enough that four products cannot leave int16 (shown for the record: no model's
//!   weights are).
//!
//! It also reads 256 MiB (eight rows at a time, as the AVX2 fully connected loop does) on one
//! and two threads: what bounds a layer whose weights do not fit the caches (AlexNet's fc6 is
//! 38 MB, its three FC layers 58 MB an inference).
//!
//! `cargo bench -p smartvm-kernels --bench multiply_bound`

#[cfg(target_arch = "x86_64")]
mod x86 {
    use core::arch::x86_64::*;
    use std::time::Instant;

    /// Steps of each loop.
    const STEPS: u64 = 50_000_000;

    /// Keeps `v` opaque to the optimizer: each step's operands count as new.
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn fresh(v: &mut __m256i) {
        // SAFETY: an empty asm block that claims to modify one vector register.
        unsafe {
            core::arch::asm!(
                "/* {0} */",
                inout(ymm_reg) * v,
                options(nomem, nostack, pure)
            )
        };
    }

    /// The loops: each step adds products of six operands and fresh weights to six sums (six
    /// chains hide the multiplies' latency; more would spill the sixteen registers).
    #[derive(Clone, Copy)]
    enum Loop {
        Madd,
        Bytes,
        Int16Pairs,
    }

    /// Runs `kind` for [`STEPS`] steps and returns GMAC/s.
    #[target_feature(enable = "avx2")]
    unsafe fn measure(kind: Loop) -> f64 {
        let mut sums = [_mm256_setzero_si256(); 6];
        let xs: [__m256i; 6] = core::array::from_fn(|i| _mm256_set1_epi8(i as i8 + 1));
        let mut w = _mm256_set1_epi8(3);
        let ones = _mm256_set1_epi16(1);
        let start = Instant::now();
        for _ in 0..STEPS {
            fresh(&mut w);
            match kind {
                Loop::Madd => {
                    for (s, x) in sums.iter_mut().zip(&xs) {
                        *s = _mm256_add_epi32(*s, _mm256_madd_epi16(*x, w));
                    }
                }
                Loop::Bytes => {
                    for (s, x) in sums.iter_mut().zip(&xs) {
                        let pairs = _mm256_maddubs_epi16(*x, w);
                        *s = _mm256_add_epi32(*s, _mm256_madd_epi16(pairs, ones));
                    }
                }
                Loop::Int16Pairs => {
                    for (s, x) in sums.iter_mut().zip(xs.chunks_exact(2)) {
                        let pairs = _mm256_add_epi16(
                            _mm256_maddubs_epi16(x[0], w),
                            _mm256_maddubs_epi16(x[1], w),
                        );
                        *s = _mm256_add_epi32(*s, _mm256_madd_epi16(pairs, ones));
                    }
                }
            }
        }
        let seconds = start.elapsed().as_secs_f64();
        let mut lanes = [0i32; 8];
        for s in sums {
            _mm256_storeu_si256(lanes.as_mut_ptr() as *mut __m256i, s);
            std::hint::black_box(lanes);
        }
        let macs = match kind {
            Loop::Madd => 6 * 16,
            Loop::Bytes => 6 * 32,
            Loop::Int16Pairs => 3 * 64,
        };
        (STEPS * macs) as f64 / seconds / 1e9
    }

    /// Bytes of the buffer the memory bound reads: far past any cache.
    const READ_BYTES: usize = 256 << 20;

    /// Sums `rows` (a multiple of eight rows of `width` bytes) eight rows at a time, 32 bytes
    /// of each a step.
    #[target_feature(enable = "avx2")]
    unsafe fn read_rows(rows: &[u8], width: usize) -> u64 {
        let mut acc = [_mm256_setzero_si256(); 8];
        for block in rows.chunks_exact(8 * width) {
            for k in (0..width).step_by(32) {
                for (i, a) in acc.iter_mut().enumerate() {
                    let v = _mm256_loadu_si256(block.as_ptr().add(i * width + k) as *const __m256i);
                    *a = _mm256_add_epi64(*a, _mm256_sad_epu8(v, _mm256_setzero_si256()));
                }
            }
        }
        let mut total = 0u64;
        for a in acc {
            let mut lanes = [0u64; 4];
            _mm256_storeu_si256(lanes.as_mut_ptr() as *mut __m256i, a);
            total = total.wrapping_add(lanes.iter().sum::<u64>());
        }
        total
    }

    /// GB/s of reading [`READ_BYTES`] on `threads` threads (best of three passes).
    fn read_bandwidth(threads: usize) -> f64 {
        let width = 9216;
        let rows = (READ_BYTES / width) / (8 * threads) * (8 * threads);
        let buffer: Vec<u8> = (0..rows * width).map(|i| i as u8).collect();
        let mut best = f64::MAX;
        for _ in 0..3 {
            let start = Instant::now();
            std::thread::scope(|scope| {
                for part in buffer.chunks(rows / threads * width) {
                    // SAFETY: AVX2 is present (the caller checked).
                    scope.spawn(move || std::hint::black_box(unsafe { read_rows(part, width) }));
                }
            });
            best = best.min(start.elapsed().as_secs_f64());
        }
        (rows * width) as f64 / best / 1e9
    }

    /// Prints the three loops' GMAC/s on one core, and the memory's read bandwidth.
    pub fn run() {
        if !is_x86_feature_detected!("avx2") {
            println!("SKIPPED: no AVX2 on this CPU");
            return;
        }
        // SAFETY (all three): AVX2 is present, checked above.
        let (madd, bytes, int16_pairs) = unsafe {
            (
                measure(Loop::Madd),
                measure(Loop::Bytes),
                measure(Loop::Int16Pairs),
            )
        };
        println!("| loop (one core, registers only) | GMAC/s | against vpmaddwd |");
        println!("| --- | ---: | ---: |");
        println!("| vpmaddwd + vpaddd | {madd:.1} | 1.00x |");
        let ratio = |g: f64| g / madd;
        println!(
            "| vpmaddubsw + vpmaddwd + vpaddd | {bytes:.1} | {:.2}x |",
            ratio(bytes)
        );
        println!(
            "| 2 vpmaddubsw + vpaddw + vpmaddwd + vpaddd (inexact in general) | {int16_pairs:.1} | {:.2}x |",
            ratio(int16_pairs)
        );
        println!("\n| reading 256 MiB, eight rows at a time | GB/s |");
        println!("| --- | ---: |");
        for threads in [1, 2] {
            println!("| {threads} thread(s) | {:.1} |", read_bandwidth(threads));
        }
    }
}

fn main() {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    println!("CPU: {cpu}\n");
    #[cfg(target_arch = "x86_64")]
    x86::run();
    #[cfg(not(target_arch = "x86_64"))]
    println!("SKIPPED: the loops are x86-64 AVX2");
}
