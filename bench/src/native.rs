//! The native baseline: a hand-written word count with the tokenize operator's rules and the
//! same key hash as Spate's combine and shuffle, on the same number of threads. No Wasm, no
//! engine.

use hashbrown::HashMap;
use spate_plugin_tokenize::Tokenizer;
use std::hash::{BuildHasherDefault, Hasher};

/// A `Hasher` for byte-string keys that is Spate's [`spate_guest::key_hash`]: `Hash` for `[u8]`
/// writes the length, then the bytes in one `write`, and the key hash covers both.
#[derive(Default)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0 = spate_guest::key_hash(bytes);
    }

    fn write_usize(&mut self, _length_prefix: usize) {}

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Counts per word.
pub type WordCounts = HashMap<Box<[u8]>, i64, BuildHasherDefault<KeyHasher>>;

/// Splits `data` into `parts` ranges that end at line boundaries.
fn split_at_lines(data: &[u8], parts: usize) -> Vec<&[u8]> {
    let mut chunks = Vec::with_capacity(parts);
    let mut start = 0;
    for i in 1..=parts {
        let target = (data.len() * i / parts).max(start);
        let end = if i == parts {
            data.len()
        } else {
            memchr::memchr(b'\n', &data[target..]).map_or(data.len(), |p| target + p + 1)
        };
        chunks.push(&data[start..end]);
        start = end;
    }
    chunks
}

/// Counts the words of one chunk.
fn count_chunk(chunk: &[u8], tokenizer: &Tokenizer) -> (WordCounts, u64) {
    let mut counts = WordCounts::default();
    let mut scratch = Vec::new();
    let mut words = 0u64;
    for line in chunk.split(|&b| b == b'\n') {
        let result = tokenizer.for_each_word(line, &mut scratch, |word| {
            words += 1;
            match counts.get_mut(word) {
                Some(n) => *n += 1,
                None => {
                    counts.insert(word.into(), 1);
                }
            }
        });
        result.expect("the corpus is UTF-8");
    }
    (counts, words)
}

/// Word count of `data` on `threads` threads: (counts, total words).
pub fn word_count(data: &[u8], threads: usize, tokenizer: &Tokenizer) -> (WordCounts, u64) {
    let results: Vec<(WordCounts, u64)> = std::thread::scope(|scope| {
        let handles: Vec<_> = split_at_lines(data, threads.max(1))
            .into_iter()
            .map(|chunk| scope.spawn(move || count_chunk(chunk, tokenizer)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("counting thread"))
            .collect()
    });
    let mut iter = results.into_iter();
    let (mut total, mut words) = iter.next().unwrap_or_default();
    for (counts, n) in iter {
        words += n;
        for (word, count) in counts {
            *total.entry(word).or_insert(0) += count;
        }
    }
    (total, words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_agree_with_one_thread() {
        let text = crate::corpus::Corpus::new(7).text(100_000);
        let tokenizer = Tokenizer::default();
        let (one, words) = word_count(&text, 1, &tokenizer);
        let (two, words2) = word_count(&text, 2, &tokenizer);
        assert_eq!(words, words2);
        assert_eq!(one, two);
        assert_eq!(one.values().sum::<i64>() as u64, words);
    }

    #[test]
    fn chunks_end_at_line_boundaries() {
        let chunks = split_at_lines(b"ab\ncd\nef\n", 2);
        assert_eq!(chunks.concat(), b"ab\ncd\nef\n");
        assert!(chunks.iter().all(|c| c.is_empty() || c.ends_with(b"\n")));
    }
}
