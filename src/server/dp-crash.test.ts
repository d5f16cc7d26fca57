/**
 * kill -9 of `orchard serve` running a DP-FedBuff task (clipping + Gaussian noise from the
 * cryptographic source, so a step replayed after a crash would come out differently), at seeded
 * random moments while devices train:
 * - versions never go back across restarts;
 * - every model version a device downloaded is byte-identical whenever it is downloaded again,
 *   before or after any number of crashes (a noised version is never released twice differently);
 * - every acknowledged upload is applied exactly once: each acknowledged key is in the storage's
 *   applied-key table with its own journal seq, and in seq order (the fold order) the j-th update's
 *   answer names version ⌊j/K⌋, i.e. exactly K acknowledged updates behind every step; the count is
 *   final version · K + the updates still buffered;
 * - ε reported at the end equals a fresh RDP accountant for the final number of steps.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Rng } from '../core/rng.ts';
import { RdpAccountant } from '../privacy/dp/rdp.ts';
import type { MetricsResponse, UpdateResponse } from './protocol.ts';
import { openStorage } from './storage/index.ts';
import {
  checkinDevice,
  registerDevice,
  serveWorkspace,
  type Train,
  taskStatus,
  uploadUpdate,
} from './test-helpers.ts';

const K = 3;
const SIGMA = 1.1;
const DELTA = 1e-5;
const POPULATION = 500;
const TASK = {
  taskId: 'dp-crash',
  modelInput: { inputKind: 'dense', inputDim: 5, numClasses: 2 },
  model: { kind: 'softmax' },
  strategy: {
    kind: 'fedbuff',
    bufferSize: K,
    staleness: { kind: 'constant' },
    serverOptimizer: { kind: 'sgd', lr: 1 },
    privacy: { clipNorm: 0.5, noiseMultiplier: SIGMA, delta: DELTA, population: POPULATION },
  },
  concurrency: 1000,
  evalEvery: 0,
  checkpointEvery: 1,
};
const NUM_PARAMS = 12;
const KILLS = 6;
const WORKERS = 4;

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

test('DP-FedBuff: kill -9 at random points, no version released twice, each acknowledged update in exactly one step, ε from the accountant', {
  timeout: 180_000,
}, async (t) => {
  const workspace = serveWorkspace(t, 'orchard-dp-crash-', TASK);

  const rng = new Rng(9001);
  /** Assignment id (the idempotency key) → the answer it got. */
  const acked = new Map<string, UpdateResponse>();
  /** Version → the model frame first downloaded, and the life it was downloaded in. */
  const downloaded = new Map<number, { readonly bytes: Buffer; readonly life: number }>();
  let unknown: Upload[] = [];
  let nextIndex = 0;
  const tokens: string[] = [];
  let lastVersion = 0;
  let duplicates = 0;
  let stale = 0;
  let comparedAcrossCrashes = 0;
  /** Set for a life that ends right when a device first downloads a version (see below). */
  let killOnNewVersion: (() => void) | null = null;

  /** Downloads `version`; records it, or checks it against the first download of that version. */
  const download = async (url: string, token: string, version: number, life: number): Promise<void> => {
    const res = await fetch(`${url}/v1/tasks/${TASK.taskId}/models/${version}`, {
      headers: { authorization: `Bearer ${token}` },
      signal: AbortSignal.timeout(10_000),
    });
    if (res.status === 404) return; // no longer kept
    assert.equal(res.status, 200, `download of version ${version}`);
    const bytes = Buffer.from(await res.arrayBuffer());
    const first = downloaded.get(version);
    if (first === undefined) {
      downloaded.set(version, { bytes, life });
      killOnNewVersion?.();
      killOnNewVersion = null;
    } else {
      assert.ok(first.bytes.equals(bytes), `version ${version} changed (first seen in life ${first.life})`);
      if (first.life !== life) comparedAcrossCrashes++;
    }
  };

  const outcome = async (url: string, u: Upload): Promise<'acked' | 'stale' | 'unknown'> => {
    try {
      const r = await uploadUpdate(url, u.token, u.assignment, deltaOf(u.index));
      if (r.duplicate) duplicates++;
      acked.set(u.assignment.assignmentId, r);
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
    lastVersion = before.version;
    // The version it restarted at: if it was downloaded before the crash, the same bytes.
    await download(server.url, tokens[0] as string, before.version, life);
    // Uploads whose answer a crash swallowed: same assignment again, so at most one applies.
    for (const u of unknown)
      assert.notEqual(await outcome(server.url, u), 'unknown', `retry of update ${u.index} failed`);
    unknown = [];
    if (life === KILLS) {
      await finalChecks(server.url, before.version);
      await workspace.stop('SIGTERM');
      break;
    }

    let stopping = false;
    const worker = async (token: string) => {
      while (!stopping) {
        let c: Awaited<ReturnType<typeof checkinDevice>>;
        try {
          c = await checkinDevice(server.url, token);
          if (c.action === 'train') await download(server.url, token, c.version, life);
        } catch (error) {
          if (error instanceof assert.AssertionError) throw error;
          return;
        }
        if (c.action !== 'train') {
          await new Promise((r) => setTimeout(r, 20));
          continue;
        }
        const u = { index: nextIndex++, token, assignment: c };
        await new Promise((r) => setTimeout(r, 2 + (u.index % 4) * 5));
        if ((await outcome(server.url, u)) === 'unknown') {
          unknown.push(u);
          return;
        }
      }
    };
    const workers = tokens.map((token) => worker(token));
    await new Promise((r) => setTimeout(r, 300 + Math.floor(rng.next() * 1200)));
    if (rng.next() < 0.5) {
      // The newest version just before the crash: the restart serves it again (same bytes) unless
      // a later step's checkpoint was already durable.
      await download(server.url, tokens[0] as string, (await taskStatus(server.url)).version, life);
    } else {
      // Killed the moment a device has a version it never saw (the narrowest window for a version
      // served before its checkpoint is durable); at most 3 s later in any case.
      const exited = new Promise<void>((resolve) => {
        server.child.once('exit', () => resolve());
        killOnNewVersion = () => server.child.kill('SIGKILL');
      });
      await Promise.race([exited, new Promise((r) => setTimeout(r, 3000))]);
      killOnNewVersion = null;
    }
    await workspace.stop();
    stopping = true;
    await Promise.all(workers);
  }

  async function finalChecks(url: string, version: number): Promise<void> {
    // ε at the end: the metrics record written at recovery, against a fresh accountant.
    let record: MetricsResponse['metrics'][number] | undefined;
    for (let attempt = 0; attempt < 100 && record === undefined; attempt++) {
      const { metrics } = (await (
        await fetch(`${url}/v1/metrics?taskId=${TASK.taskId}`)
      ).json()) as MetricsResponse;
      record = metrics.find((m) => m.version === version && m.values.epsilon !== undefined);
      if (record === undefined) await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(record !== undefined, `a metrics record with ε for version ${version}`);
    const accountant = new RdpAccountant();
    accountant.record(K / POPULATION, SIGMA, version);
    assert.equal(record.values.privacySteps, version);
    assert.ok(
      Math.abs((record.values.epsilon as number) - accountant.epsilon(DELTA).epsilon) < 1e-9,
      `ε ${record.values.epsilon} vs ${accountant.epsilon(DELTA).epsilon}`,
    );
  }

  // Exactly once, from the storage itself (the server is stopped).
  const storage = await openStorage(workspace.dataDir, { baseDir: workspace.dataDir });
  try {
    const checkpoint = await storage.latestCheckpoint(TASK.taskId);
    assert.ok(checkpoint !== null);
    const final = checkpoint.version;
    assert.ok(final >= lastVersion);
    const buffered = (await storage.journalSince(TASK.taskId, checkpoint.journalSeq)).length;
    assert.ok(buffered < K, `${buffered} updates after the last step`);
    const bySeq: { seq: number; key: string }[] = [];
    for (const key of acked.keys()) {
      const applied = await storage.lookupIdempotencyKey(TASK.taskId, key);
      assert.ok(applied !== null, `acknowledged key ${key} is not in the applied keys`);
      bySeq.push({ seq: applied.seq, key });
    }
    assert.equal(new Set(bySeq.map((e) => e.seq)).size, bySeq.length, 'one journal seq per key');
    bySeq.sort((a, b) => a.seq - b.seq);
    assert.equal(acked.size, final * K + buffered, 'acknowledged updates = steps · K + buffered');
    bySeq.forEach((e, i) => {
      const j = i + 1;
      assert.equal(
        acked.get(e.key)?.version,
        Math.floor(j / K),
        `update ${j} in fold order answered version ${acked.get(e.key)?.version}`,
      );
    });
    t.diagnostic(
      `${acked.size} acknowledged (${duplicates} duplicates after a crash), ${stale} stale, ${final} versions, ${downloaded.size} versions downloaded, ${comparedAcrossCrashes} re-downloads across a crash, ${KILLS} kills`,
    );
    assert.ok(final >= 10, `training went on between the kills (${final} versions)`);
    assert.ok(comparedAcrossCrashes > 0, 'some version was downloaded again after a crash');
  } finally {
    await storage.close();
  }
});
