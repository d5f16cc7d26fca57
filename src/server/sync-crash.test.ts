/**
 * kill -9 of `orchard serve` running a sync FedAvg task, at seeded random moments while devices
 * train: after each restart the round state is rebuilt from the checkpoint and the journal, uploads
 * whose answer the crash swallowed are retried with the same assignment, and at the end every
 * served version equals an independent float64 FedAvg replay of the acknowledged updates grouped by
 * the version they trained on (each acknowledged update applied exactly once, in its own round).
 * Versions never go back.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Rng } from '../core/rng.ts';
import { decodeFrame } from './protocol.ts';
import { parseTaskSpec, taskRuntime } from './task.ts';
import {
  checkinDevice,
  registerDevice,
  serveWorkspace,
  type Train,
  taskStatus,
  uploadUpdate,
} from './test-helpers.ts';

const TASK = {
  taskId: 'sync-crash',
  modelInput: { inputKind: 'dense', inputDim: 5, numClasses: 2 },
  model: { kind: 'softmax' },
  // 3 updates close a round, 4 devices are selected; a round the crash left short closes at its
  // 1.5 s deadline with what it has (minUpdates 1), so every acknowledged update is applied.
  strategy: {
    kind: 'sync',
    cohortSize: 3,
    overSelection: 0.25,
    roundTimeout: 1.5,
    minUpdates: 1,
    serverOptimizer: { kind: 'sgd', lr: 1 },
  },
  waitMs: 20,
  evalEvery: 0,
  checkpointEvery: 2,
};
const NUM_PARAMS = 12;
const KILLS = 6;
const WORKERS = 4;

function deltaOf(i: number): Float32Array {
  const d = new Float32Array(NUM_PARAMS);
  for (let j = 0; j < NUM_PARAMS; j++) d[j] = (((i * 7 + j * 3) % 17) - 8) / 64;
  return d;
}
const examplesOf = (i: number) => 1 + (i % 3);

interface Upload {
  readonly index: number;
  readonly token: string;
  readonly assignment: Train;
}

const send = (url: string, u: Upload) =>
  uploadUpdate(url, u.token, u.assignment, deltaOf(u.index), examplesOf(u.index));

test('sync rounds: kill -9 at random points, rounds rebuilt from checkpoint + journal, each acknowledged update applied once', {
  timeout: 180_000,
}, async (t) => {
  const workspace = serveWorkspace(t, 'orchard-sync-crash-', TASK);

  const rng = new Rng(777);
  /** index → the version its assignment trained on. */
  const acked = new Map<number, number>();
  let unknown: Upload[] = [];
  let stale = 0;
  let nextIndex = 0;
  const tokens: string[] = [];
  let lastVersion = 0;
  let duplicates = 0;

  const outcome = async (url: string, u: Upload): Promise<'acked' | 'stale' | 'unknown'> => {
    try {
      const r = await send(url, u);
      if (r.duplicate) duplicates++;
      acked.set(u.index, u.assignment.version);
      lastVersion = Math.max(lastVersion, r.version);
      return 'acked';
    } catch (error) {
      if (/409.*"stale"/.test(String(error))) {
        stale++;
        return 'stale';
      }
      return 'unknown';
    }
  };

  for (let life = 0; life <= KILLS; life++) {
    const server = await workspace.start();
    if (tokens.length === 0)
      for (let w = 0; w < WORKERS; w++)
        tokens.push((await registerDevice(server.url, server.enrollmentKey)).token);
    const before = await taskStatus(server.url);
    assert.ok(before.version >= lastVersion, `life ${life}: version ${before.version} < ${lastVersion}`);
    // Uploads whose answer a crash swallowed: same assignment again, so at most one applies.
    for (const u of unknown) {
      const o = await outcome(server.url, u);
      assert.notEqual(o, 'unknown', `retry of update ${u.index} after the restart failed`);
    }
    unknown = [];

    let stopping = false;
    const worker = async (token: string) => {
      while (!stopping) {
        let c: Awaited<ReturnType<typeof checkinDevice>>;
        try {
          c = await checkinDevice(server.url, token);
        } catch {
          return;
        }
        if (c.action !== 'train') {
          await new Promise((r) => setTimeout(r, 20));
          continue;
        }
        const u = { index: nextIndex++, token, assignment: c };
        // Devices train for a little while, so rounds overlap crashes.
        await new Promise((r) => setTimeout(r, 5 + (u.index % 4) * 10));
        if ((await outcome(server.url, u)) === 'unknown') {
          unknown.push(u);
          return;
        }
      }
    };
    const workers = tokens.map((token) => worker(token));
    if (life < KILLS) {
      await new Promise((r) => setTimeout(r, 300 + Math.floor(rng.next() * 1200)));
      await workspace.stop();
      stopping = true;
      await Promise.all(workers);
      continue;
    }
    // Last life: let it run, stop the devices, and let the deadline close the last round.
    await new Promise((r) => setTimeout(r, 1000));
    stopping = true;
    await Promise.all(workers);
    assert.equal(unknown.length, 0);
    const maxBase = Math.max(...acked.values());
    const deadline = Date.now() + 10_000;
    let final = await taskStatus(server.url);
    while (final.version <= maxBase && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
      final = await taskStatus(server.url);
    }
    assert.ok(final.version > maxBase, `the last round (version ${maxBase}) closed: ${final.version}`);

    // Independent replay: version v + 1 = version v − Σ nᵢδᵢ / Σ nᵢ over the updates trained on v.
    const byBase = new Map<number, number[]>();
    for (const [index, base] of acked) byBase.set(base, [...(byBase.get(base) ?? []), index]);
    const x = Float64Array.from(taskRuntime(parseTaskSpec(TASK)).initialParams);
    const auth = { authorization: `Bearer ${tokens[0]}` };
    let compared = 0;
    for (let v = 0; v < final.version; v++) {
      const group = byBase.get(v) ?? [];
      assert.ok(group.length > 0, `version ${v + 1} stepped with no acknowledged update`);
      const total = group.reduce((s, i) => s + examplesOf(i), 0);
      for (const i of group) {
        const d = deltaOf(i);
        for (let j = 0; j < NUM_PARAMS; j++)
          x[j] = (x[j] as number) - (examplesOf(i) * (d[j] as number)) / total;
      }
      const res = await fetch(`${server.url}/v1/tasks/sync-crash/models/${v + 1}`, { headers: auth });
      // Versions before the last restart's checkpoint are no longer served; the newest always is.
      if (res.status === 404 && v + 1 < final.version) continue;
      assert.equal(res.status, 200, `version ${v + 1}`);
      compared++;
      const served = decodeFrame(new Uint8Array(await res.arrayBuffer())).floats;
      for (let j = 0; j < NUM_PARAMS; j++)
        assert.ok(
          Math.abs((served[j] as number) - (x[j] as number)) < 1e-4,
          `version ${v + 1}, param ${j}: ${served[j]} vs ${x[j]}`,
        );
    }
    t.diagnostic(
      `${acked.size} acknowledged (${duplicates} duplicates after a crash), ${stale} stale, ${final.version} versions (${compared} compared), ${KILLS} kills`,
    );
    assert.ok(final.version >= 10, `training went on between the kills (${final.version} versions)`);
    await workspace.stop('SIGTERM');
  }
});
