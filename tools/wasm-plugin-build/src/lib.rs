//! Builds workspace crates as `wasm32-wasip2` components from a build script, so that a fresh
//! clone needs no step but `cargo build` / `cargo test`. Used by the runtime's build script
//! (the bundled operators it embeds) and by `tests/artifacts` (the operators only tests and
//! benchmarks use), so that the shipped binary knows nothing of test operators.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The Wasm target.
pub const TARGET: &str = "wasm32-wasip2";
/// The cargo profile the operators are built with (small and fast; see the workspace's
/// Cargo.toml).
pub const PROFILE: &str = "wasm-plugin";

/// The workspace root (the parent of the build script's package directory).
pub fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let mut dir = manifest.as_path();
    while !dir.join("Cargo.lock").exists() {
        dir = dir
            .parent()
            .unwrap_or_else(|| fail("no workspace root (Cargo.lock) above the package"));
    }
    dir.to_owned()
}

/// Builds `crates` (package names) for [`TARGET`] and returns the directory holding
/// `<crate_name_with_underscores>.wasm`. Asks cargo to rerun the build script when the operator
/// sources, the SDK or the WIT change.
pub fn build(crates: &[&str]) -> PathBuf {
    let root = workspace_root();
    for watched in [
        "plugins",
        "tests/plugins",
        "bench/plugins",
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
    for krate in crates {
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
        fail(&format!(
            "building the Wasm operators {} failed (see the errors above)",
            crates.join(", ")
        ));
    }
    target_dir.join(TARGET).join(PROFILE)
}

/// The component file of crate `krate` in the directory [`build`] returned.
pub fn component(built: &Path, krate: &str) -> PathBuf {
    built.join(format!("{}.wasm", krate.replace('-', "_")))
}

/// Copies a built component, failing the build with both paths named.
pub fn copy(from: &Path, to: &Path) {
    if let Err(e) = std::fs::copy(from, to) {
        fail(&format!(
            "copying {} to {}: {e}",
            from.display(),
            to.display()
        ));
    }
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

/// Fails the build script with `message`.
pub fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1);
}
