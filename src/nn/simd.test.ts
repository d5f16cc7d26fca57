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
    [2, 2, 4],
    [6, 4, 12],
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
