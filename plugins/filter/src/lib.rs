//! `filter`: keeps the records that match every condition given as a parameter.
//!
//! Text conditions (`equals`, `prefix`, `suffix`, `contains`) and number conditions (`min`,
//! `max`, on i64) test the `field` (`key` or `value`; default: the key when the record has one,
//! else the value). `invert = true` keeps the records that do not match.

use spate_guest::{Error, Info, Params, PartitionBuilder, Record, Transform};

/// Which part of a record the conditions test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    Key,
    Value,
    KeyIfPresent,
}

/// The operator.
pub struct Filter {
    field: Field,
    equals: Option<String>,
    prefix: Option<String>,
    suffix: Option<String>,
    contains: Option<String>,
    min: Option<i64>,
    max: Option<i64>,
    invert: bool,
}

fn optional_i64(params: &Params, name: &str) -> Result<Option<i64>, Error> {
    params.get(name).map(|_| params.i64(name, 0)).transpose()
}

impl Filter {
    fn matches(&self, record: &Record<'_>) -> Result<bool, Error> {
        let bytes = match (self.field, record.key) {
            (Field::Key | Field::KeyIfPresent, Some(key)) => key,
            (Field::Key, None) => {
                return Err(Error::new("field = \"key\" but the record has no key"));
            }
            (Field::Value | Field::KeyIfPresent, _) => record.value,
        };
        let text = String::from_utf8_lossy(bytes);
        let text_ok = self.equals.as_ref().is_none_or(|s| text == s.as_str())
            && self
                .prefix
                .as_ref()
                .is_none_or(|s| text.starts_with(s.as_str()))
            && self
                .suffix
                .as_ref()
                .is_none_or(|s| text.ends_with(s.as_str()))
            && self
                .contains
                .as_ref()
                .is_none_or(|s| text.contains(s.as_str()));
        if !text_ok {
            return Ok(false);
        }
        if self.min.is_none() && self.max.is_none() {
            return Ok(true);
        }
        let number = <i64 as spate_guest::Value>::decode(bytes)?;
        Ok(self.min.is_none_or(|m| number >= m) && self.max.is_none_or(|m| number <= m))
    }
}

impl Transform for Filter {
    fn info() -> Info {
        Info {
            name: "filter",
            description: "keeps records matching every given condition",
            params: &[
                (
                    "field",
                    "\"key\" or \"value\" (default: key if the record has one)",
                ),
                ("equals", "text equal to this"),
                ("prefix", "text starting with this"),
                ("suffix", "text ending with this"),
                ("contains", "text containing this"),
                ("min", "i64 at least this"),
                ("max", "i64 at most this"),
                (
                    "invert",
                    "keep the records that do not match (default false)",
                ),
            ],
            key_type: None,
            value_type: None,
            monoid: None,
        }
    }

    fn configure(params: &Params) -> Result<Self, Error> {
        let field = match params.get("field") {
            None => Field::KeyIfPresent,
            Some("key") => Field::Key,
            Some("value") => Field::Value,
            Some(other) => {
                return Err(Error::new(format!(
                    "parameter 'field' must be \"key\" or \"value\", got '{other}'"
                )));
            }
        };
        let filter = Filter {
            field,
            equals: params.string("equals"),
            prefix: params.string("prefix"),
            suffix: params.string("suffix"),
            contains: params.string("contains"),
            min: optional_i64(params, "min")?,
            max: optional_i64(params, "max")?,
            invert: params.bool("invert", false)?,
        };
        let conditions = ["equals", "prefix", "suffix", "contains", "min", "max"];
        if !conditions.iter().any(|c| params.get(c).is_some()) {
            return Err(Error::new(format!(
                "filter needs at least one condition: {}",
                conditions.join(", ")
            )));
        }
        Ok(filter)
    }

    fn record(&mut self, record: Record<'_>, out: &mut PartitionBuilder) -> Result<(), Error> {
        if self.matches(&record)? != self.invert {
            out.push_record(&record);
        }
        Ok(())
    }
}

spate_guest::export_transform!(Filter);

#[cfg(test)]
mod tests {
    use super::*;
    use spate_guest::testing::{run_lines, transform_values};

    #[test]
    fn text_conditions_combine() {
        let lines = ["apple pie", "apple", "banana", "pineapple"];
        let out = transform_values::<Filter>(&[("contains", "apple")], &lines).unwrap();
        assert_eq!(out, ["apple pie", "apple", "pineapple"]);
        let out =
            transform_values::<Filter>(&[("prefix", "apple"), ("suffix", "pie")], &lines).unwrap();
        assert_eq!(out, ["apple pie"]);
        let out =
            transform_values::<Filter>(&[("equals", "apple"), ("invert", "true")], &lines).unwrap();
        assert_eq!(out, ["apple pie", "banana", "pineapple"]);
    }

    #[test]
    fn number_conditions_read_i64_values() {
        let mut op = spate_guest::configure_transform::<Filter>(Params::from_pairs([
            ("field", "value"),
            ("min", "2"),
        ]))
        .unwrap();
        let mut input = PartitionBuilder::new();
        input.emit(b"a", &1i64);
        input.emit(b"b", &2i64);
        input.emit(b"c", &7i64);
        let out = spate_guest::run_transform(&mut op, &input.finish(), None).unwrap();
        let keys: Vec<_> = out.records().map(|r| r.key_str().unwrap()).collect();
        assert_eq!(keys, ["b", "c"]);
    }

    #[test]
    fn needs_a_condition_and_a_valid_field() {
        let err = run_lines::<Filter>(&[], &[]).unwrap_err();
        assert!(err.message.contains("at least one condition"));
        let err = run_lines::<Filter>(&[("field", "both"), ("equals", "x")], &[]).unwrap_err();
        assert!(err.message.contains("'field'"));
        let err = run_lines::<Filter>(&[("field", "key"), ("equals", "x")], &["line"]).unwrap_err();
        assert_eq!(err.record_index, Some(0));
    }
}
