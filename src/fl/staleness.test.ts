import assert from 'node:assert/strict';
import { test } from 'node:test';
import { OrchardError } from '../core/errors.ts';
import { stalenessWeight } from './staleness.ts';

const close = (a: number, b: number, tol = 1e-12) => assert.ok(Math.abs(a - b) <= tol, `${a} vs ${b}`);

test('constant weight is 1 at every staleness', () => {
  const w = stalenessWeight({ kind: 'constant' });
  for (const s of [0, 1, 7, 1000]) assert.equal(w(s), 1);
});

test('polynomial weight matches hand values', () => {
  const half = stalenessWeight({ kind: 'polynomial', exponent: 0.5 });
  close(half(0), 1);
  close(half(3), 0.5); // 1/sqrt(4)
  close(half(8), 1 / 3); // 1/sqrt(9)
  const one = stalenessWeight({ kind: 'polynomial', exponent: 1 });
  close(one(4), 0.2);
  const zero = stalenessWeight({ kind: 'polynomial', exponent: 0 });
  close(zero(50), 1);
});

test('hinge weight is flat up to the threshold, then 1/(1 + slope·(s − threshold))', () => {
  const w = stalenessWeight({ kind: 'hinge', threshold: 4, slope: 0.5 });
  close(w(0), 1);
  close(w(4), 1);
  close(w(5), 1 / 1.5);
  close(w(10), 1 / 4); // 1 + 0.5·6
});

test('threshold weight is 1 up to the threshold and 0 beyond', () => {
  const w = stalenessWeight({ kind: 'threshold', threshold: 2 });
  assert.equal(w(0), 1);
  assert.equal(w(2), 1);
  assert.equal(w(3), 0);
});

test('bad staleness and bad specs are typed errors', () => {
  const w = stalenessWeight({ kind: 'polynomial', exponent: 0.5 });
  assert.throws(
    () => w(-1),
    (e: unknown) => e instanceof OrchardError && e.code === 'INVALID_ARGUMENT',
  );
  assert.throws(() => w(1.5), OrchardError);
  assert.throws(
    () => stalenessWeight({ kind: 'polynomial', exponent: -1 }),
    (e: unknown) => e instanceof OrchardError && e.code === 'CONFIG_INVALID',
  );
  assert.throws(() => stalenessWeight({ kind: 'hinge', threshold: -1, slope: 1 }), OrchardError);
  assert.throws(() => stalenessWeight({ kind: 'threshold', threshold: 0.5 }), OrchardError);
});
