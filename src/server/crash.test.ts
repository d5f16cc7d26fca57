/**
 * kill -9 test: `orchard serve` runs as a child process on one data folder and is killed with
 * SIGKILL at seeded random moments, 20 times in a row, while devices upload. Every update that got
 * a 2xx must be applied exactly once: uploads whose outcome was lost in a crash are retried with
 * the same assignment (idempotent) after the restart, and at the end the served model must equal
 * an independent float64 replay of the acknowledged updates. Versions never go backwards.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { Rng } from '../core/rng.ts';
import { decodeFrame, type UpdateResponse } from './protocol.ts';
import { parseTaskSpec, taskRuntime } from './task.ts';
import {
  checkinDevice,
  registerDevice,
  serveWorkspace,
  startServeChild,
  stopChild,
  type Train,
  taskStatus,
  uploadUpdate,
} from './test-helpers.ts';

const K = 4;
const TASK = {
  taskId: 'crash',
  modelInput: { inputKind: 'dense', inputDim: 7, numClasses: 2 },
  model: { kind: 'softmax' },
  strategy: {
    kind: 'fedbuff',
    bufferSize: K,
    staleness: { kind: 'constant' },
    serverOptimizer: { kind: 'sgd', lr: 1 },
  },
  concurrency: 1000,
  evalEvery: 0,
  checkpointEvery: 2,
};
const NUM_PARAMS = 16;

/** Update i: multiples of 1/64, so sums are exact in float32 and a double application stands out. */
function deltaOf(i: number): Float32Array {
  const d = new Float32Array(NUM_PARAMS);
  for (let j = 0; j < NUM_PARAMS; j++) d[j] = (((i * 7 + j * 3) % 17) - 8) / 64;
  return d;
}

interface Upload {
  readonly index: number;
  readonly token: string;
  readonly assignment: Train;
}

const send = (url: string, u: Upload) => uploadUpdate(url, u.token, u.assignment, deltaOf(u.index));

async function checkin(url: string, token: string): Promise<Train> {
  const body = await checkinDevice(url, token);
  if (body.action !== 'train') throw new Error(`check-in said ${JSON.stringify(body)}`);
  return body;
}

/**
 * The model served at `version` equals an independent float64 replay of the acknowledged updates:
 * constant staleness weights, one example each, SGD lr 1 → x₀ − (1/K)·Σ δᵢ.
 */
async function assertServedModel(
  url: string,
  token: string,
  version: number,
  acked: Iterable<number>,
): Promise<void> {
  const model = await fetch(`${url}/v1/tasks/crash/models/${version}`, {
    headers: { authorization: `Bearer ${token}` },
  });
  const served = decodeFrame(new Uint8Array(await model.arrayBuffer())).floats;
  const reference = Float64Array.from(taskRuntime(parseTaskSpec(TASK)).initialParams);
  for (const index of acked) {
    const d = deltaOf(index);
    for (let j = 0; j < NUM_PARAMS; j++) reference[j] = (reference[j] as number) - (d[j] as number) / K;
  }
  for (let j = 0; j < NUM_PARAMS; j++)
    assert.ok(
      Math.abs((served[j] as number) - (reference[j] as number)) < 1e-4,
      `param ${j}: ${served[j]} vs ${reference[j]}`,
    );
}

test('kill -9 at 20 random points: every acknowledged update applied exactly once, versions never go back', async (t) => {
  const workspace = serveWorkspace(t, 'orchard-crash-', TASK);

  const rng = new Rng(4242);
  const acked = new Map<number, UpdateResponse>();
  let unknown: Upload[] = [];
  let nextIndex = 0;
  let tokens: string[] = [];
  let lastVersion = 0;
  let duplicatesAfterCrash = 0;
  const WORKERS = 4;

  for (let round = 0; round < 20; round++) {
    const server = await workspace.start();
    if (tokens.length === 0)
      for (let w = 0; w < WORKERS; w++) {
        tokens.push((await registerDevice(server.url, server.enrollmentKey)).token);
      }
    const before = await taskStatus(server.url);
    assert.ok(
      before.version >= lastVersion,
      `round ${round}: version ${before.version} < ${lastVersion} before the crash`,
    );
    // Uploads whose answer the crash swallowed: same assignment again, so at most one applies.
    for (const u of unknown) {
      const r = await send(server.url, u);
      if (r.duplicate) duplicatesAfterCrash++;
      acked.set(u.index, r);
      lastVersion = Math.max(lastVersion, r.version);
    }
    unknown = [];

    let killed = false;
    const worker = async (token: string) => {
      while (!killed) {
        let assignment: Train;
        try {
          assignment = await checkin(server.url, token);
        } catch {
          return;
        }
        const u = { index: nextIndex++, token, assignment };
        try {
          const r = await send(server.url, u);
          acked.set(u.index, r);
          lastVersion = Math.max(lastVersion, r.version);
        } catch {
          unknown.push(u);
          return;
        }
      }
    };
    const workers = tokens.map(worker);
    await new Promise((r) => setTimeout(r, rng.uniform(30, 400)));
    killed = true;
    await workspace.stop();
    await Promise.all(workers);
  }

  // Final run: settle the unknowns, fill the last buffer, compare with the reference.
  const server = await workspace.start();
  const token = tokens[0] as string;
  for (const u of unknown) {
    const r = await send(server.url, u);
    if (r.duplicate) duplicatesAfterCrash++;
    acked.set(u.index, r);
  }
  assert.equal(acked.size, nextIndex, 'every upload has a known outcome');
  while (acked.size % K !== 0) {
    const u = { index: nextIndex++, token, assignment: await checkin(server.url, token) };
    acked.set(u.index, await send(server.url, u));
  }
  const final = await taskStatus(server.url);
  assert.equal(final.version, acked.size / K, `${acked.size} updates in buffers of ${K}`);
  await assertServedModel(server.url, token, final.version, acked.keys());
  t.diagnostic(
    `${acked.size} updates over 20 kills; ${duplicatesAfterCrash} retried uploads had been applied before the crash`,
  );
  assert.ok(acked.size > 100, `only ${acked.size} updates went through`);
  await workspace.stop();
  tokens = [];
});

test('roles as separate processes: kill -9 of a random role at 6 seeded points, nothing acknowledged lost or doubled', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'orchard-crash-roles-'));
  const taskFile = join(dir, 'task.json');
  writeFileSync(taskFile, JSON.stringify(TASK));
  const common = ['--data-dir', join(dir, 'data'), '--task', taskFile];
  type RoleName = 'coordinator' | 'aggregator' | 'selector';
  const ROLES: readonly RoleName[] = ['coordinator', 'aggregator', 'selector'];
  const running = new Map<RoleName, Awaited<ReturnType<typeof startServeChild>>>();
  const start = async (role: RoleName) => {
    running.set(role, await startServeChild([...common, '--role', role], 'serve'));
  };
  t.after(async () => {
    for (const p of running.values()) await stopChild(p.child);
    rmSync(dir, { recursive: true, force: true });
  });
  // The coordinator starts first: it stores the task and the version-0 checkpoint the others read.
  for (const role of ROLES) await start(role);
  const url = (role: RoleName) => (running.get(role) as { url: string }).url;
  const server = running.get('selector') as { enrollmentKey: string };
  const tokens: string[] = [];
  for (let w = 0; w < 4; w++)
    tokens.push((await registerDevice(url('selector'), server.enrollmentKey)).token);

  const rng = new Rng(77);
  const acked = new Map<number, UpdateResponse>();
  let unknown: Upload[] = [];
  let nextIndex = 0;
  let lastVersion = 0;
  // Uploads alternate between the coordinator's own aggregator and the separate aggregator.
  const uploadTo = (index: number): RoleName => (index % 2 === 0 ? 'aggregator' : 'coordinator');
  const victims: RoleName[] = [];
  for (let round = 0; round < 6; round++) {
    for (const u of unknown) acked.set(u.index, await send(url(uploadTo(u.index)), u));
    unknown = [];
    let killed = false;
    const worker = async (token: string) => {
      while (!killed) {
        let assignment: Train;
        try {
          assignment = await checkin(url('selector'), token);
        } catch {
          return;
        }
        const u = { index: nextIndex++, token, assignment };
        try {
          acked.set(u.index, await send(url(uploadTo(u.index)), u));
        } catch {
          unknown.push(u);
          return;
        }
      }
    };
    const workers = tokens.map(worker);
    await new Promise((r) => setTimeout(r, rng.uniform(50, 400)));
    const victim = ROLES[rng.int(ROLES.length)] as RoleName;
    victims.push(victim);
    killed = true;
    await stopChild((running.get(victim) as { child: ChildProcess }).child);
    await Promise.all(workers);
    await start(victim);
    const version = (await taskStatus(url('coordinator'))).version;
    assert.ok(version >= lastVersion, `round ${round}: version ${version} < ${lastVersion}`);
    lastVersion = version;
  }

  for (const u of unknown) acked.set(u.index, await send(url(uploadTo(u.index)), u));
  assert.equal(acked.size, nextIndex, 'every upload has a known outcome');
  const token = tokens[0] as string;
  while (acked.size % K !== 0) {
    const u = { index: nextIndex++, token, assignment: await checkin(url('selector'), token) };
    acked.set(u.index, await send(url('aggregator'), u));
  }
  // The coordinator folds the journal asynchronously: wait for the last version.
  const deadline = Date.now() + 10_000;
  let final = await taskStatus(url('coordinator'));
  while (final.version < acked.size / K && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
    final = await taskStatus(url('coordinator'));
  }
  assert.equal(final.version, acked.size / K, `${acked.size} updates in buffers of ${K}`);
  await assertServedModel(url('coordinator'), token, final.version, acked.keys());
  t.diagnostic(`${acked.size} updates; killed ${victims.join(', ')}`);
  assert.ok(acked.size > 20, `only ${acked.size} updates went through`);
});
