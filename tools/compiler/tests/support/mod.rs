//! What the compiler's integration tests share.

use std::path::PathBuf;

/// The fixture cache (`make fixtures zoo` fills it), checked to hold `file`.
pub fn fixtures(file: &str) -> PathBuf {
    let dir = std::env::var("SMARTVM_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/smartvm/fixtures")
        });
    assert!(
        dir.join(file).exists(),
        "{file} missing in {}: run `make fixtures zoo` (tests/fixtures/make_onnx_fixtures.py, make_zoo.py)",
        dir.display()
    );
    dir
}
