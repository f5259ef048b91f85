// Native tests of the JavaScript guest SDK and its examples, through the exported objects the
// component exposes: `node --test guest-sdk/js/test/` (plain Node.js, no Wasm).
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { Partition, PartitionBuilder, Column, Monoid, OperatorError, Params, decodeI64, encodeI64, toLowercase } from '../spate-guest.js';
import { transform } from '../examples/tokenize/app.js';
import { combiner } from '../examples/sum/app.js';

const enc = new TextEncoder();
const dec = new TextDecoder();

function witLines(lines) {
  const c = Column.from(lines);
  return { keys: undefined, values: { data: c.data, offsets: c.offsets }, timestamps: new BigInt64Array(0) };
}

function records(out) {
  const keys = new Column(out.keys.data, out.keys.offsets);
  const values = new Column(out.values.data, out.values.offsets);
  const result = [];
  for (let i = 0; i < values.length; i++) result.push([dec.decode(keys.get(i)), Number(decodeI64(values.get(i)))]);
  return result;
}

function words(params, lines, combine) {
  transform.configure(params, combine);
  return records(transform.process(witLines(lines)));
}

test('splits on any whitespace', () => {
  assert.deepEqual(words([], ['a  b\tc', '', '  d\u00a0e\r']).map(([w]) => w), ['a', 'b', 'c', 'd', 'e']);
});

test('control characters and U+FEFF stay in words, U+0085 splits, like Rust', () => {
  assert.deepEqual(words([], ['ab\x01cd e\x1cf \x0b g', 'x\ufeffy z\u0085w']).map(([w]) => w), ['ab\x01cd', 'e\x1cf', 'g', 'x\ufeffy', 'z', 'w']);
});

test('lowercases and strips when asked', () => {
  const params = [['lowercase', 'true'], ['strip-punctuation', 'true']];
  assert.deepEqual(words(params, ['Hello, World! -- «Ça» va?', "don't", 'ΟΔΟΣ. ΣΑΣ']).map(([w]) => w), ['hello', 'world', 'ça', 'va', "don't", 'οδος', 'σας']);
});

test('pre-combines counts when the host asks', () => {
  assert.deepEqual(words([], ['a b a', 'b a c'], 'sum-i64'), [['a', 3], ['b', 2], ['c', 1]]);
});

test('rejects unknown and malformed parameters with operator errors', () => {
  assert.throws(() => transform.configure([['lowercse', 'true']], undefined), (e) => e.message.includes("unknown parameter 'lowercse'"));
  assert.throws(() => transform.configure([['lowercase', 'yes']], undefined), (e) => e.message.includes('must be true or false'));
});

test('invalid UTF-8 names the record', () => {
  transform.configure([], undefined);
  const c = Column.from(['ok', new Uint8Array([0xff, 0xfe])]);
  assert.throws(
    () => transform.process({ keys: undefined, values: { data: c.data, offsets: c.offsets }, timestamps: new BigInt64Array(0) }),
    (e) => e.recordIndex === 1 && e.message.startsWith('value is not UTF-8'),
  );
});

test('final sigma', () => {
  assert.equal(toLowercase('ΑΣ ΟΔΟΣ. Σ ΣΣ İⒶ'), 'ας οδος. σ σς i\u0307ⓐ');
});

test('builder mixes keyed and unkeyed records, and stamps', () => {
  const out = new PartitionBuilder();
  out.pushValue('plain');
  out.emitI64('word', 3);
  out.pushPair(enc.encode('k'), enc.encode('v'));
  out.stamp(5n);
  const b = out.finish();
  assert.deepEqual([0, 1, 2].map((i) => dec.decode(b.keys.get(i))), ['', 'word', 'k']);
  assert.equal(decodeI64(b.values.get(1)), 3n);
  assert.deepEqual(b.timestamps, [5n, 5n, 5n]);
});

test('combining builder keeps values of other types', () => {
  const out = new PartitionBuilder(Monoid.SUM_I64);
  out.emitI64Each(['a', 'b', 'a'], 1);
  out.emitText('a', 'text is not combined');
  out.emitI64('c', 10n);
  const b = out.finish();
  assert.equal(b.length, 4);
  assert.equal(decodeI64(b.values.get(0)), 2n);
  assert.equal(decodeI64(b.values.get(2)), 10n);
  assert.equal(b.values.str(3), 'text is not combined');
});

test('params', () => {
  const p = new Params([['n', ' -5 '], ['min', 'x']]);
  assert.equal(p.i64('n', 0n), -5n);
  assert.throws(() => p.i64('min', 0n), /parameter 'min' must be an integer, got 'x'/);
  assert.throws(() => p.checkKnown([['n', '']]), /unknown parameter 'min' \(known: n\)/);
});

function i64Column(values) {
  const c = Column.from(values.map(encodeI64));
  return { data: c.data, offsets: c.offsets };
}

test('sum folds, wraps and reports bad input', () => {
  combiner.configure([]);
  const out = combiner.fold(i64Column([1n, 9223372036854775807n]), new Uint32Array([0, 1, 0]), i64Column([2n, 1n, -5n]));
  const col = new Column(out.data, out.offsets);
  assert.deepEqual([decodeI64(col.get(0)), decodeI64(col.get(1))], [-2n, -9223372036854775808n]);
  assert.throws(() => combiner.fold(i64Column([1n]), new Uint32Array([0, 3]), i64Column([1n, 2n])),
    (e) => e.message === 'target 3 is out of range (1 accumulators)' && e.recordIndex === 1);
  assert.throws(() => combiner.configure([['x', '1']]), (e) => e.message.includes('takes no parameters'));
});

test('OperatorError points at a record once', () => {
  const e = new OperatorError('bad').atRecord(3).atRecord(5);
  assert.equal(e.recordIndex, 3);
  assert.equal(Partition.fromLines(['a']).length, 1);
});

test('the JS UTF-8 codec (for engines without TextDecoder) agrees with the native one', async () => {
  const { jsUtf8 } = await import('../spate-guest.js');
  const strict = new TextDecoder('utf-8', { fatal: true });
  const lax = new TextDecoder('utf-8');
  const samples = ['', 'ascii', 'Ça «va» — 日本語 😀 İ', '\u{10ffff}\u0000\u007f\u0080\u07ff\u0800\uffff'];
  for (const s of samples) {
    assert.deepEqual(jsUtf8.encode(s), enc.encode(s));
    assert.equal(jsUtf8.decode(enc.encode(s), true), s);
  }
  const invalid = [[0xff], [0xc0, 0x80], [0xe0, 0x80, 0x80], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xe2, 0x82], [0x61, 0xf0, 0x9f, 0x98], [0xc3]];
  for (const b of invalid) {
    const bytes = new Uint8Array(b);
    assert.throws(() => strict.decode(bytes));
    assert.throws(() => jsUtf8.decode(bytes, true));
    assert.equal(jsUtf8.decode(bytes, false), lax.decode(bytes), JSON.stringify(b));
  }
});

test('no pre-combining when the host passes none as null (QuickJS) or undefined', () => {
  for (const none of [null, undefined]) {
    assert.deepEqual(words([], ['a b a'], none), [['a', 1], ['b', 1], ['a', 1]]);
  }
});
