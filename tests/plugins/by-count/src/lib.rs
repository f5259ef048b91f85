//! Test operator: `(word, count)` -> `(count, word)`, re-keying a word count by its counts, so
//! that a keyed step after it groups by a key changed again (scale-out's second repartition
//! topic).

use spate_guest::{Error, Info, Params, PartitionBuilder, Record, Transform, ValueType};

/// The operator.
pub struct ByCount;

impl Transform for ByCount {
    fn info() -> Info {
        Info {
            name: "by-count",
            description: "(word, count) -> (count, word)",
            params: &[],
            key_type: Some(ValueType::I64),
            value_type: Some(ValueType::Text),
            monoid: None,
        }
    }

    fn configure(_params: &Params) -> Result<Self, Error> {
        Ok(ByCount)
    }

    fn record(&mut self, record: Record<'_>, out: &mut PartitionBuilder) -> Result<(), Error> {
        let count: i64 = record.value_as()?;
        out.emit(&count.to_le_bytes(), &record.key_str()?.to_owned());
        Ok(())
    }
}

spate_guest::export_transform!(ByCount);
