/**
 * DP tasks served over HTTP (DP-FedBuff, DP-FedAvg): every noised version is checkpointed before it
 * is served, ε spent grows with the versions and equals what a fresh RDP accountant gives for the
 * same (σ, q, steps), and a restart keeps version, model and ε. With a privacy budget the task
 * stops once one more step would exceed it: check-ins get a `finished` answer, uploads 410.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { RdpAccountant } from '../privacy/dp/rdp.ts';
import { type RunningServer, startServer } from './index.ts';
import { type CheckinResponse, decodeFrame, type MetricsResponse, type StatusResponse } from './protocol.ts';
import { parseTaskSpec } from './task.ts';
import { checkinDevice, postUpdate, registerDevice, type Train, uploadUpdate } from './test-helpers.ts';

const NUM_PARAMS = 8;
const SIGMA = 1.1;
const DELTA = 1e-5;
const POPULATION = 40;
const K = 4;
const FEDBUFF = {
  taskId: 'dp-fedbuff',
  modelInput: { inputKind: 'dense', inputDim: 3, numClasses: 2 },
  model: { kind: 'softmax' },
  strategy: {
    kind: 'fedbuff',
    bufferSize: K,
    staleness: { kind: 'constant' },
    privacy: { clipNorm: 0.5, noiseMultiplier: SIGMA, delta: DELTA, population: POPULATION },
  },
  evalEvery: 1,
};

/** ε after `steps` steps at sampling rate q = perStep / POPULATION, from a fresh accountant. */
function referenceEpsilon(steps: number, perStep: number): number {
  if (steps === 0) return 0;
  const accountant = new RdpAccountant();
  accountant.record(perStep / POPULATION, SIGMA, steps);
  return accountant.epsilon(DELTA).epsilon;
}

function deltaOf(i: number): Float32Array {
  const d = new Float32Array(NUM_PARAMS);
  for (let j = 0; j < NUM_PARAMS; j++) d[j] = (((i * 5 + j * 3) % 11) - 5) / 8;
  return d;
}

async function served(server: RunningServer, token: string, version: number): Promise<number[]> {
  const res = await fetch(`${server.url}/v1/tasks/${server.taskId}/models/${version}`, {
    headers: { authorization: `Bearer ${token}` },
  });
  assert.equal(res.status, 200);
  return Array.from(decodeFrame(new Uint8Array(await res.arrayBuffer())).floats);
}

async function trip(server: RunningServer, token: string, i: number) {
  const a = await checkinDevice(server.url, token);
  assert.equal(a.action, 'train', JSON.stringify(a));
  return uploadUpdate(server.url, token, a as Train, deltaOf(i), 1 + (i % 3));
}

test('DP-FedBuff over HTTP: checkpoint before serve, ε per version matches the accountant, restart keeps ε and version', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'orchard-dp-'));
  // Hooks run in registration order, so the server may still be writing here: retry ENOTEMPTY.
  t.after(() => rmSync(dir, { recursive: true, force: true, maxRetries: 5 }));
  const options = { dataDir: dir, task: FEDBUFF };
  let server = await startServer(options);
  const device = await registerDevice(server.url, server.enrollmentKey);
  const c0 = server.coordinator;
  assert.ok(c0 !== null);
  assert.equal(c0.privacy()?.epsilon, 0);
  const x0 = await served(server, device.token, 0);
  const epsilons: number[] = [0];
  for (let i = 0; i < 3 * K + 2; i++) {
    const r = await trip(server, device.token, i);
    assert.equal(r.accepted, true);
    if ((i + 1) % K === 0) {
      // The version that step released is already durable in a checkpoint, with the same model.
      const v = (i + 1) / K;
      assert.equal(c0.version, v);
      const checkpoint = await server.storage.latestCheckpoint(FEDBUFF.taskId);
      assert.equal(checkpoint?.version, v);
      assert.deepEqual(Array.from(checkpoint?.params ?? []), await served(server, device.token, v));
      const spent = c0.privacy();
      assert.equal(spent?.steps, v);
      assert.ok(Math.abs((spent?.epsilon ?? 0) - referenceEpsilon(v, K)) < 1e-9, `ε at version ${v}`);
      epsilons.push(spent?.epsilon ?? Number.NaN);
    }
  }
  assert.equal(c0.version, 3);
  for (let v = 1; v < epsilons.length; v++)
    assert.ok((epsilons[v] as number) > (epsilons[v - 1] as number), 'ε grows with every version');
  // The model moved (noise and clipped updates), and /v1/metrics reports ε per version.
  assert.notDeepEqual(await served(server, device.token, 3), x0);
  let metrics: MetricsResponse['metrics'] = [];
  for (let attempt = 0; attempt < 50; attempt++) {
    metrics = (
      (await (await fetch(`${server.url}/v1/metrics?taskId=${FEDBUFF.taskId}`)).json()) as MetricsResponse
    ).metrics;
    if (metrics.some((m) => m.version === 3)) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  const m3 = metrics.find((m) => m.version === 3);
  assert.ok(m3 !== undefined, 'a metrics record for version 3');
  assert.ok(Math.abs((m3.values.epsilon as number) - referenceEpsilon(3, K)) < 1e-9);
  assert.equal(m3.values.privacySteps, 3);
  assert.equal(m3.values.delta, DELTA);

  // Restart: same version, same model, same ε; the two buffered updates were replayed, so two
  // more close the next buffer and ε moves on to four steps.
  const before = { version: c0.version, params: Array.from(c0.params() ?? []), privacy: c0.privacy() };
  await server.close();
  server = await startServer(options);
  t.after(() => server.close());
  const c1 = server.coordinator;
  assert.ok(c1 !== null);
  assert.deepEqual(
    { version: c1.version, params: Array.from(c1.params() ?? []), privacy: c1.privacy() },
    before,
  );
  await trip(server, device.token, 100);
  const r = await trip(server, device.token, 101);
  assert.equal(r.version, 4);
  assert.equal(c1.privacy()?.steps, 4);
  assert.ok(Math.abs((c1.privacy()?.epsilon ?? 0) - referenceEpsilon(4, K)) < 1e-9);
  assert.equal((await server.storage.latestCheckpoint(FEDBUFF.taskId))?.version, 4);
});

test('DP-FedAvg (sync) over HTTP: a round releases one noised step, ε from the accountant; restart keeps it', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'orchard-dp-sync-'));
  // Hooks run in registration order, so the server may still be writing here: retry ENOTEMPTY.
  t.after(() => rmSync(dir, { recursive: true, force: true, maxRetries: 5 }));
  const task = {
    ...FEDBUFF,
    taskId: 'dp-sync',
    strategy: {
      kind: 'sync',
      cohortSize: 3,
      overSelection: 0,
      roundTimeout: 30,
      privacy: FEDBUFF.strategy.privacy,
    },
  };
  const options = { dataDir: dir, task };
  let server = await startServer(options);
  const devices = await Promise.all([0, 1, 2].map(() => registerDevice(server.url, server.enrollmentKey)));
  for (let round = 0; round < 2; round++) {
    const assignments = [];
    for (const d of devices) assignments.push((await checkinDevice(server.url, d.token)) as Train);
    for (let k = 0; k < 3; k++)
      await uploadUpdate(
        server.url,
        (devices[k] as { token: string }).token,
        assignments[k] as Train,
        deltaOf(round * 3 + k),
      );
  }
  const c = server.coordinator;
  assert.ok(c !== null);
  assert.equal(c.version, 2);
  assert.equal((await server.storage.latestCheckpoint('dp-sync'))?.version, 2);
  assert.ok(Math.abs((c.privacy()?.epsilon ?? 0) - referenceEpsilon(2, 3)) < 1e-9);
  const before = { version: c.version, params: Array.from(c.params() ?? []), privacy: c.privacy() };
  await server.close();
  server = await startServer(options);
  t.after(() => server.close());
  const c1 = server.coordinator;
  assert.ok(c1 !== null);
  assert.deepEqual(
    { version: c1.version, params: Array.from(c1.params() ?? []), privacy: c1.privacy() },
    before,
  );
});

test('DP tasks: checkpointEvery other than 1, or no population without a dataset are refused; a budget is served', () => {
  assert.throws(() => parseTaskSpec({ ...FEDBUFF, checkpointEvery: 2 }), /must be 1 for a task with privacy/);
  const privacy = (extra: Record<string, unknown>) => ({
    ...FEDBUFF,
    strategy: { ...FEDBUFF.strategy, privacy: { ...FEDBUFF.strategy.privacy, ...extra } },
  });
  assert.equal(parseTaskSpec(privacy({ budget: { epsilon: 8 } })).strategy.kind, 'fedbuff');
  assert.throws(() => parseTaskSpec(privacy({ population: undefined })), /population/);
});

/** Steps a fresh accountant allows before one more would push ε past `budget` (stepping one at a time). */
function referenceAllowedSteps(budget: number, perStep: number): number {
  let steps = 0;
  for (;;) {
    const next = new RdpAccountant();
    next.record(perStep / POPULATION, SIGMA, steps + 1);
    if (next.epsilon(DELTA).epsilon > budget) return steps;
    steps++;
    assert.ok(steps < 1000, 'the budget allows fewer than 1000 steps');
  }
}

async function metricsOf(server: RunningServer, version: number) {
  for (let attempt = 0; attempt < 100; attempt++) {
    const { metrics } = (await (
      await fetch(`${server.url}/v1/metrics?taskId=${server.taskId}`)
    ).json()) as MetricsResponse;
    const m = metrics.find((r) => r.version === version && r.values.finished !== undefined);
    if (m !== undefined) return m;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.fail(`no finished metrics record for version ${version}`);
}

test("DP-FedBuff with a privacy budget over HTTP: stops at the accountant's step count, refuses check-ins and uploads, stays finished after restart", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'orchard-dp-budget-'));
  // Hooks run in registration order, so the server may still be writing here: retry ENOTEMPTY.
  t.after(() => rmSync(dir, { recursive: true, force: true, maxRetries: 5 }));
  const BUDGET = 2.3;
  const task = {
    ...FEDBUFF,
    taskId: 'dp-budget',
    strategy: { ...FEDBUFF.strategy, privacy: { ...FEDBUFF.strategy.privacy, budget: { epsilon: BUDGET } } },
    evalEvery: 0,
  };
  const allowed = referenceAllowedSteps(BUDGET, K);
  assert.ok(allowed >= 2 && allowed <= 10, `the test budget allows ${allowed} steps`);
  const options = { dataDir: dir, task };
  let server = await startServer(options);
  const device = await registerDevice(server.url, server.enrollmentKey);
  const other = await registerDevice(server.url, server.enrollmentKey);
  const c0 = server.coordinator;
  assert.ok(c0 !== null);
  let held: Train | null = null;
  let accepted = 0;
  let finishedAnswer: CheckinResponse | null = null;
  for (let i = 0; i < 20 * K; i++) {
    // One assignment taken just before the last step: its upload must be refused afterwards.
    if (held === null && c0.version === allowed - 1 && accepted % K === K - 1) {
      const a = await checkinDevice(server.url, other.token);
      assert.equal(a.action, 'train');
      held = a as Train;
    }
    const a = await checkinDevice(server.url, device.token);
    if (a.action !== 'train') {
      finishedAnswer = a;
      break;
    }
    const r = await uploadUpdate(server.url, device.token, a, deltaOf(i), 1 + (i % 3));
    assert.equal(r.accepted, true);
    accepted++;
  }
  // Published steps = what the independent accountant allows; every accepted update is in one.
  assert.equal(c0.version, allowed);
  assert.equal(accepted, allowed * K, 'no accepted update is left in the buffer');
  assert.ok(finishedAnswer !== null && finishedAnswer.action === 'wait');
  assert.deepEqual(
    finishedAnswer.finished?.map((f) => [f.taskId, f.reason, f.steps, f.budgetEpsilon]),
    [['dp-budget', 'privacy_budget', allowed, BUDGET]],
  );
  const spentReference = referenceEpsilon(allowed, K);
  assert.ok(Math.abs((finishedAnswer.finished?.[0]?.epsilon ?? 0) - spentReference) < 1e-9);
  assert.ok(spentReference <= BUDGET && referenceEpsilon(allowed + 1, K) > BUDGET);
  assert.equal(c0.finished()?.reason, 'privacy_budget');
  const m = await metricsOf(server, allowed);
  assert.equal(m.values.finished, 'privacy_budget');
  assert.ok(Math.abs((m.values.epsilon as number) - spentReference) < 1e-9);
  assert.equal(m.values.privacySteps, allowed);
  const status = (await (await fetch(`${server.url}/v1/status`)).json()) as StatusResponse;
  assert.equal(status.tasks[0]?.finished?.reason, 'privacy_budget');
  assert.equal(status.tasks[0]?.finished?.steps, allowed);

  // Uploads are refused with a typed 410 and change nothing: model, journal, checkpoint, keys.
  const storageState = async () => ({
    version: c0.version,
    params: Array.from(c0.params() ?? []),
    journal: (await server.storage.journalSince('dp-budget', 0)).map((e) => e.seq),
    checkpoint: (await server.storage.latestCheckpoint('dp-budget'))?.version,
  });
  const before = await storageState();
  assert.equal(before.checkpoint, allowed);
  assert.ok(held !== null);
  const refused = await postUpdate(server.url, other.token, held, deltaOf(999));
  assert.equal(refused.status, 410, refused.text);
  assert.equal((JSON.parse(refused.text) as { error: { code: string } }).error.code, 'finished');
  assert.deepEqual(await storageState(), before);
  assert.equal(await server.storage.lookupIdempotencyKey('dp-budget', held.assignmentId), null);
  assert.equal(c0.counts.rejected.finished, 1);

  // Restart: still finished (recomputed from the checkpoint's ledger), same version, model and ε.
  const privacyBefore = c0.privacy();
  await server.close();
  server = await startServer(options);
  t.after(() => server.close());
  const c1 = server.coordinator;
  assert.ok(c1 !== null);
  assert.equal(c1.version, allowed);
  assert.deepEqual(Array.from(c1.params() ?? []), before.params);
  assert.deepEqual(c1.privacy(), privacyBefore);
  assert.equal(c1.finished()?.steps, allowed);
  const again = await checkinDevice(server.url, device.token);
  assert.equal(again.action, 'wait');
  assert.equal(again.action === 'wait' ? again.finished?.[0]?.reason : null, 'privacy_budget');
  const refusedAgain = await postUpdate(server.url, other.token, held, deltaOf(999));
  assert.equal(refusedAgain.status, 410);
  assert.equal(c1.version, allowed);
  assert.equal((await server.storage.latestCheckpoint('dp-budget'))?.version, allowed);
  assert.equal(await server.storage.lookupIdempotencyKey('dp-budget', held.assignmentId), null);
});

test("DP-FedAvg (sync) with a privacy budget: rounds stop at the accountant's step count, no round opens after, restart keeps it", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'orchard-dp-sync-budget-'));
  // Hooks run in registration order, so the server may still be writing here: retry ENOTEMPTY.
  t.after(() => rmSync(dir, { recursive: true, force: true, maxRetries: 5 }));
  const BUDGET = 1.85;
  const COHORT = 3;
  const task = {
    ...FEDBUFF,
    taskId: 'dp-sync-budget',
    strategy: {
      kind: 'sync',
      cohortSize: COHORT,
      overSelection: 0,
      roundTimeout: 30,
      privacy: { ...FEDBUFF.strategy.privacy, budget: { epsilon: BUDGET } },
    },
    evalEvery: 0,
  };
  const allowed = referenceAllowedSteps(BUDGET, COHORT);
  assert.ok(allowed >= 2 && allowed <= 10, `the test budget allows ${allowed} steps`);
  const options = { dataDir: dir, task };
  let server = await startServer(options);
  const devices = await Promise.all(
    Array.from({ length: COHORT }, () => registerDevice(server.url, server.enrollmentKey)),
  );
  let rounds = 0;
  for (; rounds < 20; rounds++) {
    const answers = [];
    for (const d of devices) answers.push(await checkinDevice(server.url, d.token));
    if (answers.some((a) => a.action !== 'train')) {
      // The budget is spent: nobody joins, and the answer says why.
      assert.ok(answers.every((a) => a.action === 'wait' && a.finished?.[0]?.reason === 'privacy_budget'));
      break;
    }
    for (let k = 0; k < COHORT; k++)
      await uploadUpdate(
        server.url,
        (devices[k] as { token: string }).token,
        answers[k] as Train,
        deltaOf(rounds * COHORT + k),
      );
  }
  const c = server.coordinator;
  assert.ok(c !== null);
  assert.equal(rounds, allowed);
  assert.equal(c.version, allowed);
  assert.ok(Math.abs((c.privacy()?.epsilon ?? 0) - referenceEpsilon(allowed, COHORT)) < 1e-9);
  assert.equal(c.finished()?.steps, allowed);
  assert.equal((await server.storage.latestCheckpoint('dp-sync-budget'))?.version, allowed);
  await server.close();
  server = await startServer(options);
  t.after(() => server.close());
  const c1 = server.coordinator;
  assert.ok(c1 !== null);
  assert.equal(c1.version, allowed);
  assert.equal(c1.finished()?.reason, 'privacy_budget');
  const again = await checkinDevice(server.url, (devices[0] as { token: string }).token);
  assert.ok(again.action === 'wait' && again.finished?.[0]?.steps === allowed);
});
