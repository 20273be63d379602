//! The pallets `smartvm-node benchmark pallet` can measure in this runtime (built with the
//! `runtime-benchmarks` feature; `make weights` runs them and writes `weights/`).

polkadot_sdk::frame_benchmarking::define_benchmarks!([pallet_smartvm, Smartvm]);
