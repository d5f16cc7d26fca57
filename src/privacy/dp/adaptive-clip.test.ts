import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError, NonFiniteError } from '../../core/errors.ts';
import { Rng } from '../../core/rng.ts';
import { AdaptiveClipper, updateNoiseMultiplier } from './adaptive-clip.ts';
import type { RandomSource } from './noise.ts';

/** All-zero bytes make the ziggurat draw exactly z = 0 (noise.test.ts checks it): isolates the update rule. */
const ZERO_NOISE: RandomSource = { fill: (bytes) => bytes.fill(0) };

test('update noise multiplier keeps the pair as private as one Gaussian with z', () => {
  const z = 1.2;
  const sb = 5;
  const sd = updateNoiseMultiplier(z, sb);
  // Andrew et al. 2021, Theorem 1: z⁻² = σ_Δ⁻² + (2σ_b)⁻².
  assert.ok(Math.abs(1 / (sd * sd) + 1 / (4 * sb * sb) - 1 / (z * z)) < 1e-12);
  assert.ok(sd > z);
  assert.throws(() => updateNoiseMultiplier(1, 0.5), ConfigError);
  assert.throws(() => updateNoiseMultiplier(0, 5), ConfigError);
});

test('the geometric rule: all updates unclipped shrinks C by exp(−η(1 − γ)), none grows it by exp(ηγ)', () => {
  const clip = new AdaptiveClipper({
    initialNorm: 2,
    targetQuantile: 0.5,
    learningRate: 0.2,
    countNoiseStddev: 1,
    source: ZERO_NOISE,
  });
  assert.equal(clip.update([0.1, 0.5, 1.9], 3), 1);
  assert.ok(Math.abs(clip.norm - 2 * Math.exp(-0.2 * 0.5)) < 1e-12);
  const before = clip.norm;
  assert.equal(clip.update([5, 6], 2), 0);
  assert.ok(Math.abs(clip.norm - before * Math.exp(0.2 * 0.5)) < 1e-12);
});

test('without noise the clip norm converges to the target quantile of the norms', () => {
  // Norms uniform on [0, 10]: the 0.3-quantile is 3.
  const rng = new Rng(3);
  const clip = new AdaptiveClipper({
    initialNorm: 9,
    targetQuantile: 0.3,
    learningRate: 0.2,
    countNoiseStddev: 1,
    source: ZERO_NOISE,
  });
  for (let round = 0; round < 300; round++) {
    const norms = Array.from({ length: 200 }, () => rng.next() * 10);
    clip.update(norms, 200);
  }
  assert.ok(Math.abs(clip.norm - 3) < 0.3, `C = ${clip.norm}`);
});

test('with cryptographic count noise it still tracks the quantile on average', () => {
  const rng = new Rng(4);
  const clip = new AdaptiveClipper({
    initialNorm: 1,
    targetQuantile: 0.5,
    learningRate: 0.2,
    countNoiseStddev: 5,
  });
  let tail = 0;
  for (let round = 0; round < 400; round++) {
    clip.update(
      Array.from({ length: 100 }, () => rng.next() * 4),
      100,
    );
    if (round >= 200) tail += clip.norm;
  }
  // Run-to-run spread of this mean is ~0.015 (20 runs); 0.1 is ~6 standard deviations.
  assert.ok(Math.abs(tail / 200 - 2) < 0.1, `mean C = ${tail / 200}`);
});

test('fails closed on bad norms and rejects bad options', () => {
  const clip = new AdaptiveClipper({
    initialNorm: 1,
    targetQuantile: 0.5,
    learningRate: 0.2,
    countNoiseStddev: 1,
  });
  assert.throws(() => clip.update([0.5, Number.NaN], 2), NonFiniteError);
  assert.throws(() => clip.update([0.5, Number.POSITIVE_INFINITY], 2), NonFiniteError);
  assert.equal(clip.norm, 1);
  assert.throws(() => clip.update([0.5], 0), ConfigError);
  assert.throws(
    () => new AdaptiveClipper({ initialNorm: 0, targetQuantile: 1, learningRate: -1, countNoiseStddev: 0 }),
    (e: unknown) => e instanceof ConfigError && e.issues.length === 4,
  );
});
