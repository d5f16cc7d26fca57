/** FedBuff.foldPartial: pre-weighted partial sums fold like the updates they cover. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Rng } from '../../core/rng.ts';
import type { OptimizerSpec, StalenessSpec } from '../spec.ts';
import { stalenessWeight } from '../staleness.ts';
import { FedBuff } from './fedbuff.ts';

const N = 6;

function options(bufferSize: number, staleness: StalenessSpec, serverOptimizer: OptimizerSpec) {
  return { bufferSize, staleness, maxStaleness: 10, serverOptimizer };
}

interface Upd {
  readonly baseVersion: number;
  readonly delta: Float32Array;
  readonly numExamples: number;
}

function updates(count: number, baseVersion: number, seed: number): Upd[] {
  const rng = new Rng(seed);
  return Array.from({ length: count }, () => ({
    baseVersion,
    delta: Float32Array.from({ length: N }, () => rng.normal()),
    numExamples: 1 + rng.int(20),
  }));
}

/** Σ nᵢ·w(sᵢ)·Δᵢ as an aggregator computes it from the version it knows. */
function partialOf(us: readonly Upd[], known: number, spec: StalenessSpec) {
  const w = stalenessWeight(spec);
  const sum = new Float32Array(N);
  let examples = 0;
  for (const u of us) {
    const f = u.numExamples * w(known - u.baseVersion);
    for (let i = 0; i < N; i++) sum[i] = (sum[i] as number) + f * (u.delta[i] as number);
    examples += u.numExamples;
  }
  return { sum, examples, count: us.length };
}

function assertClose(a: ArrayLike<number>, b: ArrayLike<number>, tol: number): void {
  assert.equal(a.length, b.length);
  for (let i = 0; i < a.length; i++)
    assert.ok(Math.abs((a[i] as number) - (b[i] as number)) <= tol, `[${i}]: ${a[i]} vs ${b[i]}`);
}

test('partials that do not straddle a step fold exactly like their updates one by one (staleness, Adam)', () => {
  const staleness: StalenessSpec = { kind: 'polynomial', exponent: 0.5 };
  const opt: OptimizerSpec = { kind: 'adam', lr: 0.05, beta1: 0.9, beta2: 0.999, eps: 1e-8 };
  const init = Float32Array.from({ length: N }, (_, i) => i / 10);
  const one = new FedBuff(options(3, staleness, opt), init);
  const parts = new FedBuff(options(3, staleness, opt), init);
  const first = updates(3, 0, 1);
  // Trained from version 0 but arriving after the first step: staleness 1.
  const second = updates(3, 0, 2);
  let id = 0;
  for (const u of [...first, ...second]) {
    one.resumeAssignment(id, u.baseVersion);
    const out = one.onUpdate({ clientId: id++, ...u }, 0);
    assert.equal(out.kind, 'accepted');
  }
  assert.equal(one.version, 2);
  assert.deepEqual(parts.foldPartial(partialOf(first.slice(0, 2), 0, staleness)), {
    stepped: false,
    version: 0,
  });
  assert.deepEqual(parts.foldPartial(partialOf(first.slice(2), 0, staleness)), { stepped: true, version: 1 });
  assert.equal(parts.foldPartial(partialOf(second.slice(0, 1), 1, staleness)).stepped, false);
  assert.deepEqual(parts.foldPartial(partialOf(second.slice(1), 1, staleness)), {
    stepped: true,
    version: 2,
  });
  assertClose(parts.params, one.params, 1e-6);
  assert.equal(parts.bufferedUpdates, 0);
});

test('a partial that fills the buffer steps once with all its updates (hand-computed SGD step)', () => {
  const init = new Float32Array(N).fill(1);
  const fb = new FedBuff(options(4, { kind: 'constant' }, { kind: 'sgd', lr: 1 }), init);
  const us = updates(5, 0, 3);
  assert.equal(fb.foldPartial(partialOf(us.slice(0, 2), 0, { kind: 'constant' })).stepped, false);
  assert.deepEqual(fb.foldPartial(partialOf(us.slice(2), 0, { kind: 'constant' })), {
    stepped: true,
    version: 1,
  });
  // x₁ = x₀ − Σ nᵢΔᵢ / Σ nᵢ over all five (float64 reference).
  const totalN = us.reduce((a, u) => a + u.numExamples, 0);
  const expected = Array.from(
    { length: N },
    (_, i) => 1 - us.reduce((a, u) => a + u.numExamples * (u.delta[i] as number), 0) / totalN,
  );
  assertClose(fb.params, expected, 1e-5);
});

test('bad partials are refused with typed errors and change nothing; DP FedBuff refuses partials', () => {
  const fb = new FedBuff(options(2, { kind: 'constant' }, { kind: 'sgd', lr: 1 }), new Float32Array(N));
  const before = fb.snapshot();
  const bad = [
    { sum: new Float32Array(N + 1), examples: 1, count: 1 },
    { sum: new Float32Array(N).fill(Number.NaN), examples: 1, count: 1 },
    { sum: new Float32Array(N), examples: 1, count: 0 },
    { sum: new Float32Array(N), examples: -1, count: 1 },
  ];
  for (const p of bad) assert.throws(() => fb.foldPartial(p), { name: 'OrchardError' });
  assert.deepEqual(fb.snapshot(), before);
  const dp = new FedBuff(
    {
      ...options(2, { kind: 'constant' }, { kind: 'sgd', lr: 1 }),
      privacy: { clipNorm: 1, noiseMultiplier: 1, delta: 1e-5, population: 40 } as never,
    },
    new Float32Array(N),
  );
  assert.throws(() => dp.foldPartial({ sum: new Float32Array(N), examples: 1, count: 1 }), {
    code: 'INVALID_STATE',
  });
});
