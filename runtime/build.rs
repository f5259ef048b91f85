//! Builds the bundled operators in `plugins/` for `wasm32-wasip2` and puts the components in
//! OUT_DIR, where `src/bundled.rs` embeds them: a fresh clone needs no step but `cargo build`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The bundled operators: crate `spate-plugin-<name>`, component `<name>.wasm`.
const PLUGINS: &[&str] = &["tokenize", "sum", "filter", "subtract", "running-sum"];
/// Operators for tests and benchmarks only, as (crate, component name): not bundled, but built
/// here too so that a fresh clone's `cargo test` and `cargo bench` have them. They are found
/// through `spate::bundled::DEV_PLUGINS_DIR` (the SPATE_DEV_PLUGINS variable set below).
const DEV_PLUGINS: &[(&str, &str)] = &[
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
    ("spate-bench-plugin-boundary", "boundary"),
];
const TARGET: &str = "wasm32-wasip2";
const PROFILE: &str = "wasm-plugin";

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest
        .parent()
        .expect("runtime/ sits in the workspace")
        .to_owned();
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo"));
    for watched in [
        "plugins",
        "tests/plugins",
        "guest-sdk/src",
        "guest-sdk/build.rs",
        "guest-sdk/Cargo.toml",
        "wit",
        "Cargo.toml",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    ensure_target();
    // A target dir of its own: the outer cargo holds the lock of the main one.
    let target_dir = root.join("target").join("wasm-plugins");
    let mut command = Command::new(&cargo);
    command
        .current_dir(&root)
        .args([
            "build",
            "--profile",
            PROFILE,
            "--target",
            TARGET,
            "--target-dir",
        ])
        .arg(&target_dir);
    for plugin in PLUGINS {
        command.args(["-p", &format!("spate-plugin-{plugin}")]);
    }
    for (krate, _) in DEV_PLUGINS {
        command.args(["-p", krate]);
    }
    // The host build's flags and wrappers (clippy, coverage) are not for the Wasm build.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
    ] {
        command.env_remove(var);
    }
    let status = command
        .status()
        .unwrap_or_else(|e| fail(&format!("cannot run {cargo}: {e}")));
    if !status.success() {
        fail("building the bundled Wasm operators in plugins/ failed (see the errors above)");
    }
    let built = target_dir.join(TARGET).join(PROFILE);
    for plugin in PLUGINS {
        copy(
            &built.join(format!("spate_plugin_{}.wasm", plugin.replace('-', "_"))),
            &out.join(format!("{plugin}.wasm")),
        );
    }
    let dev_plugins = out.join("dev-plugins");
    std::fs::create_dir_all(&dev_plugins)
        .unwrap_or_else(|e| fail(&format!("creating {}: {e}", dev_plugins.display())));
    for (krate, name) in DEV_PLUGINS {
        let file = format!("{}.wasm", krate.replace('-', "_"));
        copy(&built.join(file), &dev_plugins.join(format!("{name}.wasm")));
    }
    println!(
        "cargo:rustc-env=SPATE_DEV_PLUGINS={}",
        dev_plugins.display()
    );
}

/// Installs the Wasm target through rustup when the toolchain lacks it (rust-toolchain.toml
/// names it, but an already-installed toolchain does not get new targets by itself).
fn ensure_target() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    let installed = sysroot
        .map(|s| Path::new(&s).join("lib/rustlib").join(TARGET).exists())
        .unwrap_or(false);
    if installed {
        return;
    }
    println!("cargo:warning=installing the {TARGET} target with rustup");
    let toolchain = std::env::var("RUSTUP_TOOLCHAIN").ok();
    let mut command = Command::new("rustup");
    command.args(["target", "add", TARGET]);
    if let Some(toolchain) = toolchain {
        command.args(["--toolchain", &toolchain]);
    }
    match command.status() {
        Ok(s) if s.success() => {}
        _ => fail(&format!(
            "the {TARGET} target is missing and `rustup target add {TARGET}` failed; install it and build again"
        )),
    }
}

fn copy(from: &Path, to: &Path) {
    if let Err(e) = std::fs::copy(from, to) {
        fail(&format!(
            "copying {} to {}: {e}",
            from.display(),
            to.display()
        ));
    }
}

fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1);
}
