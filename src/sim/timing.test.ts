import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError } from '../core/errors.ts';
import { Rng } from '../core/rng.ts';
import type { DurationSpec } from './spec.ts';
import { durationSampler, modelBytes, speedFactor, TripTiming, transferSeconds } from './timing.ts';

function moments(spec: DurationSpec, n = 200_000, examples = 1): { mean: number; variance: number } {
  const sample = durationSampler(spec);
  const rng = new Rng(123);
  let s = 0;
  let s2 = 0;
  for (let i = 0; i < n; i++) {
    const x = sample(rng, examples);
    s += x;
    s2 += x * x;
  }
  const mean = s / n;
  return { mean, variance: s2 / n - mean * mean };
}

/** |a − b| within `rel` of b (closed-form moments; 200k samples give ~1% standard error or better). */
function near(a: number, b: number, rel: number, what: string): void {
  assert.ok(Math.abs(a - b) <= rel * Math.abs(b), `${what}: ${a} vs closed form ${b}`);
}

test('half-normal |N(0,σ²)| + offset has mean σ√(2/π) + offset and variance σ²(1 − 2/π)', () => {
  const sigma = 3;
  const m = moments({ kind: 'half_normal', sigma, offset: 0.5 });
  near(m.mean, sigma * Math.sqrt(2 / Math.PI) + 0.5, 0.01, 'mean');
  near(m.variance, sigma * sigma * (1 - 2 / Math.PI), 0.02, 'variance');
});

test('exponential has mean m and variance m²', () => {
  const m = moments({ kind: 'exponential', mean: 2 });
  near(m.mean, 2, 0.01, 'mean');
  near(m.variance, 4, 0.03, 'variance');
});

test('log-normal exp(N(μ,σ²)) has mean e^(μ+σ²/2) and variance (e^σ² − 1)e^(2μ+σ²)', () => {
  const mu = 0.2;
  const sigma = 0.5;
  const m = moments({ kind: 'log_normal', mu, sigma });
  near(m.mean, Math.exp(mu + (sigma * sigma) / 2), 0.01, 'mean');
  near(m.variance, (Math.exp(sigma * sigma) - 1) * Math.exp(2 * mu + sigma * sigma), 0.04, 'variance');
});

test('uniform(a,b) has mean (a+b)/2 and variance (b−a)²/12; min > max is a ConfigError', () => {
  const m = moments({ kind: 'uniform', min: 1, max: 5 });
  near(m.mean, 3, 0.01, 'mean');
  near(m.variance, 16 / 12, 0.02, 'variance');
  assert.throws(() => durationSampler({ kind: 'uniform', min: 5, max: 1 }), ConfigError);
});

test('constant and per-example durations are exact', () => {
  const rng = new Rng(1);
  assert.equal(durationSampler({ kind: 'constant', value: 4.5 })(rng, 10), 4.5);
  assert.equal(durationSampler({ kind: 'per_example', secondsPerExample: 0.25 })(rng, 12), 3);
});

test('speed factor is fixed per client and log-normal across clients', () => {
  const sigma = 0.7;
  assert.equal(speedFactor(9, 42, sigma), speedFactor(9, 42, sigma));
  assert.notEqual(speedFactor(9, 42, sigma), speedFactor(9, 43, sigma));
  assert.notEqual(speedFactor(9, 42, sigma), speedFactor(10, 42, sigma));
  assert.equal(speedFactor(9, 42, 0), 1);
  // log of the factor is N(0, σ²) across clients.
  const n = 50_000;
  let s = 0;
  let s2 = 0;
  for (let k = 0; k < n; k++) {
    const l = Math.log(speedFactor(3, k, sigma));
    s += l;
    s2 += l * l;
  }
  const mean = s / n;
  assert.ok(Math.abs(mean) < 0.02, `mean log factor ${mean}`);
  near(s2 / n - mean * mean, sigma * sigma, 0.03, 'variance of log factor');
});

test('transfers take bytes / bandwidth; a trip adds download, scaled training and upload', () => {
  assert.equal(modelBytes(610), 2440);
  assert.equal(transferSeconds(1000, 0), 0);
  assert.equal(transferSeconds(1000, 250), 4);
  const timing = new TripTiming(
    {
      duration: { kind: 'constant', value: 10 },
      speedSigma: 0.5,
      uploadBandwidth: 100,
      downloadBandwidth: 400,
      seed: 5,
    },
    100, // 400 bytes: 1 s down, 4 s up
  );
  const rng = new Rng(0);
  assert.equal(timing.tripSeconds(rng, 7, 20), 1 + 10 * speedFactor(5, 7, 0.5) + 4);
});
