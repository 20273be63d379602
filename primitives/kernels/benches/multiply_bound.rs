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

    /// Prints the three loops' GMAC/s on one core.
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
