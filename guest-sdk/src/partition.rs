//! A batch partition as records: reading the columns record by record, and building output.

use crate::Column;
use crate::key_index::{HashedKey, KeyIndex};
use crate::value::{Monoid, Value};

/// One partition of a micro-batch, in columnar form (the WIT `batch` record).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Partition {
    /// Keys, when the records are key/value pairs.
    pub keys: Option<Column>,
    /// Values; their count is the record count.
    pub values: Column,
    /// Event times in ms since the Unix epoch: empty, or one per record.
    pub timestamps: Vec<i64>,
}

/// One record of a [`Partition`], borrowed from its columns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// The key, for key/value records.
    pub key: Option<&'a [u8]>,
    /// The value.
    pub value: &'a [u8],
    /// The event time in ms, when the batch carries event times.
    pub timestamp: Option<i64>,
}

impl<'a> Record<'a> {
    /// The value as UTF-8 text.
    pub fn value_str(&self) -> Result<&'a str, crate::Error> {
        std::str::from_utf8(self.value)
            .map_err(|e| crate::Error::new(format!("value is not UTF-8: {e}")))
    }

    /// The key as UTF-8 text (an empty string for a record without key).
    pub fn key_str(&self) -> Result<&'a str, crate::Error> {
        std::str::from_utf8(self.key.unwrap_or_default())
            .map_err(|e| crate::Error::new(format!("key is not UTF-8: {e}")))
    }

    /// The value decoded as `V` (for example `i64`).
    pub fn value_as<V: Value>(&self) -> Result<V, crate::Error> {
        V::decode(self.value)
    }
}

impl Partition {
    /// A batch of unkeyed text records (lines), as sources produce them.
    pub fn from_lines<'a>(lines: impl IntoIterator<Item = &'a str>) -> Self {
        Partition {
            keys: None,
            values: Column::from_values(lines.into_iter().map(str::as_bytes)),
            timestamps: Vec::new(),
        }
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// True when the batch holds no records.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Record `i`.
    #[inline]
    pub fn record(&self, i: usize) -> Record<'_> {
        Record {
            key: self.keys.as_ref().map(|k| k.get(i)),
            value: self.values.get(i),
            timestamp: self.timestamps.get(i).copied(),
        }
    }

    /// The records in order.
    pub fn records(&self) -> impl ExactSizeIterator<Item = Record<'_>> + '_ {
        (0..self.len()).map(move |i| self.record(i))
    }

    /// Checks the layout of every column and that all columns have the same length.
    pub fn validate(&self) -> Result<(), String> {
        self.values
            .validate()
            .map_err(|e| format!("values column: {e}"))?;
        if let Some(keys) = &self.keys {
            keys.validate().map_err(|e| format!("keys column: {e}"))?;
            if keys.len() != self.len() {
                return Err(format!(
                    "{} keys for {} values",
                    keys.len(),
                    self.values.len()
                ));
            }
        }
        if !self.timestamps.is_empty() && self.timestamps.len() != self.len() {
            return Err(format!(
                "{} timestamps for {} records",
                self.timestamps.len(),
                self.len()
            ));
        }
        Ok(())
    }

    /// Appends every record of `other` (both must agree on keys and timestamps).
    pub fn extend_from(&mut self, other: &Partition) {
        if other.is_empty() {
            return;
        }
        if self.is_empty() {
            self.keys = other.keys.as_ref().map(|_| Column::default());
        }
        if let (Some(mine), Some(theirs)) = (&mut self.keys, &other.keys) {
            mine.extend_from(theirs);
        }
        self.values.extend_from(&other.values);
        self.timestamps.extend_from_slice(&other.timestamps);
    }
}

/// Builds an operator's output batch, appending to flat buffers (no allocation per record).
///
/// A batch is keyed as soon as one record with a key is pushed; records pushed without a key
/// into a keyed batch get an empty key.
///
/// When the host announced that the output is combined by key with a [`Monoid`] (see
/// [`PartitionBuilder::combining`]), values passed to [`PartitionBuilder::emit`] with the monoid's type
/// are combined per key as they are emitted: the batch holds one record per distinct key.
#[derive(Debug, Default)]
pub struct PartitionBuilder {
    keys: Option<Column>,
    values: Column,
    timestamps: Vec<i64>,
    combine: Option<Combining>,
}

thread_local! {
    /// The index of the last finished combining builder, kept for the next one: an operator
    /// instance combines one partition per call, and reusing the index's buckets saves growing
    /// them from nothing every call.
    static SPARE_INDEX: std::cell::Cell<Option<KeyIndex<[u8; 8]>>> = const { std::cell::Cell::new(None) };
}

/// The per-key index of a combining builder: its slots are record indices, and its buckets hold
/// the combined values (written to the value column when the batch is finished), so that a
/// repeated key costs one cache line, not three (bucket, value offset, value).
#[derive(Debug)]
struct Combining {
    monoid: Monoid,
    index: KeyIndex<[u8; 8]>,
}

impl PartitionBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty builder with room for `records` records of `bytes` value bytes (and as much for
    /// keys, once a key is pushed), so that building the output reallocates less.
    pub fn with_capacity(records: usize, bytes: usize) -> Self {
        PartitionBuilder {
            keys: None,
            values: Column::with_capacity(records, bytes),
            timestamps: Vec::new(),
            combine: None,
        }
    }

    /// A builder that combines values emitted with `monoid`'s type per key.
    pub fn combining(monoid: Monoid) -> Self {
        PartitionBuilder {
            combine: Some(Combining {
                monoid,
                index: SPARE_INDEX.take().unwrap_or_default(),
            }),
            ..Self::default()
        }
    }

    /// Number of records pushed so far.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// True when nothing was pushed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True when every record so far was combined per key (none pushed otherwise) and there
    /// are at most `max_keys` of them: output that can wait for more of the same keys.
    pub fn holds_only_combined(&self, max_keys: usize) -> bool {
        self.combine
            .as_ref()
            .is_some_and(|c| c.index.len() == self.values.len() && c.index.len() <= max_keys)
    }

    /// Pushes an unkeyed record.
    #[inline]
    pub fn push_value(&mut self, value: &[u8]) {
        self.keep_slots_aligned();
        if let Some(keys) = &mut self.keys {
            keys.push(b"");
        }
        self.values.push(value);
    }

    /// Pushes a key/value record with raw bytes (never combined: their type is not known).
    #[inline]
    pub fn push_pair(&mut self, key: &[u8], value: &[u8]) {
        self.keep_slots_aligned();
        self.keys_column().push(key);
        self.values.push(value);
    }

    /// Records pushed without combining are never matched by the index, which stays aligned
    /// with record indices.
    #[inline]
    fn keep_slots_aligned(&mut self) {
        if let Some(combine) = &mut self.combine {
            combine.index.push_unindexed();
        }
    }

    /// Pushes a key/value record, encoding the value (`1i64`, `2.5f64`, a `String`, ...).
    #[inline]
    pub fn emit<V: Value>(&mut self, key: &[u8], value: &V) {
        if let Some(combine) = &self.combine
            && V::TYPE == combine.monoid.value_type()
            && let Some(fixed) = value.as_fixed8()
        {
            self.emit_combined(key, fixed);
            return;
        }
        self.keep_slots_aligned();
        self.keys_column().push(key);
        value.encode(self.values.begin_value());
        self.values.end_value();
    }

    /// Combines `value` into the record of `key`, or adds that record.
    #[inline]
    fn emit_combined(&mut self, key: &[u8], value: [u8; 8]) {
        self.keys_column();
        let keys = self.keys.as_mut().expect("created above");
        let combine = self.combine.as_mut().expect("checked by the caller");
        let monoid = combine.monoid;
        let added =
            combine
                .index
                .combine_hashed(keys, key, HashedKey::of(key), value, |acc, value| {
                    monoid.combine(acc, value)
                });
        if added.is_some() {
            // The record's place; its value is the bucket's until the batch is finished.
            self.values.push(&value);
        }
    }

    /// Pushes a copy of an input record, key and event time included (never combined).
    pub fn push_record(&mut self, record: &Record<'_>) {
        match record.key {
            Some(key) => self.push_pair(key, record.value),
            None => self.push_value(record.value),
        }
        if let Some(ts) = record.timestamp {
            self.timestamps.push(ts);
        }
    }

    /// Gives event time `ts` to every record pushed since the last one that has an event time
    /// (so a flatMap's outputs carry the time of the record they came from).
    #[inline]
    pub fn stamp(&mut self, ts: i64) {
        let records = self.len();
        if self.timestamps.len() < records {
            self.timestamps.resize(records, ts);
        }
    }

    #[inline(always)]
    fn keys_column(&mut self) -> &mut Column {
        if self.keys.is_none() {
            self.start_keys();
        }
        self.keys.as_mut().expect("set above")
    }

    /// The first keyed record: earlier unkeyed records get empty keys.
    #[cold]
    fn start_keys(&mut self) {
        let mut keys =
            Column::with_capacity(self.values.offsets.capacity(), self.values.data.capacity());
        for _ in 0..self.values.len() {
            keys.push(b"");
        }
        self.keys = Some(keys);
    }

    /// The finished batch.
    pub fn finish(self) -> Partition {
        let mut values = self.values;
        if let Some(mut combine) = self.combine {
            for (slot, acc) in combine.index.accumulators() {
                let start = values.offsets[slot as usize] as usize;
                values.data[start..start + 8].copy_from_slice(&acc);
            }
            combine.index.clear();
            SPARE_INDEX.set(Some(combine.index));
        }
        Partition {
            keys: self.keys,
            values,
            timestamps: self.timestamps,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamped_records_carry_the_event_time_of_their_input() {
        let mut out = PartitionBuilder::new();
        out.emit(b"a", &1i64);
        out.emit(b"b", &1i64);
        out.stamp(5);
        out.stamp(6);
        out.emit(b"c", &1i64);
        out.stamp(7);
        assert_eq!(out.finish().timestamps, vec![5, 5, 7]);
    }

    #[test]
    fn records_round_trip_through_the_builder() {
        let mut out = PartitionBuilder::new();
        out.push_value(b"plain");
        out.emit(b"word", &3i64);
        out.push_pair(b"k", b"v");
        let batch = out.finish();
        batch.validate().unwrap();
        assert_eq!(batch.len(), 3);
        assert_eq!(batch.record(0).key, Some(&b""[..]));
        assert_eq!(batch.record(1).key_str().unwrap(), "word");
        assert_eq!(batch.record(1).value_as::<i64>().unwrap(), 3);
        assert_eq!(batch.record(2).value_str().unwrap(), "v");
    }

    #[test]
    fn a_combining_builder_folds_emitted_values_per_key() {
        let mut out = PartitionBuilder::combining(Monoid::SumI64);
        for word in ["a", "b", "a", "a", "c", "b"] {
            out.emit(word.as_bytes(), &1i64);
        }
        out.emit(b"a", &"text is not combined".to_owned());
        out.push_pair(b"b", &9i64.to_le_bytes());
        out.emit(b"c", &10i64);
        let batch = out.finish();
        batch.validate().unwrap();
        let records: Vec<(String, Vec<u8>)> = batch
            .records()
            .map(|r| (r.key_str().unwrap().to_owned(), r.value.to_vec()))
            .collect();
        let n = |v: i64| v.to_le_bytes().to_vec();
        assert_eq!(
            records,
            vec![
                ("a".to_owned(), n(3)),
                ("b".to_owned(), n(2)),
                ("c".to_owned(), n(11)),
                ("a".to_owned(), b"text is not combined".to_vec()),
                ("b".to_owned(), n(9)),
            ]
        );
    }

    #[test]
    fn validate_catches_length_mismatches() {
        let mut batch = Partition::from_lines(["a", "b"]);
        batch.validate().unwrap();
        batch.timestamps = vec![1];
        assert!(batch.validate().unwrap_err().contains("timestamps"));
        batch.timestamps.clear();
        batch.keys = Some(Column::from_values([&b"k"[..]]));
        assert!(batch.validate().unwrap_err().contains("keys"));
    }

    #[test]
    fn extend_concatenates_batches() {
        let mut a = Partition::default();
        a.extend_from(&Partition::from_lines(["x"]));
        a.extend_from(&Partition::from_lines(["y", "z"]));
        let lines: Vec<_> = a.records().map(|r| r.value_str().unwrap()).collect();
        assert_eq!(lines, ["x", "y", "z"]);
    }
}
