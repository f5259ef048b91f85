// spate-guest.js: write Spate stream operators in JavaScript.
//
// The JavaScript twin of the Rust guest SDK (guest-sdk/src): the same concepts and names.
//
// - An operator is a class: extend `Transform` (map, flatMap, filter: override `record`;
//   mapPartitions: override `process`) or `Combiner` (reduceByKey's function: override
//   `combine`).
// - The host hands a whole partition at once, in columns; `Partition` reads it record by
//   record (`Record`: `key`/`value` as Uint8Array, `keyStr()`/`valueStr()` as text, `timestamp`
//   as BigInt), `PartitionBuilder` builds the output columns.
// - `exportTransform(Cls)` / `exportCombiner(Cls)` give the object componentize-js exports:
//   `export const transform = exportTransform(MyOp);` (or `combiner`).
//
// Nothing here depends on componentize-js: operators can be unit-tested with plain Node.js
// (`runTransform`, `runFold` and `reduceByKey` run them the way the host does).
//
// Encodings (the WIT `value-type`): text is UTF-8, i64 is 8 bytes little-endian (a BigInt, or a
// Number that is an integer), f64 is 8 bytes IEEE-754 little-endian. i64 values wrap to 64 bits
// when encoded, so `+` on BigInts in a combiner is the Rust SDK's wrapping sum.

import { CASED, CASE_IGNORABLE, LOWER } from './unicode-tables.js';

export const ValueType = Object.freeze({ BYTES: 'bytes', TEXT: 'text', I64: 'i64', F64: 'f64' });
export const Monoid = Object.freeze({
  SUM_I64: 'sum-i64',
  MIN_I64: 'min-i64',
  MAX_I64: 'max-i64',
  SUM_F64: 'sum-f64',
});

// The engine's UTF-8 codec; engines without one (QuickJS: componentize-qjs) get the JS one
// below, which is much slower.
const utf8Decoder = typeof TextDecoder !== 'undefined' ? new TextDecoder('utf-8') : { decode: (b) => jsDecodeUtf8(b, false) };
const strictUtf8Decoder =
  typeof TextDecoder !== 'undefined' ? new TextDecoder('utf-8', { fatal: true }) : { decode: (b) => jsDecodeUtf8(b, true) };
const utf8Encoder = typeof TextEncoder !== 'undefined' ? new TextEncoder() : { encode: jsEncodeUtf8 };

/** UTF-8 to a string, as TextDecoder does (U+FFFD for each maximal invalid subpart, or an error
 * when `fatal`). */
function jsDecodeUtf8(bytes, fatal) {
  let out = '';
  let chunk = [];
  const n = bytes.length;
  const bad = () => {
    if (fatal) throw new TypeError('The encoded data was not valid for encoding utf-8');
    chunk.push(0xfffd);
  };
  for (let i = 0; i < n; ) {
    const c = bytes[i];
    if (c < 0x80) {
      chunk.push(c);
      i++;
    } else {
      const width = c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
      const lo = c === 0xe0 ? 0xa0 : c === 0xf0 ? 0x90 : 0x80;
      const hi = c === 0xed ? 0x9f : c === 0xf4 ? 0x8f : 0xbf;
      let k = 1;
      while (width && k < width && i + k < n && bytes[i + k] >= (k === 1 ? lo : 0x80) && bytes[i + k] <= (k === 1 ? hi : 0xbf)) k++;
      if (!width || k < width) {
        bad();
        i += Math.max(1, width ? k : 1);
      } else {
        let cp = c & (width === 2 ? 0x1f : width === 3 ? 0x0f : 0x07);
        for (let j = 1; j < width; j++) cp = (cp << 6) | (bytes[i + j] & 0x3f);
        if (cp >= 0x10000) chunk.push(0xd800 + ((cp - 0x10000) >> 10), 0xdc00 + ((cp - 0x10000) & 0x3ff));
        else chunk.push(cp);
        i += width;
      }
    }
    if (chunk.length >= 8192) {
      out += String.fromCharCode.apply(null, chunk);
      chunk = [];
    }
  }
  return out + String.fromCharCode.apply(null, chunk);
}

function jsEncodeUtf8(s) {
  const out = new Uint8Array(utf8Length(s));
  let pos = 0;
  for (let i = 0; i < s.length; i++) {
    let c = s.charCodeAt(i);
    if (c >= 0xd800 && c < 0xdc00 && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d < 0xe000) {
        c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
        i++;
      }
    }
    if (c >= 0xd800 && c < 0xe000) c = 0xfffd; // a lone surrogate
    if (c < 0x80) out[pos++] = c;
    else if (c < 0x800) {
      out[pos++] = 0xc0 | (c >> 6);
      out[pos++] = 0x80 | (c & 0x3f);
    } else if (c < 0x10000) {
      out[pos++] = 0xe0 | (c >> 12);
      out[pos++] = 0x80 | ((c >> 6) & 0x3f);
      out[pos++] = 0x80 | (c & 0x3f);
    } else {
      out[pos++] = 0xf0 | (c >> 18);
      out[pos++] = 0x80 | ((c >> 12) & 0x3f);
      out[pos++] = 0x80 | ((c >> 6) & 0x3f);
      out[pos++] = 0x80 | (c & 0x3f);
    }
  }
  return out;
}

/** The JS UTF-8 codec, for tests. */
export const jsUtf8 = { decode: jsDecodeUtf8, encode: jsEncodeUtf8 };
const NON_ASCII = /[^\x00-\x7f]/;

// --- errors and params ----------------------------------------------------------------------

/** An operator's failure: the host fails the partition task with this message. */
export class OperatorError extends Error {
  constructor(message, recordIndex = undefined) {
    super(message);
    this.name = 'OperatorError';
    this.recordIndex = recordIndex;
  }

  /** The same error, pointing at input record `index` (unless it already points somewhere). */
  atRecord(index) {
    if (this.recordIndex === undefined) this.recordIndex = index;
    return this;
  }
}

/** The `params = { ... }` table of the operator in the pipeline file, as name/text pairs. */
export class Params {
  constructor(pairs = []) {
    this.pairs = pairs.map(([k, v]) => [String(k), String(v)]);
  }

  get(name) {
    for (const [k, v] of this.pairs) if (k === name) return v;
    return undefined;
  }

  bool(name, defaultValue) {
    const text = this.get(name);
    if (text === undefined) return defaultValue;
    const t = text.trim();
    if (t === 'true' || t === 'false') return t === 'true';
    throw new OperatorError(`parameter '${name}' must be true or false, got '${text}'`);
  }

  /** An integer parameter as a BigInt, or `defaultValue` when absent. */
  i64(name, defaultValue) {
    const text = this.get(name);
    if (text === undefined) return defaultValue;
    const t = text.trim();
    if (/^[+-]?[0-9]+$/.test(t)) {
      const n = BigInt(t);
      if (BigInt.asIntN(64, n) === n) return n;
    }
    throw new OperatorError(`parameter '${name}' must be an integer, got '${text}'`);
  }

  string(name) {
    return this.get(name);
  }

  /** Fails on a parameter name not in `known`, so that a typo is an error and not a default. */
  checkKnown(known) {
    const names = known.map(([k]) => k);
    for (const [name] of this.pairs) {
      if (!names.includes(name)) {
        const hint = names.length === 0 ? 'this operator takes no parameters' : `known: ${names.join(', ')}`;
        throw new OperatorError(`unknown parameter '${name}' (${hint})`);
      }
    }
  }
}

// --- values ---------------------------------------------------------------------------------

/** 8 little-endian bytes of an i64 (BigInt or integer Number; wraps to 64 bits). */
export function encodeI64(n) {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigInt64(0, BigInt.asIntN(64, BigInt(n)), true);
  return out;
}

export function encodeF64(x) {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setFloat64(0, x, true);
  return out;
}

export function decodeI64(bytes) {
  if (bytes.length !== 8) throw new OperatorError(`expected an i64 value of 8 bytes, got ${bytes.length} bytes`);
  return new DataView(bytes.buffer, bytes.byteOffset, 8).getBigInt64(0, true);
}

export function decodeF64(bytes) {
  if (bytes.length !== 8) throw new OperatorError(`expected an f64 value of 8 bytes, got ${bytes.length} bytes`);
  return new DataView(bytes.buffer, bytes.byteOffset, 8).getFloat64(0, true);
}

function decodeText(bytes) {
  try {
    return strictUtf8Decoder.decode(bytes);
  } catch (e) {
    throw new OperatorError(`value is not UTF-8: ${e.message}`);
  }
}

// --- text -----------------------------------------------------------------------------------

// Lowercasing exactly as Rust's `str::to_lowercase` does, with the Unicode tables of the Rust
// toolchain the Rust plugins are built with (unicode-tables.js, generated): the engine's own
// toLowerCase differs on thousands of code points (StarlingMonkey's SpiderMonkey is built without
// ICU, its tables are older, and it does not apply the Final_Sigma rule).
let lowerMap;

function inRanges(ranges, cp) {
  let lo = 0;
  let hi = ranges.length / 2;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (cp < ranges[2 * mid]) hi = mid;
    else if (cp > ranges[2 * mid + 1]) lo = mid + 1;
    else return true;
  }
  return false;
}

function sigmaContext(cps, i, step) {
  for (let j = i + step; j >= 0 && j < cps.length; j += step) {
    if (!inRanges(CASE_IGNORABLE, cps[j])) return inRanges(CASED, cps[j]);
  }
  return false;
}

/** Rust's `str::to_lowercase(s)`: full Unicode lowercase with Final_Sigma. */
export function toLowercase(s) {
  if (!NON_ASCII.test(s)) return s.toLowerCase();
  if (lowerMap === undefined) {
    lowerMap = new Map();
    for (let i = 0; i < LOWER.length; i += 2) lowerMap.set(LOWER[i], String.fromCodePoint(LOWER[i + 1]));
    lowerMap.set(0x130, 'i\u0307'); // the one lowercase of two characters
  }
  const cps = [];
  for (const ch of s) cps.push(ch.codePointAt(0));
  let out = '';
  for (let i = 0; i < cps.length; i++) {
    const cp = cps[i];
    if (cp < 0x80) out += String.fromCharCode(cp >= 65 && cp <= 90 ? cp + 32 : cp);
    else if (cp === 0x3a3) out += sigmaContext(cps, i, -1) && !sigmaContext(cps, i, 1) ? '\u03c2' : '\u03c3';
    else out += lowerMap.get(cp) ?? String.fromCodePoint(cp);
  }
  return out;
}

// --- columns and batches --------------------------------------------------------------------

/** A column of variable-size binary values: value i is `data[offsets[i]..offsets[i+1]]`. */
export class Column {
  constructor(data = new Uint8Array(0), offsets = new Uint32Array(0)) {
    this.data = data;
    this.offsets = offsets;
    this._text = undefined; // the whole data as a string, when it is ASCII (see `str`)
  }

  get length() {
    return this.offsets.length > 0 ? this.offsets.length - 1 : 0;
  }

  /** Value i as bytes (a view, no copy). */
  get(i) {
    return this.data.subarray(this.offsets[i], this.offsets[i + 1]);
  }

  /** The whole data as one string when it is all ASCII (decoded once, then cached), else
   * null. Value i is then `asciiText().substring(offsets[i], offsets[i + 1])`. */
  asciiText() {
    if (this._text === undefined) {
      const text = utf8Decoder.decode(this.data);
      this._text = NON_ASCII.test(text) ? null : text;
    }
    return this._text;
  }

  /** Value i as text. An all-ASCII column is decoded once, and its values are substrings. */
  str(i) {
    const text = this.asciiText();
    if (text !== null) return text.substring(this.offsets[i], this.offsets[i + 1]);
    return decodeText(this.get(i));
  }

  /** Every value as text, joined with `separator` (one native join when the column is ASCII). */
  joinStr(separator) {
    const n = this.length;
    const parts = new Array(n);
    const text = this.asciiText();
    const o = this.offsets;
    for (let i = 0; i < n; i++) parts[i] = text !== null ? text.substring(o[i], o[i + 1]) : this.str(i);
    return parts.join(separator);
  }

  /** Builds a column from strings (UTF-8) and/or Uint8Arrays. */
  static from(values) {
    const b = new ColumnBuilder();
    for (const v of values) b.push(v);
    return b.finish();
  }

  validate() {
    const o = this.offsets;
    if (o.length === 0) {
      if (this.data.length !== 0) throw new Error('no offsets but data');
      return;
    }
    if (o[0] !== 0) throw new Error('the first offset is not 0');
    for (let i = 1; i < o.length; i++) if (o[i] < o[i - 1]) throw new Error('offsets decrease');
    if (o[o.length - 1] !== this.data.length) {
      throw new Error(`the last offset ${o[o.length - 1]} is not the data length ${this.data.length}`);
    }
  }
}

/** Collects values (strings or Uint8Arrays) and lays them out as one column at the end: all
 * strings are joined and encoded in one native call, which is what makes a word count's keys
 * cheap in an interpreted engine. */
class ColumnBuilder {
  constructor() {
    this.items = [];
    this.allStrings = true;
  }

  push(v) {
    if (typeof v !== 'string') {
      this.allStrings = false;
      if (!(v instanceof Uint8Array)) throw new TypeError('column values are strings or Uint8Arrays');
    }
    this.items.push(v);
  }

  pushAll(values) {
    for (const v of values) this.push(v);
  }

  get length() {
    return this.items.length;
  }

  finish() {
    const items = this.items;
    const n = items.length;
    const offsets = new Uint32Array(n + 1);
    if (this.allStrings) {
      const joined = items.join('');
      const data = utf8Encoder.encode(joined);
      if (data.length === joined.length) {
        // ASCII: byte lengths are string lengths.
        let pos = 0;
        for (let i = 0; i < n; i++) {
          pos += items[i].length;
          offsets[i + 1] = pos;
        }
      } else {
        let pos = 0;
        for (let i = 0; i < n; i++) {
          pos += utf8Length(items[i]);
          offsets[i + 1] = pos;
        }
      }
      return new Column(data, offsets);
    }
    const parts = items.map((v) => (typeof v === 'string' ? utf8Encoder.encode(v) : v));
    let total = 0;
    for (let i = 0; i < n; i++) {
      total += parts[i].length;
      offsets[i + 1] = total;
    }
    const data = new Uint8Array(total);
    for (let i = 0; i < n; i++) data.set(parts[i], offsets[i]);
    return new Column(data, offsets);
  }
}

function utf8Length(s) {
  let len = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) len += 1;
    else if (c < 0x800) len += 2;
    else if (c >= 0xd800 && c < 0xdc00 && i + 1 < s.length) {
      len += 4; // a surrogate pair
      i++;
    } else len += 3;
  }
  return len;
}

/** One record of a batch: `key` (Uint8Array, or undefined when unkeyed), `value` (Uint8Array),
 * `timestamp` (event time in ms as a BigInt, or undefined). */
export class Record {
  constructor(batch, index) {
    this.batch = batch;
    this.index = index;
  }

  get key() {
    return this.batch.keys ? this.batch.keys.get(this.index) : undefined;
  }

  get value() {
    return this.batch.values.get(this.index);
  }

  get timestamp() {
    const ts = this.batch.timestamps;
    return ts.length ? ts[this.index] : undefined;
  }

  /** The value as text (throws an OperatorError when it is not UTF-8). */
  valueStr() {
    return this.batch.values.str(this.index);
  }

  /** The key as text ('' for a record without key). */
  keyStr() {
    return this.batch.keys ? this.batch.keys.str(this.index) : '';
  }

  valueI64() {
    return decodeI64(this.value);
  }

  valueF64() {
    return decodeF64(this.value);
  }
}

/** One partition of a micro-batch (the WIT `batch` record), read record by record. */
export class Partition {
  constructor(keys, values, timestamps = []) {
    this.keys = keys;
    this.values = values;
    this.timestamps = timestamps;
  }

  /** A batch of unkeyed text records, as sources produce them (handy in tests). */
  static fromLines(lines) {
    return new Partition(undefined, Column.from(lines), []);
  }

  get length() {
    return this.values.length;
  }

  record(i) {
    return new Record(this, i);
  }

  *records() {
    for (let i = 0; i < this.length; i++) yield new Record(this, i);
  }

  validate() {
    const wrap = (what, f) => {
      try {
        f();
      } catch (e) {
        throw new Error(`${what} column: ${e.message}`);
      }
    };
    wrap('values', () => this.values.validate());
    const n = this.values.length;
    if (this.keys) {
      wrap('keys', () => this.keys.validate());
      if (this.keys.length !== n) throw new Error(`${this.keys.length} keys for ${n} values`);
    }
    if (this.timestamps.length && this.timestamps.length !== n) {
      throw new Error(`${this.timestamps.length} timestamps for ${n} records`);
    }
  }
}

// --- building output ------------------------------------------------------------------------

const I64_TAG = 1;
const F64_TAG = 2;

/** Builds an operator's output batch.
 *
 * A batch is keyed as soon as one record with a key is pushed; records pushed without a key
 * into a keyed batch get an empty key.
 *
 * When the host announced that the output is combined by key with a monoid (see
 * `Transform.configure`), values emitted with the monoid's type (`emitI64` for the i64 monoids,
 * `emitF64` for sum-f64) are combined per key as they are emitted: the batch then holds one
 * record per distinct key for them, followed by the records that were not combined (equivalent
 * after the host's reduce, which is all the contract asks). */
export class PartitionBuilder {
  constructor(combine = undefined) {
    if (combine === null) combine = undefined;
    this.keyed = false;
    this.keys = new ColumnBuilder();
    // Values: a tag per record says how `vals` holds it (a string or Uint8Array as is, an i64
    // as a Number or BigInt, an f64 as a Number), so no bytes are made until `finish`.
    this.vals = [];
    this.tags = [];
    this.stamps = [];
    this.monoid = combine;
    this.combineTag = combine == null ? 0 : combine === Monoid.SUM_F64 ? F64_TAG : I64_TAG;
    this.acc = new Map();
    this.accStamps = [];
  }

  get length() {
    return this.vals.length + this.acc.size;
  }

  /** Pushes an unkeyed record (a string is UTF-8 text, a Uint8Array raw bytes). */
  pushValue(value) {
    this.keys.push('');
    this.vals.push(value);
    this.tags.push(0);
  }

  /** Pushes a key/value record with raw bytes or text (never combined: their type is unknown). */
  pushPair(key, value) {
    this.keyed = true;
    this.keys.push(key);
    this.vals.push(value);
    this.tags.push(0);
  }

  /** Pushes a copy of an input record, key and event time included (never combined). */
  pushRecord(record) {
    const key = record.key;
    if (key === undefined) this.pushValue(record.value);
    else this.pushPair(key, record.value);
    const ts = record.timestamp;
    if (ts !== undefined) this.stamps.push(ts);
  }

  /** Pushes (key, i64 value): `n` a BigInt or an integer Number. Keys are strings or bytes. */
  emitI64(key, n) {
    if (this.combineTag === I64_TAG) this.combineOne(key, n);
    else this.pushTyped(key, n, I64_TAG);
  }

  /** `emitI64(key, n)` for every key of `keys`: one call for a flatMap's many records. With
   * `skipEmpty`, empty keys are skipped (handy after `String.split`). */
  emitI64Each(keys, n, skipEmpty = false) {
    const count = keys.length;
    if (this.combineTag === I64_TAG && this.monoid === Monoid.SUM_I64 && typeof n === 'number') {
      // The hot loop of a word count: kept minimal, the engine interprets it.
      const acc = this.acc;
      for (let i = 0; i < count; i++) {
        let k = keys[i];
        if (typeof k !== 'string') k = decodeText(k);
        else if (skipEmpty && k.length === 0) continue;
        const old = acc.get(k);
        acc.set(k, old === undefined ? n : old + n);
      }
      return;
    }
    for (let i = 0; i < count; i++) {
      const k = keys[i];
      if (skipEmpty && k.length === 0) continue;
      if (this.combineTag === I64_TAG) this.combineOne(k, n);
      else this.pushTyped(k, n, I64_TAG);
    }
  }

  /** Pushes (key, f64 value). */
  emitF64(key, x) {
    if (this.combineTag === F64_TAG) this.combineOne(key, x);
    else this.pushTyped(key, x, F64_TAG);
  }

  /** Pushes (key, text value). */
  emitText(key, s) {
    this.pushPair(key, String(s));
  }

  /** Pushes (key, bytes value). */
  emitBytes(key, bytes) {
    this.pushPair(key, bytes);
  }

  pushTyped(key, v, tag) {
    this.keyed = true;
    this.keys.push(key);
    this.vals.push(v);
    this.tags.push(tag);
  }

  combineOne(key, v) {
    if (typeof key !== 'string') key = decodeText(key); // Map keys are strings
    const acc = this.acc;
    const old = acc.get(key);
    if (old === undefined) {
      acc.set(key, v);
      return;
    }
    switch (this.monoid) {
      case Monoid.SUM_F64:
        acc.set(key, old + v);
        break;
      case Monoid.SUM_I64:
        acc.set(key, typeof old === 'number' && typeof v === 'number' ? old + v : BigInt(old) + BigInt(v));
        break;
      case Monoid.MIN_I64:
        acc.set(key, BigInt.asIntN(64, BigInt(v)) < BigInt.asIntN(64, BigInt(old)) ? v : old);
        break;
      default:
        acc.set(key, BigInt.asIntN(64, BigInt(v)) > BigInt.asIntN(64, BigInt(old)) ? v : old);
    }
  }

  /** Gives event time `ts` (a BigInt) to every record pushed since the last one that has an
   * event time (so a flatMap's outputs carry the time of the record they came from). */
  stamp(ts) {
    while (this.stamps.length < this.vals.length) this.stamps.push(ts);
    while (this.accStamps.length < this.acc.size) this.accStamps.push(ts);
  }

  /** The finished batch (validated). */
  finish() {
    let keys = this.keys;
    let vals = this.vals;
    let tags = this.tags;
    let stamps = this.stamps;
    if (this.acc.size > 0) {
      const kb = new ColumnBuilder();
      kb.pushAll(this.acc.keys());
      kb.pushAll(keys.items);
      keys = kb;
      vals = [...this.acc.values(), ...vals];
      tags = new Array(this.acc.size).fill(this.combineTag).concat(tags);
      if (stamps.length || this.accStamps.length) stamps = this.accStamps.concat(stamps);
      this.keyed = true;
    }
    const values = encodeValues(vals, tags);
    const batch = new Partition(this.keyed ? keys.finish() : undefined, values, stamps);
    try {
      batch.validate();
    } catch (e) {
      throw new OperatorError(`operator built a malformed batch: ${e.message}`);
    }
    return batch;
  }
}

/** The values column: 8-byte numbers written straight into one buffer. */
function encodeValues(vals, tags) {
  const n = vals.length;
  let total = 0;
  const offsets = new Uint32Array(n + 1);
  const encoded = new Array(n);
  for (let i = 0; i < n; i++) {
    const tag = tags[i];
    if (tag !== 0) total += 8;
    else {
      const v = typeof vals[i] === 'string' ? utf8Encoder.encode(vals[i]) : vals[i];
      encoded[i] = v;
      total += v.length;
    }
    offsets[i + 1] = total;
  }
  const data = new Uint8Array(total);
  const view = new DataView(data.buffer);
  for (let i = 0; i < n; i++) {
    const tag = tags[i];
    const pos = offsets[i];
    if (tag === I64_TAG) {
      const v = vals[i];
      if (typeof v === 'number' && v >= 0 && v <= 0xffffffff) {
        view.setUint32(pos, v, true); // the high half stays 0
      } else {
        view.setBigInt64(pos, BigInt.asIntN(64, BigInt(v)), true);
      }
    } else if (tag === F64_TAG) {
      view.setFloat64(pos, vals[i], true);
    } else {
      data.set(encoded[i], pos);
    }
  }
  return new Column(data, offsets);
}

// --- operators ------------------------------------------------------------------------------

/** A partition transform: map, flatMap, filter (override `record`) or mapPartitions (override
 * `process`). Subclasses define `static info()` and may define `static configure(params)`
 * (default: `new this()`). */
export class Transform {
  static info() {
    throw new Error('operator does not define static info()');
  }

  static configure(_params) {
    return new this();
  }

  /** Handles one record, pushing any number of output records. */
  record(_record, _out) {
    throw new OperatorError('operator implements neither Transform.record nor Transform.process');
  }

  /** Handles a whole partition; by default calls `record` for each record. The records a
   * record emits get its event time, if it has one. */
  process(input, out) {
    const n = input.length;
    const stamped = input.timestamps.length > 0;
    let i = 0;
    try {
      for (; i < n; i++) {
        this.record(new Record(input, i), out);
        if (stamped) out.stamp(input.timestamps[i]);
      }
    } catch (e) {
      if (e instanceof OperatorError) e.atRecord(i);
      else if (e && typeof e === 'object' && e.recordIndex === undefined) e.recordIndex = i;
      throw e;
    }
  }
}

/** A key combiner: reduceByKey's associative function. `static valueType` says how values are
 * decoded: 'i64' (BigInt, wrapping to 64 bits when encoded), 'f64' (Number), 'text' (string)
 * or 'bytes' (Uint8Array). */
export class Combiner {
  static valueType = ValueType.I64;

  static info() {
    throw new Error('combiner does not define static info()');
  }

  static configure(_params) {
    return new this();
  }

  /** Returns `acc` combined with `value`. Must be associative. */
  combine(_acc, _value) {
    throw new Error('combiner does not define combine()');
  }
}

export function configureTransform(Cls, params) {
  params.checkKnown(Cls.info().params || []);
  return Cls.configure(params);
}

export function configureCombiner(Cls, params) {
  params.checkKnown(Cls.info().params || []);
  return Cls.configure(params);
}

/** Runs a transform over one partition: exactly what the exported `process` does. */
export function runTransform(op, input, outputCombine = undefined) {
  const out = new PartitionBuilder(outputCombine);
  op.process(input, out);
  return out.finish();
}

/** Configures transform `Cls` with `params` ([name, value] pairs), runs it over text `lines`
 * (one partition, as a source hands them over) and returns its output as [key text, i64 value
 * as a Number] pairs. For native tests of word-count-like operators. */
export function transformPairs(Cls, params, lines, outputCombine = undefined) {
  const op = configureTransform(Cls, new Params(params));
  const out = runTransform(op, Partition.fromLines(lines), outputCombine);
  const result = [];
  for (let i = 0; i < out.length; i++) {
    const r = out.record(i);
    result.push([decodeText(r.key), Number(decodeI64(r.value))]);
  }
  return result;
}

function decodeColumn(column, valueType, what) {
  const n = column.length;
  const out = new Array(n);
  for (let i = 0; i < n; i++) {
    try {
      const b = column.get(i);
      out[i] =
        valueType === ValueType.I64 ? decodeI64(b)
        : valueType === ValueType.F64 ? decodeF64(b)
        : valueType === ValueType.TEXT ? decodeText(b)
        : b.slice();
    } catch (e) {
      if (!(e instanceof OperatorError)) throw e;
      if (what === 'accumulator') throw new OperatorError(`accumulator ${i}: ${e.message}`);
      throw e.atRecord(i);
    }
  }
  return out;
}

function encodeColumn(values, valueType) {
  if (valueType === ValueType.I64 || valueType === ValueType.F64) {
    const tag = valueType === ValueType.I64 ? I64_TAG : F64_TAG;
    return encodeValues(values, new Array(values.length).fill(tag));
  }
  return Column.from(values);
}

/** The combiner's bulk fold: exactly what the exported `fold` does. */
export function runFold(op, accumulators, targets, values) {
  if (targets.length !== values.length) {
    throw new OperatorError(`fold got ${targets.length} targets for ${values.length} values`);
  }
  const valueType = op.constructor.valueType;
  const accs = decodeColumn(accumulators, valueType, 'accumulator');
  const vals = decodeColumn(values, valueType, 'value');
  const count = accs.length;
  for (let i = 0; i < vals.length; i++) {
    const t = targets[i];
    if (t >= count) throw new OperatorError(`target ${t} is out of range (${count} accumulators)`, i);
    accs[t] = op.combine(accs[t], vals[i]);
  }
  return encodeColumn(accs, valueType);
}

/** Reduces [key, value] pairs by key through combiner `Cls`, as the host's reduceByKey does
 * (the first value of a key seeds its accumulator). For native tests. */
export function reduceByKey(Cls, params, pairs) {
  const op = configureCombiner(Cls, new Params(params));
  const slots = new Map();
  const accs = [];
  const targets = [];
  const values = [];
  for (const [k, v] of pairs) {
    if (slots.has(k)) {
      targets.push(slots.get(k));
      values.push(v);
    } else {
      slots.set(k, accs.length);
      accs.push(v);
    }
  }
  const vt = Cls.valueType;
  const out = runFold(op, encodeColumn(accs, vt), Uint32Array.from(targets), encodeColumn(values, vt));
  const results = decodeColumn(out, vt, 'accumulator');
  return [...slots.keys()].map((k, i) => [k, results[i]]);
}

// --- exports --------------------------------------------------------------------------------

function infoToWit(info) {
  return {
    name: info.name,
    description: info.description,
    params: (info.params || []).map(([k, v]) => [k, v]),
    keyType: info.keyType,
    valueType: info.valueType,
    monoid: info.monoid,
  };
}

/** An exception as the WIT `operator-error`: other exceptions than OperatorError (bugs in the
 * operator) carry their name and message instead of trapping the instance. */
function errorToWit(e) {
  if (e instanceof OperatorError) return { message: e.message, recordIndex: e.recordIndex };
  const message = e instanceof Error ? `${e.name}: ${e.message}` : `thrown: ${String(e)}`;
  const recordIndex = e && typeof e === 'object' && typeof e.recordIndex === 'number' ? e.recordIndex : undefined;
  return { message, recordIndex };
}

const NOT_CONFIGURED = { message: 'operator called before configure', recordIndex: undefined };

function columnFromWit(c) {
  return new Column(c.data, c.offsets);
}

function columnToWit(c) {
  return { data: c.data, offsets: c.offsets };
}

/** The object to export as `transform` (componentize-js: `export const transform = ...`). */
export function exportTransform(Cls) {
  let op;
  let combine;
  return {
    describe() {
      return infoToWit(Cls.info());
    },
    configure(params, outputCombine) {
      try {
        op = configureTransform(Cls, new Params(params));
      } catch (e) {
        throw errorToWit(e);
      }
      combine = outputCombine ?? undefined; // engines give none as undefined (StarlingMonkey) or null (QuickJS)
    },
    process(input) {
      if (op === undefined) throw NOT_CONFIGURED;
      const batch = new Partition(input.keys ? columnFromWit(input.keys) : undefined, columnFromWit(input.values), input.timestamps);
      let out;
      try {
        out = runTransform(op, batch, combine);
      } catch (e) {
        throw errorToWit(e);
      }
      return {
        keys: out.keys ? columnToWit(out.keys) : undefined,
        values: columnToWit(out.values),
        timestamps: BigInt64Array.from(out.timestamps),
      };
    },
  };
}

/** The object to export as `combiner` (componentize-js: `export const combiner = ...`). */
export function exportCombiner(Cls) {
  let op;
  return {
    describe() {
      return infoToWit(Cls.info());
    },
    configure(params) {
      try {
        op = configureCombiner(Cls, new Params(params));
      } catch (e) {
        throw errorToWit(e);
      }
    },
    fold(accumulators, targets, values) {
      if (op === undefined) throw NOT_CONFIGURED;
      try {
        return columnToWit(runFold(op, columnFromWit(accumulators), targets, columnFromWit(values)));
      } catch (e) {
        throw errorToWit(e);
      }
    },
  };
}

// The former names ("batch" now names only a micro-batch; its parts are partitions).
export const Batch = Partition;
export const BatchBuilder = PartitionBuilder;
