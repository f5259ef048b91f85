//! `subtract`: subtracts i64 values from the accumulator, the inverse of `sum`
//! (reduceByKeyAndWindow's `_ - _`). Overflow wraps, as `sum`'s does, so that subtracting what
//! was added always gives back the value before.

use spate_guest::{Combiner, Error, Info, Params, ValueType};

/// The inverse combiner.
pub struct Subtract;

impl Combiner for Subtract {
    type Value = i64;

    fn info() -> Info {
        Info {
            name: "subtract",
            description: "subtracts i64 values (the inverse of sum, for windows)",
            params: &[],
            key_type: None,
            value_type: Some(ValueType::I64),
            // Not a monoid: subtraction is not associative, and nothing pre-combines into it.
            monoid: None,
        }
    }

    fn configure(_params: &Params) -> Result<Self, Error> {
        Ok(Subtract)
    }

    #[inline]
    fn combine(&self, acc: &mut i64, value: i64) {
        *acc = acc.wrapping_sub(value);
    }
}

spate_guest::export_combiner!(Subtract);

#[cfg(test)]
mod tests {
    use super::*;
    use spate_guest::testing::reduce_by_key;

    #[test]
    fn subtracts_from_the_first_value() {
        let out = reduce_by_key::<Subtract>(&[], &[("a", 10), ("a", 3), ("a", 2)]).unwrap();
        assert_eq!(out, vec![("a".to_owned(), 5)]);
    }

    #[test]
    fn undoes_a_wrapped_sum() {
        let out = reduce_by_key::<Subtract>(&[], &[("a", i64::MIN), ("a", 1)]).unwrap();
        assert_eq!(out[0].1, i64::MAX);
    }
}
