import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Rng } from '../../core/rng.ts';
import { fixedPointFor, quantizationStep } from '../../privacy/secagg/fixedpoint.ts';
import { SecureAggregationSpecSchema } from '../spec.ts';
import { FedBuff, type FedBuffOptions } from './fedbuff.ts';

const DIM = 30;
const K = 4;
const STEPS = 5;

function base(): FedBuffOptions {
  return {
    bufferSize: K,
    staleness: { kind: 'polynomial', exponent: 0.5 },
    maxStaleness: 100,
    serverOptimizer: { kind: 'sgd', lr: 1 },
  };
}

/** Drives a strategy with a fixed, seeded stream of updates (two clients in flight per version). */
function drive(strategy: FedBuff, seed: number): { rejected: Map<string, number> } {
  const rng = new Rng(seed);
  const rejected = new Map<string, number>();
  let id = 0;
  let inFlight: { clientId: number; version: number }[] = [];
  for (let trip = 0; trip < K * STEPS; trip++) {
    while (inFlight.length < 3) {
      const a = strategy.assign(id, 0);
      inFlight.push({ clientId: id++, version: a.version });
    }
    const [next, ...rest] = inFlight;
    inFlight = rest;
    if (next === undefined) break;
    const delta = Float32Array.from({ length: DIM }, () => rng.uniform(-0.5, 0.5));
    const out = strategy.onUpdate(
      {
        clientId: next.clientId,
        baseVersion: next.version,
        delta,
        numExamples: 10 + Math.floor(rng.uniform(0, 50)),
      },
      0,
    );
    if (out.kind === 'rejected') rejected.set(out.reason, (rejected.get(out.reason) ?? 0) + (out.count ?? 1));
  }
  return { rejected };
}

test('FedBuff with secure aggregation steps to the plain FedBuff parameters within fixed-point error', () => {
  const spec = SecureAggregationSpecSchema.parse({ clipRange: 1 });
  const plain = new FedBuff(base(), new Float32Array(DIM));
  const secure = new FedBuff({ ...base(), secureAggregation: spec }, new Float32Array(DIM));
  drive(plain, 9);
  drive(secure, 9);
  assert.equal(secure.name, 'fedbuff-secagg');
  assert.equal(plain.version, STEPS);
  assert.equal(secure.version, STEPS);
  // Per step each coordinate of the sum is off by at most K·clip/L (fixedpoint.ts), then scaled by
  // n_max/Σn ≤ 1 and lr = 1; the updates here do not depend on the parameters, so errors add up:
  // STEPS · K · quantizationStep (twice the decode bound), plus float32 rounding of both paths:
  // 4 ulps of the largest parameter per step.
  const largest = Math.max(...Array.from(plain.params, Math.abs));
  const bound =
    STEPS *
    (K * quantizationStep(fixedPointFor(spec.clipRange, K, spec.modulusBits)) + 4 * 2 ** -23 * largest);
  let worst = 0;
  for (let i = 0; i < DIM; i++)
    worst = Math.max(worst, Math.abs((plain.params[i] as number) - (secure.params[i] as number)));
  assert.ok(worst <= bound, `max |Δparam| ${worst} > bound ${bound}`);
  // The parameters really moved, so equality is not trivial.
  assert.ok(largest > 100 * bound);
});

test('a group below threshold is dropped whole and counted as secagg_abort', () => {
  const secure = new FedBuff(
    { ...base(), secureAggregation: SecureAggregationSpecSchema.parse({ dropoutRate: 0.95, seed: 1 }) },
    new Float32Array(DIM),
  );
  const before = Float32Array.from(secure.params);
  const { rejected } = drive(secure, 2);
  assert.equal(secure.version, 0);
  assert.ok(secure.abortedGroups >= 1);
  assert.equal(rejected.get('secagg_abort'), secure.abortedGroups * K);
  assert.deepEqual(secure.params, before);
  assert.equal(secure.bufferedUpdates, 0);
});

test('secure aggregation together with DP is refused', () => {
  assert.throws(
    () =>
      new FedBuff(
        {
          ...base(),
          secureAggregation: SecureAggregationSpecSchema.parse({}),
          privacy: { clipNorm: 1, noiseMultiplier: 1, delta: 1e-5, accountant: 'rdp' },
        },
        new Float32Array(DIM),
      ),
    /privacy and secureAggregation/,
  );
});
