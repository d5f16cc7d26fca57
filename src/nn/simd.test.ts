import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Rng } from '../core/rng.ts';
import { simdBuildError, simdGemm } from './simd.ts';

test('the Wasm SIMD module assembles and instantiates on this runtime', () => {
  assert.equal(simdBuildError(), null);
  assert.notEqual(simdGemm, null);
});

test('SIMD gemm_nt matches a float64 triple loop', () => {
  const g = simdGemm;
  if (g === null) return;
  const rng = new Rng(5);
  for (const [m, n, k] of [
    [4, 2, 4],
    [8, 4, 12],
    [32, 10, 100],
    [4, 8, 784],
  ] as const) {
    const a = 3; // odd float offsets: kernel must not assume 16-byte alignment
    const b = a + m * k;
    const o = b + n * k;
    g.reserve(o + m * n);
    const h = g.heap;
    for (let i = a; i < o; i++) h[i] = rng.normal();
    g.gemmNT(o, a, b, m, n, k);
    for (let i = 0; i < m; i++)
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let t = 0; t < k; t++) s += (h[a + i * k + t] as number) * (h[b + j * k + t] as number);
        const got = h[o + i * n + j] as number;
        assert.ok(
          Math.abs(got - s) <= 1e-4 * (1 + Math.abs(s)),
          `${m}x${n}x${k} at (${i},${j}): ${got} vs ${s}`,
        );
      }
  }
});

test('SIMD gemm_tn_acc adds Aᵀ·B to out, matching a float64 loop', () => {
  const g = simdGemm;
  if (g === null) return;
  const rng = new Rng(6);
  for (const [n, m, k] of [
    [1, 2, 16],
    [3, 6, 36],
    [5, 4, 4],
    [32, 10, 100],
  ] as const) {
    const a = 1;
    const b = a + n * m;
    const o = b + n * k;
    g.reserve(o + m * k);
    const h = g.heap;
    for (let i = a; i < o + m * k; i++) h[i] = rng.normal();
    const before = h.slice(o, o + m * k);
    g.gemmTNAcc(o, a, b, n, m, k);
    for (let j = 0; j < m; j++)
      for (let t = 0; t < k; t++) {
        let s = before[j * k + t] as number;
        for (let e = 0; e < n; e++) s += (h[a + e * m + j] as number) * (h[b + e * k + t] as number);
        const got = h[o + j * k + t] as number;
        assert.ok(
          Math.abs(got - s) <= 1e-4 * (1 + Math.abs(s)),
          `${n}x${m}x${k} at (${j},${t}): ${got} vs ${s}`,
        );
      }
  }
});

test('SIMD axpyArrays adds alpha·x for lengths that are not multiples of 4', () => {
  const g = simdGemm;
  if (g === null) return;
  const rng = new Rng(7);
  for (const n of [1, 5, 4099]) {
    const y = Float32Array.from({ length: n }, () => rng.normal());
    const x = Float32Array.from({ length: n }, () => rng.normal());
    const expected = Float64Array.from(y, (v, i) => v + -0.25 * (x[i] as number));
    g.axpyArrays(y, -0.25, x);
    for (let i = 0; i < n; i++) assert.ok(Math.abs((y[i] as number) - (expected[i] as number)) < 1e-6);
  }
});
