#!/usr/bin/env python3
"""Writes a test input with every Unicode scalar value (but surrogates, LF and CR) in the
contexts the tokenize rules care about, one code point c per line:

    a<c>b <c>a<c> ΑΣ<c> Α<c>Σ <c>

(whitespace splitting; punctuation stripping at both ends; lowercasing, including the
Final_Sigma rule before and after c). About 44 MB:

    scripts/make-unicode-corpus.py /tmp/unicode-corpus
    scripts/compare-guest-examples.sh /tmp/unicode-corpus
"""
import os
import sys

out_dir = sys.argv[1] if len(sys.argv) > 1 else "unicode-corpus"
os.makedirs(out_dir, exist_ok=True)
lines = []
for cp in range(0x110000):
    if 0xD800 <= cp <= 0xDFFF or cp in (0x0A, 0x0D):
        continue
    c = chr(cp)
    lines.append(f"a{c}b {c}a{c} \u0391\u03a3{c} \u0391{c}\u03a3 {c}")
with open(os.path.join(out_dir, "all.txt"), "w", encoding="utf-8", newline="\n") as f:
    f.write("\n".join(lines) + "\n")
