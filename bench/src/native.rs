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

/// The tokenize operator itself compiled natively, run the way Spate runs its Wasm build with
/// one worker: over partitions of about `partition_bytes` of lines, pre-combining, with its
/// combined output held over `per_flush` partitions (a batch) and then flushed. Returns the
/// records it emitted and the time spent in the operator's calls (cutting the partitions is
/// not counted: in Spate the receiver does it, outside Wasm). Comparing that time with Spate's
/// time in Wasm separates what the operator's code costs from what running it as Wasm adds.
pub fn operator_word_count(
    data: &[u8],
    partition_bytes: usize,
    per_flush: usize,
) -> (u64, std::time::Duration) {
    use spate_guest::{Column, HeldOutput, Monoid, Partition};
    let mut op = spate_guest::configure_transform::<spate_plugin_tokenize::Tokenize>(
        spate_guest::Params::default(),
    )
    .expect("tokenize takes no required parameters");
    let mut held = HeldOutput::default();
    let (mut records, mut partitions) = (0u64, 0usize);
    let mut in_calls = std::time::Duration::ZERO;
    let mut run = |lines: Column, last: bool| {
        let start = std::time::Instant::now();
        let input = Partition {
            keys: None,
            values: lines,
            timestamps: Vec::new(),
        };
        let sum = Some(Monoid::SumI64);
        let out = held
            .absorb(&mut op, &input, sum)
            .expect("the corpus is UTF-8");
        records += out.len() as u64;
        partitions += 1;
        if last || partitions.is_multiple_of(per_flush) {
            records += held.flush().expect("flush").len() as u64;
        }
        in_calls += start.elapsed();
    };
    let mut lines = Column::default();
    for line in data.split(|&b| b == b'\n') {
        lines.push(line);
        if lines.data.len() >= partition_bytes {
            run(std::mem::take(&mut lines), false);
        }
    }
    run(lines, true);
    (records, in_calls)
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
    fn the_native_operator_emits_each_word_once_per_flush() {
        let text = b"a b a\nb c\na\n";
        assert_eq!(operator_word_count(text, 1 << 20, 8).0, 3);
        // One partition per line, flushed every line: (a, 2) (b, 1); (b, 1) (c, 1); (a, 1); none.
        assert_eq!(operator_word_count(text, 1, 1).0, 5);
    }

    #[test]
    fn chunks_end_at_line_boundaries() {
        let chunks = split_at_lines(b"ab\ncd\nef\n", 2);
        assert_eq!(chunks.concat(), b"ab\ncd\nef\n");
        assert!(chunks.iter().all(|c| c.is_empty() || c.ends_with(b"\n")));
    }
}
