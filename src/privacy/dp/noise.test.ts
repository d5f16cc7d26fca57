import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError, NonFiniteError, OrchardError } from '../../core/errors.ts';
import { Rng } from '../../core/rng.ts';
import {
  addGaussianNoise,
  fillStandardNormal,
  MAX_STANDARD_NORMAL,
  type RandomSource,
  snapGranularity,
  ZIGGURAT_R,
  ZIGGURAT_X,
} from './noise.ts';

/** A replayable byte source for tests that need the same noise twice (NOT for real noise). */
function replaySource(seed: number): RandomSource {
  const rng = new Rng(seed);
  return {
    fill(bytes: Uint8Array): void {
      for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(rng.next() * 256);
    },
  };
}

test('cryptographic standard normals: mean, variance, 4th moment and P(|z|<1) within statistical bounds', () => {
  const n = 200_000;
  const z = fillStandardNormal(new Float64Array(n));
  let s1 = 0;
  let s2 = 0;
  let s4 = 0;
  let inside = 0;
  for (const v of z) {
    s1 += v;
    s2 += v * v;
    s4 += v ** 4;
    if (Math.abs(v) < 1) inside++;
  }
  const mean = s1 / n;
  const variance = s2 / n - mean * mean;
  // Five standard errors: a correct sampler fails with probability ~1e-6 per check.
  assert.ok(Math.abs(mean) < 5 / Math.sqrt(n), `mean ${mean}`);
  assert.ok(Math.abs(variance - 1) < 5 * Math.sqrt(2 / n), `variance ${variance}`);
  assert.ok(Math.abs(s4 / n - 3) < 5 * Math.sqrt(96 / n), `4th moment ${s4 / n}`);
  const p = 0.6826894921370859; // Φ(1) − Φ(−1)
  assert.ok(Math.abs(inside / n - p) < 5 * Math.sqrt((p * (1 - p)) / n), `P(|z|<1) = ${inside / n}`);
  assert.ok(z.every((v) => Math.abs(v) <= MAX_STANDARD_NORMAL));
});

test('two draws from the crypto source differ (it is not a fixed seed)', () => {
  const a = fillStandardNormal(new Float64Array(8));
  const b = fillStandardNormal(new Float64Array(8));
  assert.notDeepEqual([...a], [...b]);
});

/** ∫_a^b exp(−x²/2) dx by composite Simpson (an integrator independent of the sampler). */
function gaussIntegral(a: number, b: number, steps = 2000): number {
  const h = (b - a) / steps;
  const f = (x: number) => Math.exp(-0.5 * x * x);
  let s = f(a) + f(b);
  for (let i = 1; i < steps; i++) s += (i % 2 === 1 ? 4 : 2) * f(a + i * h);
  return (s * h) / 3;
}

test('ziggurat tables: every layer has the same area, the base layer covers the tail', () => {
  const x = ZIGGURAT_X;
  const f = (v: number) => Math.exp(-0.5 * v * v);
  // Base layer = rectangle [0, r] × [0, f(r)] plus the tail beyond r (integrated numerically).
  const v = ZIGGURAT_R * f(ZIGGURAT_R) + gaussIntegral(ZIGGURAT_R, 40, 20000);
  assert.ok(Math.abs((x[0] as number) * f(ZIGGURAT_R) - v) < 1e-10, 'base layer area');
  for (let i = 1; i < 128; i++) {
    const area = (x[i] as number) * (f(x[i + 1] as number) - f(x[i] as number));
    assert.ok(Math.abs(area - v) < 1e-8, `layer ${i} area ${area} vs ${v}`);
  }
  assert.equal(x[128], 0);
});

test('ziggurat: chi-square over 18 bins and the tail frequency match the normal law', () => {
  const n = 400_000;
  const z = fillStandardNormal(new Float64Array(n));
  // Bins (−∞,−4], (−4,−3.5], …, (3.5,4], (4,∞); probabilities from Simpson, not from the sampler.
  const edges = Array.from({ length: 17 }, (_, i) => -4 + i * 0.5);
  const norm = 1 / Math.sqrt(2 * Math.PI);
  const probs = [
    norm * gaussIntegral(4, 40),
    ...edges.slice(1).map((e, i) => norm * gaussIntegral(edges[i] as number, e)),
    norm * gaussIntegral(4, 40),
  ];
  const counts = new Array<number>(probs.length).fill(0);
  let beyondR = 0;
  for (const v of z) {
    const bin = v <= -4 ? 0 : v > 4 ? probs.length - 1 : 1 + Math.min(15, Math.floor((v + 4) / 0.5 - 1e-12));
    counts[bin] = (counts[bin] as number) + 1;
    if (Math.abs(v) > ZIGGURAT_R) beyondR++;
  }
  let chi2 = 0;
  for (let i = 0; i < probs.length; i++) {
    const e = n * (probs[i] as number);
    chi2 += ((counts[i] as number) - e) ** 2 / e;
  }
  // 17 degrees of freedom: P(χ² > 60) ≈ 1e-6.
  assert.ok(chi2 < 60, `chi-square ${chi2}, counts ${counts}`);
  // The tail beyond r comes from Marsaglia's tail algorithm: its mass must be 2(1 − Φ(r)).
  const pTail = 2 * norm * gaussIntegral(ZIGGURAT_R, 40, 20000);
  assert.ok(
    Math.abs(beyondR / n - pTail) < 5 * Math.sqrt(pTail / n),
    `P(|z| > r) = ${beyondR / n}, expected ${pTail}`,
  );
});

test('ziggurat bit layout: 7 bits pick the layer, 1 the sign, 53 the position; zero bytes give zero', () => {
  // All-zero bytes: layer 0, sign +, position 0 ⇒ z = 0 exactly (the zero-noise hook of other tests).
  assert.deepEqual([...fillStandardNormal(new Float64Array(3), { fill: (b) => b.fill(0) })], [0, 0, 0]);
  // One scripted draw in the fast region of layer 5, negative: z = −position · x[5] / 2^53.
  const layer = 5;
  const high = 0x12345; // top 21 bits of the position
  const low = 0x9abcdef0;
  const word0 = ((high << 11) | 0x80 | layer) >>> 0;
  const scripted: RandomSource = {
    fill(bytes) {
      const w = new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4);
      for (let i = 0; i < w.length; i += 2) {
        w[i] = word0;
        w[i + 1] = low;
      }
    },
  };
  const position = high * 2 ** 32 + low;
  assert.ok(position / 2 ** 53 < (ZIGGURAT_X[layer + 1] as number) / (ZIGGURAT_X[layer] as number));
  const [z] = fillStandardNormal(new Float64Array(1), scripted);
  assert.equal(z, -(position * (ZIGGURAT_X[layer] as number)) / 2 ** 53);
});

test('a stuck random source fails instead of spinning', () => {
  // All-ones bytes always land in the top layer's wedge above the curve: every draw is rejected.
  assert.throws(
    () => fillStandardNormal(new Float64Array(1), { fill: (bytes) => bytes.fill(0xff) }),
    (e: unknown) => e instanceof OrchardError && /broken/.test(e.message),
  );
});

test('addGaussianNoise: noise has the requested σ, outputs lie on the snapping grid, input untouched', () => {
  const n = 100_000;
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = Math.sin(i) * 0.5;
  const before = x.slice();
  const stddev = 0.8;
  const y = addGaussianNoise(x, { stddev, bound: 1 });
  assert.ok(y instanceof Float32Array);
  assert.deepEqual(x, before);
  const g = snapGranularity(stddev, 1, 'float32');
  let s1 = 0;
  let s2 = 0;
  let offGrid = 0;
  for (let i = 0; i < n; i++) {
    const v = y[i] as number;
    if (!Number.isInteger(v / g)) offGrid++;
    const e = v - (x[i] as number);
    s1 += e;
    s2 += e * e;
  }
  assert.equal(offGrid, 0, `outputs off the grid ${g}`);
  const mean = s1 / n;
  const sd = Math.sqrt(s2 / n - mean * mean);
  assert.ok(Math.abs(mean) < (5 * stddev) / Math.sqrt(n), `noise mean ${mean}`);
  assert.ok(Math.abs(sd / stddev - 1) < 5 * Math.sqrt(0.5 / n), `noise sd ${sd}`);
});

test('snapping: inputs differing only in low-order bits give identical outputs for the same randomness', () => {
  // Float64 output: the grid is g = 2^-49 here; inputs within g/2 of the same grid point must be
  // indistinguishable however their low bits differ (the floating-point attack reads those bits).
  const g = snapGranularity(1, 1, 'float64');
  const x = Float64Array.of(0.3, -0.7, 0.123456789).map((v) => Math.round(v / g) * g);
  const nudged = x.map((v, i) => v + (i % 2 === 0 ? g / 4 : -g / 3));
  assert.ok(x.some((v, i) => v !== nudged[i]));
  const a = addGaussianNoise(x, { stddev: 1, bound: 1, source: replaySource(5) });
  const b = addGaussianNoise(nudged, { stddev: 1, bound: 1, source: replaySource(5) });
  assert.deepEqual([...a], [...b]);
  for (const v of a) assert.ok(Number.isInteger(v / g));
  // Float32 output: a one-ulp change of a float32 input (2^-25 at 0.3) is far below g = 2^-20.
  const g32 = snapGranularity(1, 1, 'float32');
  const x32 = Float32Array.of(Math.round(0.3 / g32) * g32);
  const y32 = Float32Array.of((x32[0] as number) + 2 ** -25);
  assert.notEqual(x32[0], y32[0]);
  assert.deepEqual(
    [...addGaussianNoise(x32, { stddev: 1, bound: 1, source: replaySource(6) })],
    [...addGaussianNoise(y32, { stddev: 1, bound: 1, source: replaySource(6) })],
  );
});

test('addGaussianNoise fails closed on bad input', () => {
  assert.throws(
    () => addGaussianNoise(Float32Array.of(1, Number.NaN), { stddev: 1, bound: 2 }),
    NonFiniteError,
  );
  assert.throws(
    () => addGaussianNoise(Float32Array.of(3), { stddev: 1, bound: 2 }),
    (e: unknown) => e instanceof OrchardError && /exceeds the public bound/.test(e.message),
  );
  assert.throws(() => addGaussianNoise(Float32Array.of(1), { stddev: 0, bound: 2 }), ConfigError);
  assert.throws(() => addGaussianNoise(Float32Array.of(1), { stddev: 1, bound: Number.NaN }), ConfigError);
});

test('scale multiplies the snapped output (post-processing) and must be finite and > 0', () => {
  const x = Float64Array.from({ length: 1000 }, (_, i) => Math.cos(i) * 0.4);
  const plain = addGaussianNoise(x, { stddev: 0.3, bound: 1, source: replaySource(9) });
  // 1/4 is a power of two, so the scaled output is exactly a quarter of the unscaled one.
  const quarter = addGaussianNoise(x, { stddev: 0.3, bound: 1, scale: 0.25, source: replaySource(9) });
  assert.deepEqual(
    [...quarter],
    [...plain].map((v) => v / 4),
  );
  const third = addGaussianNoise(x, { stddev: 0.3, bound: 1, scale: 1 / 3, source: replaySource(9) });
  for (let i = 0; i < x.length; i++)
    assert.ok(Math.abs((third[i] as number) - (plain[i] as number) / 3) <= 1e-15, `element ${i}`);
  for (const scale of [0, -1, Number.NaN, Number.POSITIVE_INFINITY])
    assert.throws(
      () => addGaussianNoise(x, { stddev: 1, bound: 1, scale }),
      (e: unknown) => e instanceof ConfigError && e.issues.some((i) => i.path === 'scale'),
    );
});
