/**
 * Sync rounds (FedAvg) served over HTTP: simulated devices check in, join the current round's
 * cohort (the strategy's selection target), upload, and the coordinator closes rounds at
 * cohortSize updates or at the round deadline; stragglers of a closed round get 409 `stale`. Every
 * served model is compared with an independent float64 computation of FedAvg.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { assignmentRound } from './assignment.ts';
import { parseStoredRound } from './coordinator.ts';
import { type RunningServer, startServer } from './index.ts';
import { decodeFrame } from './protocol.ts';
import { checkinDevice, registerDevice, type Train, uploadUpdate } from './test-helpers.ts';

const NUM_PARAMS = 8; // softmax 3 inputs × 2 classes + 2 biases
const ROUND_TIMEOUT_S = 0.6;
const TASK = {
  taskId: 'sync',
  modelInput: { inputKind: 'dense', inputDim: 3, numClasses: 2 },
  model: { kind: 'softmax' },
  // 3 updates close a round; ceil(3 · 1.25) = 4 devices are selected per round.
  strategy: {
    kind: 'sync',
    cohortSize: 3,
    overSelection: 0.25,
    roundTimeout: ROUND_TIMEOUT_S,
    minUpdates: 2,
    serverOptimizer: { kind: 'sgd', lr: 1 },
  },
  waitMs: 20,
  evalEvery: 0,
};

function deltaOf(i: number): Float32Array {
  const d = new Float32Array(NUM_PARAMS);
  for (let j = 0; j < NUM_PARAMS; j++) d[j] = (((i * 5 + j * 3) % 11) - 5) / 32;
  return d;
}

/** FedAvg in float64: x − Σ nᵢδᵢ / Σ nᵢ. */
function fedAvgStep(x: readonly number[], updates: readonly { delta: Float32Array; n: number }[]): number[] {
  const total = updates.reduce((s, u) => s + u.n, 0);
  return x.map((v, j) => v - updates.reduce((s, u) => s + u.n * (u.delta[j] as number), 0) / total);
}

async function model(server: RunningServer, token: string, version: number): Promise<number[]> {
  const res = await fetch(`${server.url}/v1/tasks/sync/models/${version}`, {
    headers: { authorization: `Bearer ${token}` },
  });
  assert.equal(res.status, 200, `model ${version}`);
  return Array.from(decodeFrame(new Uint8Array(await res.arrayBuffer())).floats);
}

function assertClose(actual: readonly number[], expected: readonly number[], what: string): void {
  assert.equal(actual.length, expected.length);
  for (let j = 0; j < actual.length; j++)
    assert.ok(
      Math.abs((actual[j] as number) - (expected[j] as number)) < 1e-6,
      `${what}, param ${j}: ${actual[j]} vs ${expected[j]}`,
    );
}

async function train(server: RunningServer, token: string): Promise<Train> {
  const c = await checkinDevice(server.url, token);
  assert.equal(c.action, 'train', JSON.stringify(c));
  return c as Train;
}

async function waitFor(what: string, done: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('sync FedAvg over HTTP: per-round cohorts, close at cohortSize or deadline, stale stragglers, restarts', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'orchard-sync-'));
  const server = await startServer({ dataDir: dir, task: TASK });
  t.after(async () => {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const c = server.coordinator;
  assert.ok(c !== null);
  const devices = await Promise.all(
    Array.from({ length: 6 }, () => registerDevice(server.url, server.enrollmentKey)),
  );
  const tokens = devices.map((d) => d.token);
  let x = await model(server, tokens[0] as string, 0);

  // Round 0: four devices are selected, the fifth waits for the next round.
  const r0 = [];
  for (let i = 0; i < 4; i++) r0.push(await train(server, tokens[i] as string));
  assert.deepEqual(
    r0.map((a) => a.version),
    [0, 0, 0, 0],
  );
  const full = await checkinDevice(server.url, tokens[4] as string);
  assert.equal(full.action, 'wait');
  assert.match(full.action === 'wait' ? full.reason : '', /selected its cohort/);

  // Three updates close it: FedAvg of exactly those three, example-weighted.
  const sent0 = [0, 1, 2].map((i) => ({ delta: deltaOf(i), n: i + 1 }));
  const answers = [];
  for (let i = 0; i < 3; i++) {
    const u = sent0[i] as { delta: Float32Array; n: number };
    answers.push(await uploadUpdate(server.url, tokens[i] as string, r0[i] as Train, u.delta, u.n));
  }
  assert.deepEqual(
    answers.map((a) => [a.accepted, a.version]),
    [
      [true, 0],
      [true, 0],
      [true, 1],
    ],
  );
  x = fedAvgStep(x, sent0);
  await waitFor('version 1', () => c.version === 1);
  assertClose(await model(server, tokens[0] as string, 1), x, 'version 1');
  // The fourth device of round 0 is a straggler now: a typed refusal, nothing changes.
  await assert.rejects(
    uploadUpdate(server.url, tokens[3] as string, r0[3] as Train, deltaOf(9)),
    /409.*"stale".*round 0/,
  );
  // A retried upload gets the first answer back.
  const again = await uploadUpdate(server.url, tokens[2] as string, r0[2] as Train, deltaOf(2), 3);
  assert.deepEqual([again.duplicate, again.version], [true, 1]);
  assert.equal(c.version, 1);
  assert.deepEqual(c.counts.rejected, { wrong_round: 1 });

  // Round 1: only two of its devices report; the deadline closes it with those two (≥ minUpdates).
  const r1 = [await train(server, tokens[4] as string), await train(server, tokens[5] as string)];
  assert.deepEqual(
    r1.map((a) => a.version),
    [1, 1],
  );
  const sent1 = [3, 4].map((i) => ({ delta: deltaOf(i), n: 2 }));
  for (let k = 0; k < 2; k++) {
    const u = sent1[k] as { delta: Float32Array; n: number };
    const r = await uploadUpdate(server.url, tokens[4 + k] as string, r1[k] as Train, u.delta, u.n);
    assert.deepEqual([r.accepted, r.version], [true, 1]);
  }
  const closedAt = Date.now();
  await waitFor('the round deadline', () => c.version === 2, 5000);
  assert.ok(Date.now() - closedAt < ROUND_TIMEOUT_S * 1000 + 1000);
  x = fedAvgStep(x, sent1);
  assertClose(await model(server, tokens[0] as string, 2), x, 'version 2 (deadline)');
  // The deadline-closed version is checkpointed before it is served.
  assert.equal((await server.storage.latestCheckpoint('sync'))?.version, 2);

  // Round 2: one update only (< minUpdates): the deadline discards it and round 3 restarts at
  // version 2; the other device of round 2 is refused as stale.
  const r2 = [await train(server, tokens[0] as string), await train(server, tokens[1] as string)];
  await uploadUpdate(server.url, tokens[0] as string, r2[0] as Train, deltaOf(5), 4);
  const round2 = c.round;
  await waitFor('the discarding deadline', () => c.round === (round2 as number) + 1, 5000);
  assert.equal(c.version, 2);
  await assert.rejects(
    uploadUpdate(server.url, tokens[1] as string, r2[1] as Train, deltaOf(6)),
    /409.*"stale"/,
  );
  const r3 = await train(server, tokens[2] as string);
  assert.equal(r3.version, 2);
  assertClose(await model(server, tokens[0] as string, 2), x, 'version 2 after a discarded round');
});

test('sync round restarted mid-round keeps its deadline and its selected devices: they upload, nobody else joins', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'orchard-sync-restart-'));
  // Hooks run in registration order, so the server may still be writing here: retry ENOTEMPTY.
  t.after(() => rmSync(dir, { recursive: true, force: true, maxRetries: 5 }));
  // 3 selected, 3 updates close the round; a 30 s deadline never fires during the test.
  const task = {
    ...TASK,
    taskId: 'sync',
    strategy: { ...TASK.strategy, overSelection: 0, roundTimeout: 30, minUpdates: 1 },
  };
  let server = await startServer({ dataDir: dir, task });
  const devices = await Promise.all(
    Array.from({ length: 4 }, () => registerDevice(server.url, server.enrollmentKey)),
  );
  const tokens = devices.map((d) => d.token);
  const x0 = await model(server, tokens[0] as string, 0);
  const joinedAt = Date.now();
  const cohort = [];
  for (let i = 0; i < 3; i++) cohort.push(await train(server, tokens[i] as string));
  const c0 = server.coordinator;
  assert.ok(c0 !== null);
  const deadline = c0.roundDeadline();
  assert.ok(deadline !== null && deadline >= joinedAt + 29_000, `deadline ${deadline}`);
  const sent = [0, 1, 2].map((i) => ({ delta: deltaOf(20 + i), n: i + 2 }));
  const first = await uploadUpdate(
    server.url,
    tokens[0] as string,
    cohort[0] as Train,
    sent[0]?.delta as Float32Array,
    2,
  );
  assert.equal(first.version, 0);
  // The round is full before the restart.
  assert.equal((await checkinDevice(server.url, tokens[3] as string)).action, 'wait');

  await server.close();
  // Long enough that a deadline counted from the restart could not match the original one.
  await new Promise((r) => setTimeout(r, 300));
  server = await startServer({ dataDir: dir, task });
  t.after(() => server.close());
  const c1 = server.coordinator;
  assert.ok(c1 !== null);
  assert.equal(c1.round, 0);
  // Same absolute deadline (not restart time + roundTimeout).
  assert.ok(Math.abs((c1.roundDeadline() ?? 0) - deadline) < 1, `${c1.roundDeadline()} vs ${deadline}`);
  // The cohort is still selected: a fourth device does not get into the round.
  const late = await checkinDevice(server.url, tokens[3] as string);
  assert.equal(late.action, 'wait');
  assert.match(late.action === 'wait' ? late.reason : '', /selected its cohort/);
  // The selected devices' uploads are accepted, and the third closes the round with all three.
  const second = await uploadUpdate(
    server.url,
    tokens[1] as string,
    cohort[1] as Train,
    sent[1]?.delta as Float32Array,
    3,
  );
  assert.deepEqual([second.accepted, second.version], [true, 0]);
  const third = await uploadUpdate(
    server.url,
    tokens[2] as string,
    cohort[2] as Train,
    sent[2]?.delta as Float32Array,
    4,
  );
  assert.deepEqual([third.accepted, third.version], [true, 1]);
  await waitFor('version 1', () => c1.version === 1);
  assertClose(
    await model(server, tokens[0] as string, 1),
    fedAvgStep(
      x0,
      sent.map((u, i) => ({ delta: u.delta, n: i + 2 })),
    ),
    'version 1 after the restart',
  );
  // The next round opens fresh: the fourth device joins it.
  assert.equal((await checkinDevice(server.url, tokens[3] as string)).action, 'train');
});

test('sync task refusals: no round deadline, secure aggregation, roles in separate processes', async () => {
  const { parseTaskSpec } = await import('./task.ts');
  const sync = (strategy: Record<string, unknown>) => ({
    ...TASK,
    strategy: { ...TASK.strategy, ...strategy },
  });
  assert.throws(() => parseTaskSpec(sync({ roundTimeout: undefined })), /finite roundTimeout/);
  assert.throws(
    () =>
      parseTaskSpec({
        ...TASK,
        strategy: { kind: 'fedbuff', secureAggregation: { groupSize: 4, threshold: 3 } },
      }),
    /secure aggregation is simulator-only/,
  );
  await assert.rejects(
    startServer({ storage: 'sqlite::memory:', task: TASK, roles: ['coordinator'] }),
    /sync rounds need all roles in one process/,
  );
});

test('sync round restarted after some of its devices lapsed: they keep their slots, the selection target holds across the restart', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'orchard-sync-departed-'));
  let open: { close(): Promise<void> } | null = null;
  // One hook, close before remove (hooks run in registration order): a failed assertion must not
  // leave a server open (the file would hang) or remove its folder while it still writes there.
  t.after(async () => {
    await open?.close();
    rmSync(dir, { recursive: true, force: true, maxRetries: 5 });
  });
  // ceil(3 · 1.25) = 4 devices are selected for a round; assignments lapse after 1 s, the round's
  // 30 s deadline never fires during the test.
  const TARGET = 4;
  const task = {
    ...TASK,
    taskId: 'sync',
    strategy: { ...TASK.strategy, roundTimeout: 30, minUpdates: 1 },
    assignmentTtlMs: 1000,
  };
  let server = await startServer({ dataDir: dir, task });
  open = server;
  const tokens = (
    await Promise.all(Array.from({ length: 6 }, () => registerDevice(server.url, server.enrollmentKey)))
  ).map((d) => d.token);
  // Two devices join round 0 and never upload: the lapse sweep drops them, and the stored round no
  // longer lists them.
  const gone = [await train(server, tokens[0] as string), await train(server, tokens[1] as string)];
  assert.deepEqual(
    gone.map((a) => assignmentRound(a.assignmentId)),
    [0, 0],
  );
  const stored = async () => (await server.storage.roundState('sync'))?.state as { cohort: unknown[] };
  const deadline = Date.now() + 10_000;
  while ((await stored()).cohort.length > 0) {
    assert.ok(Date.now() < deadline, 'the two lapsed devices were never dropped from the stored round');
    await new Promise((r) => setTimeout(r, 50));
  }
  // A third device joins round 0 (stored before it is answered), then the server goes down.
  const third = await train(server, tokens[2] as string);
  assert.equal(assignmentRound(third.assignmentId), 0);
  open = null;
  await server.close();
  server = await startServer({ dataDir: dir, task });
  open = server;
  assert.equal(server.coordinator?.round, 0);
  // Three of the round's four selections are used (two lapsed, one training): one more device
  // joins round 0, the others wait.
  const answers = [];
  for (const token of tokens.slice(3)) answers.push(await checkinDevice(server.url, token));
  const joined = answers.filter((a) => a.action === 'train' && assignmentRound(a.assignmentId) === 0);
  assert.equal(joined.length, TARGET - 3, JSON.stringify(answers.map((a) => a.action)));
  assert.equal(answers[0]?.action, 'train');
});

test('stored round state: departed defaults to 0 for states written before it existed; malformed counts are refused', () => {
  const base = { round: 2, version: 1, deadline: 12.5, cohort: [{ assignmentId: 'a.b', deadline: 9 }] };
  assert.equal(parseStoredRound(base).departed, 0);
  assert.equal(parseStoredRound({ ...base, departed: 3 }).departed, 3);
  for (const departed of [-1, 1.5, '2', null])
    assert.throws(() => parseStoredRound({ ...base, departed }), /stored round state is malformed/);
});
