//! `tokenize`: splits text lines on whitespace and emits `(word, 1)` for each word.
//!
//! Parameters: `lowercase` (default false) lowercases words; `strip-punctuation` (default false)
//! trims punctuation from both ends of each word and drops words left empty.

use spate_guest::{Error, Info, Params, PartitionBuilder, Record, Transform, ValueType};
use std::ops::ControlFlow;

/// The word splitting rules, shared with the native baseline of the benchmarks.
#[derive(Clone, Debug, Default)]
pub struct Tokenizer {
    /// Lowercase every word.
    pub lowercase: bool,
    /// Trim punctuation from both ends of every word.
    pub strip_punctuation: bool,
}

/// The bytes `char::is_whitespace` accepts among ASCII. Letters (above the space) fail the
/// first comparison, so the common case costs one branch.
#[inline(always)]
fn is_ascii_space(b: u8) -> bool {
    b <= b' ' && (b == b' ' || (b'\t'..=b'\r').contains(&b))
}

/// The index of the first ASCII whitespace byte of `bytes` at or after `from` (`bytes.len()` when
/// there is none). `bytes` must be ASCII.
///
/// Words are short, so this looks at eight bytes per step (SWAR): one step finds the end of
/// most words. That matters twice inside Wasm, where every loop iteration, and every entry into
/// a loop, also pays an epoch-interruption check: the first step is taken before the loop, and
/// the last word of a line, with fewer than eight bytes left, takes one step over the line's
/// last eight bytes instead of a loop per byte.
#[inline(always)]
fn find_ascii_space(bytes: &[u8], from: usize) -> usize {
    let n = bytes.len();
    let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("eight bytes"));
    // One step over the eight bytes `x` from bytes[i] on (zero past the end): the end of the
    // word, or where to look next.
    let step = |i: usize, x: u64| -> ControlFlow<usize, usize> {
        const ONES: u64 = u64::from_le_bytes([0x21; 8]);
        const HIGH: u64 = u64::from_le_bytes([0x80; 8]);
        // The high bit of each byte below 0x21 (space and the control characters). A borrow
        // can only mark bytes above the lowest true one, so the lowest mark is exact.
        let below = x.wrapping_sub(ONES) & !x & HIGH;
        if below == 0 {
            return ControlFlow::Continue(i + 8);
        }
        let j = i + (below.trailing_zeros() / 8) as usize;
        if j >= n {
            ControlFlow::Break(n)
        } else if is_ascii_space(bytes[j]) {
            ControlFlow::Break(j)
        } else {
            // A control character that is not whitespace belongs to the word.
            ControlFlow::Continue(j + 1)
        }
    };
    let mut i = from;
    if i + 8 <= n {
        match step(i, word(i)) {
            ControlFlow::Break(end) => return end,
            ControlFlow::Continue(next) => i = next,
        }
        while i + 8 <= n {
            match step(i, word(i)) {
                ControlFlow::Break(end) => return end,
                ControlFlow::Continue(next) => i = next,
            }
        }
    }
    // Fewer than eight bytes left: the line's last eight bytes, shifted so that bytes[i] comes
    // first, the vacated high bytes zero.
    if n >= 8 && i < n {
        match step(i, word(n - 8) >> (8 * (i + 8 - n))) {
            ControlFlow::Break(end) => return end,
            ControlFlow::Continue(next) => i = next,
        }
    }
    while i < n && !is_ascii_space(bytes[i]) {
        i += 1;
    }
    i
}

impl Tokenizer {
    /// Calls `emit` with each word of `line`. `scratch` is reused for lowercasing. Fails only on
    /// a line that is not UTF-8 (checked only when it is not plain ASCII).
    #[inline]
    pub fn for_each_word(
        &self,
        bytes: &[u8],
        scratch: &mut Vec<u8>,
        mut emit: impl FnMut(&[u8]),
    ) -> Result<(), std::str::Utf8Error> {
        if bytes.is_ascii() {
            // The common case: byte scanning, no char decoding.
            let (mut i, n) = (0, bytes.len());
            loop {
                while i < n && is_ascii_space(bytes[i]) {
                    i += 1;
                }
                if i == n {
                    break;
                }
                let end = find_ascii_space(bytes, i + 1);
                self.emit_ascii_word(&bytes[i..end], scratch, &mut emit);
                // bytes[end] is whitespace (or the end): step over it, so that the skipping
                // loop above runs only for a second space in a row.
                i = (end + 1).min(n);
            }
        } else {
            for word in std::str::from_utf8(bytes)?.split_whitespace() {
                self.emit_unicode_word(word, scratch, &mut emit);
            }
        }
        Ok(())
    }

    #[inline(always)]
    fn emit_ascii_word(&self, word: &[u8], scratch: &mut Vec<u8>, emit: &mut impl FnMut(&[u8])) {
        let word = if self.strip_punctuation {
            let start = word
                .iter()
                .position(|b| !b.is_ascii_punctuation())
                .unwrap_or(word.len());
            let end = word
                .iter()
                .rposition(|b| !b.is_ascii_punctuation())
                .map_or(start, |i| i + 1);
            &word[start..end]
        } else {
            word
        };
        if word.is_empty() {
            return;
        }
        if self.lowercase && word.iter().any(u8::is_ascii_uppercase) {
            scratch.clear();
            scratch.extend(word.iter().map(u8::to_ascii_lowercase));
            emit(scratch);
        } else {
            emit(word);
        }
    }

    fn emit_unicode_word(&self, word: &str, scratch: &mut Vec<u8>, emit: &mut impl FnMut(&[u8])) {
        let word = if self.strip_punctuation {
            word.trim_matches(|c: char| c.is_ascii_punctuation() || is_unicode_punctuation(c))
        } else {
            word
        };
        if word.is_empty() {
            return;
        }
        if self.lowercase {
            scratch.clear();
            scratch.extend_from_slice(word.to_lowercase().as_bytes());
            emit(scratch);
        } else {
            emit(word.as_bytes());
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
    scratch: Vec<u8>,
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
            monoid: None,
        }
    }

    fn configure(params: &Params) -> Result<Self, Error> {
        Ok(Tokenize {
            tokenizer: Tokenizer {
                lowercase: params.bool("lowercase", false)?,
                strip_punctuation: params.bool("strip-punctuation", false)?,
            },
            scratch: Vec::new(),
        })
    }

    #[inline]
    fn record(&mut self, record: Record<'_>, out: &mut PartitionBuilder) -> Result<(), Error> {
        self.tokenizer
            .for_each_word(record.value, &mut self.scratch, |word| {
                out.emit(word, &1i64)
            })
            .map_err(|e| Error::new(format!("value is not UTF-8: {e}")))
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
    fn long_words_and_control_characters_split_like_char_is_whitespace() {
        let line = "abcdefghijklmnop q\u{1}rstuvwxyz0123\u{7}45 \x0b end\x0c\x0cx   ";
        let expected: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
        assert_eq!(words(&[], &[line]), expected);
        for len in 0..20 {
            let word = "w".repeat(len);
            let line = format!("{word} {word}\t{word}");
            let expected: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
            assert_eq!(words(&[], &[&line]), expected, "{line:?}");
        }
    }

    #[test]
    fn the_word_end_search_agrees_with_a_byte_by_byte_one_everywhere() {
        let lines: [&[u8]; 5] = [
            b"ab cd",
            b"abcdefghij klm",
            b"x\x01yz\x0bw abc\x02de",
            b"one two three\tfour  \x1f\x1fend",
            b"sixteen-byte-wrd trailing ",
        ];
        for line in lines {
            for from in 0..=line.len() {
                let naive = (from..line.len())
                    .find(|&i| is_ascii_space(line[i]))
                    .unwrap_or(line.len());
                assert_eq!(find_ascii_space(line, from), naive, "{line:?} from {from}");
            }
        }
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
    fn pre_combines_counts_when_the_host_asks() {
        let mut op = spate_guest::configure_transform::<Tokenize>(Default::default()).unwrap();
        let input = spate_guest::Partition::from_lines(["a b a", "b a c"]);
        let out =
            spate_guest::run_transform(&mut op, &input, Some(spate_guest::Monoid::SumI64)).unwrap();
        let pairs: Vec<(&str, i64)> = out
            .records()
            .map(|r| (r.key_str().unwrap(), r.value_as::<i64>().unwrap()))
            .collect();
        assert_eq!(pairs, [("a", 3), ("b", 2), ("c", 1)]);
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
        let mut input = spate_guest::Partition::from_lines(["ok"]);
        input.values.push(&[0xff, 0xfe]);
        let err = spate_guest::run_transform(&mut op, &input, None).unwrap_err();
        assert_eq!(err.record_index, Some(1));
    }
}
