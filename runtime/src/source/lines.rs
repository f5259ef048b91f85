//! Cutting a byte stream into text lines: UTF-8 checked, length capped, bad lines failed or
//! skipped by policy. Memory stays bounded by the maximum line length whatever the input.

use super::line_copy::{append_lines, without_cr};
use crate::config::{BadLinePolicy, ByteSize};
use spate_guest::Column;
use std::fmt;

/// A line the policy refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    /// Where the line came from (`file in/a.txt`, `socket 127.0.0.1:9999`).
    pub origin: String,
    /// 1-based line number within the origin (a socket's connection, a file's part read).
    pub line: u64,
    /// Where the line starts, in bytes of the source's whole stream (a socket's, across its
    /// connections; a file's): the same across restarts, and what a producer speaking the
    /// resume protocol resends from.
    pub offset: u64,
    /// What is wrong with it.
    pub reason: String,
}

impl fmt::Display for BadLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} line {} (byte offset {}): {}",
            self.origin, self.line, self.offset, self.reason
        )
    }
}

impl std::error::Error for BadLine {}

/// How a text source cuts and checks lines: its `max-line-length` and `on-bad-line` fields.
#[derive(Clone, Copy, Debug)]
pub struct LineRules {
    /// Longest accepted line in bytes (default 1 MiB).
    pub max_line_length: ByteSize,
    /// What to do with a bad line (default: fail).
    pub on_bad_line: BadLinePolicy,
}

impl LineRules {
    /// The rules from the fields as given, with their defaults.
    pub fn new(max_line_length: Option<ByteSize>, on_bad_line: Option<BadLinePolicy>) -> Self {
        LineRules {
            max_line_length: max_line_length.unwrap_or(ByteSize(1 << 20)),
            on_bad_line: on_bad_line.unwrap_or_default(),
        }
    }

    /// A splitter for input from `origin` whose first byte is at `offset` of the source's
    /// stream.
    pub fn splitter(&self, origin: String, offset: u64) -> LineSplitter {
        LineSplitter::new(origin, self.max_line_length.get(), self.on_bad_line).at_offset(offset)
    }

    /// The rules, for `spate check`.
    pub fn describe(&self) -> String {
        format!(
            "lines up to {}, bad lines: {:?}",
            self.max_line_length, self.on_bad_line
        )
    }
}

/// Splits chunks of bytes into lines appended to a [`Column`].
pub struct LineSplitter {
    origin: String,
    max_line: usize,
    policy: BadLinePolicy,
    partial: Vec<u8>,
    /// The current line is already known too long and is being discarded up to its newline.
    discarding: bool,
    line: u64,
    skipped: u64,
    /// Bytes fed so far.
    fed: u64,
    /// Bytes up to the end of the last complete line.
    line_end: u64,
    /// Where the line being read starts (bytes fed before it).
    line_start: u64,
    /// Bytes fed before the chunk being split.
    chunk_base: u64,
    /// The stream offset of the first byte fed.
    origin_offset: u64,
}

impl LineSplitter {
    /// A splitter for lines from `origin`.
    pub fn new(origin: String, max_line: usize, policy: BadLinePolicy) -> Self {
        LineSplitter {
            origin,
            max_line,
            policy,
            partial: Vec::new(),
            discarding: false,
            line: 0,
            skipped: 0,
            fed: 0,
            line_end: 0,
            line_start: 0,
            chunk_base: 0,
            origin_offset: 0,
        }
    }

    /// The same splitter, for input whose first byte is at `offset` of the source's stream
    /// (a resumed connection, a file read from where a recovered job had got to).
    pub fn at_offset(mut self, offset: u64) -> Self {
        self.origin_offset = offset;
        self
    }

    /// Takes the count of lines skipped since the last call.
    pub fn take_skipped(&mut self) -> u64 {
        std::mem::take(&mut self.skipped)
    }

    /// Bytes of input up to the end of the last complete line: where a reader resumes without
    /// losing or repeating a line.
    pub fn consumed(&self) -> u64 {
        self.line_end
    }

    /// Appends the complete lines of `chunk` to `out`; a trailing partial line is kept for the
    /// next chunk.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Column) -> Result<(), BadLine> {
        let base = self.fed;
        self.chunk_base = base;
        self.fed += chunk.len() as u64;
        let checked = Self::utf8_checked_lines(chunk, self.partial.is_empty() && !self.discarding);
        // Before the checked stretch: the end of a line an earlier chunk started.
        let mut start = self.split(chunk, 0, checked.start, &checked, out)?;
        if !checked.is_empty() && checked.len() <= self.max_line {
            // Every line of the stretch is valid UTF-8 and no longer than the maximum: no
            // check of its own, and no partial line to join (the one before just ended).
            self.line += append_lines(&chunk[checked.start..=checked.end], out);
            start = checked.end + 1;
            self.line_start = base + start as u64;
        }
        let start = self.split(chunk, start, chunk.len(), &checked, out)?;
        if start > 0 {
            self.line_end = base + start as u64;
        }
        self.extend_partial(&chunk[start..])
    }

    /// Takes the lines of `chunk` ending in `from..to` one by one, with their checks and the
    /// partial line; returns where the next line starts.
    fn split(
        &mut self,
        chunk: &[u8],
        from: usize,
        to: usize,
        checked: &std::ops::Range<usize>,
        out: &mut Column,
    ) -> Result<usize, BadLine> {
        let mut start = from;
        for end in memchr::memchr_iter(b'\n', &chunk[from..to]).map(|at| from + at) {
            let piece = &chunk[start..end];
            let utf8_checked = checked.start <= start && end <= checked.end;
            start = end + 1;
            if self.partial.is_empty() && !self.discarding {
                self.line(piece, utf8_checked, out)?;
            } else {
                self.extend_partial(piece)?;
                let line = std::mem::take(&mut self.partial);
                let discarding = std::mem::replace(&mut self.discarding, false);
                if discarding {
                    self.line += 1;
                    self.skipped += 1;
                } else {
                    self.line(&line, false, out)?;
                }
                self.partial = line;
                self.partial.clear();
            }
            self.line_start = self.chunk_base + start as u64;
        }
        Ok(start)
    }

    /// The stretch of `chunk` from the start of its first line that begins in it (the chunk's
    /// start, or just after its first newline when the chunk continues a partial line) to its
    /// last newline, when that stretch is valid UTF-8 as a whole (an empty range otherwise):
    /// lines inside it need no check of their own. One pass over a long stretch is much cheaper
    /// than a call per line, and a newline never splits a UTF-8 sequence, so the stretch is
    /// valid exactly when each of its lines is. Reads rarely end at a newline, so most chunks
    /// continue a line: checking only chunks that start one left nearly every line to a check
    /// of its own.
    fn utf8_checked_lines(chunk: &[u8], starts_a_line: bool) -> std::ops::Range<usize> {
        let first = if starts_a_line {
            Some(0)
        } else {
            memchr::memchr(b'\n', chunk).map(|at| at + 1)
        };
        match (first, memchr::memrchr(b'\n', chunk)) {
            (Some(first), Some(last))
                if first <= last && std::str::from_utf8(&chunk[first..last]).is_ok() =>
            {
                first..last
            }
            _ => 0..0,
        }
    }

    /// End of input: a last line without a newline is still a line.
    pub fn finish(&mut self, out: &mut Column) -> Result<(), BadLine> {
        self.line_end = self.fed;
        if self.discarding {
            self.discarding = false;
            self.line += 1;
            self.skipped += 1;
        } else if !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            self.line(&line, false, out)?;
        }
        Ok(())
    }

    fn extend_partial(&mut self, piece: &[u8]) -> Result<(), BadLine> {
        if self.discarding {
            return Ok(());
        }
        if self.partial.len() + piece.len() > self.max_line + 1 {
            // +1: a '\r' before the newline does not count towards the length.
            self.too_long()?;
            self.partial.clear();
            self.discarding = true;
            return Ok(());
        }
        self.partial.extend_from_slice(piece);
        Ok(())
    }

    fn too_long(&mut self) -> Result<(), BadLine> {
        let reason = format!("line longer than max-line-length ({} bytes)", self.max_line);
        match self.policy {
            BadLinePolicy::Fail => Err(self.bad(self.line + 1, reason)),
            BadLinePolicy::Skip => {
                tracing::warn!("skipping {}", self.bad(self.line + 1, reason));
                Ok(())
            }
        }
    }

    fn bad(&self, line: u64, reason: String) -> BadLine {
        BadLine {
            origin: self.origin.clone(),
            line,
            offset: self.origin_offset + self.line_start,
            reason,
        }
    }

    /// One complete line (without its '\n'); `utf8_checked` when it is known to be UTF-8.
    fn line(&mut self, line: &[u8], utf8_checked: bool, out: &mut Column) -> Result<(), BadLine> {
        self.line += 1;
        let line = without_cr(line);
        let problem = if line.len() > self.max_line {
            Some(format!(
                "line longer than max-line-length ({} bytes)",
                self.max_line
            ))
        } else if utf8_checked {
            None
        } else {
            std::str::from_utf8(line)
                .err()
                .map(|e| format!("invalid UTF-8 at byte {} of the line", e.valid_up_to()))
        };
        match (problem, self.policy) {
            (None, _) => {
                out.push(line);
                Ok(())
            }
            (Some(reason), BadLinePolicy::Fail) => Err(self.bad(self.line, reason)),
            (Some(reason), BadLinePolicy::Skip) => {
                tracing::warn!("skipping {}", self.bad(self.line, reason));
                self.skipped += 1;
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(
        chunks: &[&[u8]],
        max: usize,
        policy: BadLinePolicy,
    ) -> (Result<Vec<String>, BadLine>, u64) {
        let mut splitter = LineSplitter::new("test".into(), max, policy);
        let mut out = Column::default();
        let result = chunks
            .iter()
            .try_for_each(|c| splitter.feed(c, &mut out))
            .and_then(|_| splitter.finish(&mut out))
            .map(|_| {
                out.iter()
                    .map(|l| String::from_utf8(l.to_vec()).unwrap())
                    .collect()
            });
        (result, splitter.take_skipped())
    }

    /// The error splitting `chunks` with the usual limit and `fail` ends with.
    fn first_error(chunks: &[&[u8]]) -> String {
        let (result, _) = split(chunks, 100, BadLinePolicy::Fail);
        result.unwrap_err().to_string()
    }

    #[test]
    fn lines_span_chunks_and_lose_their_line_endings() {
        let (lines, _) = split(&[b"ab", b"c\r\nde\n", b"\nlast"], 100, BadLinePolicy::Fail);
        assert_eq!(lines.unwrap(), ["abc", "de", "", "last"]);
    }

    #[test]
    fn utf8_is_checked_across_chunks_and_per_line_after_a_bad_stretch() {
        let (lines, _) = split(&[b"ab\xc3", b"\xa9cd\nok\n"], 100, BadLinePolicy::Fail);
        assert_eq!(lines.unwrap(), ["ab\u{e9}cd", "ok"]);
        assert_eq!(
            first_error(&[b"ok\n", b"x\nbad \xff\nz\n"]),
            "test line 3 (byte offset 5): invalid UTF-8 at byte 4 of the line"
        );
        let (lines, skipped) = split(&[b"a\n\xff\nb\n\xc3"], 100, BadLinePolicy::Skip);
        assert_eq!(
            (lines.unwrap(), skipped),
            (vec!["a".to_owned(), "b".to_owned()], 2)
        );
    }

    #[test]
    fn a_chunk_continuing_a_line_is_checked_in_one_pass_after_its_first_newline() {
        let chunk = b"tail\nab\ncd\nrest";
        assert_eq!(LineSplitter::utf8_checked_lines(chunk, false), 5..10);
        assert_eq!(LineSplitter::utf8_checked_lines(chunk, true), 0..10);
        assert_eq!(LineSplitter::utf8_checked_lines(b"no newline", false), 0..0);
        assert_eq!(LineSplitter::utf8_checked_lines(b"one\nx", false), 0..0);
        assert_eq!(
            LineSplitter::utf8_checked_lines(b"t\na\xff\nb\n", false),
            0..0
        );
        // A bad line after a continued one is still found and named.
        assert_eq!(
            first_error(&[b"ok\npart", b"ial\nfine\nbad \xff\n"]),
            "test line 4 (byte offset 16): invalid UTF-8 at byte 4 of the line"
        );
        let (lines, _) = split(
            &[b"ok\npart", b"ial\nfine\n\xc3\xa9\n"],
            100,
            BadLinePolicy::Fail,
        );
        assert_eq!(lines.unwrap(), ["ok", "partial", "fine", "\u{e9}"]);
    }

    #[test]
    fn lines_of_a_checked_stretch_are_counted_and_stripped_like_the_others() {
        let (lines, _) = split(&[b"ab\r\ncd\n"], 100, BadLinePolicy::Fail);
        assert_eq!(lines.unwrap(), ["ab", "cd"]);
        // The first chunk's lines take the one-pass path; the line numbers go on after them.
        assert_eq!(
            first_error(&[b"a\r\nb\n", b"c\nbad \xff\n"]),
            "test line 4 (byte offset 7): invalid UTF-8 at byte 4 of the line"
        );
    }

    #[test]
    fn invalid_utf8_fails_naming_the_line() {
        let (result, _) = split(&[b"ok\nbad \xff here\n"], 100, BadLinePolicy::Fail);
        let err = result.unwrap_err();
        assert_eq!(
            err.to_string(),
            "test line 2 (byte offset 3): invalid UTF-8 at byte 4 of the line"
        );
    }

    #[test]
    fn long_lines_fail_or_are_skipped_without_buffering_them() {
        let long = vec![b'x'; 50];
        let (result, _) = split(&[b"a\n", &long, &long, b"\nb\n"], 60, BadLinePolicy::Fail);
        let err = result.unwrap_err();
        assert_eq!((err.line, err.offset), (2, 2));
        // A splitter resumed mid-stream names offsets of the whole stream.
        let mut resumed = LineSplitter::new("t".into(), 100, BadLinePolicy::Fail).at_offset(1000);
        let err = resumed
            .feed(b"ok\n\xff\n", &mut Column::default())
            .unwrap_err();
        assert_eq!((err.line, err.offset), (2, 1003));
        let (lines, skipped) = split(
            &[b"a\n", &long, &long, b"\nb\n\xff\n"],
            60,
            BadLinePolicy::Skip,
        );
        assert_eq!(lines.unwrap(), ["a", "b"]);
        assert_eq!(skipped, 2);
        // A checked stretch longer than the maximum goes line by line: its long line is found.
        let (lines, skipped) = split(&[b"ab\ncdefgh\nij\n"], 4, BadLinePolicy::Skip);
        assert_eq!(lines.unwrap(), ["ab", "ij"]);
        assert_eq!(skipped, 1);
    }

    #[test]
    fn consumed_stops_at_the_last_line_end() {
        let mut splitter = LineSplitter::new("t".into(), 100, BadLinePolicy::Fail);
        let mut out = Column::default();
        splitter.feed(b"ab\ncd", &mut out).unwrap();
        assert_eq!(splitter.consumed(), 3);
        splitter.feed(b"e", &mut out).unwrap();
        assert_eq!(splitter.consumed(), 3);
        splitter.feed(b"f\ng\n", &mut out).unwrap();
        assert_eq!(splitter.consumed(), 10);
        splitter.feed(b"tail", &mut out).unwrap();
        splitter.finish(&mut out).unwrap();
        assert_eq!(splitter.consumed(), 14);
    }

    #[test]
    fn a_line_of_exactly_the_maximum_passes() {
        let (lines, _) = split(&[b"abcd\r\n", b"abcd"], 4, BadLinePolicy::Fail);
        assert_eq!(lines.unwrap(), ["abcd", "abcd"]);
    }
}
