//! Which kernels the node's host functions run, chosen once per process (paper §3.1's
//! dispatcher). The default is the native CPU path; a node built with feature `cuda` sends big
//! layers to the GPU when asked to. Every choice gives the same bytes (SPEC.md), so it is a
//! node-local setting like the number of threads, never part of consensus.

use std::sync::OnceLock;

use crate::wire::Status;
use smartvm_kernels::Dispatch;

static ACTIVE: OnceLock<Dispatch> = OnceLock::new();

/// Environment variable that turns the GPU on: `cuda` (device 0) or `cuda:N`; unset or `off`
/// keeps the CPU.
pub const GPU_VAR: &str = "SMARTVM_GPU";
/// Environment variable overriding the smallest layer (MACs) sent to the GPU.
pub const MIN_MACS_VAR: &str = "SMARTVM_GPU_MIN_MACS";

/// How the node wants its kernels run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Choice {
    /// The native CPU kernels (SIMD + rayon).
    Native,
    /// GPU `device` for layers of at least `min_gpu_macs` MACs, the CPU for the rest.
    Cuda {
        /// CUDA device ordinal.
        device: usize,
        /// Smallest layer sent to the GPU.
        min_gpu_macs: u64,
    },
}

impl Choice {
    /// Reads [`GPU_VAR`] and [`MIN_MACS_VAR`].
    pub fn from_env() -> Result<Choice, String> {
        let gpu = std::env::var(GPU_VAR).unwrap_or_default();
        let min_gpu_macs = match std::env::var(MIN_MACS_VAR) {
            Ok(v) => v
                .parse()
                .map_err(|_| format!("{MIN_MACS_VAR}={v}: not a number"))?,
            Err(_) => smartvm_kernels::dispatch::DEFAULT_MIN_GPU_MACS,
        };
        match gpu.as_str() {
            "" | "off" | "0" | "native" => Ok(Choice::Native),
            "cuda" | "on" | "1" => Ok(Choice::Cuda {
                device: 0,
                min_gpu_macs,
            }),
            other => match other.strip_prefix("cuda:").map(str::parse) {
                Some(Ok(device)) => Ok(Choice::Cuda {
                    device,
                    min_gpu_macs,
                }),
                _ => Err(format!(
                    "{GPU_VAR}={other}: expected off, cuda or cuda:<device>"
                )),
            },
        }
    }
}

fn build(choice: Choice) -> Result<Dispatch, String> {
    match choice {
        Choice::Native => Ok(Dispatch::native()),
        #[cfg(feature = "cuda")]
        Choice::Cuda {
            device,
            min_gpu_macs,
        } => smartvm_kernels::Cuda::new(device)
            .map(|gpu| Dispatch::with_gpu(gpu, min_gpu_macs))
            .map_err(|why| format!("cannot use GPU {device}: {why}")),
        #[cfg(not(feature = "cuda"))]
        Choice::Cuda { .. } => Err("this node was built without the `cuda` feature".into()),
    }
}

/// Sets the kernels for this process; the first call (or first kernel call) wins. Returns the
/// description of what is now active, or why the choice could not be made.
pub fn configure(choice: Choice) -> Result<String, String> {
    let dispatch = build(choice)?;
    ACTIVE
        .set(dispatch)
        .map_err(|_| "SmartVM kernels were already configured".to_string())?;
    Ok(active().describe())
}

/// The kernels the host functions run. Unconfigured, it follows the environment, and falls back
/// to the CPU (saying why on stderr) when the GPU asked for cannot start.
pub fn active() -> &'static Dispatch {
    ACTIVE.get_or_init(|| match Choice::from_env().and_then(build) {
        Ok(dispatch) => dispatch,
        Err(why) => {
            eprintln!("smartvm: {why}; using the native CPU kernels");
            Dispatch::native()
        }
    })
}

/// Runs one kernel call with the active backend (`fast`). Should that panic (a bug in a fast
/// path, reached by some user's program), the node does not go down with it: it says so on
/// stderr, clears `out` and answers with `reference`, the arithmetic the validators run in
/// wasm, so it still agrees with every validator. [`Status::Fault`] only if that panics too.
pub fn guarded(
    out: &mut [u8],
    fast: impl FnOnce(&mut [u8]) -> Status,
    reference: impl FnOnce(&mut [u8]) -> Status,
) -> Status {
    use std::panic::{catch_unwind, AssertUnwindSafe};
    if let Ok(status) = catch_unwind(AssertUnwindSafe(|| fast(&mut *out))) {
        return status;
    }
    eprintln!("smartvm: a native kernel panicked; this call is answered by the reference kernels");
    out.fill(0);
    catch_unwind(AssertUnwindSafe(|| reference(&mut *out))).unwrap_or(Status::Fault)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A panicking fast path is answered by the reference kernels, with their bytes; a
    /// panicking reference is a status code, not a crash.
    #[test]
    fn a_panicking_kernel_is_answered_by_the_reference_or_a_status() {
        use smartvm_kernels::{PoolKind, PoolParams, Reference, Shape};
        let p = PoolParams::new(Shape::new(1, 1, 4, 4), 2, 2, 0, PoolKind::Max).unwrap();
        let geometry = crate::wire::encode_pool(&p);
        let input: Vec<u8> = (0..16u8).collect();
        let mut expected = vec![0u8; 4];
        assert_eq!(
            crate::wire::pool(&Reference, &geometry, &input, &mut expected),
            Status::Ok
        );
        let mut out = vec![0xAAu8; 4];
        let status = guarded(
            &mut out,
            |o| {
                o[0] = 1;
                panic!("a fast-path bug")
            },
            |o| crate::wire::pool(&Reference, &geometry, &input, o),
        );
        assert_eq!((status, out), (Status::Ok, expected));
        let mut out = vec![0u8; 4];
        let status = guarded(&mut out, |_| panic!("fast"), |_| panic!("reference"));
        assert_eq!(status, Status::Fault);
    }

    #[test]
    fn env_choices_parse() {
        // Parsing only: the process-wide choice itself is exercised in tests/gpu_dispatch.rs.
        let parse = |gpu: &str| {
            std::env::set_var(GPU_VAR, gpu);
            let c = Choice::from_env();
            std::env::remove_var(GPU_VAR);
            c
        };
        assert_eq!(parse("off"), Ok(Choice::Native));
        assert_eq!(
            parse("cuda:1"),
            Ok(Choice::Cuda {
                device: 1,
                min_gpu_macs: smartvm_kernels::dispatch::DEFAULT_MIN_GPU_MACS
            })
        );
        assert!(parse("tpu").is_err());
    }
}
