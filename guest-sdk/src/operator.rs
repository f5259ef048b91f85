//! The traits an operator author implements, and the calls the exported component makes on them.

use crate::value::{Monoid, Value, ValueType};
use crate::{Column, Params, Partition, PartitionBuilder, Record};

/// An operator's failure: the host fails the partition task with this message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    /// What went wrong.
    pub message: String,
    /// The input record that caused it, when known.
    pub record_index: Option<u32>,
}

impl Error {
    /// An error with a message.
    pub fn new(message: impl Into<String>) -> Self {
        Error {
            message: message.into(),
            record_index: None,
        }
    }

    /// The same error, pointing at input record `index` (unless it already points somewhere).
    pub fn at_record(mut self, index: usize) -> Self {
        self.record_index.get_or_insert(index as u32);
        self
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.record_index {
            Some(i) => write!(f, "{} (input record {i})", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for Error {}

impl From<String> for Error {
    fn from(message: String) -> Self {
        Error::new(message)
    }
}

impl From<&str> for Error {
    fn from(message: &str) -> Self {
        Error::new(message)
    }
}

/// What an operator says about itself (`spate check` prints it).
#[derive(Clone, Debug)]
pub struct Info {
    /// Short name.
    pub name: &'static str,
    /// One-line description.
    pub description: &'static str,
    /// Accepted parameters as (name, help); any other parameter is refused.
    pub params: &'static [(&'static str, &'static str)],
    /// Type of emitted keys (none: unkeyed output, or the input's keys kept).
    pub key_type: Option<ValueType>,
    /// Type of emitted values (none: the input's kept).
    pub value_type: Option<ValueType>,
    /// For combiners: the well-known function `combine` computes, if it is one (a promise the
    /// host relies on to pre-combine upstream). Always none for transforms.
    pub monoid: Option<Monoid>,
}

/// A partition transform: map, flatMap, filter (implement [`Transform::record`]) or
/// mapPartitions (override [`Transform::process`]).
pub trait Transform: Sized {
    /// Describes the operator.
    fn info() -> Info;

    /// Builds the operator from its parameters; called once per instance.
    fn configure(params: &Params) -> Result<Self, Error>;

    /// Handles one record, pushing any number of output records.
    fn record(&mut self, record: Record<'_>, out: &mut PartitionBuilder) -> Result<(), Error> {
        let _ = (record, out);
        Err(Error::new(
            "operator implements neither Transform::record nor Transform::process",
        ))
    }

    /// Handles a whole partition; by default calls [`Transform::record`] for each record. The
    /// records a record emits get its event time, if it has one.
    fn process(&mut self, input: &Partition, out: &mut PartitionBuilder) -> Result<(), Error> {
        for (i, record) in input.records().enumerate() {
            let timestamp = record.timestamp;
            self.record(record, out).map_err(|e| e.at_record(i))?;
            if let Some(ts) = timestamp {
                out.stamp(ts);
            }
        }
        Ok(())
    }
}

/// A key combiner: the associative function of reduceByKey.
pub trait Combiner: Sized {
    /// The type of the values combined.
    type Value: Value;

    /// Describes the operator.
    fn info() -> Info;

    /// Builds the combiner from its parameters; called once per instance.
    fn configure(params: &Params) -> Result<Self, Error>;

    /// Folds `value` into `acc`. Must be associative (Spark's reduceByKey contract): the host
    /// combines map-side and again after the shuffle, in no fixed order.
    fn combine(&self, acc: &mut Self::Value, value: Self::Value);
}

/// Checks parameter names against the operator's declared ones, then configures it.
pub fn configure_transform<T: Transform>(params: Params) -> Result<T, Error> {
    params.check_known(T::info().params)?;
    T::configure(&params)
}

/// Checks parameter names against the combiner's declared ones, then configures it.
pub fn configure_combiner<C: Combiner>(params: Params) -> Result<C, Error> {
    params.check_known(C::info().params)?;
    C::configure(&params)
}

/// Runs a transform over one partition: exactly what the exported `process` does. With
/// `output_combine`, values emitted with the monoid's type are combined per key.
pub fn run_transform<T: Transform>(
    op: &mut T,
    input: &Partition,
    output_combine: Option<Monoid>,
) -> Result<Partition, Error> {
    let mut out = match output_combine {
        Some(monoid) => PartitionBuilder::combining(monoid),
        // Output is usually of the input's order of size: start there rather than from nothing.
        None => PartitionBuilder::with_capacity(input.len(), input.values.data.len()),
    };
    op.process(input, &mut out)?;
    finished(out)
}

/// The batch `out` built, checked.
fn finished(out: PartitionBuilder) -> Result<Partition, Error> {
    let batch = out.finish();
    batch
        .validate()
        .map_err(|e| Error::new(format!("operator built a malformed batch: {e}")))?;
    Ok(batch)
}

/// Output a transform holds back between calls: what the exported `deferred-combine`
/// interface's `absorb` and `flush` do.
///
/// Only output combined per key is held, and only up to [`HeldOutput::MAX_KEYS`] distinct keys:
/// past that, or when the output holds records that are not combined, everything goes back at
/// once, so holding never takes more guest memory than one large partition's output would.
#[derive(Debug, Default)]
pub struct HeldOutput {
    builder: Option<PartitionBuilder>,
}

impl HeldOutput {
    /// The most distinct keys held before `absorb` returns them.
    pub const MAX_KEYS: usize = 256 * 1024;

    /// Runs `op` over `input` like [`run_transform`], but keeps the combined output for a
    /// later call when it can (returning an empty batch). On an error, whatever was held is
    /// dropped with the partial output: the host then discards the instance and retries
    /// every partition held.
    pub fn absorb<T: Transform>(
        &mut self,
        op: &mut T,
        input: &Partition,
        output_combine: Option<Monoid>,
    ) -> Result<Partition, Error> {
        let Some(monoid) = output_combine else {
            return run_transform(op, input, None);
        };
        let mut out = self
            .builder
            .take()
            .unwrap_or_else(|| PartitionBuilder::combining(monoid));
        op.process(input, &mut out)?;
        if out.holds_only_combined(Self::MAX_KEYS) {
            self.builder = Some(out);
            return Ok(Partition::default());
        }
        finished(out)
    }

    /// Everything held, leaving nothing held.
    pub fn flush(&mut self) -> Result<Partition, Error> {
        self.builder
            .take()
            .map_or(Ok(Partition::default()), finished)
    }
}

/// The combiner's bulk fold: exactly what the exported `fold` does.
pub fn run_fold<C: Combiner>(
    op: &C,
    accumulators: &Column,
    targets: &[u32],
    values: &Column,
) -> Result<Column, Error> {
    if targets.len() != values.len() {
        return Err(Error::new(format!(
            "fold got {} targets for {} values",
            targets.len(),
            values.len()
        )));
    }
    let mut accs = accumulators
        .iter()
        .enumerate()
        .map(|(i, bytes)| {
            C::Value::decode(bytes)
                .map_err(|e| Error::new(format!("accumulator {i}: {}", e.message)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    for (i, (&target, bytes)) in targets.iter().zip(values.iter()).enumerate() {
        let value = C::Value::decode(bytes).map_err(|e| e.at_record(i))?;
        let count = accs.len();
        let acc = accs.get_mut(target as usize).ok_or_else(|| {
            Error::new(format!(
                "target {target} is out of range ({count} accumulators)"
            ))
            .at_record(i)
        })?;
        op.combine(acc, value);
    }
    let mut out = Column::with_capacity(accs.len(), accumulators.data.len());
    for acc in &accs {
        acc.encode(out.begin_value());
        out.end_value();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Emits `(value, 1)` per record, and a raw pair that cannot be combined for `raw`.
    struct Count;

    impl Transform for Count {
        fn info() -> Info {
            Info {
                name: "count",
                description: "",
                params: &[],
                key_type: Some(ValueType::Text),
                value_type: Some(ValueType::I64),
                monoid: None,
            }
        }
        fn configure(_: &Params) -> Result<Self, Error> {
            Ok(Count)
        }
        fn record(&mut self, r: Record<'_>, out: &mut PartitionBuilder) -> Result<(), Error> {
            match r.value {
                b"raw" => out.push_pair(b"raw", b"not an i64"),
                word => out.emit(word, &1i64),
            }
            Ok(())
        }
    }

    fn counts(batch: &Partition) -> Vec<(String, i64)> {
        let mut pairs: Vec<(String, i64)> = batch
            .records()
            .map(|r| (r.key_str().unwrap().to_owned(), r.value_as().unwrap()))
            .collect();
        pairs.sort();
        pairs
    }

    #[test]
    fn held_output_combines_across_partitions_until_flushed() {
        let (mut op, mut held) = (Count, HeldOutput::default());
        let sum = Some(Monoid::SumI64);
        for part in [["a", "b"], ["b", "c"]] {
            let now = held
                .absorb(&mut op, &Partition::from_lines(part), sum)
                .unwrap();
            assert!(now.is_empty(), "combined output waits");
        }
        let all = held.flush().unwrap();
        assert_eq!(
            counts(&all),
            [("a".into(), 1), ("b".into(), 2), ("c".into(), 1)]
        );
        assert!(held.flush().unwrap().is_empty(), "nothing is held twice");
    }

    #[test]
    fn output_that_cannot_wait_comes_back_at_once() {
        let (mut op, mut held) = (Count, HeldOutput::default());
        let sum = Some(Monoid::SumI64);
        held.absorb(&mut op, &Partition::from_lines(["a"]), sum)
            .unwrap();
        // A record that is not combined: everything held so far comes back with it.
        let now = held
            .absorb(&mut op, &Partition::from_lines(["a", "raw"]), sum)
            .unwrap();
        assert_eq!(now.len(), 2);
        assert_eq!(now.record(0).value_as::<i64>().unwrap(), 2);
        assert!(held.flush().unwrap().is_empty());
        // Without a monoid to combine with, nothing is held either.
        let now = held
            .absorb(&mut op, &Partition::from_lines(["a"]), None)
            .unwrap();
        assert_eq!(now.len(), 1);
    }

    #[test]
    fn held_output_is_bounded_by_its_key_count() {
        let (mut op, mut held) = (Count, HeldOutput::default());
        let words: Vec<String> = (0..=HeldOutput::MAX_KEYS).map(|i| i.to_string()).collect();
        let input = Partition::from_lines(words.iter().map(String::as_str));
        let now = held.absorb(&mut op, &input, Some(Monoid::SumI64)).unwrap();
        assert_eq!(now.len(), HeldOutput::MAX_KEYS + 1, "too many keys to hold");
    }
}
