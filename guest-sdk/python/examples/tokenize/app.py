"""`tokenize` in Python: splits text lines on whitespace and emits (word, 1) per word.

Same rules and output as the Rust plugin (plugins/tokenize): words are separated by Unicode
White_Space (Rust's `char::is_whitespace`); `lowercase` lowercases words (ASCII lines: ASCII
lowercase; others: full Unicode lowercase of the word, as Rust's `str::to_lowercase`: see spate_guest.text);
`strip-punctuation` trims ASCII punctuation (and, on non-ASCII lines, common Unicode
punctuation) from both ends of each word and drops words left empty.
"""

import re

from spate_guest import Info, OperatorError, Transform, ValueType
from spate_guest.export import export_transform
from spate_guest.text import lowercase

ASCII_PUNCT = b"!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"
# Rust's char::is_whitespace (the Unicode White_Space property). Not str.split(): Python also
# splits on U+001C..U+001F, which Rust keeps inside words.
HAS_ASCII_PUNCT = re.compile(rb"[!-/:-@\[-`{-~]")
UNICODE_SPACE = re.compile("[\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+")
# The Rust plugin's is_unicode_punctuation, plus ASCII punctuation.
UNICODE_PUNCT = ASCII_PUNCT.decode() + "".join(
    chr(c)
    for lo, hi in ((0x2010, 0x2027), (0x2030, 0x205E), (0xA1, 0xA1), (0xAB, 0xAB),
                   (0xBB, 0xBB), (0xBF, 0xBF), (0x3000, 0x303F))
    for c in range(lo, hi + 1)
)


class Tokenize(Transform):
    @staticmethod
    def info():
        return Info(
            name="tokenize",
            description="splits lines on whitespace and emits (word, 1) per word",
            params=[
                ("lowercase", "lowercase every word (default false)"),
                ("strip-punctuation",
                 "trim punctuation from both ends of words, dropping empty ones (default false)"),
            ],
            key_type=ValueType.TEXT,
            value_type=ValueType.I64,
        )

    @classmethod
    def configure(cls, params):
        op = cls()
        op.lowercase = params.bool("lowercase", False)
        op.strip = params.bool("strip-punctuation", False)
        return op

    def words(self, line: bytes) -> list:
        if line.isascii():
            # bytes.split() splits on exactly the ASCII bytes char::is_whitespace accepts.
            if self.lowercase:
                line = line.lower()  # ASCII only: what the Rust plugin does on ASCII lines
            words = line.split()
            if self.strip:
                words = [w for w in [w.strip(ASCII_PUNCT) for w in words] if w]
            return words
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as e:
            raise OperatorError(f"value is not UTF-8: {e}") from None
        words = [w for w in UNICODE_SPACE.split(text) if w]
        if self.strip:
            words = [w for w in [w.strip(UNICODE_PUNCT) for w in words] if w]
        if self.lowercase:
            words = [lowercase(w) for w in words]
        return [w.encode("utf-8") for w in words]

    def record(self, record, out):
        out.emit_all(self.words(record.value), 1)

    def process(self, input, out):
        """The whole partition at once when it is ASCII and carries no event times: the
        records joined with spaces (so that no two merge), then lowered, split and counted by
        C code, with no Python loop over records or words unless there is punctuation to
        strip. Anything else goes record by record (`record`)."""
        if input.timestamps or not input.values.data.isascii():
            return super().process(input, out)
        text = b" ".join(input.values)
        if self.lowercase:
            text = text.lower()
        words = text.split()
        if self.strip and HAS_ASCII_PUNCT.search(text):
            words = [w for w in [w.strip(ASCII_PUNCT) for w in words] if w]
        out.emit_all(words, 1)


Transform = export_transform(Tokenize)
