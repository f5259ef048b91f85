//! Text a guest chose, as the host shows it: an operator's error messages, what it printed
//! (panic messages among them), its name, description and parameter help from `describe`, and
//! trap messages (which carry its function names). Every such string goes through
//! [`guest_text`] where it enters the host, so that wherever it is shown (log, summary, dead
//! letters, `spate check`) it is one line that cannot forge another line of the log (another
//! tenant's batch line, say) or drive the terminal, and is capped in length whatever the guest
//! sent, per call, retry and partition.

/// Longest operator error or trap message kept, in bytes.
pub const MESSAGE_CAP: usize = 4096;
/// Longest operator or parameter name kept.
pub const NAME_CAP: usize = 128;
/// Longest description or parameter help kept.
pub const DESCRIPTION_CAP: usize = 1024;
/// Most parameters a `describe` may list.
pub const PARAMS_CAP: usize = 64;

/// `text` as one line of at most about `cap` bytes: control characters (newlines, carriage
/// returns, escape sequences, C1 controls) and the invisible characters that reorder or hide
/// text (bidirectional overrides, zero-width) are written as `\n`, `\r`, `\t` or `\u{..}`; past
/// `cap`, the rest is cut, saying how much.
pub fn guest_text(text: &str, cap: usize) -> String {
    let mut out = String::with_capacity(text.len().min(cap) + 16);
    for (at, c) in text.char_indices() {
        if out.len() >= cap {
            out.push_str(&format!("... [{} more bytes cut]", text.len() - at));
            break;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if hides_or_controls(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// Captured output (several lines) as one line: each line through [`guest_text`], joined with
/// ` | `.
pub fn guest_lines(text: &str, cap: usize) -> String {
    let lines: Vec<String> = text.trim().lines().map(|l| guest_text(l, cap)).collect();
    // Escaped text has no control characters left: this only cuts.
    guest_text(&lines.join(" | "), cap)
}

/// Control characters, and the format characters that reorder or hide text.
fn hides_or_controls(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{200b}'..='\u{200f}' // zero-width spaces and joiners, marks
            | '\u{2028}' | '\u{2029}' // line and paragraph separators
            | '\u{202a}'..='\u{202e}' // bidirectional embeddings and overrides
            | '\u{2060}'..='\u{2064}' // word joiner, invisible operators
            | '\u{2066}'..='\u{2069}' // bidirectional isolates
            | '\u{feff}') // zero-width no-break space
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_onto_one_line() {
        let forged =
            "oops\n2026-12-03T00:00:00Z INFO job{name=other}: batch 1000 ms\r\x1b[2J\u{202e}";
        let shown = guest_text(forged, MESSAGE_CAP);
        assert_eq!(
            shown,
            "oops\\n2026-12-03T00:00:00Z INFO job{name=other}: batch 1000 ms\\r\\u{1b}[2J\\u{202e}"
        );
        assert!(!shown.chars().any(|c| c.is_control()));
        assert_eq!(guest_text("naïve café", 64), "naïve café");
    }

    #[test]
    fn long_text_is_cut_saying_how_much() {
        let shown = guest_text(&"é".repeat(10_000), 100);
        assert!(shown.len() < 160, "{}", shown.len());
        assert!(shown.ends_with("... [19900 more bytes cut]"), "{shown}");
    }

    #[test]
    fn printed_lines_are_joined() {
        assert_eq!(
            guest_lines("panicked at src/lib.rs:1\nboom\x07\n", 1000),
            "panicked at src/lib.rs:1 | boom\\u{7}"
        );
    }
}
