"""Text helpers that behave exactly like Rust's std, so that Python operators can match Rust
ones: `lowercase` is `str::to_lowercase` with the Unicode tables of the Rust toolchain the Rust
plugins are built with (CPython's own `str.lower` follows CPython's Unicode version, and
differs on about a thousand code points), and `is_whitespace` is `char::is_whitespace`."""

from bisect import bisect_right

from ._unicode_tables import CASE_IGNORABLE, CASED, LOWER, UNICODE_VERSION

__all__ = ["lowercase", "is_whitespace", "WHITESPACE", "UNICODE_VERSION"]

# Rust's char::is_whitespace (the White_Space property), as a string of characters.
WHITESPACE = "\t\n\x0b\x0c\r \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + "\u2028\u2029\u202f\u205f\u3000"

_TABLE = {LOWER[i]: LOWER[i + 1] for i in range(0, len(LOWER), 2)}
_TABLE[0x130] = "i\u0307"  # the one lowercase of two characters
_CASED_LOW = CASED[0::2]
_CASED_HIGH = CASED[1::2]
_IGN_LOW = CASE_IGNORABLE[0::2]
_IGN_HIGH = CASE_IGNORABLE[1::2]


def is_whitespace(ch: str) -> bool:
    return ch in WHITESPACE


def _in(lows, highs, cp):
    i = bisect_right(lows, cp) - 1
    return i >= 0 and cp <= highs[i]


def _final_sigma(s: str, i: int) -> bool:
    """Final_Sigma: the sigma at s[i] follows a cased letter and precedes none (skipping
    case-ignorable characters both ways)."""
    j = i - 1
    while j >= 0 and _in(_IGN_LOW, _IGN_HIGH, ord(s[j])):
        j -= 1
    if j < 0 or not _in(_CASED_LOW, _CASED_HIGH, ord(s[j])):
        return False
    j = i + 1
    while j < len(s) and _in(_IGN_LOW, _IGN_HIGH, ord(s[j])):
        j += 1
    return j == len(s) or not _in(_CASED_LOW, _CASED_HIGH, ord(s[j]))


def lowercase(s: str) -> str:
    """Rust's `str::to_lowercase(s)`."""
    if s.isascii():
        return s.lower()
    if "\u03a3" not in s:
        return s.translate(_TABLE)
    return "".join(
        ("\u03c2" if _final_sigma(s, i) else "\u03c3") if ch == "\u03a3" else ch.translate(_TABLE)
        for i, ch in enumerate(s)
    )
