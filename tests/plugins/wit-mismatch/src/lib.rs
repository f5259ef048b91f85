//! A test operator built against a version of the WIT contract the host does not speak: it is
//! a working pass-through transform, but build.rs generates its bindings from
//! `wit/operator.wit` with the package version changed (`spate:operator@0.1.0` becomes
//! `@0.2.0`), so it exports `spate:operator/transform@0.2.0` and the host must refuse it with a
//! message naming both versions.
// The bindings and the export exist for the Wasm target only; natively the crate is empty.
#![cfg(target_arch = "wasm32")]

/// The bindings of world `transform-operator` from the altered WIT (private, so their items need
/// no docs here).
mod bindings {
    // `wit_bindgen::generate!` with the altered WIT inlined, written by build.rs.
    include!(concat!(env!("OUT_DIR"), "/bindings.rs"));
}

use bindings::exports::spate::operator::transform::Guest;
use bindings::spate::operator::types::{Batch, Monoid, OperatorError, OperatorInfo};

/// The exported operator.
struct WitMismatch;

impl Guest for WitMismatch {
    fn describe() -> OperatorInfo {
        OperatorInfo {
            name: "wit-mismatch".into(),
            description: concat!(
                "passes records through; built against spate:operator@",
                env!("SPATE_MISMATCHED_WIT_VERSION")
            )
            .into(),
            params: Vec::new(),
            key_type: None,
            value_type: None,
            monoid: None,
        }
    }

    fn configure(params: Vec<(String, String)>, _: Option<Monoid>) -> Result<(), OperatorError> {
        match params.first() {
            None => Ok(()),
            Some((name, _)) => Err(OperatorError {
                message: format!("unknown parameter '{name}' (this operator takes no parameters)"),
                record_index: None,
            }),
        }
    }

    fn process(input: Batch) -> Result<Batch, OperatorError> {
        Ok(input)
    }
}

bindings::export!(WitMismatch with_types_in bindings);
