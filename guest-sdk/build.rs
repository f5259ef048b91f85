//! Generates the export macros with the WIT package inlined, so that an operator crate needs
//! neither a copy of the .wit files nor a path to them: `wit/` stays the contract's one source.

use std::path::Path;

fn main() {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let wit_path = Path::new(&manifest_dir).join("../wit/operator.wit");
    let template_path = Path::new(&manifest_dir).join("src/export.rs.in");
    println!("cargo:rerun-if-changed={}", wit_path.display());
    println!("cargo:rerun-if-changed={}", template_path.display());
    let wit = std::fs::read_to_string(&wit_path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", wit_path.display()));
    let template = std::fs::read_to_string(&template_path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", template_path.display()));
    // `{:?}` writes a valid Rust string literal with every quote and backslash escaped.
    let macros = template.replace("@WIT@", &format!("{wit:?}"));
    let out =
        Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("export_macros.rs");
    std::fs::write(&out, macros).unwrap_or_else(|e| panic!("writing {}: {e}", out.display()));
}
