import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Rng } from '../core/rng.ts';
import { syntheticDataset } from '../data/synthetic.ts';
import { createModel } from '../nn/index.ts';
import { OrchardClientError } from './errors.ts';
import { runFleet } from './fleet.ts';
import { FakeServer } from './testing/fake-server.ts';

const DATASET = {
  kind: 'synthetic',
  alpha: 1,
  beta: 1,
  numClients: 12,
  dim: 8,
  numClasses: 3,
  examplesPerClient: 6,
  examplesSigma: 0,
  testSize: 20,
} as const;

test('bad fleet options are one typed error listing each problem', async () => {
  await assert.rejects(
    runFleet({
      server: 'http://127.0.0.1:1',
      enrollmentKey: 'k',
      clients: 0,
      concurrency: 1.5,
      timing: { dropoutProbability: 2 },
    }),
    (e: unknown) =>
      e instanceof OrchardClientError &&
      e.code === 'invalid_argument' &&
      /clients/.test(e.message) &&
      /concurrency/.test(e.message) &&
      /dropoutProbability/.test(e.message) &&
      /never stops/.test(e.message),
  );
});

test('dropouts follow the dropout probability; every accepted upload was applied once', {
  timeout: 60_000,
}, async (t) => {
  const data = syntheticDataset({ ...DATASET, seed: 4 });
  const model = createModel({ kind: 'softmax' }, data);
  const server = await new FakeServer({
    initialParams: model.init(new Rng(1)),
    plan: { model: { kind: 'softmax' }, localTrain: { epochs: 1, batchSize: 3, lr: 0.1 } },
    bufferSize: 2,
  }).start();
  t.after(() => server.close());
  const p = 0.3;
  const summary = await runFleet({
    server: server.url,
    enrollmentKey: server.enrollmentKey,
    clients: 12,
    concurrency: 4,
    updates: 150,
    timing: { dropoutProbability: p, msPerSecond: 1 },
    dataset: { spec: DATASET, seed: 4 },
    seed: 9,
  });
  assert.ok(summary.accepted >= 150);
  assert.equal(summary.stopReason, 'updates');
  assert.deepEqual(summary.errors, {});
  // Every acknowledged upload was applied; at most the ones cut off by the stop were applied unseen.
  assert.ok(server.applied.length >= summary.accepted && server.applied.length <= summary.accepted + 4);
  assert.equal(new Set(server.applied.map((a) => a.idempotencyKey)).size, server.applied.length);
  assert.equal(new Set(server.applied.map((a) => a.deviceId)).size, 12, 'every device took part');
  // Trips that got an assignment either dropped or uploaded: the drop share is Binomial(trips, p).
  const trips = summary.dropouts + summary.accepted;
  const sd = Math.sqrt((p * (1 - p)) / trips);
  assert.ok(Math.abs(summary.dropouts / trips - p) < 4 * sd, `${summary.dropouts}/${trips}`);
  assert.ok(summary.latency.update.count >= 150 && summary.latency.trip.count >= 150);
  // Each device trains on its own shard: 6 examples per synthetic client.
  assert.ok(server.applied.every((a) => a.numExamples === 6));
});

test('a fleet stops when the server says every task finished for good; nothing after the finish is applied', {
  timeout: 60_000,
}, async (t) => {
  const data = syntheticDataset({ ...DATASET, seed: 5 });
  const model = createModel({ kind: 'softmax' }, data);
  const server = await new FakeServer({
    initialParams: model.init(new Rng(2)),
    plan: { model: { kind: 'softmax' }, localTrain: { epochs: 1, batchSize: 3, lr: 0.1 } },
    bufferSize: 2,
    finishAtVersion: 5,
  }).start();
  t.after(() => server.close());
  // A duration far longer than the run: the finish is what stops it.
  const started = Date.now();
  const summary = await runFleet({
    durationSeconds: 50,
    server: server.url,
    enrollmentKey: server.enrollmentKey,
    clients: 6,
    concurrency: 3,
    timing: { dropoutProbability: 0, msPerSecond: 1 },
    dataset: { spec: DATASET, seed: 5 },
    seed: 3,
  });
  assert.equal(summary.stopReason, 'finished');
  assert.ok(Date.now() - started < 40_000);
  assert.equal(server.version, 5);
  // 5 steps of 2 updates; uploads that arrived after the finish were refused, not applied.
  assert.equal(server.applied.length, 10);
  assert.equal(summary.accepted, 10);
  assert.deepEqual(summary.errors, {});
});
