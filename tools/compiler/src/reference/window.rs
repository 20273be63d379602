//! The 2-D sliding-window attributes shared by convolution and pooling.

use anyhow::{bail, Result};
use tract_onnx::pb::NodeProto;

use crate::lower::{err, ints};

/// Kernel, strides, dilations and pads of a 2-D window, each as (height, width).
#[derive(Clone, Copy, Debug)]
pub(super) struct Window {
    pub kernel: (usize, usize),
    pub stride: (usize, usize),
    pub dilation: (usize, usize),
    /// Padding before the first row and column.
    pub begin: (usize, usize),
    /// Padding after the last row and column.
    pub end: (usize, usize),
}

/// A two-value attribute (`strides`, `dilations`), `default` on both axes when absent.
fn pair(node: &NodeProto, name: &str, default: usize) -> Result<(usize, usize)> {
    match ints(node, name)? {
        None => Ok((default, default)),
        Some(v) if v.len() == 2 && v.iter().all(|d| *d > 0) => Ok((v[0] as usize, v[1] as usize)),
        Some(v) => bail!(err(
            node,
            format!("{name} {v:?}: expected two positive values")
        )),
    }
}

impl Window {
    /// Reads the attributes of `node`; `kernel` is the weights' (for convolutions) or `None` to
    /// read `kernel_shape` (pooling).
    pub fn of(node: &NodeProto, kernel: Option<(usize, usize)>) -> Result<Window> {
        if let Some(auto) = node
            .get_attr_opt::<&str>("auto_pad")
            .map_err(|e| err(node, e))?
        {
            if auto != "NOTSET" && auto != "VALID" {
                bail!(err(node, format!("auto_pad {auto} is not supported")));
            }
        }
        let kernel = match (kernel, ints(node, "kernel_shape")?) {
            (_, Some(v)) if v.len() == 2 && v.iter().all(|d| *d > 0) => {
                (v[0] as usize, v[1] as usize)
            }
            (_, Some(v)) => bail!(err(node, format!("kernel_shape {v:?}: expected 2-D"))),
            (Some(k), None) => k,
            (None, None) => bail!(err(node, "needs kernel_shape")),
        };
        let (begin, end) = match ints(node, "pads")? {
            None => ((0, 0), (0, 0)),
            Some(p) if p.len() == 4 && p.iter().all(|v| *v >= 0) => (
                (p[0] as usize, p[1] as usize),
                (p[2] as usize, p[3] as usize),
            ),
            Some(p) => bail!(err(node, format!("pads {p:?}: expected four values >= 0"))),
        };
        Ok(Window {
            kernel,
            stride: pair(node, "strides", 1)?,
            dilation: pair(node, "dilations", 1)?,
            begin,
            end,
        })
    }

    /// Output rows and columns over an `h x w` input: floor division, or ceil where
    /// `ceil_mode` is set (a window must still start inside the input or its leading pad).
    pub fn output(
        &self,
        node: &NodeProto,
        (h, w): (usize, usize),
        ceil: bool,
    ) -> Result<(usize, usize)> {
        let axis = |n: usize, k: usize, s: usize, d: usize, b: usize, e: usize| -> Option<usize> {
            let span = d * (k - 1) + 1;
            let padded = n + b + e;
            if padded < span {
                return None;
            }
            let mut out = if ceil {
                (padded - span).div_ceil(s) + 1
            } else {
                (padded - span) / s + 1
            };
            if ceil && (out - 1) * s >= n + b {
                out -= 1;
            }
            Some(out)
        };
        let (k, s, d, b, e) = (
            self.kernel,
            self.stride,
            self.dilation,
            self.begin,
            self.end,
        );
        match (
            axis(h, k.0, s.0, d.0, b.0, e.0),
            axis(w, k.1, s.1, d.1, b.1, e.1),
        ) {
            (Some(oh), Some(ow)) if oh > 0 && ow > 0 => Ok((oh, ow)),
            _ => bail!(err(
                node,
                format!("a {h}x{w} input is smaller than the window {self:?}")
            )),
        }
    }

    /// The output positions `lo..hi` along one axis of `n` inputs whose tap `t` lands inside
    /// the input, for stride `s`, dilation `d`, leading pad `b` and `out` outputs.
    pub fn inside(n: usize, out: usize, t: usize, s: usize, d: usize, b: usize) -> (usize, usize) {
        // Input index of output o is o·s + t·d − b; keep 0 ≤ it < n.
        let offset = t * d;
        let lo = b.saturating_sub(offset).div_ceil(s);
        let hi = if n + b > offset {
            ((n + b - offset - 1) / s + 1).min(out)
        } else {
            0
        };
        (lo.min(hi), hi)
    }
}
