// Native tests of the operator (plain Node.js, no Wasm): `node --test`.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { transformPairs } from './spate-guest/spate-guest.js';
import { Operator } from './app.js';

test('emits one per word', () => {
  assert.deepEqual(transformPairs(Operator, [], ['To be or', 'NOT']), [['to', 1], ['be', 1], ['or', 1], ['not', 1]]);
});

test('keeps case when asked', () => {
  const out = transformPairs(Operator, [['lowercase', 'false']], ['To be']);
  assert.deepEqual(out.map(([word]) => word), ['To', 'be']);
});
