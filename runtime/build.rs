//! Builds the runtime's wasm blob (what the chain stores and validators execute).
fn main() {
    #[cfg(feature = "std")]
    substrate_wasm_builder::WasmBuilder::build_using_defaults();
}
