//! `sum`: adds i64 values (reduceByKey's `_ + _`). Overflow wraps, as Spark's Long sum does.

use spate_guest::{Combiner, Error, Info, Monoid, Params, ValueType};

/// The combiner.
pub struct Sum;

impl Combiner for Sum {
    type Value = i64;

    fn info() -> Info {
        Info {
            name: "sum",
            description: "adds i64 values",
            params: &[],
            key_type: None,
            value_type: Some(ValueType::I64),
            // A promise that `combine` is exactly this, so upstream operators may pre-combine.
            monoid: Some(Monoid::SumI64),
        }
    }

    fn configure(_params: &Params) -> Result<Self, Error> {
        Ok(Sum)
    }

    #[inline]
    fn combine(&self, acc: &mut i64, value: i64) {
        *acc = acc.wrapping_add(value);
    }
}

spate_guest::export_combiner!(Sum);

#[cfg(test)]
mod tests {
    use super::*;
    use spate_guest::testing::reduce_by_key;

    #[test]
    fn sums_per_key_in_first_seen_order() {
        let out = reduce_by_key::<Sum>(&[], &[("a", 1), ("b", 5), ("a", 2), ("a", -1)]).unwrap();
        assert_eq!(out, vec![("a".to_owned(), 2), ("b".to_owned(), 5)]);
    }

    #[test]
    fn wraps_on_overflow_like_a_jvm_long() {
        let out = reduce_by_key::<Sum>(&[], &[("a", i64::MAX), ("a", 1)]).unwrap();
        assert_eq!(out[0].1, i64::MIN);
    }

    #[test]
    fn refuses_parameters() {
        let err = reduce_by_key::<Sum>(&[("x", "1")], &[]).unwrap_err();
        assert!(err.message.contains("takes no parameters"));
    }
}
