//! The reference kernels: direct loops that read like SPEC.md. They define the bits every other
//! backend must reproduce, and they are what the wasm runtime runs.

use crate::arith::{div_round_half_up, requantize};
use crate::{
    check_conv, check_conv_transpose, check_fc, check_matmul, check_pool, ChannelQuant, ConvParams,
    ConvTransposeParams, KernelError, Kernels, PairQuant, PoolKind, PoolParams,
};

/// The reference backend.
#[derive(Clone, Copy, Debug, Default)]
pub struct Reference;

/// Input coordinate for output `o`, kernel tap `k` on one axis, or `None` when it falls in padding.
#[inline(always)]
fn tap(o: u32, k: u32, stride: u32, pad: u32, dilation: u32, size: u32) -> Option<usize> {
    let i = o as i64 * stride as i64 - pad as i64 + k as i64 * dilation as i64;
    (0..size as i64).contains(&i).then_some(i as usize)
}

impl Kernels for Reference {
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
        let zx = q.input_zero;
        let mut y = 0usize;
        for oc in 0..o.c {
            let g = oc / group_out;
            let w_oc = oc as usize * p.weights_per_output() as usize;
            for od in 0..o.d {
                for oh in 0..o.h {
                    for ow in 0..o.w {
                        let mut acc = q.bias[oc as usize];
                        for ci in 0..group_in {
                            let c = (g * group_in + ci) as usize;
                            for a in 0..kd {
                                let Some(id) =
                                    tap(od, a, p.stride[0], p.pad[0], p.dilation[0], i.d)
                                else {
                                    continue;
                                };
                                for b in 0..kh {
                                    let Some(ih) =
                                        tap(oh, b, p.stride[1], p.pad[1], p.dilation[1], i.h)
                                    else {
                                        continue;
                                    };
                                    for e in 0..kw {
                                        let Some(iw) =
                                            tap(ow, e, p.stride[2], p.pad[2], p.dilation[2], i.w)
                                        else {
                                            continue;
                                        };
                                        let x = input[((c * i.d as usize + id) * i.h as usize + ih)
                                            * i.w as usize
                                            + iw]
                                            as i32;
                                        let w_at = w_oc
                                            + ((ci * kd + a) * kh + b) as usize * kw as usize
                                            + e as usize;
                                        acc = acc.wrapping_add((x - zx) * weights[w_at] as i32);
                                    }
                                }
                            }
                        }
                        let r = &q.output;
                        out[y] = requantize(
                            acc,
                            q.mult[oc as usize],
                            q.shift[oc as usize],
                            r.zero,
                            r.lo,
                            r.hi,
                        );
                        y += 1;
                    }
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
        check_conv_transpose(p, input, weights, q, out)?;
        let (i, o, k, s) = (p.input, p.output, p.k as i64, p.stride as i64);
        let group_in = i.c / p.groups;
        let group_out = o.c / p.groups;
        let mut y = 0usize;
        for oc in 0..o.c {
            let g = oc / group_out;
            let oc_in_group = (oc % group_out) as usize;
            for oh in 0..o.h as i64 {
                for ow in 0..o.w as i64 {
                    let mut acc = q.bias[oc as usize];
                    for ci in 0..group_in {
                        let c = (g * group_in + ci) as usize;
                        for b in 0..k {
                            // Output row oh receives input row ih when ih·s - pad + b == oh.
                            let num = oh + p.pad as i64 - b;
                            if num < 0 || num % s != 0 || num / s >= i.h as i64 {
                                continue;
                            }
                            let ih = (num / s) as usize;
                            for e in 0..k {
                                let num = ow + p.pad as i64 - e;
                                if num < 0 || num % s != 0 || num / s >= i.w as i64 {
                                    continue;
                                }
                                let iw = (num / s) as usize;
                                let x = input[(c * i.h as usize + ih) * i.w as usize + iw] as i32;
                                let w_at = ((c * group_out as usize + oc_in_group) * k as usize
                                    + b as usize)
                                    * k as usize
                                    + e as usize;
                                acc = acc.wrapping_add((x - q.input_zero) * weights[w_at] as i32);
                            }
                        }
                    }
                    let r = &q.output;
                    out[y] = requantize(
                        acc,
                        q.mult[oc as usize],
                        q.shift[oc as usize],
                        r.zero,
                        r.lo,
                        r.hi,
                    );
                    y += 1;
                }
            }
        }
        Ok(())
    }

    fn pool(&self, p: &PoolParams, input: &[i8], out: &mut [i8]) -> Result<(), KernelError> {
        check_pool(p, input, out)?;
        let (i, o) = (p.input, p.output);
        let mut y = 0usize;
        for c in 0..o.c as usize {
            for oh in 0..o.h {
                for ow in 0..o.w {
                    let (mut max, mut sum, mut count) = (i8::MIN, 0i64, 0i64);
                    for b in 0..p.k {
                        let Some(ih) = tap(oh, b, p.stride, p.pad, 1, i.h) else {
                            continue;
                        };
                        for e in 0..p.k {
                            let Some(iw) = tap(ow, e, p.stride, p.pad, 1, i.w) else {
                                continue;
                            };
                            let x = input[(c * i.h as usize + ih) * i.w as usize + iw];
                            max = max.max(x);
                            sum += x as i64;
                            count += 1;
                        }
                    }
                    out[y] = match p.kind {
                        PoolKind::Max | PoolKind::MaxCeil => max,
                        PoolKind::Average => div_round_half_up(sum, count.max(1)) as i8,
                    };
                    y += 1;
                }
            }
        }
        Ok(())
    }

    fn fully_connected(
        &self,
        input: &[i8],
        weights: &[i8],
        q: &ChannelQuant,
        out: &mut [i8],
    ) -> Result<(), KernelError> {
        check_fc(input, weights, q, out)?;
        let n = input.len();
        for (o, y) in out.iter_mut().enumerate() {
            let row = &weights[o * n..(o + 1) * n];
            let mut acc = q.bias[o];
            for (x, w) in input.iter().zip(row) {
                acc = acc.wrapping_add((*x as i32 - q.input_zero) * *w as i32);
            }
            *y = requantize(
                acc,
                q.mult[o],
                q.shift[o],
                q.output.zero,
                q.output.lo,
                q.output.hi,
            );
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
        check_matmul(dims, a, b, out)?;
        let [m, k, n] = dims.map(|d| d as usize);
        for r in 0..m {
            for c in 0..n {
                let mut acc = 0i32;
                for t in 0..k {
                    acc = acc.wrapping_add(
                        (a[r * k + t] as i32 - q.a_zero) * (b[t * n + c] as i32 - q.b_zero),
                    );
                }
                out[r * n + c] = requantize(
                    acc,
                    q.mult,
                    q.shift,
                    q.output.zero,
                    q.output.lo,
                    q.output.hi,
                );
            }
        }
        Ok(())
    }
}
