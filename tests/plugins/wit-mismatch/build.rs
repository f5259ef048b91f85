//! Generates this crate's bindings from `wit/operator.wit` with the package version changed, so
//! that the component exports the transform interface under a version the host does not speak.
//! The WIT is read, not copied: the only difference from the real contract is the version.

use std::path::Path;

/// The package declaration whose version is changed.
const PACKAGE: &str = "package spate:operator@";

fn main() {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let wit_path = Path::new(&manifest_dir).join("../../../wit/operator.wit");
    println!("cargo:rerun-if-changed={}", wit_path.display());
    let wit = std::fs::read_to_string(&wit_path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", wit_path.display()));
    let version = package_version(&wit)
        .unwrap_or_else(|| panic!("no `{PACKAGE}<version>;` line in {}", wit_path.display()));
    let other = next_minor(version);
    // Only the package line changes (`use` clauses and world names carry no version).
    let wit = wit.replacen(
        &format!("{PACKAGE}{version};"),
        &format!("{PACKAGE}{other};"),
        1,
    );
    // `{:?}` writes a valid Rust string literal with every quote and backslash escaped.
    let bindings = format!(
        "wit_bindgen::generate!({{\n    inline: {wit:?},\n    world: \"transform-operator\",\n}});\n"
    );
    let out_dir = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    let out = Path::new(&out_dir).join("bindings.rs");
    std::fs::write(&out, bindings).unwrap_or_else(|e| panic!("writing {}: {e}", out.display()));
    println!("cargo:rustc-env=SPATE_MISMATCHED_WIT_VERSION={other}");
}

/// The version of the `spate:operator` package declared in `wit`.
fn package_version(wit: &str) -> Option<&str> {
    wit.lines()
        .find_map(|line| line.trim().strip_prefix(PACKAGE))
        .and_then(|rest| rest.strip_suffix(';'))
}

/// A version the host refuses whatever the real one is: the next minor version (0.1.0 gives
/// 0.2.0), since the host accepts only its own major/minor version.
fn next_minor(version: &str) -> String {
    let mut parts = version.split('.');
    let major = parts.next().unwrap_or("0");
    let minor: u64 = parts
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the minor version of {version}"));
    format!("{major}.{}.0", minor + 1)
}
