//! Element-wise functions the lowering runs as a 256-entry table (ACT_LUT) and the float
//! evaluator computes directly, from one definition so the two agree.
//!
//! Every function is plain f32 arithmetic or pure-Rust `libm`, so calibration stays the same on
//! every machine (DESIGN.md invariant 9); on chain only the table's bytes run.

use anyhow::Result;
use tract_onnx::pb::NodeProto;

use crate::lower::float;

/// A function of one value.
pub type Unary = Box<dyn Fn(f32) -> f32 + Send + Sync>;

/// The operators [`unary`] knows. `Silu` is not an ONNX operator: the graph folding writes it
/// for `Mul(x, Sigmoid(x))`.
pub const UNARY: &[&str] = &[
    "HardSwish",
    "HardSigmoid",
    "LeakyRelu",
    "Elu",
    "Softplus",
    "Gelu",
    "Silu",
];

/// `node`'s function with its attributes read, or `None` when it is not one of [`UNARY`].
pub fn unary(node: &NodeProto) -> Result<Option<Unary>> {
    let relu6 = |v: f32| v.clamp(0.0, 6.0);
    Ok(Some(match node.op_type.as_str() {
        "HardSwish" => Box::new(move |x| x * relu6(x + 3.0) / 6.0),
        "HardSigmoid" => {
            let (alpha, beta) = (float(node, "alpha", 0.2)?, float(node, "beta", 0.5)?);
            Box::new(move |x| (alpha * x + beta).clamp(0.0, 1.0))
        }
        "LeakyRelu" => {
            let alpha = float(node, "alpha", 0.01)?;
            Box::new(move |x| if x >= 0.0 { x } else { alpha * x })
        }
        "Elu" => {
            let alpha = float(node, "alpha", 1.0)?;
            Box::new(move |x| if x >= 0.0 { x } else { alpha * libm::expm1f(x) })
        }
        "Softplus" => Box::new(|x| libm::log1pf(libm::expf(x))),
        "Gelu" => {
            if node
                .get_attr_opt::<&str>("approximate")
                .ok()
                .flatten()
                .is_some_and(|a| a == "tanh")
            {
                Box::new(|x| {
                    let c = (2.0f32 / core::f32::consts::PI).sqrt();
                    0.5 * x * (1.0 + libm::tanhf(c * (x + 0.044715 * x * x * x)))
                })
            } else {
                Box::new(|x| 0.5 * x * (1.0 + libm::erff(x / core::f32::consts::SQRT_2)))
            }
        }
        "Silu" => Box::new(|x| x * crate::lower::sigmoid(x)),
        _ => return Ok(None),
    }))
}
