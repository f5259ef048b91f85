//! Copying a stretch of newline-terminated lines into a [`Column`], one value per line: the
//! receiver's hottest loop, since every byte of input passes through it once.

use spate_guest::Column;

/// Appends the lines of `text`, each ending in a newline (dropped, with a '\r' before it), to
/// `out`; returns how many. The lines need no check of their own (see
/// `LineSplitter::utf8_checked_lines`).
pub fn append_lines(text: &[u8], out: &mut Column) -> u64 {
    if out.offsets.is_empty() {
        out.offsets.push(0);
    }
    #[cfg(target_arch = "x86_64")]
    let (copied, lines) = sse2::copy_lines(text, out);
    #[cfg(not(target_arch = "x86_64"))]
    let (copied, lines) = (0, 0);
    lines + append_lines_one_by_one(&text[copied..], out)
}

/// A line without the '\r' of a "\r\n" line ending.
pub fn without_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// [`append_lines`] a line at a time: a newline search and a copy per line.
fn append_lines_one_by_one(text: &[u8], out: &mut Column) -> u64 {
    let mut start = 0;
    let mut lines = 0;
    for end in memchr::memchr_iter(b'\n', text) {
        out.push(without_cr(&text[start..end]));
        start = end + 1;
        lines += 1;
    }
    lines
}

#[cfg(target_arch = "x86_64")]
mod sse2 {
    use super::Column;
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi8,
        _mm_storeu_si128,
    };

    /// Copies whole lines from the start of `text` into `out` 16 bytes at a time (SSE2 is part
    /// of every x86_64 CPU), finding newlines in the same registers: each 16 bytes are stored
    /// where the current line continues, and when they hold a newline, the line ends there and
    /// the next one is written over the newline. Per line that is a few vector steps instead
    /// of a `memchr` call and a `memcpy` call, which for ~40-byte lines cost more than the
    /// bytes they move (docs/BENCHMARKS.md has the figures). Stops before the first line that
    /// ends within 16 bytes of the end of `text`; returns (bytes of `text` consumed, lines).
    pub fn copy_lines(text: &[u8], out: &mut Column) -> (usize, u64) {
        let base = out.data.len();
        // Room for every byte of `text` and one store's overshoot past the last.
        out.data.reserve(text.len() + 16);
        let dst = out.data.as_mut_ptr();
        // SAFETY (for this and the compare below): SSE2 is part of every x86_64 CPU.
        let newline = unsafe { _mm_set1_epi8(b'\n' as i8) };
        // `at` reads `text`; `to` writes `out.data`. A line starts at `line_start` in `text`
        // and at `line_out` in `out.data`.
        let (mut at, mut to) = (0, base);
        let (mut line_start, mut line_out) = (0, base);
        let mut lines = 0;
        while at + 16 <= text.len() {
            // SAFETY: at + 16 <= text.len(), so the load reads inside `text`. `to - base` never
            // exceeds `at` (bytes are only dropped, never added), so the store ends at most at
            // base + text.len() + 16, inside the capacity reserved above.
            let bytes = unsafe { _mm_loadu_si128(text.as_ptr().add(at).cast::<__m128i>()) };
            unsafe { _mm_storeu_si128(dst.add(to).cast::<__m128i>(), bytes) };
            let newlines = unsafe { _mm_movemask_epi8(_mm_cmpeq_epi8(bytes, newline)) } as u32;
            if newlines == 0 {
                at += 16;
                to += 16;
                continue;
            }
            let k = newlines.trailing_zeros() as usize;
            let end = at + k;
            let mut line_end = to + k;
            if end > line_start && text[end - 1] == b'\r' {
                line_end -= 1;
            }
            out.offsets.push(line_end as u32);
            lines += 1;
            (at, to) = (end + 1, line_end);
            (line_start, line_out) = (at, to);
        }
        // SAFETY: every byte below `line_out` was written above (or was there before), and
        // line_out <= base + text.len() is within the capacity. The bytes of the unfinished
        // line after it are left out: the caller copies that line again.
        unsafe { out.data.set_len(line_out) };
        (line_start, lines)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines of every length from 0 to 40, some with "\r\n" endings and a lone '\r' inside.
    fn sample() -> Vec<u8> {
        let mut text = Vec::new();
        for len in 0..=40usize {
            for crlf in [false, true] {
                text.extend((0..len).map(|i| {
                    if i == len / 2 {
                        b'\r'
                    } else {
                        b'a' + (i % 26) as u8
                    }
                }));
                text.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
            }
        }
        text
    }

    #[test]
    fn vector_copy_agrees_with_a_line_at_a_time() {
        let text = sample();
        // Every start offset, so that newlines fall at every position of a 16-byte load.
        for skip in 0..40 {
            let from = text[..skip]
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |p| p + 1);
            let text = &text[from..];
            let mut expected = Column::default();
            expected.push(b"already there");
            let mut actual = expected.clone();
            let n = append_lines_one_by_one(text, &mut expected);
            assert_eq!(append_lines(text, &mut actual), n);
            assert_eq!(actual, expected, "from byte {from}");
        }
    }

    #[test]
    fn carriage_returns_go_only_before_a_newline() {
        let mut out = Column::default();
        let text = b"a long first line, 16+ bytes\r\n\r\n\rx\r\nlast\n";
        assert_eq!(append_lines(text, &mut out), 4);
        let lines: Vec<&[u8]> = out.iter().collect();
        assert_eq!(
            lines,
            [&b"a long first line, 16+ bytes"[..], b"", b"\rx", b"last"]
        );
    }
}
