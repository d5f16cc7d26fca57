/**
 * End to end, sync rounds: the real server (startServer, SQLite in a temp folder) and an in-process
 * fleet of real SDK clients train MNIST with sync FedAvg, and reach the accuracy the simulator
 * reaches with the same task, the same trip budget and the same concurrency and timing model: the
 * FedBuff end-to-end test (src/client/e2e.test.ts) with the strategy swapped.
 *
 * Tolerance as there: the compared figure is the mean test accuracy over the last 10 evaluations
 * (versions 15, 20, …, 60), and the server run must land within 0.02 of the mean over three
 * simulator seeds. A sync round has no staleness, so what differs between the runs is which
 * clients form each cohort (the fleet's choice over HTTP vs the simulator's seeded queue); a
 * broken pipeline (updates dropped or applied twice, wrong round, wrong weights) moves the figure
 * by far more, and an untrained model scores ~0.10.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { runFleet } from '../client/fleet.ts';
import { E2E_DURATION, servedAccuracies, simulatedTail, tailMean } from '../testing/e2e.ts';
import { startServer } from './index.ts';

const COHORT = 10;
const ROUNDS = 60;
const UPDATES = COHORT * ROUNDS;
const EVAL_EVERY = 5;
const TOLERANCE = 0.02;
const TASK = {
  taskId: 'e2e-mnist-sync',
  seed: 3,
  dataset: { kind: 'mnist', numClients: 100, partition: { kind: 'dirichlet', alpha: 0.5 } },
  model: { kind: 'softmax' },
  localTrain: { epochs: 1, batchSize: 10, lr: 0.05 },
  // FedAvg; no over-selection, so every selected client's update counts (no stragglers to refuse).
  strategy: {
    kind: 'sync',
    cohortSize: COHORT,
    overSelection: 0,
    roundTimeout: 60,
    serverOptimizer: { kind: 'sgd', lr: 1 },
  },
  concurrency: COHORT,
  waitMs: 10,
  evalEvery: EVAL_EVERY,
  evalSubset: 2000,
};
const LAST = 10;

test('server sync FedAvg + fleet reach the simulator accuracy on the same task (within 0.02)', {
  timeout: 120_000,
}, async (t) => {
  const simulated = simulatedTail(TASK, {
    concurrency: COHORT,
    maxTrips: UPDATES,
    finalVersion: ROUNDS,
    last: LAST,
    seeds: [1, 2, 3],
  });
  const simMean = simulated.mean;

  const dir = mkdtempSync(join(tmpdir(), 'orchard-sync-e2e-'));
  // Hooks run in registration order, so the server may still be writing here: retry ENOTEMPTY.
  t.after(() => rmSync(dir, { recursive: true, force: true, maxRetries: 5 }));
  const server = await startServer({ dataDir: dir, task: TASK });
  t.after(() => server.close());
  const started = Date.now();
  const summary = await runFleet({
    server: server.url,
    enrollmentKey: server.enrollmentKey,
    clients: 100,
    concurrency: COHORT,
    updates: UPDATES,
    timing: { duration: E2E_DURATION, msPerSecond: 20 },
    seed: 5,
  });
  assert.ok(summary.accepted >= UPDATES);
  assert.equal(summary.rejectedTotal, 0, JSON.stringify(summary.rejected));
  assert.deepEqual(summary.errors, {});
  assert.ok(summary.lastVersion >= ROUNDS);

  const served = await servedAccuracies(server.url, TASK.taskId, ROUNDS);
  // Every round closed with exactly its cohort: K accepted updates per version.
  const c = server.coordinator;
  assert.ok(c !== null);
  assert.ok(c.version >= ROUNDS && c.counts.accepted >= c.version * COHORT);
  assert.ok(
    c.counts.accepted < (c.version + 1) * COHORT,
    `${c.counts.accepted} updates, version ${c.version}`,
  );
  const servedMean = tailMean(served, ROUNDS, LAST, EVAL_EVERY);
  t.diagnostic(
    `simulator ${simulated.perSeed.map((a) => a.toFixed(4)).join(' ')} → mean ${simMean.toFixed(4)}`,
  );
  t.diagnostic(`server+fleet ${servedMean.toFixed(4)}; ${((Date.now() - started) / 1000).toFixed(1)} s`);
  assert.ok(simMean > 0.8, `the simulator itself trains (mean ${simMean})`);
  assert.ok(
    Math.abs(servedMean - simMean) <= TOLERANCE,
    `server+fleet ${servedMean.toFixed(4)} vs simulator ${simMean.toFixed(4)} (tolerance ${TOLERANCE})`,
  );
});
