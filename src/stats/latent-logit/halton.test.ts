import assert from 'node:assert/strict';
import { test } from 'node:test';
import { firstPrimes, haltonNormalDraws, haltonSequence, inverseNormalCdf } from './halton.ts';

test('Halton sequences start with the known radical inverses', () => {
  assert.deepEqual(Array.from(haltonSequence(2, 7)), [1 / 2, 1 / 4, 3 / 4, 1 / 8, 5 / 8, 3 / 8, 7 / 8]);
  const base3 = [1 / 3, 2 / 3, 1 / 9, 4 / 9, 7 / 9, 2 / 9, 5 / 9, 8 / 9, 1 / 27];
  const got = haltonSequence(3, 9);
  for (const [k, v] of base3.entries()) assert.ok(Math.abs((got[k] as number) - v) < 1e-15);
  assert.deepEqual(firstPrimes(6), [2, 3, 5, 7, 11, 13]);
});

test('the inverse normal CDF matches tabulated quantiles', () => {
  // Standard normal quantiles from statistical tables.
  const table: [number, number][] = [
    [0.5, 0],
    [0.975, 1.959963984540054],
    [0.025, -1.959963984540054],
    [0.8413447460685429, 1],
    [0.001, -3.090232306167813],
    [0.999999, 4.753424308822899],
  ];
  for (const [p, q] of table)
    assert.ok(Math.abs(inverseNormalCdf(p) - q) < 1e-8 * Math.max(1, Math.abs(q)), `Φ⁻¹(${p})`);
  assert.throws(() => inverseNormalCdf(0), { code: 'INVALID_ARGUMENT' });
  assert.throws(() => inverseNormalCdf(1), { code: 'INVALID_ARGUMENT' });
});

test('Halton normal draws have near-zero mean and unit variance per dimension', () => {
  const dims = 3;
  const z = haltonNormalDraws(50, 40, dims);
  for (let k = 0; k < dims; k++) {
    let s = 0;
    let s2 = 0;
    const m = z.length / dims;
    for (let j = 0; j < m; j++) {
      const v = z[j * dims + k] as number;
      s += v;
      s2 += v * v;
    }
    // Quasi-random points integrate these moments far better than the ~1/√2000 of random draws.
    assert.ok(Math.abs(s / m) < 0.01, `mean ${s / m}`);
    assert.ok(Math.abs(s2 / m - 1) < 0.03, `variance ${s2 / m}`);
  }
});
