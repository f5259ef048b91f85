//! `tokenize`: splits text lines on whitespace and emits `(word, 1)` for each word.
//!
//! Parameters: `lowercase` (default false) lowercases words; `strip-punctuation` (default false)
//! trims punctuation from both ends of each word and drops words left empty.

use spate_guest::{BatchBuilder, Error, Info, Params, Record, Transform, ValueType};

/// The word splitting rules, shared with the native baseline of the benchmarks.
#[derive(Clone, Debug, Default)]
pub struct Tokenizer {
    /// Lowercase every word.
    pub lowercase: bool,
    /// Trim punctuation from both ends of every word.
    pub strip_punctuation: bool,
}

/// The bytes `char::is_whitespace` accepts among ASCII.
#[inline]
fn is_ascii_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r')
}

impl Tokenizer {
    /// Calls `emit` with each word of `line`. `scratch` is reused for lowercasing.
    #[inline]
    pub fn for_each_word(&self, line: &str, scratch: &mut String, mut emit: impl FnMut(&[u8])) {
        if line.is_ascii() {
            // The common case: byte scanning, no char decoding.
            for word in line.as_bytes().split(|&b| is_ascii_space(b)) {
                if !word.is_empty() {
                    // SAFETY-free: ASCII slices of a str are valid str.
                    let word = std::str::from_utf8(word).unwrap_or_default();
                    self.emit_word(word, scratch, &mut emit);
                }
            }
        } else {
            for word in line.split_whitespace() {
                self.emit_word(word, scratch, &mut emit);
            }
        }
    }

    #[inline]
    fn emit_word(&self, word: &str, scratch: &mut String, emit: &mut impl FnMut(&[u8])) {
        let word = if self.strip_punctuation {
            word.trim_matches(|c: char| c.is_ascii_punctuation() || is_unicode_punctuation(c))
        } else {
            word
        };
        if word.is_empty() {
            return;
        }
        if !self.lowercase || !word.bytes().any(|b| b.is_ascii_uppercase() || b >= 0x80) {
            emit(word.as_bytes());
        } else if word.is_ascii() {
            scratch.clear();
            scratch.push_str(word);
            scratch.make_ascii_lowercase();
            emit(scratch.as_bytes());
        } else {
            *scratch = word.to_lowercase();
            emit(scratch.as_bytes());
        }
    }
}

/// Common non-ASCII punctuation: quotes, dashes, ellipsis, inverted marks, guillemets.
fn is_unicode_punctuation(c: char) -> bool {
    matches!(
        c,
        '\u{2010}'..='\u{2027}' | '\u{2030}'..='\u{205E}' | '\u{00A1}' | '\u{00AB}' | '\u{00BB}'
            | '\u{00BF}' | '\u{3000}'..='\u{303F}'
    )
}

/// The operator: a [`Tokenizer`] emitting `(word, 1i64)`.
pub struct Tokenize {
    tokenizer: Tokenizer,
    scratch: String,
}

impl Transform for Tokenize {
    fn info() -> Info {
        Info {
            name: "tokenize",
            description: "splits lines on whitespace and emits (word, 1) per word",
            params: &[
                ("lowercase", "lowercase every word (default false)"),
                (
                    "strip-punctuation",
                    "trim punctuation from both ends of words, dropping empty ones (default false)",
                ),
            ],
            key_type: Some(ValueType::Text),
            value_type: Some(ValueType::I64),
        }
    }

    fn configure(params: &Params) -> Result<Self, Error> {
        Ok(Tokenize {
            tokenizer: Tokenizer {
                lowercase: params.bool("lowercase", false)?,
                strip_punctuation: params.bool("strip-punctuation", false)?,
            },
            scratch: String::new(),
        })
    }

    #[inline]
    fn record(&mut self, record: Record<'_>, out: &mut BatchBuilder) -> Result<(), Error> {
        let line = record.value_str()?;
        self.tokenizer
            .for_each_word(line, &mut self.scratch, |word| out.emit(word, &1i64));
        Ok(())
    }
}

spate_guest::export_transform!(Tokenize);

#[cfg(test)]
mod tests {
    use super::*;
    use spate_guest::testing::transform;

    fn words(params: &[(&str, &str)], lines: &[&str]) -> Vec<String> {
        let pairs = transform::<Tokenize>(params, lines).unwrap();
        assert!(pairs.iter().all(|(_, n)| *n == 1));
        pairs.into_iter().map(|(w, _)| w).collect()
    }

    #[test]
    fn splits_on_any_whitespace() {
        assert_eq!(
            words(&[], &["a  b\tc", "", "  d\u{00A0}e\r"]),
            ["a", "b", "c", "d", "e"]
        );
    }

    #[test]
    fn keeps_case_and_punctuation_by_default() {
        assert_eq!(words(&[], &["Hello, World!"]), ["Hello,", "World!"]);
    }

    #[test]
    fn lowercases_and_strips_when_asked() {
        let params = [("lowercase", "true"), ("strip-punctuation", "true")];
        assert_eq!(
            words(&params, &["Hello, World! -- «Ça» va?", "don't"]),
            ["hello", "world", "ça", "va", "don't"]
        );
    }

    #[test]
    fn rejects_unknown_and_malformed_parameters() {
        let err = transform::<Tokenize>(&[("lowercse", "true")], &[]).unwrap_err();
        assert!(err.message.contains("unknown parameter 'lowercse'"));
        let err = transform::<Tokenize>(&[("lowercase", "yes")], &[]).unwrap_err();
        assert!(err.message.contains("must be true or false"));
    }

    #[test]
    fn invalid_utf8_input_names_the_record() {
        let mut op = spate_guest::configure_transform::<Tokenize>(Default::default()).unwrap();
        let mut input = spate_guest::Batch::from_lines(["ok"]);
        input.values.push(&[0xff, 0xfe]);
        let err = spate_guest::run_transform(&mut op, &input).unwrap_err();
        assert_eq!(err.record_index, Some(1));
    }
}
