import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Rng } from '../../core/rng.ts';
import { nuclearNorm, singularValueThreshold, softThreshold, spectralNorm } from './prox.ts';

test('soft-thresholding minimizes ½(z − v)² + t|z| (checked against a fine grid search)', () => {
  const t = 0.7;
  for (const v of [-2.3, -0.7, -0.2, 0, 0.5, 0.71, 3]) {
    const [z] = softThreshold([v], t);
    let bestZ = 0;
    let best = Number.POSITIVE_INFINITY;
    for (let k = -40000; k <= 40000; k++) {
      const c = k * 1e-4;
      const obj = 0.5 * (c - v) ** 2 + t * Math.abs(c);
      if (obj < best) {
        best = obj;
        bestZ = c;
      }
    }
    assert.ok(Math.abs((z as number) - bestZ) < 2e-4, `v=${v}: ${z} vs grid ${bestZ}`);
  }
});

/** A random orthogonal m × m matrix as a product of Givens rotations (independent of any SVD code). */
function randomOrthogonal(m: number, rng: Rng): number[][] {
  const Q: number[][] = Array.from({ length: m }, (_, i) =>
    Array.from({ length: m }, (_, j) => (i === j ? 1 : 0)),
  );
  for (let rep = 0; rep < 4 * m * m; rep++) {
    const a = rng.int(m);
    const b = (a + 1 + rng.int(m - 1)) % m;
    const th = rng.uniform(0, 2 * Math.PI);
    const c = Math.cos(th);
    const s = Math.sin(th);
    for (const row of Q) {
      const x = row[a] as number;
      const y = row[b] as number;
      row[a] = c * x - s * y;
      row[b] = s * x + c * y;
    }
  }
  return Q;
}

/** rows × cols matrix L diag(sigma) Rᵀ using the first columns of L and R. */
function compose(L: number[][], sigma: number[], R: number[][], rows: number, cols: number): Float64Array {
  const out = new Float64Array(rows * cols);
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) {
      let v = 0;
      for (const [q, s] of sigma.entries())
        v += ((L[i] as number[])[q] as number) * s * ((R[j] as number[])[q] as number);
      out[i * cols + j] = v;
    }
  }
  return out;
}

test('singular-value thresholding equals L diag(max(σ − t, 0)) Rᵀ for a matrix built from known factors', () => {
  const rng = new Rng(3);
  const rows = 7;
  const cols = 4;
  const L = randomOrthogonal(rows, rng);
  const R = randomOrthogonal(cols, rng);
  const sigma = [3, 1.5, 0.8, 0.2];
  const V = compose(L, sigma, R, rows, cols);
  const t = 1;
  const expected = compose(
    L,
    sigma.map((s) => Math.max(s - t, 0)),
    R,
    rows,
    cols,
  );
  const got = singularValueThreshold(V, rows, cols, t);
  assert.equal(got.rank, 2);
  assert.deepEqual(
    got.singularValues.map((s) => Number(s.toFixed(10))),
    [2, 0.5],
  );
  for (let k = 0; k < V.length; k++)
    assert.ok(Math.abs((got.value[k] as number) - (expected[k] as number)) < 1e-10);
  // Wide input (rows < cols) takes the transposed path.
  const wide = new Float64Array(cols * rows);
  for (let i = 0; i < rows; i++)
    for (let j = 0; j < cols; j++) wide[j * rows + i] = V[i * cols + j] as number;
  const gotWide = singularValueThreshold(wide, cols, rows, t);
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++)
      assert.ok(
        Math.abs((gotWide.value[j * rows + i] as number) - (expected[i * cols + j] as number)) < 1e-10,
      );
  }
  assert.ok(Math.abs(spectralNorm(V, rows, cols) - 3) < 1e-10);
  assert.ok(Math.abs(nuclearNorm(V, rows, cols) - 5.5) < 1e-10);
});

test('singular-value thresholding beats random perturbations on the prox objective', () => {
  const rng = new Rng(5);
  const rows = 6;
  const cols = 5;
  const V = Float64Array.from({ length: rows * cols }, () => rng.normal());
  const t = 0.9;
  const { value } = singularValueThreshold(V, rows, cols, t);
  const objective = (Z: Float64Array): number => {
    let sq = 0;
    for (let k = 0; k < Z.length; k++) sq += ((Z[k] as number) - (V[k] as number)) ** 2;
    return 0.5 * sq + t * nuclearNorm(Z, rows, cols);
  };
  const base = objective(value);
  for (let rep = 0; rep < 30; rep++) {
    const Z = Float64Array.from(value, (v) => v + 0.05 * rng.normal());
    assert.ok(objective(Z) >= base - 1e-12);
  }
});
