//! Records as text, the way Spark prints them: a pair as `(key,value)`, values by their type.

use crate::plan::StreamType;
use spate_guest::{Record, ValueType};
use std::fmt::Write;

/// Appends one value to `out` according to its type.
pub fn write_value(out: &mut String, bytes: &[u8], value_type: ValueType) {
    let fixed = <[u8; 8]>::try_from(bytes).ok();
    match (value_type, fixed) {
        (ValueType::I64, Some(b)) => {
            let _ = write!(out, "{}", i64::from_le_bytes(b));
        }
        (ValueType::F64, Some(b)) => {
            let _ = write!(out, "{}", f64::from_le_bytes(b));
        }
        _ => out.push_str(&String::from_utf8_lossy(bytes)),
    }
}

/// Appends a record: `(key,value)` for pairs, the value alone otherwise.
pub fn write_record(out: &mut String, record: &Record<'_>, types: &StreamType) {
    match record.key {
        Some(key) => {
            out.push('(');
            write_value(out, key, types.key.unwrap_or(ValueType::Text));
            out.push(',');
            write_value(out, record.value, types.value);
            out.push(')');
        }
        None => write_value(out, record.value, types.value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_print_like_scala_tuples() {
        let types = StreamType {
            key: Some(ValueType::Text),
            value: ValueType::I64,
        };
        let record = Record {
            key: Some(b"word"),
            value: &3i64.to_le_bytes(),
            timestamp: None,
        };
        let mut out = String::new();
        write_record(&mut out, &record, &types);
        assert_eq!(out, "(word,3)");
    }

    #[test]
    fn unkeyed_text_prints_as_is() {
        let types = StreamType {
            key: None,
            value: ValueType::Text,
        };
        let record = Record {
            key: None,
            value: b"a line",
            timestamp: None,
        };
        let mut out = String::new();
        write_record(&mut out, &record, &types);
        assert_eq!(out, "a line");
    }
}
