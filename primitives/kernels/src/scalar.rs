//! Scalar kernels tuned for the validators' path: wasm without SIMD (DESIGN.md invariant 7).
//!
//! The reference conv asks, for every multiply, whether its tap falls in the padding (64-bit
//! index arithmetic and an `Option` per tap). Here each output row is one accumulator row: for
//! every input channel and kernel tap, the range of outputs whose tap lands inside the input is
//! computed once, and the inner loop is a plain multiply-add over that range. The terms are the
//! reference's, `(x - z) · w` over the same taps, only summed in another order, and int32
//! wrapping addition does not care about order: the results equal [`crate::Reference`] bit for
//! bit (the cross-backend proptests check it). Memory: one output row of int32, never a copy of
//! the input, so the validators' heap budget (`pallet-smartvm`'s limits.rs) is unchanged.
//!
//! Transposed convolution, pooling and matmul are the reference's.

use alloc::vec;

use crate::arith::requantize;
use crate::params::inside;
use crate::{
    check_conv, check_fc, ChannelQuant, ConvParams, ConvTransposeParams, KernelError, Kernels,
    PairQuant, PoolParams, Reference,
};

/// The wasm-tuned scalar backend: what `validate_block` runs.
#[derive(Clone, Copy, Debug, Default)]
pub struct Scalar;

/// `sums[k] += (x_k - zx) · w` for the inputs `xs` in order (wrapping).
#[inline(always)]
fn multiply_add<'a>(sums: &mut [i32], xs: impl Iterator<Item = &'a i8>, zx: i32, w: i32) {
    for (sum, x) in sums.iter_mut().zip(xs) {
        *sum = sum.wrapping_add((*x as i32 - zx) * w);
    }
}

impl Kernels for Scalar {
    fn conv(
        &self,
        p: &ConvParams,
        input: &[i8],
        weights: &[i8],
        q: &ChannelQuant,
        out: &mut [i8],
    ) -> Result<(), KernelError> {
        check_conv(p, input, weights, q, out)?;
        let (i, o) = (p.input, p.output);
        let [kd, kh, kw] = p.kernel;
        let (group_in, group_out) = (p.group_in(), p.group_out());
        let shift = |k: u32, axis: usize| k as i64 * p.dilation[axis] as i64 - p.pad[axis] as i64;
        let zx = q.input_zero;
        let (iw, ow) = (i.w as usize, o.w as usize);
        let (sw, plane_in) = (p.stride[2] as usize, i.h as usize * iw);
        // The output range and first input column of each kernel column, the same for every row.
        let columns: vec::Vec<(usize, usize, usize)> = (0..kw)
            .map(|e| {
                let s = shift(e, 2);
                let (lo, hi) = inside(o.w, p.stride[2], s, i.w);
                let first = (lo as i64 * sw as i64 + s) as usize;
                (lo as usize, hi as usize, first)
            })
            .collect();
        let mut acc = vec![0i32; ow];
        let mut y = 0usize;
        for oc in 0..o.c {
            let g = oc / group_out;
            let w_oc = oc as usize * p.weights_per_output() as usize;
            let (bias, r) = (q.bias[oc as usize], q.output);
            let (mult, sh) = (q.mult[oc as usize], q.shift[oc as usize]);
            for od in 0..o.d {
                for oh in 0..o.h {
                    acc.fill(bias);
                    for ci in 0..group_in {
                        let c = (g * group_in + ci) as usize;
                        for a in 0..kd {
                            let id = od as i64 * p.stride[0] as i64 + shift(a, 0);
                            if !(0..i.d as i64).contains(&id) {
                                continue;
                            }
                            for b in 0..kh {
                                let ih = oh as i64 * p.stride[1] as i64 + shift(b, 1);
                                if !(0..i.h as i64).contains(&ih) {
                                    continue;
                                }
                                let row =
                                    (c * i.d as usize + id as usize) * plane_in + ih as usize * iw;
                                let taps = w_oc + ((ci * kd + a) * kh + b) as usize * kw as usize;
                                for (e, (lo, hi, first)) in columns.iter().enumerate() {
                                    let w = weights[taps + e] as i32;
                                    if w == 0 || lo >= hi {
                                        continue;
                                    }
                                    let sums = &mut acc[*lo..*hi];
                                    let start = row + first;
                                    if sw == 1 {
                                        // Contiguous: a plain zip the engine keeps tight.
                                        let xs = &input[start..start + sums.len()];
                                        multiply_add(sums, xs.iter(), zx, w);
                                    } else {
                                        multiply_add(
                                            sums,
                                            input[start..].iter().step_by(sw),
                                            zx,
                                            w,
                                        );
                                    }
                                }
                            }
                        }
                    }
                    for (v, sum) in out[y..y + ow].iter_mut().zip(&acc) {
                        *v = requantize(*sum, mult, sh, r.zero, r.lo, r.hi);
                    }
                    y += ow;
                }
            }
        }
        Ok(())
    }

    fn conv_transpose(
        &self,
        p: &ConvTransposeParams,
        input: &[i8],
        weights: &[i8],
        q: &ChannelQuant,
        out: &mut [i8],
    ) -> Result<(), KernelError> {
        Reference.conv_transpose(p, input, weights, q, out)
    }

    fn pool(&self, p: &PoolParams, input: &[i8], out: &mut [i8]) -> Result<(), KernelError> {
        Reference.pool(p, input, out)
    }

    /// Four independent accumulators per row (wasm engines keep them in registers; the order of
    /// wrapping sums does not matter).
    fn fully_connected(
        &self,
        input: &[i8],
        weights: &[i8],
        q: &ChannelQuant,
        out: &mut [i8],
    ) -> Result<(), KernelError> {
        check_fc(input, weights, q, out)?;
        let (n, z) = (input.len(), q.input_zero);
        for (o, y) in out.iter_mut().enumerate() {
            let row = &weights[o * n..(o + 1) * n];
            let mut s = [0i32; 4];
            let (xs, ws) = (input.chunks_exact(4), row.chunks_exact(4));
            let (x_rest, w_rest) = (xs.remainder(), ws.remainder());
            for (x, w) in xs.zip(ws) {
                for k in 0..4 {
                    s[k] = s[k].wrapping_add((x[k] as i32 - z) * w[k] as i32);
                }
            }
            let mut acc = q.bias[o]
                .wrapping_add(s[0])
                .wrapping_add(s[1])
                .wrapping_add(s[2])
                .wrapping_add(s[3]);
            for (x, w) in x_rest.iter().zip(w_rest) {
                acc = acc.wrapping_add((*x as i32 - z) * *w as i32);
            }
            let r = q.output;
            *y = requantize(acc, q.mult[o], q.shift[o], r.zero, r.lo, r.hi);
        }
        Ok(())
    }

    fn matmul(
        &self,
        dims: [u32; 3],
        a: &[i8],
        b: &[i8],
        q: &PairQuant,
        out: &mut [i8],
    ) -> Result<(), KernelError> {
        Reference.matmul(dims, a, b, q, out)
    }
}
