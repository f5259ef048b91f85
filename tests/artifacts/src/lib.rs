//! The Wasm operators only tests and benchmarks use (hostile, panicky, malformed, version
//! mismatches, state migrations, the boundary designs), built by this crate's build script as
//! wasmtime's test-programs artifacts are, so that the shipped `spate` binary carries no test
//! operator and no path to one. Also a throwaway PostgreSQL server ([`postgres`]) for the
//! tests and the benchmark.

pub mod postgres;

use std::path::PathBuf;

/// The directory holding `<name>.wasm` for every test operator.
pub const DIR: &str = env!("SPATE_TEST_PLUGINS");

/// The component file of test operator `name` (`panicky`, `hostile`, `boundary`, ...).
pub fn plugin(name: &str) -> PathBuf {
    PathBuf::from(DIR).join(format!("{name}.wasm"))
}
