import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Rng } from '../../core/rng.ts';
import type { DenseExamples } from '../../data/types.ts';
import { softmaxRegression } from '../../nn/models.ts';
import { TrainScratch, trainLocal } from '../client.ts';
import type { OptimizerSpec } from '../spec.ts';
import type { Strategy } from '../types.ts';
import { FedBuff } from './fedbuff.ts';
import { SyncRounds } from './sync.ts';

const DIM = 5;
const CLASSES = 3;

function batchOf(n: number, seed: number): DenseExamples {
  const rng = new Rng(seed);
  return {
    kind: 'dense',
    n,
    dim: DIM,
    x: Float32Array.from({ length: n * DIM }, () => rng.normal()),
    y: Int32Array.from({ length: n }, () => rng.int(CLASSES)),
  };
}

function randomParams(numParams: number, seed: number): Float32Array {
  const rng = new Rng(seed);
  return Float32Array.from({ length: numParams }, () => rng.normal() * 0.3);
}

function assertClose(a: ArrayLike<number>, b: ArrayLike<number>, tol: number, what = ''): void {
  assert.equal(a.length, b.length);
  for (let i = 0; i < a.length; i++)
    assert.ok(Math.abs((a[i] as number) - (b[i] as number)) <= tol, `${what}[${i}]: ${a[i]} vs ${b[i]}`);
}

function accepted(s: Strategy, update: Parameters<Strategy['onUpdate']>[0]) {
  const out = s.onUpdate(update, 0);
  assert.equal(out.kind, 'accepted', out.kind === 'rejected' ? out.message : '');
  return out as Extract<typeof out, { kind: 'accepted' }>;
}

test('FedBuff with K=1, constant staleness and one local step equals sequential SGD', () => {
  const model = softmaxRegression(DIM, CLASSES);
  const init = randomParams(model.numParams, 1);
  const lr = 0.2;
  const batches = Array.from({ length: 8 }, (_, k) => batchOf(4, 100 + k));
  const fb = new FedBuff(
    {
      bufferSize: 1,
      staleness: { kind: 'constant' },
      maxStaleness: 0,
      serverOptimizer: { kind: 'sgd', lr: 1 },
    },
    init,
  );
  const scratch = new TrainScratch();
  for (const [k, batch] of batches.entries()) {
    const a = fb.assign(k, 0);
    // batchSize ≥ n: exactly one full-batch step, so the shuffle cannot matter.
    const r = trainLocal(model, a.params, batch, { epochs: 1, batchSize: 4, lr }, new Rng(k), scratch);
    assert.equal(r.steps, 1);
    const out = accepted(fb, {
      clientId: k,
      baseVersion: a.version,
      delta: r.delta,
      numExamples: r.numExamples,
    });
    assert.equal(out.stepped, true);
    assert.equal(out.version, k + 1);
  }
  // Independent reference: plain SGD over the same batches in float64.
  const p = Float64Array.from(init);
  for (const batch of batches) {
    const g = new Float32Array(model.numParams);
    model.lossAndGrad(Float32Array.from(p), batch, g);
    for (let i = 0; i < p.length; i++) p[i] = (p[i] as number) - lr * (g[i] as number);
  }
  assert.ok(Math.abs((fb.params[0] as number) - (init[0] as number)) > 1e-3, 'training must move the model');
  assertClose(fb.params, p, 2e-5, 'params');
});

function runCohorts(strategy: Strategy, rounds: number, cohort: number, seed: number): Float32Array[] {
  const model = softmaxRegression(DIM, CLASSES);
  const snapshots: Float32Array[] = [];
  const scratch = new TrainScratch();
  let id = 0;
  for (let r = 0; r < rounds; r++) {
    const clients = Array.from({ length: cohort }, (_, c) => ({
      id: id++,
      data: batchOf(3 + c * 2, seed + 17 * r + c),
    }));
    const starts = clients.map((c) => strategy.assign(c.id, r));
    for (const [c, client] of clients.entries()) {
      const a = starts[c];
      assert.ok(a);
      const res = trainLocal(
        model,
        a.params,
        client.data,
        { epochs: 2, batchSize: 4, lr: 0.1 },
        new Rng(client.id),
        scratch,
      );
      accepted(strategy, {
        clientId: client.id,
        baseVersion: a.version,
        delta: res.delta,
        numExamples: res.numExamples,
      });
    }
    snapshots.push(strategy.params);
  }
  return snapshots;
}

for (const optimizer of [
  { kind: 'sgd', lr: 1 },
  { kind: 'momentum', lr: 0.7, momentum: 0.9, nesterov: false },
  { kind: 'adam', lr: 0.05, beta1: 0.9, beta2: 0.99, eps: 1e-3 },
] satisfies OptimizerSpec[]) {
  test(`FedBuff with K = cohort size from one version equals sync rounds (${optimizer.kind})`, () => {
    const model = softmaxRegression(DIM, CLASSES);
    const init = randomParams(model.numParams, 2);
    const cohort = 4;
    const fb = new FedBuff(
      {
        bufferSize: cohort,
        staleness: { kind: 'polynomial', exponent: 0.5 },
        maxStaleness: 5,
        serverOptimizer: optimizer,
      },
      init,
    );
    const sync = new SyncRounds(
      {
        cohortSize: cohort,
        overSelection: 0,
        roundTimeout: Number.POSITIVE_INFINITY,
        minUpdates: 1,
        serverOptimizer: optimizer,
      },
      init,
    );
    const a = runCohorts(fb, 3, cohort, 7);
    const b = runCohorts(sync, 3, cohort, 7);
    assert.equal(fb.version, 3);
    assert.equal(sync.version, 3);
    for (let r = 0; r < 3; r++) assertClose(a[r] as Float32Array, b[r] as Float32Array, 1e-6, `round ${r}`);
  });
}

test('FedBuff step = params − example-weighted mean of staleness-scaled deltas (hand values)', () => {
  const fb = new FedBuff(
    {
      bufferSize: 2,
      staleness: { kind: 'polynomial', exponent: 1 },
      maxStaleness: 10,
      serverOptimizer: { kind: 'sgd', lr: 1 },
    },
    Float32Array.from([1, 2]),
  );
  fb.assign(1, 0); // trains from version 0
  fb.assign(2, 0);
  fb.assign(3, 0);
  fb.assign(4, 0);
  accepted(fb, { clientId: 1, baseVersion: 0, delta: Float32Array.from([1, 0]), numExamples: 1 });
  accepted(fb, { clientId: 2, baseVersion: 0, delta: Float32Array.from([0, 1]), numExamples: 3 });
  // (1·[1,0] + 3·[0,1]) / 4 = [0.25, 0.75]
  assertClose(fb.params, [0.75, 1.25], 1e-7);
  // Now both remaining clients are 1 version stale: w = 1/2.
  const out = accepted(fb, { clientId: 3, baseVersion: 0, delta: Float32Array.from([2, 2]), numExamples: 2 });
  assert.equal(out.staleness, 1);
  assert.equal(out.weight, 1);
  assert.equal(out.stepped, false);
  accepted(fb, { clientId: 4, baseVersion: 0, delta: Float32Array.from([4, 0]), numExamples: 2 });
  // (2·½·[2,2] + 2·½·[4,0]) / (2 + 2) = [1.5, 0.5]
  assertClose(fb.params, [0.75 - 1.5, 1.25 - 0.5], 1e-6);
  assert.equal(fb.version, 2);
});

test('FedBuff rejections change nothing, and each is reported with its reason', () => {
  const init = Float32Array.from([1, 2, 3]);
  const make = () =>
    new FedBuff(
      {
        bufferSize: 2,
        staleness: { kind: 'constant' },
        maxStaleness: 1,
        serverOptimizer: { kind: 'sgd', lr: 1 },
      },
      init,
    );
  const fb = make();
  const good = (id: number, base: number, v: number) => ({
    clientId: id,
    baseVersion: base,
    delta: Float32Array.from([v, v, v]),
    numExamples: 1,
  });
  const expectReject = (update: Parameters<Strategy['onUpdate']>[0], reason: string) => {
    const before = {
      params: fb.params,
      copy: new Float32Array(fb.params),
      version: fb.version,
      buffered: fb.bufferedUpdates,
    };
    const out = fb.onUpdate(update, 0);
    assert.equal(out.kind, 'rejected');
    assert.equal(out.kind === 'rejected' && out.reason, reason);
    assert.equal(fb.params, before.params);
    assert.deepEqual(fb.params, before.copy);
    assert.equal(fb.version, before.version);
    assert.equal(fb.bufferedUpdates, before.buffered);
  };
  expectReject(good(99, 0, 1), 'not_assigned');
  fb.assign(1, 0);
  expectReject({ ...good(1, 0, 1), delta: new Float32Array(2) }, 'shape');
  fb.assign(2, 0);
  expectReject({ ...good(2, 0, 1), delta: Float32Array.from([0, Number.NaN, 0]) }, 'non_finite');
  fb.assign(3, 0);
  expectReject(
    { ...good(3, 0, 1), delta: Float32Array.from([0, Number.POSITIVE_INFINITY, 0]) },
    'non_finite',
  );
  fb.assign(4, 0);
  expectReject(good(4, 5, 1), 'unknown_version');
  // One good update sits in the buffer; a duplicate report of the same client is not applied twice.
  fb.assign(5, 0);
  accepted(fb, good(5, 0, 1));
  expectReject(good(5, 0, 1), 'not_assigned');
  // Staleness: clients 6 and 7 download v0; two steps later staleness 2 > maxStaleness 1.
  fb.assign(6, 0);
  fb.assign(7, 0);
  fb.assign(8, 0);
  accepted(fb, good(6, 0, 1)); // completes the buffer: version 1
  fb.assign(9, 1);
  fb.assign(10, 1);
  accepted(fb, good(9, 1, 1));
  accepted(fb, good(10, 1, 1)); // version 2
  expectReject(good(7, 0, 1), 'stale');
  const out = fb.onUpdate(good(8, 0, 1), 0);
  assert.equal(out.kind === 'rejected' && out.staleness, 2);
  // The accepted sequence alone, on a fresh strategy, lands on the same model.
  const ref = make();
  ref.assign(5, 0);
  ref.assign(6, 0);
  accepted(ref, good(5, 0, 1));
  accepted(ref, good(6, 0, 1));
  ref.assign(9, 0);
  ref.assign(10, 0);
  accepted(ref, good(9, 1, 1));
  accepted(ref, good(10, 1, 1));
  assert.deepEqual(fb.params, ref.params);
});

test('FedBuff threshold staleness rejects beyond the threshold; dropouts forget the client', () => {
  const fb = new FedBuff(
    {
      bufferSize: 1,
      staleness: { kind: 'threshold', threshold: 0 },
      maxStaleness: 100,
      serverOptimizer: { kind: 'sgd', lr: 1 },
    },
    new Float32Array(2),
  );
  fb.assign(1, 0);
  fb.assign(2, 0);
  fb.assign(3, 0);
  accepted(fb, { clientId: 1, baseVersion: 0, delta: Float32Array.from([1, 1]), numExamples: 1 });
  const out = fb.onUpdate(
    { clientId: 2, baseVersion: 0, delta: Float32Array.from([1, 1]), numExamples: 1 },
    0,
  );
  assert.equal(out.kind === 'rejected' && out.reason, 'stale');
  fb.onDropout(3, 0);
  const late = fb.onUpdate(
    { clientId: 3, baseVersion: 0, delta: Float32Array.from([1, 1]), numExamples: 1 },
    0,
  );
  assert.equal(late.kind === 'rejected' && late.reason, 'not_assigned');
  assert.equal(fb.demand(0, 3, 10), 7);
  assert.equal(fb.demand(0, 12, 10), 0);
});

test('FedBuff snapshots handed out are never modified', () => {
  const fb = new FedBuff(
    {
      bufferSize: 1,
      staleness: { kind: 'constant' },
      maxStaleness: 10,
      serverOptimizer: { kind: 'adam', lr: 0.1, beta1: 0.9, beta2: 0.99, eps: 1e-3 },
    },
    Float32Array.from([1, 2]),
  );
  const a = fb.assign(1, 0);
  const copy = new Float32Array(a.params);
  fb.assign(2, 0);
  accepted(fb, { clientId: 1, baseVersion: 0, delta: Float32Array.from([1, -1]), numExamples: 1 });
  accepted(fb, { clientId: 2, baseVersion: 0, delta: Float32Array.from([1, -1]), numExamples: 1 });
  assert.deepEqual(a.params, copy);
  assert.notEqual(fb.params, a.params);
  assert.notDeepEqual(fb.params, copy);
});
