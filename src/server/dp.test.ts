/**
 * DP tasks served over HTTP (DP-FedBuff, DP-FedAvg): every noised version is checkpointed before it
 * is served, ε spent grows with the versions and equals what a fresh RDP accountant gives for the
 * same (σ, q, steps), and a restart keeps version, model and ε.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { RdpAccountant } from '../privacy/dp/rdp.ts';
import { type RunningServer, startServer } from './index.ts';
import { decodeFrame, type MetricsResponse } from './protocol.ts';
import { parseTaskSpec } from './task.ts';
import { checkinDevice, registerDevice, type Train, uploadUpdate } from './test-helpers.ts';

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
  t.after(() => rmSync(dir, { recursive: true, force: true }));
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
  t.after(() => rmSync(dir, { recursive: true, force: true }));
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

test('DP tasks: checkpointEvery other than 1, a budget, or no population without a dataset are refused', () => {
  assert.throws(() => parseTaskSpec({ ...FEDBUFF, checkpointEvery: 2 }), /must be 1 for a task with privacy/);
  const privacy = (extra: Record<string, unknown>) => ({
    ...FEDBUFF,
    strategy: { ...FEDBUFF.strategy, privacy: { ...FEDBUFF.strategy.privacy, ...extra } },
  });
  assert.throws(() => parseTaskSpec(privacy({ budget: { epsilon: 8 } })), /privacy budget/);
  assert.throws(() => parseTaskSpec(privacy({ population: undefined })), /population/);
});
