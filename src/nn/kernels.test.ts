import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Rng } from '../core/rng.ts';
import {
  addScaledRows,
  addScaledSparseRow,
  compactRows,
  gemmNT,
  gemmNTCompactA,
  gemmTNAdd,
  zeroFraction,
} from './kernels.ts';

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

test('gemmNT and its compacted-sparse variant match a naive triple loop for every blocking remainder', () => {
  const rng = new Rng(1);
  for (const [m, n, k] of [
    [1, 1, 1],
    [4, 2, 3],
    [5, 3, 7],
    [7, 5, 16],
    [9, 10, 33],
    [8, 7, 5],
    [4, 9, 2],
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
    const start = new Int32Array(m + 1);
    const idx = new Int32Array(m * k);
    const val = new Float64Array(m * k);
    compactRows(a, m, k, start, idx, val);
    const compact = new Float32Array(m * n);
    gemmNTCompactA(compact, start, idx, val, b, bOff, b, biasOff, m, n, k);
    assertClose(compact, expected, m * n);
    const noBias = new Float32Array(m * n);
    gemmNT(noBias, a, b, bOff, b, -1, m, n, k);
    assertClose(noBias, naiveGemmNT(a, b, bOff, null, m, n, k), m * n);
  }
});

test('addScaledRows adds Σ coef·row for 1..9 rows; addScaledSparseRow scatters', () => {
  const rng = new Rng(2);
  const len = 13;
  const src = randomArray(rng, 10 * len);
  for (let count = 0; count <= 19; count++) {
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
  addScaledSparseRow(out, 1, 2, Int32Array.from([9, 0, 4]), Float64Array.from([7, 1.5, -1]), 1, 2);
  assert.deepEqual([...out], [0, 3, 0, 0, 0, -2]);
});

test('zeroFraction counts exact zeros', () => {
  assert.equal(zeroFraction(Float32Array.from([0, 1, 0, 2]), 4), 0.5);
  assert.equal(zeroFraction(Float32Array.from([0, 1, 0, 2]), 2), 0.5);
  assert.equal(zeroFraction(new Float32Array(0), 0), 0);
  assert.equal(zeroFraction(new Float32Array(10000), 10000), 1);
  const half = Float32Array.from({ length: 10000 }, (_, i) => (i % 2 === 0 ? 0 : 1));
  assert.ok(Math.abs(zeroFraction(half, 10000) - 0.5) < 0.05);
});

test('gemmTNAdd adds Aᵀ·B to an offset block, matching a naive loop', () => {
  const rng = new Rng(3);
  for (const [n, m, k] of [
    [1, 1, 1],
    [3, 2, 4],
    [5, 3, 7],
    [10, 10, 60],
  ] as const) {
    const a = randomArray(rng, n * m);
    const b = randomArray(rng, n * k);
    const out = randomArray(rng, 2 + m * k);
    const expected = Float64Array.from(out);
    for (let j = 0; j < m; j++)
      for (let t = 0; t < k; t++) {
        let s = 0;
        for (let e = 0; e < n; e++) s += (a[e * m + j] as number) * (b[e * k + t] as number);
        expected[2 + j * k + t] = (expected[2 + j * k + t] as number) + s;
      }
    gemmTNAdd(out, 2, a, b, n, m, k);
    assertClose(out, expected, 2 + m * k);
  }
});
