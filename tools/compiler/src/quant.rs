//! Choosing int8 quantization parameters and expressing real scales as Q31 multipliers.

/// Scale and zero point of an int8 tensor: real = scale · (q − zero_point).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QParams {
    /// Real value of one quantization step.
    pub scale: f32,
    /// The int8 value that stands for real 0.
    pub zero_point: i32,
}

impl QParams {
    /// Asymmetric parameters covering `[min, max]` (widened to include 0).
    pub fn from_range(min: f32, max: f32) -> QParams {
        let (min, max) = (min.min(0.0), max.max(0.0));
        let scale = if max > min { (max - min) / 255.0 } else { 1.0 };
        let zero_point = (-128.0 - min / scale).round().clamp(-128.0, 127.0) as i32;
        QParams { scale, zero_point }
    }

    /// Quantizes one real value.
    pub fn quantize(&self, x: f32) -> i8 {
        ((x / self.scale).round() + self.zero_point as f32).clamp(-128.0, 127.0) as i8
    }

    /// Back to a real value.
    pub fn dequantize(&self, q: i8) -> f32 {
        self.scale * (q as i32 - self.zero_point) as f32
    }
}

/// A positive real multiplier as (Q31 multiplier, shift) with `real ≈ M · 2^-(31 + shift)`,
/// within the ranges SPEC.md allows (0 ≤ M < 2^31, −30 ≤ shift ≤ 31).
pub fn q31(real: f64) -> (i32, i32) {
    if real <= 0.0 || !real.is_finite() {
        return (0, 0);
    }
    // real = mant · 2^exp with mant in [0.5, 1), read off the bits exactly (a `log2` from the
    // platform's libm may differ by an ulp between CPUs, and with it the exponent).
    let (mant, mut exp) = libm::frexp(real);
    let mut m = (mant * 2f64.powi(31)).round() as i64;
    if m == 1 << 31 {
        m /= 2;
        exp += 1;
    }
    let mut shift = -exp;
    if shift < -30 {
        return (i32::MAX, -30);
    }
    while shift > 31 {
        m >>= 1;
        shift -= 1;
    }
    (m as i32, shift)
}

/// Symmetric per-output-channel int8 weights: rows of `row_len`, one scale per row.
pub fn quantize_rows(weights: &[f32], row_len: usize) -> (Vec<i8>, Vec<f32>) {
    let mut q = Vec::with_capacity(weights.len());
    let mut scales = Vec::new();
    for row in weights.chunks(row_len) {
        let max = row.iter().fold(0f32, |m, w| m.max(w.abs()));
        let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
        q.extend(
            row.iter()
                .map(|w| (w / scale).round().clamp(-127.0, 127.0) as i8),
        );
        scales.push(scale);
    }
    (q, scales)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q31_represents_the_multiplier() {
        for real in [1e-6, 0.0123, 0.5, 0.75, 1.0, 3.9, 1234.5] {
            let (m, s) = q31(real);
            let back = m as f64 * 2f64.powi(-(31 + s));
            assert!(
                (back - real).abs() / real < 1e-8,
                "{real} -> {m} {s} -> {back}"
            );
            assert!((0..=i32::MAX).contains(&m) && (-30..=31).contains(&s));
        }
    }

    #[test]
    fn ranges_map_to_the_int8_grid() {
        let q = QParams::from_range(0.0, 6.0);
        assert_eq!(q.zero_point, -128);
        assert_eq!(q.quantize(6.0), 127);
        assert_eq!(q.quantize(0.0), -128);
        let q = QParams::from_range(-1.0, 1.0);
        assert!((q.dequantize(q.quantize(0.5)) - 0.5).abs() <= q.scale / 2.0 + 1e-6);
    }
}
