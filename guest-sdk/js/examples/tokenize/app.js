// `tokenize` in JavaScript: splits text lines on whitespace and emits (word, 1) per word.
//
// Same rules and output as the Rust plugin (plugins/tokenize): words are separated by Unicode
// White_Space (Rust's `char::is_whitespace`; not JS's `\s`, which also splits on U+FEFF and not
// on U+0085); `lowercase` lowercases words (ASCII lines: ASCII lowercase; others: the full
// Unicode lowercase of the word, as Rust's `str::to_lowercase`); `strip-punctuation` trims ASCII
// punctuation (and, on non-ASCII lines, common Unicode punctuation) from both ends of each word
// and drops words left empty.
import { Transform, ValueType, exportTransform, toLowercase } from '../../spate-guest.js';

const ASCII_SPACE = /[\t-\r ]+/;
const UNICODE_SPACE = /[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+/;
const NON_ASCII = /[^\x00-\x7f]/;
const HAS_ASCII_PUNCT = /[!-\/:-@\[-`{-~]/;
const CONTROL_SPACE = /[\t-\r]/;
const CONTROL_SPACE_ALL = /[\t-\r]/g;
// ASCII punctuation, and the Rust plugin's is_unicode_punctuation.
const P = '!-\\/:-@\\[-`{-~\\u2010-\\u2027\\u2030-\\u205e\\u00a1\\u00ab\\u00bb\\u00bf\\u3000-\\u303f';
const UNICODE_TRIM = new RegExp(`^[${P}]+|[${P}]+$`, 'g');

function isAsciiPunct(c) {
  return (c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) || (c >= 123 && c <= 126);
}

function stripAscii(w) {
  let a = 0;
  let b = w.length;
  while (a < b && isAsciiPunct(w.charCodeAt(a))) a++;
  while (b > a && isAsciiPunct(w.charCodeAt(b - 1))) b--;
  return a === 0 && b === w.length ? w : w.substring(a, b);
}

class Tokenize extends Transform {
  static info() {
    return {
      name: 'tokenize',
      description: 'splits lines on whitespace and emits (word, 1) per word',
      params: [
        ['lowercase', 'lowercase every word (default false)'],
        ['strip-punctuation', 'trim punctuation from both ends of words, dropping empty ones (default false)'],
      ],
      keyType: ValueType.TEXT,
      valueType: ValueType.I64,
    };
  }

  static configure(params) {
    const op = new Tokenize();
    op.lowercase = params.bool('lowercase', false);
    op.strip = params.bool('strip-punctuation', false);
    return op;
  }

  words(line) {
    const out = [];
    if (!NON_ASCII.test(line)) {
      if (this.lowercase) line = line.toLowerCase(); // ASCII in, ASCII lowercase
      const parts = line.split(ASCII_SPACE);
      for (let i = 0; i < parts.length; i++) {
        const w = this.strip ? stripAscii(parts[i]) : parts[i];
        if (w.length) out.push(w);
      }
      return out;
    }
    const parts = line.split(UNICODE_SPACE);
    for (let i = 0; i < parts.length; i++) {
      let w = parts[i];
      if (this.strip) w = w.replace(UNICODE_TRIM, '');
      if (!w.length) continue;
      out.push(this.lowercase ? toLowercase(w) : w);
    }
    return out;
  }

  record(record, out) {
    out.emitI64Each(this.words(record.valueStr()), 1);
  }

  // The whole partition at once when it is ASCII and carries no event times: the records
  // joined with spaces (so that no two merge), lowercased and split by one native call each;
  // only the per-word loops (stripping, when there is punctuation; counting) run in JS.
  // Splitting on a string is native; splitting on a regular expression runs StarlingMonkey's
  // regexp interpreter per match and is 20 times slower, so the rare other ASCII whitespace
  // (tab to carriage return) is first replaced by spaces.
  process(input, out) {
    if (input.timestamps.length || input.values.asciiText() === null) return super.process(input, out);
    let text = input.values.joinStr(' ');
    if (CONTROL_SPACE.test(text)) text = text.replace(CONTROL_SPACE_ALL, ' ');
    if (this.lowercase) text = text.toLowerCase();
    let words = text.split(' '); // with empty strings between consecutive spaces: no words
    if (this.strip && HAS_ASCII_PUNCT.test(text)) words = words.map(stripAscii);
    out.emitI64Each(words, 1, true);
  }
}

export const transform = exportTransform(Tokenize);
