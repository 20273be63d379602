//! The scalar arithmetic of SPEC.md: one rounding rule and saturation, shared by every backend.

/// Smallest allowed requantization shift (`n = 31 + s` must be at least 1).
pub const MIN_SHIFT: i32 = -30;
/// Largest allowed requantization shift (`n = 31 + s` at most 62).
pub const MAX_SHIFT: i32 = 31;

/// Rounds `value / 2^n` half up (toward +∞): `(value + 2^(n-1)) >> n`, for 1 ≤ n ≤ 62.
#[inline(always)]
pub fn round_shift(value: i64, n: u32) -> i64 {
    (value + (1i64 << (n - 1))) >> n
}

/// Requantizes an int32 accumulator to int8: SPEC.md "Requantization". The caller has checked
/// `mult >= 0` and `MIN_SHIFT <= shift <= MAX_SHIFT`.
#[inline(always)]
pub fn requantize(acc: i32, mult: i32, shift: i32, zero: i32, lo: i32, hi: i32) -> i8 {
    let r = round_shift(acc as i64 * mult as i64, (31 + shift) as u32);
    (zero as i64 + r).clamp(lo as i64, hi as i64) as i8
}

/// Saturates an int32 to int8.
#[inline(always)]
pub fn saturate(value: i32) -> i8 {
    value.clamp(-128, 127) as i8
}

/// Rounded division half up, `floor((2·num + den) / (2·den))`, for den > 0.
#[inline(always)]
pub fn div_round_half_up(num: i64, den: i64) -> i64 {
    (2 * num + den).div_euclid(2 * den)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_is_half_up_on_both_signs() {
        assert_eq!(round_shift(3, 1), 2); // 1.5 -> 2
        assert_eq!(round_shift(-3, 1), -1); // -1.5 -> -1
        assert_eq!(round_shift(-5, 2), -1); // -1.25 -> -1
        assert_eq!(div_round_half_up(-3, 2), -1);
        assert_eq!(div_round_half_up(5, 2), 3);
        assert_eq!(div_round_half_up(-7, 4), -2); // -1.75 -> -2
    }

    #[test]
    fn extremes_do_not_overflow() {
        assert_eq!(requantize(i32::MIN, i32::MAX, -30, 0, -128, 127), -128);
        assert_eq!(requantize(i32::MAX, i32::MAX, -30, 0, -128, 127), 127);
        assert_eq!(requantize(i32::MIN, i32::MAX, 31, 0, -128, 127), -1);
        // M = 2^30, n = 31: multiply by one half.
        assert_eq!(requantize(101, 1 << 30, 0, 3, -128, 127), 54);
    }
}
