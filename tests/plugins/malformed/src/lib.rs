//! A test operator whose `process` returns a malformed batch, so that a test can check that the
//! host validates what a plugin returns instead of trusting it.
//!
//! The SDK's `BatchBuilder` cannot build such a batch (and `spate_guest::run_transform` checks
//! every batch it returns), so this crate uses `wit-bindgen` directly against the repository's
//! `wit/operator.wit`. `describe` and `configure` behave normally.
//!
//! The `defect` parameter picks the malformation (default `offsets-past-end`):
//! - `offsets-past-end`: values data `abc`, offsets `[0, 2, 1000]`;
//! - `decreasing-offsets`: values data `abc`, offsets `[0, 2, 1]`;
//! - `keys-mismatch`: two values but one key;
//! - `timestamps-mismatch`: two values but one timestamp.
// The bindings and the export exist for the Wasm target only; natively the crate is empty.
#![cfg(target_arch = "wasm32")]

/// The bindings of world `transform-operator` (private, so their items need no docs here).
mod bindings {
    wit_bindgen::generate!({
        // Relative to this crate's Cargo.toml: the contract's one source, never copied.
        path: "../../../wit/operator.wit",
        world: "transform-operator",
    });
}

use bindings::exports::spate::operator::transform::Guest;
use bindings::spate::operator::types::{Batch, Column, Monoid, OperatorError, OperatorInfo};
use std::cell::Cell;

/// Every accepted value of the `defect` parameter; the first is the default.
const DEFECTS: &[&str] = &[
    "offsets-past-end",
    "decreasing-offsets",
    "keys-mismatch",
    "timestamps-mismatch",
];

thread_local! {
    /// The configured defect, as an index into `DEFECTS`.
    static DEFECT: Cell<usize> = const { Cell::new(0) };
}

/// An error without a record index.
fn error(message: String) -> OperatorError {
    OperatorError {
        message,
        record_index: None,
    }
}

/// A well-formed column of two values, `ab` and `c`.
fn two_values() -> Column {
    Column {
        data: b"abc".to_vec(),
        offsets: vec![0, 2, 3],
    }
}

/// The malformed batch for defect `index` of `DEFECTS`.
fn malformed(index: usize) -> Batch {
    let column = |offsets: Vec<u32>| Column {
        data: b"abc".to_vec(),
        offsets,
    };
    match DEFECTS[index] {
        "offsets-past-end" => Batch {
            keys: None,
            values: column(vec![0, 2, 1000]),
            timestamps: Vec::new(),
        },
        "decreasing-offsets" => Batch {
            keys: None,
            values: column(vec![0, 2, 1]),
            timestamps: Vec::new(),
        },
        "keys-mismatch" => Batch {
            keys: Some(Column {
                data: b"k".to_vec(),
                offsets: vec![0, 1],
            }),
            values: two_values(),
            timestamps: Vec::new(),
        },
        _ => Batch {
            keys: None,
            values: two_values(),
            timestamps: vec![1],
        },
    }
}

/// The exported operator.
struct Malformed;

impl Guest for Malformed {
    fn describe() -> OperatorInfo {
        OperatorInfo {
            name: "malformed".into(),
            description: "returns a malformed batch on every call (host validation tests)".into(),
            params: vec![(
                "defect".into(),
                format!(
                    "the malformation: {} (default {})",
                    DEFECTS.join(", "),
                    DEFECTS[0]
                ),
            )],
            key_type: None,
            value_type: None,
            monoid: None,
        }
    }

    fn configure(params: Vec<(String, String)>, _: Option<Monoid>) -> Result<(), OperatorError> {
        let mut defect = 0;
        for (name, value) in params {
            if name != "defect" {
                return Err(error(format!("unknown parameter '{name}' (known: defect)")));
            }
            defect = DEFECTS.iter().position(|d| *d == value).ok_or_else(|| {
                error(format!(
                    "unknown defect '{value}' (accepted: {})",
                    DEFECTS.join(", ")
                ))
            })?;
        }
        DEFECT.with(|d| d.set(defect));
        Ok(())
    }

    fn process(_input: Batch) -> Result<Batch, OperatorError> {
        Ok(malformed(DEFECT.with(Cell::get)))
    }
}

bindings::export!(Malformed with_types_in bindings);
