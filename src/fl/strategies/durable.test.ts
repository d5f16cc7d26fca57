import assert from 'node:assert/strict';
import { test } from 'node:test';
import { OrchardError } from '../../core/errors.ts';
import { Rng } from '../../core/rng.ts';
import { createOptimizer } from '../../nn/optim.ts';
import { createStrategy } from '../index.ts';
import { StrategySpecSchema } from '../spec.ts';
import { isDurable, type Strategy, type UpdateOutcome } from '../types.ts';
import { isPrivate } from './dp.ts';

const N = 12;

function deltas(count: number, seed: number): Float32Array[] {
  const rng = new Rng(seed);
  return Array.from({ length: count }, () => {
    const d = new Float32Array(N);
    for (let i = 0; i < N; i++) d[i] = rng.next() - 0.5;
    return d;
  });
}

/** Each update trains from a version two behind the newest (when it exists), so staleness matters. */
function feed(strategy: Strategy, updates: readonly Float32Array[], from: number, idBase: number): void {
  if (!isDurable(strategy)) throw new Error('not durable');
  for (let i = from; i < updates.length; i++) {
    const base = Math.max(0, strategy.version - 2);
    strategy.resumeAssignment(idBase + i, base);
    const out: UpdateOutcome = strategy.onUpdate(
      {
        clientId: idBase + i,
        baseVersion: base,
        delta: updates[i] as Float32Array,
        numExamples: 1 + (i % 3),
      },
      0,
    );
    assert.equal(out.kind, 'accepted');
  }
}

const specs = {
  'fedbuff + momentum': {
    kind: 'fedbuff',
    bufferSize: 3,
    serverOptimizer: { kind: 'momentum', lr: 0.5, momentum: 0.9 },
  },
  'fedbuff + adam': { kind: 'fedbuff', bufferSize: 2, serverOptimizer: { kind: 'adam', lr: 0.1 } },
  fedasync: { kind: 'fedasync', alpha: 0.5 },
} as const;

for (const [label, raw] of Object.entries(specs)) {
  test(`${label}: snapshot mid-run + restore into a fresh strategy continues bit-identically`, () => {
    const spec = StrategySpecSchema.parse(raw);
    const initial = new Float32Array(N).fill(0.25);
    const updates = deltas(17, 7);
    const straight = createStrategy(spec, initial);
    feed(straight, updates, 0, 0);

    const first = createStrategy(spec, initial);
    feed(first, updates.slice(0, 7), 0, 0);
    assert.ok(isDurable(first));
    const snap = first.snapshot();
    // The snapshot is a copy: the old strategy moving on must not change it.
    feed(first, updates.slice(0, 9), 7, 0);
    const resumed = createStrategy(spec, new Float32Array(N));
    assert.ok(isDurable(resumed));
    resumed.restore(snap);
    assert.equal(resumed.version, snap.version);
    feed(resumed, updates, 7, 1000);
    assert.equal(resumed.version, straight.version);
    assert.deepEqual(Array.from(resumed.params), Array.from(straight.params));
  });
}

test('resumeAssignment refuses a version from the future; restore refuses a wrong shape', () => {
  const s = createStrategy(StrategySpecSchema.parse({ kind: 'fedbuff' }), new Float32Array(N));
  assert.ok(isDurable(s));
  assert.throws(
    () => s.resumeAssignment(1, 1),
    (e: unknown) => (e as OrchardError).code === 'UNKNOWN_VERSION',
  );
  const wrong = { version: 0, params: new Float32Array(N + 1) };
  assert.throws(
    () => s.restore(wrong),
    (e: unknown) => (e as OrchardError).code === 'SHAPE_MISMATCH',
  );
  assert.throws(
    () => s.restore({ version: -1, params: new Float32Array(N) }),
    (e: unknown) => e instanceof OrchardError && e.code === 'INVALID_ARGUMENT',
  );
});

test('DP-FedBuff snapshots carry the privacy ledger: restore continues with the same ε and steps', () => {
  const spec = StrategySpecSchema.parse({
    kind: 'fedbuff',
    bufferSize: 3,
    staleness: { kind: 'constant' },
    privacy: { clipNorm: 1, noiseMultiplier: 1, delta: 1e-5, population: 100 },
  });
  const s = createStrategy(spec, new Float32Array(N));
  assert.ok(isDurable(s) && isPrivate(s));
  feed(s, deltas(8, 3), 0, 0); // two steps and two buffered updates
  const snap = s.snapshot();
  assert.deepEqual([snap.version, snap.privacy?.steps, snap.privacy?.norms.length], [2, 2, 2]);
  const r = createStrategy(spec, new Float32Array(N));
  assert.ok(isDurable(r) && isPrivate(r));
  r.restore(snap);
  assert.deepEqual(r.privacySpent(), s.privacySpent());
  assert.ok(r.privacySpent().epsilon > 0);
  // The buffered two plus one more: both step, and their ledgers stay equal.
  feed(s, deltas(1, 4), 0, 100);
  feed(r, deltas(1, 4), 0, 100);
  assert.deepEqual([s.version, r.version], [3, 3]);
  assert.deepEqual(r.privacySpent(), s.privacySpent());
  const plain = createStrategy(StrategySpecSchema.parse({ kind: 'fedbuff' }), new Float32Array(N));
  assert.ok(isDurable(plain));
  assert.throws(() => plain.restore(snap), /has a privacy ledger/);
});

test('optimizer state round-trips and rejects the wrong slot shapes', () => {
  const adam = createOptimizer({ kind: 'adam', lr: 0.1, beta1: 0.9, beta2: 0.99, eps: 1e-3 }, 3);
  const p = new Float32Array([1, 2, 3]);
  adam.step(p, new Float32Array([0.5, -1, 2]));
  const state = adam.exportState();
  assert.equal(state.steps, 1);
  // First moment after one step is (1 − β1)·g.
  assert.deepEqual(Array.from(state.slots[0] as Float32Array), [0.05, -0.1, 0.2].map(Math.fround));
  const other = createOptimizer({ kind: 'adam', lr: 0.1, beta1: 0.9, beta2: 0.99, eps: 1e-3 }, 3);
  other.importState(state);
  const q = new Float32Array(p);
  adam.step(p, new Float32Array([1, 1, 1]));
  other.step(q, new Float32Array([1, 1, 1]));
  assert.deepEqual(Array.from(q), Array.from(p));
  assert.throws(() => other.importState({ steps: 1, slots: [new Float32Array(3)] }), /2 slots of 3/);
});
