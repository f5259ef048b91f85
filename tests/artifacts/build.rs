//! Builds the test and benchmark operators (tests/plugins/, bench/plugins/) as components and
//! puts them in OUT_DIR/plugins as `<name>.wasm`, for `spate_test_artifacts::plugin`.

use spate_wasm_plugin_build::{build, component, copy, fail};
use std::path::PathBuf;

/// (crate, component name).
const PLUGINS: &[(&str, &str)] = &[
    ("spate-test-plugin-panicky", "panicky"),
    ("spate-test-plugin-hostile", "hostile"),
    ("spate-test-plugin-malformed", "malformed"),
    ("spate-test-plugin-wit-mismatch", "wit-mismatch"),
    ("spate-test-plugin-running-sum-v2", "running-sum-v2"),
    (
        "spate-test-plugin-running-sum-patched",
        "running-sum-patched",
    ),
    (
        "spate-test-plugin-running-sum-migrate-v2",
        "running-sum-migrate-v2",
    ),
    ("spate-test-plugin-bloated", "bloated"),
    ("spate-test-plugin-by-count", "by-count"),
    ("spate-bench-plugin-boundary", "boundary"),
];

fn main() {
    let crates: Vec<&str> = PLUGINS.iter().map(|(krate, _)| *krate).collect();
    let built = build(&crates);
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo")).join("plugins");
    std::fs::create_dir_all(&out)
        .unwrap_or_else(|e| fail(&format!("creating {}: {e}", out.display())));
    for (krate, name) in PLUGINS {
        copy(&component(&built, krate), &out.join(format!("{name}.wasm")));
    }
    println!("cargo:rustc-env=SPATE_TEST_PLUGINS={}", out.display());
}
