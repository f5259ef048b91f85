//! Builds the bundled operators in `plugins/` for `wasm32-wasip2` and puts the components in
//! OUT_DIR, where `src/bundled.rs` embeds them: a fresh clone needs no step but `cargo build`.
//! Operators for tests and benchmarks are built by `tests/artifacts`, not here, so the binary
//! knows nothing of them.

use spate_wasm_plugin_build::{build, component, copy};
use std::path::PathBuf;

/// The bundled operators: crate `spate-plugin-<name>`, component `<name>.wasm`.
const PLUGINS: &[&str] = &["tokenize", "sum", "filter", "subtract", "running-sum"];

fn main() {
    let crates: Vec<String> = PLUGINS
        .iter()
        .map(|p| format!("spate-plugin-{p}"))
        .collect();
    let crates: Vec<&str> = crates.iter().map(String::as_str).collect();
    let built = build(&crates);
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo"));
    for (plugin, krate) in PLUGINS.iter().zip(&crates) {
        copy(
            &component(&built, krate),
            &out.join(format!("{plugin}.wasm")),
        );
    }
}
