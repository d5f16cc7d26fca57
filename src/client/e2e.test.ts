/**
 * End to end: the real server (startServer: coordinator + selector + aggregator, SQLite in a temp
 * folder, fastify over loopback) and an in-process fleet of real SDK clients train a small MNIST
 * FedBuff task, and reach the accuracy the simulator reaches with the same task, the same trip
 * budget and the same concurrency and timing model.
 *
 * Tolerance: the compared figure is the mean test accuracy over the last 10 evaluations (versions
 * 55, 60, …, 100; single evaluations of softmax on label-skewed data swing by ~±1.5 points from
 * version to version). The server run must land within 0.02 of the mean over three simulator seeds.
 * Why 0.02: the simulator's own seed-to-seed range of that figure is 0.006 here (0.872–0.878), and
 * the network run legitimately differs from any one simulated run in ways the simulator does not
 * model: which client goes when (real-time scheduling, not a seeded queue) and staleness shaped by
 * HTTP round trips as well as the scaled training times. Five runs on a loaded 2-core machine
 * landed within 0.002 of the simulator mean, so 0.02 leaves a 10× margin for slower machines while
 * a broken pipeline (updates dropped or applied twice, wrong base version, wrong sign or weights)
 * moves the figure by far more; an untrained model scores ~0.10.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { startServer } from '../server/index.ts';
import { E2E_DURATION, servedAccuracies, simulatedTail, tailMean } from '../testing/e2e.ts';
import { runFleet } from './fleet.ts';

const UPDATES = 500;
const BUFFER = 5;
const CONCURRENCY = 10;
const EVAL_EVERY = 5;
const TOLERANCE = 0.02;
const TASK = {
  taskId: 'e2e-mnist-fedbuff',
  seed: 3,
  dataset: { kind: 'mnist', numClients: 100, partition: { kind: 'dirichlet', alpha: 0.5 } },
  model: { kind: 'softmax' },
  localTrain: { epochs: 1, batchSize: 10, lr: 0.05 },
  strategy: { kind: 'fedbuff', bufferSize: BUFFER, staleness: { kind: 'polynomial', exponent: 0.5 } },
  concurrency: CONCURRENCY,
  evalEvery: EVAL_EVERY,
  evalSubset: 2000,
};
const FINAL_VERSION = UPDATES / BUFFER;
const LAST = 10;

test('server + fleet reach the simulator accuracy on the same task (within 0.02)', {
  timeout: 90_000,
}, async (t) => {
  const simulated = simulatedTail(TASK, {
    concurrency: CONCURRENCY,
    maxTrips: UPDATES,
    finalVersion: FINAL_VERSION,
    last: LAST,
    seeds: [1, 2, 3],
  });
  const simMean = simulated.mean;

  const dir = mkdtempSync(join(tmpdir(), 'orchard-e2e-'));
  // Hooks run in registration order, so the server may still be writing here: retry ENOTEMPTY.
  t.after(() => rmSync(dir, { recursive: true, force: true, maxRetries: 5 }));
  const server = await startServer({ dataDir: dir, task: TASK });
  t.after(() => server.close());
  const summary = await runFleet({
    server: server.url,
    enrollmentKey: server.enrollmentKey,
    clients: 100,
    concurrency: CONCURRENCY,
    updates: UPDATES,
    timing: { duration: E2E_DURATION, msPerSecond: 20 },
    seed: 5,
  });
  // Uploads in flight when the last wanted one was accepted may still land, so "at least".
  assert.ok(summary.accepted >= UPDATES);
  assert.equal(summary.rejectedTotal, 0);
  assert.deepEqual(summary.errors, {});
  assert.ok(summary.lastVersion >= FINAL_VERSION);

  const served = await servedAccuracies(server.url, TASK.taskId, FINAL_VERSION);
  const status = (await (await fetch(`${server.url}/v1/status`)).json()) as {
    tasks: { taskId: string; version: number; accepted: number }[];
  };
  const task = status.tasks.find((x) => x.taskId === TASK.taskId);
  // Every accepted update was folded exactly once: K per version.
  assert.ok(
    task !== undefined && task.accepted >= UPDATES && task.version === Math.floor(task.accepted / BUFFER),
  );
  const servedMean = tailMean(served, FINAL_VERSION, LAST, EVAL_EVERY);
  t.diagnostic(
    `simulator ${simulated.perSeed.map((a) => a.toFixed(4)).join(' ')} → mean ${simMean.toFixed(4)}`,
  );
  t.diagnostic(`server+fleet ${servedMean.toFixed(4)}; ${summary.updatesPerSecond.toFixed(0)} updates/s`);
  assert.ok(simMean > 0.8, `the simulator itself trains (mean ${simMean})`);
  assert.ok(
    Math.abs(servedMean - simMean) <= TOLERANCE,
    `server+fleet ${servedMean.toFixed(4)} vs simulator ${simMean.toFixed(4)} (tolerance ${TOLERANCE})`,
  );
});
