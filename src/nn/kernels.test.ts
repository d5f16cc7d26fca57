import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Rng } from '../core/rng.ts';
import { addScaledRows, addScaledSparseRow, gemmNT, gemmNTSparseA, zeroFraction } from './kernels.ts';

function randomArray(rng: Rng, n: number, zeroFrac = 0): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = rng.next() < zeroFrac ? 0 : rng.normal();
  return a;
}

/** Naive triple loop: the independent reference for out = A·Bᵀ + bias. */
function naiveGemmNT(
  a: Float32Array,
  b: Float32Array,
  bOff: number,
  bias: Float32Array | null,
  m: number,
  n: number,
  k: number,
) {
  const out = new Float64Array(m * n);
  for (let i = 0; i < m; i++)
    for (let j = 0; j < n; j++) {
      let s = bias === null ? 0 : (bias[j] as number);
      for (let t = 0; t < k; t++) s += (a[i * k + t] as number) * (b[bOff + j * k + t] as number);
      out[i * n + j] = s;
    }
  return out;
}

function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, len: number, tol = 1e-4): void {
  for (let i = 0; i < len; i++) {
    const a = actual[i] as number;
    const e = expected[i] as number;
    assert.ok(Math.abs(a - e) <= tol * (1 + Math.abs(e)), `index ${i}: ${a} vs ${e}`);
  }
}

test('gemmNT and its sparse variant match a naive triple loop for every blocking remainder', () => {
  const rng = new Rng(1);
  for (const [m, n, k] of [
    [1, 1, 1],
    [4, 2, 3],
    [5, 3, 7],
    [7, 5, 16],
    [9, 10, 33],
    [3, 1, 2],
  ] as const) {
    const a = randomArray(rng, m * k, 0.4);
    const bOff = 5;
    const b = randomArray(rng, bOff + n * k + n);
    const biasOff = bOff + n * k;
    const bias = b.slice(biasOff, biasOff + n);
    const expected = naiveGemmNT(a, b, bOff, bias, m, n, k);
    const out = new Float32Array(m * n);
    gemmNT(out, a, b, bOff, b, biasOff, m, n, k);
    assertClose(out, expected, m * n);
    const sparse = new Float32Array(m * n);
    gemmNTSparseA(sparse, a, b, bOff, b, biasOff, m, n, k, new Int32Array(k), new Float64Array(k));
    assertClose(sparse, expected, m * n);
    const noBias = new Float32Array(m * n);
    gemmNT(noBias, a, b, bOff, b, -1, m, n, k);
    assertClose(noBias, naiveGemmNT(a, b, bOff, null, m, n, k), m * n);
  }
});

test('addScaledRows adds Σ coef·row for 1..9 rows; addScaledSparseRow scatters', () => {
  const rng = new Rng(2);
  const len = 13;
  const src = randomArray(rng, 10 * len);
  for (let count = 0; count <= 9; count++) {
    const out = randomArray(rng, 3 + len);
    const expected = Float64Array.from(out);
    const coef = new Float64Array(count);
    const offs = new Int32Array(count);
    for (let r = 0; r < count; r++) {
      coef[r] = rng.normal();
      offs[r] = rng.int(9) * len;
      for (let t = 0; t < len; t++)
        expected[3 + t] =
          (expected[3 + t] as number) + (coef[r] as number) * (src[(offs[r] as number) + t] as number);
    }
    addScaledRows(out, 3, len, coef, src, offs, count);
    assertClose(out, expected, 3 + len);
  }
  const out = new Float32Array(6);
  addScaledSparseRow(out, 1, 2, Int32Array.from([0, 4]), Float64Array.from([1.5, -1]), 2);
  assert.deepEqual([...out], [0, 3, 0, 0, 0, -2]);
});

test('zeroFraction counts exact zeros', () => {
  assert.equal(zeroFraction(Float32Array.from([0, 1, 0, 2]), 4), 0.5);
  assert.equal(zeroFraction(Float32Array.from([0, 1, 0, 2]), 2), 0.5);
  assert.equal(zeroFraction(new Float32Array(0), 0), 0);
  assert.ok(zeroFraction(new Float32Array(10000), 10000) === 1);
});
