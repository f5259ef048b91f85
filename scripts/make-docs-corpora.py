#!/usr/bin/env python3
"""Writes the two small test inputs of compare-guest-examples.sh made from the repo's Markdown:

    scripts/make-docs-corpora.py OUT    ->  OUT/docs/docs.txt, OUT/docsascii/docs.txt

- docs: README.md, ARCHITECTURE.md and docs/*.md followed by lines of Unicode edge cases
  (Greek final sigma, dotted I, NBSP, NEL, ideographic space, guillemets, emoji, U+FEFF,
  U+180E, ...), 20 times (about 1.6 MB);
- docsascii: the same Markdown with every non-ASCII character removed, followed by lines of
  ASCII edge cases (tabs, VT, FF, control characters, punctuation-only words, mixed case),
  20 times (about 1.6 MB, all ASCII: the SDKs' fast paths).
"""
import glob
import os
import sys

repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
out = sys.argv[1] if len(sys.argv) > 1 else "corpora"
files = [os.path.join(repo, f) for f in ("README.md", "ARCHITECTURE.md")]
files += sorted(glob.glob(os.path.join(repo, "docs", "*.md")))
markdown = "".join(open(f, encoding="utf-8").read() for f in files)

unicode_lines = [
    "Hello, World! -- «Ça» va?",
    "don't stop   me\tnow",
    "ΑΣ ΟΔΟΣ. Σίσυφος ΣΑΣ ΑΣ' Σ",
    "İstanbul İZMİR ǅemal ẞtraße STRASSE",
    "“Quoted” ‘single’ — dash… ¿Qué? ¡Sí! «»",
    " tabs\tand  spaces \u00a0nbsp\u00a0x \u0085nel\u0085y",
    "ideo\u3000space 日本語、テスト。",
    "emoji 😀 😀! (😀)",
    "a ... b --- c",
    "MiXeD CaSe WoRdS Ǆ ǅ ǆ",
    "ctrl\x01x \x0b vt\x0cff e\x1cfs\x1dgs\x1ers\x1fus z",
    "zw\u200bsp bom\ufeffx mvs\u180ey ls\u2028ps\u2029end nnbsp\u202fx mm\u205fx ogham\u1680x en\u2000em\u2003hair\u200ax",
    "ASCII ONLY LINE, With: punctuation; (parens) [brackets] {braces} 'quotes' \"dq\" `bt` ~tilde~ @at #hash",
    "Straße ÉCOLE Œuvre ÀÉÎÕÜ ǱDZ Ⅻ ⓐⒶ",
    "--- ... !!! ???",
    "",
    "   ",
    "longwordlongwordlongword shortword\x07bell x",
    "Ǉubljana ǈ ǉ ĲSSEL ΐ ΰ ﬀ ﬁ",
    "ÅNGSTRÖM Ωmega ΩHM K-KELVIN",
]
ascii_lines = [
    "Tabs\tand\x0bvertical\x0cform feeds\x01ctrl-A\x07bell  double  spaces",
    "...leading and trailing... !!! ??? ---",
    "MiXeD CaSe, (Parens) [Brackets] {Braces} 'Single' \"Double\" `Back` ~Tilde~ @At #Hash",
    "   ", "", "x\x1cy\x1dz\x1e\x1f end",
]
for name, text in (
    ("docs", markdown + "\n".join(unicode_lines) + "\n"),
    ("docsascii", markdown.encode("ascii", "ignore").decode() + "\n".join(ascii_lines) + "\n"),
):
    os.makedirs(os.path.join(out, name), exist_ok=True)
    with open(os.path.join(out, name, "docs.txt"), "w", encoding="utf-8", newline="\n") as f:
        f.write(text * 20)
