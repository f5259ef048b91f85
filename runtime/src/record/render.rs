//! Records as text, the way Spark prints them: a pair as `(key,value)`, values by their shape;
//! and values as JSON, for outputs that store JSON.

use super::{Shape, StreamType};
use anyhow::{Context, Result};
use spate_guest::Partition;
use spate_guest::{Record, ValueType, nested};
use std::fmt::Write;
use std::fs::File;
use std::io::Write as _;
use std::path::Path;

/// Appends one value to `out` according to its shape. A composite value that does not parse
/// is printed as lossy text rather than failing the output.
pub fn write_value(out: &mut String, bytes: &[u8], shape: &Shape) {
    match shape {
        Shape::Scalar(t) => write_scalar(out, bytes, *t),
        Shape::List(item) => {
            out.push('[');
            write_items(out, bytes, |out, i, value| {
                if i > 0 {
                    out.push_str(", ");
                }
                write_optional(out, value, item);
            });
            out.push(']');
        }
        Shape::Pair(left, right) => {
            out.push('(');
            write_items(out, bytes, |out, i, value| match i {
                0 => write_optional(out, value, left),
                _ => {
                    out.push(',');
                    write_optional(out, value, right);
                }
            });
            out.push(')');
        }
        Shape::Maybe(item) => write_value(out, bytes, item),
    }
}

/// An item of a composite: `Some(v)`/`None` where the shape says it may be absent.
fn write_optional(out: &mut String, value: Option<&[u8]>, shape: &Shape) {
    match (shape, value) {
        (Shape::Maybe(inner), Some(v)) => {
            out.push_str("Some(");
            write_value(out, v, inner);
            out.push(')');
        }
        (_, None) => out.push_str("None"),
        (_, Some(v)) => write_value(out, v, shape),
    }
}

fn write_items(
    out: &mut String,
    bytes: &[u8],
    mut each: impl FnMut(&mut String, usize, Option<&[u8]>),
) {
    for (i, item) in nested::items(bytes).enumerate() {
        match item {
            Ok(value) => each(out, i, value),
            Err(_) => {
                out.push_str(&String::from_utf8_lossy(bytes));
                return;
            }
        }
    }
}

fn write_scalar(out: &mut String, bytes: &[u8], value_type: ValueType) {
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

/// A value as JSON, for JSON columns: numbers as numbers (a float that is not finite as
/// null), text as strings, bytes as lossy text, lists and pairs as arrays, an absent optional
/// as null.
pub fn json_value(bytes: &[u8], shape: &Shape) -> serde_json::Value {
    use serde_json::Value;
    match shape {
        Shape::Scalar(value_type) => {
            let fixed = <[u8; 8]>::try_from(bytes).ok();
            match (value_type, fixed) {
                (ValueType::I64, Some(b)) => Value::from(i64::from_le_bytes(b)),
                (ValueType::F64, Some(b)) => serde_json::Number::from_f64(f64::from_le_bytes(b))
                    .map_or(Value::Null, Value::Number),
                _ => Value::String(String::from_utf8_lossy(bytes).into_owned()),
            }
        }
        Shape::List(item) => json_items(bytes, |_| item),
        Shape::Pair(left, right) => json_items(bytes, |i| if i == 0 { left } else { right }),
        Shape::Maybe(item) => json_value(bytes, item),
    }
}

/// A composite's items as a JSON array; one that does not parse as lossy text.
fn json_items<'s>(bytes: &[u8], shape_of: impl Fn(usize) -> &'s Shape) -> serde_json::Value {
    let mut items = Vec::new();
    for (i, item) in nested::items(bytes).enumerate() {
        match item {
            Ok(Some(value)) => items.push(json_value(value, shape_of(i))),
            Ok(None) => items.push(serde_json::Value::Null),
            Err(_) => {
                return serde_json::Value::String(String::from_utf8_lossy(bytes).into_owned());
            }
        }
    }
    serde_json::Value::Array(items)
}

/// Appends a record: `(key,value)` for pairs, the value alone otherwise.
pub fn write_record(out: &mut String, record: &Record<'_>, types: &StreamType) {
    match record.key {
        Some(key) => {
            out.push('(');
            write_value(out, key, types.key.as_ref().unwrap_or(&Shape::TEXT));
            out.push(',');
            write_value(out, record.value, &types.value);
            out.push(')');
        }
        None => write_value(out, record.value, &types.value),
    }
}

/// A partition as text, a record per line.
pub fn partition_text(partition: &Partition, types: &StreamType) -> String {
    let mut text = String::with_capacity(partition.values.data.len() * 2);
    for record in partition.records() {
        write_record(&mut text, &record, types);
        text.push('\n');
    }
    text
}

/// Writes `partition` to `path`, a record per line, and fsyncs it.
pub fn write_part(path: &Path, partition: &Partition, types: &StreamType) -> Result<()> {
    let text = partition_text(partition, types);
    let mut file =
        File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(text.as_bytes())
        .and_then(|_| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(record: &Record<'_>, types: &StreamType) -> String {
        let mut out = String::new();
        write_record(&mut out, record, types);
        out
    }

    #[test]
    fn pairs_print_like_scala_tuples() {
        let types = StreamType::keyed(Shape::TEXT, Shape::I64);
        let record = Record {
            key: Some(b"word"),
            value: &3i64.to_le_bytes(),
            timestamp: None,
        };
        assert_eq!(render(&record, &types), "(word,3)");
    }

    #[test]
    fn unkeyed_text_prints_as_is() {
        let record = Record {
            key: None,
            value: b"a line",
            timestamp: None,
        };
        assert_eq!(render(&record, &StreamType::lines()), "a line");
    }

    #[test]
    fn groups_and_outer_join_pairs_print_like_spark() {
        let mut group = Vec::new();
        nested::push_item(&mut group, Some(&1i64.to_le_bytes()));
        nested::push_item(&mut group, Some(&2i64.to_le_bytes()));
        let types = StreamType::keyed(Shape::TEXT, Shape::list(Shape::I64));
        let record = Record {
            key: Some(b"k"),
            value: &group,
            timestamp: None,
        };
        assert_eq!(render(&record, &types), "(k,[1, 2])");

        let mut pair = Vec::new();
        nested::push_item(&mut pair, Some(b"left"));
        nested::push_item(&mut pair, None);
        let types = StreamType::keyed(
            Shape::TEXT,
            Shape::pair(Shape::TEXT, Shape::maybe(Shape::TEXT)),
        );
        let record = Record {
            key: Some(b"k"),
            value: &pair,
            timestamp: None,
        };
        assert_eq!(render(&record, &types), "(k,(left,None))");
    }
}
