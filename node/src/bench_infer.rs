//! `smartvm-node bench-infer`: one model's inference through this node's wasm executor, on the
//! two paths a parachain has. Collators and full nodes run the runtime with the SmartVM host
//! functions (native kernels); relay-chain validators run `validate_block` with the standard host
//! functions only, so the runtime swaps in its in-wasm kernels (DESIGN.md invariant 2).
//!
//! The validator path here uses an executor that does not have the SmartVM host functions at
//! all, as a stock `polkadot` validator, and checks that it still answers, with the same bytes;
//! the timings show what the charged weight has to cover.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use codec::{Decode, Encode};
use pallet_smartvm::{InferOutcome, ModelInfo};
use polkadot_sdk::sc_cli::{self, ChainSpec};
use polkadot_sdk::sc_executor::WasmExecutor;
use polkadot_sdk::sp_core::traits::{CallContext, CodeExecutor, RuntimeCode, WrappedRuntimeCode};
use polkadot_sdk::sp_runtime::{DispatchError, Weight};
use polkadot_sdk::{cumulus_primitives_proof_size_hostfunction, sp_io};
use smartvm_runtime::{AccountId, Balance};

use crate::service::HostFunctions;

/// What a stock relay-chain validator's executor offers: the standard host functions only.
type ValidatorHostFunctions = (
    sp_io::SubstrateHostFunctions,
    cumulus_primitives_proof_size_hostfunction::storage_proof_size::HostFunctions,
);

/// Polkadot's default time limit for a validator to execute a candidate when backing it
/// (`DEFAULT_BACKING_EXECUTION_TIMEOUT`); approval checkers allow six times more.
const BACKING_TIMEOUT: Duration = Duration::from_secs(2);

/// How many inferences of `weight` fit in one block's normal-class weight, counting the
/// extrinsic base weight: by ref_time, and by proof if each kept the proof it is charged. The
/// runtime's `StorageWeightReclaim` charges the proof really recorded, so repeated inferences
/// of one model add almost none and ref_time binds (`runtime/tests/block_capacity.rs`).
fn full_block(weight: Weight) -> (u64, u64) {
    use polkadot_sdk::frame_support::dispatch::DispatchClass;
    let limits = smartvm_runtime::configs::RuntimeBlockWeights::get();
    let normal = limits.get(DispatchClass::Normal);
    let room = normal.max_total.unwrap_or(limits.max_block);
    let per_tx = weight.saturating_add(normal.base_extrinsic);
    let by_time = room.ref_time() / per_tx.ref_time().max(1);
    let by_proof = room.proof_size() / per_tx.proof_size().max(1);
    (by_time, by_proof)
}

/// Arguments of `bench-infer`.
#[derive(Debug, clap::Parser)]
pub struct BenchInferCmd {
    /// The chain whose genesis holds the model: `dev`, `local` or a chain-spec file.
    #[arg(long, default_value = "dev")]
    pub chain: String,
    /// Model id in that genesis.
    #[arg(long, default_value_t = 0)]
    pub model: u32,
    /// Input file: int8 bytes as the program takes them (default: a seeded synthetic input).
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Timed calls per path, after one warm-up call each.
    #[arg(long, default_value_t = 20)]
    pub runs: u32,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

/// One path's answer and timings.
struct PathRun {
    outcome: InferOutcome,
    median: Duration,
    fastest: Duration,
}

type ApiResult<T> = Result<T, DispatchError>;

impl BenchInferCmd {
    /// Builds the genesis state of `spec` and runs the model on both paths.
    pub fn run(&self, spec: Box<dyn ChainSpec>) -> sc_cli::Result<()> {
        let storage = spec.build_storage().map_err(sc_cli::Error::Input)?;
        let code = storage
            .top
            .get(polkadot_sdk::sp_core::storage::well_known_keys::CODE)
            .cloned()
            .ok_or_else(|| sc_cli::Error::Input("the genesis has no runtime code".into()))?;
        let mut state = sp_io::TestExternalities::new(storage);
        let fetcher = WrappedRuntimeCode(code.as_slice().into());
        let runtime = RuntimeCode {
            code_fetcher: &fetcher,
            heap_pages: None,
            hash: sp_io::hashing::blake2_256(&code).to_vec(),
        };
        let collator = WasmExecutor::<HostFunctions>::builder().build();
        let validator = WasmExecutor::<ValidatorHostFunctions>::builder()
            .with_allow_missing_host_functions(true)
            .build();
        let mut call = Call {
            state: &mut state,
            runtime: &runtime,
        };
        let info_bytes = call
            .run(&collator, "SmartvmApi_model", &self.model.encode())
            .map_err(|e| sc_cli::Error::Application(e.into()))?;
        let info = Option::<ModelInfo<AccountId, Balance>>::decode(&mut &info_bytes[..])
            .map_err(|e| sc_cli::Error::Input(format!("decoding the model info: {e}")))?
            .ok_or_else(|| {
                sc_cli::Error::Input(format!("model {} is not in this genesis", self.model))
            })?;
        let len = info
            .input_shape
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d as usize))
            .ok_or_else(|| sc_cli::Error::Input("the model's input shape overflows".into()))?;
        let input = match &self.input {
            Some(path) => std::fs::read(path)?,
            None => (0..len)
                .map(|i| ((i * 37 + i / 28 * 11) % 256) as u8)
                .collect(),
        };
        let limit = Weight::from_parts(u64::MAX / 4, u64::MAX / 4);
        let data = (self.model, input, limit).encode();

        let runs = self.runs.max(1);
        let native = call.timed(&collator, "SmartvmApi_infer", &data, runs)?;
        let wasm = call.timed(
            &validator,
            "SmartvmApi_infer_with_wasm_kernels",
            &data,
            runs,
        )?;
        // The plain entry point calls the host functions, which this executor lacks: it must trap.
        let host_call_traps = call.run(&validator, "SmartvmApi_infer", &data).is_err();
        let identical = native.outcome.output == wasm.outcome.output
            && native.outcome.weight_used == wasm.outcome.weight_used;

        let charged = native.outcome.weight_used.ref_time();
        let ps = |d: Duration| d.as_nanos() as f64 * 1e3;
        let (full, by_charged_proof) = full_block(native.outcome.weight_used);
        let full_block_validator_s = full as f64 * wasm.median.as_secs_f64();
        if self.json {
            let json = serde_json::json!({
                "model": self.model,
                "runs": runs,
                "output": native.outcome.output,
                "class": native.outcome.class,
                "weight_ref_time_ps": charged,
                "weight_proof_size": native.outcome.weight_used.proof_size(),
                "native_median_ns": native.median.as_nanos() as u64,
                "native_fastest_ns": native.fastest.as_nanos() as u64,
                "wasm_median_ns": wasm.median.as_nanos() as u64,
                "wasm_fastest_ns": wasm.fastest.as_nanos() as u64,
                "wasm_output": wasm.outcome.output,
                "identical": identical,
                "full_block_inferences": full,
                "full_block_inferences_without_reclaim": full.min(by_charged_proof),
                "full_block_validator_seconds": full_block_validator_s,
                "host_call_traps_without_host_functions": host_call_traps,
            });
            println!("{json}");
        } else {
            println!(
                "model {}: class {}, charged ref_time {charged} ps, proof_size {} B",
                self.model,
                native.outcome.class,
                native.outcome.weight_used.proof_size()
            );
            println!(
                "collator path  (native kernels via host functions): median {:>9.3} ms, fastest {:>9.3} ms",
                native.median.as_secs_f64() * 1e3,
                native.fastest.as_secs_f64() * 1e3
            );
            println!(
                "validator path (in-wasm kernels, no SmartVM host fns): median {:>9.3} ms, fastest {:>9.3} ms",
                wasm.median.as_secs_f64() * 1e3,
                wasm.fastest.as_secs_f64() * 1e3
            );
            println!(
                "validator / collator: {:.1}x; charged ref_time / validator time: {:.2}x (median), {:.2}x (fastest)",
                wasm.median.as_secs_f64() / native.median.as_secs_f64(),
                charged as f64 / ps(wasm.median),
                charged as f64 / ps(wasm.fastest)
            );
            println!(
                "outputs identical: {identical}; the host path traps without the host functions: {host_call_traps}"
            );
            println!(
                "a block's normal-class ref_time admits {full} such inferences (the VM's weight and the \
                 extrinsic base; {} if each kept its charged proof, without reclaim): \
                 {full_block_validator_s:.2} s for a validator at the median above (relay backing timeout {} s)",
                full.min(by_charged_proof),
                BACKING_TIMEOUT.as_secs()
            );
        }
        if !identical {
            return Err(sc_cli::Error::Application(
                "the validator path's output differs from the collator path's".into(),
            ));
        }
        Ok(())
    }
}

/// Runtime API calls against one state and one runtime code.
struct Call<'a> {
    state: &'a mut sp_io::TestExternalities,
    runtime: &'a RuntimeCode<'a>,
}

impl Call<'_> {
    /// Calls `method` with SCALE-encoded `data` in `executor`.
    fn run<E: CodeExecutor>(
        &mut self,
        executor: &E,
        method: &str,
        data: &[u8],
    ) -> Result<Vec<u8>, String> {
        let mut ext = self.state.ext();
        executor
            .call(&mut ext, self.runtime, method, data, CallContext::Offchain)
            .0
            .map_err(|e| e.to_string())
    }

    /// Calls an inference `method` once to warm up, then `runs` times, timing each.
    fn timed<E: CodeExecutor>(
        &mut self,
        executor: &E,
        method: &str,
        data: &[u8],
        runs: u32,
    ) -> sc_cli::Result<PathRun> {
        let mut times = Vec::new();
        let mut outcome = None;
        for _ in 0..=runs {
            let started = Instant::now();
            let bytes = self
                .run(executor, method, data)
                .map_err(|e| sc_cli::Error::Application(e.into()))?;
            times.push(started.elapsed());
            let result = ApiResult::<InferOutcome>::decode(&mut &bytes[..])
                .map_err(|e| sc_cli::Error::Input(format!("decoding {method}: {e}")))?;
            outcome = Some(result.map_err(|e| {
                sc_cli::Error::Application(format!("{method} failed: {e:?}").into())
            })?);
        }
        // The warm-up call compiles and caches the runtime.
        times.remove(0);
        times.sort();
        let outcome = outcome.ok_or_else(|| sc_cli::Error::Input("no call made".into()))?;
        Ok(PathRun {
            outcome,
            median: times[times.len() / 2],
            fastest: times[0],
        })
    }
}
