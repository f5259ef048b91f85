//! `{{name}}`: a flatMap operator emitting (word, 1) for each word of a line, lowercased.
//! Change `record` to make it yours; `cargo test` runs the test below natively.

use spate_guest::{Error, Info, Params, PartitionBuilder, Record, Transform, ValueType};

/// The operator.
pub struct Operator {
    lowercase: bool,
}

impl Transform for Operator {
    fn info() -> Info {
        Info {
            name: "{{name}}",
            description: "(word, 1) for each word of a line",
            params: &[("lowercase", "lowercase words first (default true)")],
            key_type: Some(ValueType::Text),
            value_type: Some(ValueType::I64),
            monoid: None,
        }
    }

    fn configure(params: &Params) -> Result<Self, Error> {
        Ok(Operator {
            lowercase: params.bool("lowercase", true)?,
        })
    }

    fn record(&mut self, record: Record<'_>, out: &mut PartitionBuilder) -> Result<(), Error> {
        for word in record.value_str()?.split_whitespace() {
            if self.lowercase {
                out.emit(word.to_lowercase().as_bytes(), &1i64);
            } else {
                out.emit(word.as_bytes(), &1i64);
            }
        }
        Ok(())
    }
}

spate_guest::export_transform!(Operator);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emits_one_per_word() {
        let out = spate_guest::testing::transform::<Operator>(&[], &["To be or", "NOT"]).unwrap();
        let words: Vec<&str> = out.iter().map(|(w, _)| w.as_str()).collect();
        assert_eq!(words, ["to", "be", "or", "not"]);
    }
}
