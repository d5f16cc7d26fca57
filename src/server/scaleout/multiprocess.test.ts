/**
 * Scale-out across processes: two aggregator processes split the journal, push partial sums
 * through Redis, and a leader process folds them; the first leader is kill -9'd mid-way and a
 * second one takes over. The folded result must equal the single-process weighted sum of all
 * updates, with every update counted once.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Rng } from '../../core/rng.ts';
import { requireService, startRedis } from '../../testing/services.ts';
import { openStorage, StorageError } from '../storage/index.ts';
import { MP_DIM, MP_TASK } from './multiprocess-child.ts';

const CHILD = fileURLToPath(new URL('./multiprocess-child.ts', import.meta.url));

interface Child {
  lines: string[];
  /** Resolves when a line matching `re` has been printed. */
  waitFor(re: RegExp, ms?: number): Promise<void>;
  exited: Promise<{ code: number | null; signal: string | null; stderr: string }>;
  kill(): void;
}

function start(args: string[]): Child {
  const child = spawn(process.execPath, ['--import', 'tsx', CHILD, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  const waiters: Array<() => void> = [];
  let stderr = '';
  child.stderr.on('data', (d) => {
    stderr += d;
  });
  createInterface({ input: child.stdout }).on('line', (l) => {
    lines.push(l);
    for (const w of waiters) w();
  });
  const exited = new Promise<{ code: number | null; signal: string | null; stderr: string }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal, stderr })),
  );
  const killer = setTimeout(() => child.kill('SIGKILL'), 40_000);
  void exited.then(() => clearTimeout(killer));
  return {
    lines,
    exited,
    kill: () => child.kill('SIGKILL'),
    waitFor(re, ms = 20_000) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`no line ${re} within ${ms} ms: ${lines.join('|')} ${stderr}`)),
          ms,
        );
        const check = () => {
          if (lines.some((l) => re.test(l))) {
            clearTimeout(timer);
            resolve();
          }
        };
        waiters.push(check);
        check();
        void exited.then(() => setTimeout(check, 0));
      });
    },
  };
}

test('two aggregator processes + Redis exchange + a leader killed mid-way: result equals the single-process sum', async (t) => {
  if (!requireService(t, 'redis')) return;
  const redis = await startRedis();
  const dir = mkdtempSync(join(tmpdir(), 'orchard-mp-'));
  t.after(async () => {
    await redis.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  const storageUrl = join(dir, 'data');

  // 30 accepted updates in the journal, as the HTTP layer would have stored them.
  const rng = new Rng(42);
  const storage = await openStorage(storageUrl);
  const n = 30;
  const expectedSum = new Float64Array(MP_DIM);
  let expectedWeight = 0;
  for (let i = 0; i < n; i++) {
    const delta = new Float32Array(MP_DIM);
    for (let j = 0; j < MP_DIM; j++) delta[j] = rng.normal() * 0.1;
    const numExamples = 1 + rng.int(20);
    await storage.appendAccepted({
      taskId: MP_TASK,
      idempotencyKey: `u${i}`,
      deviceId: `d${i}`,
      assignmentId: `a${i}`,
      baseVersion: 0,
      numExamples,
      delta,
      response: { ok: true },
      acceptedAt: Date.now(),
    });
    for (let j = 0; j < MP_DIM; j++) expectedSum[j] = (expectedSum[j] ?? 0) + numExamples * (delta[j] ?? 0);
    expectedWeight += numExamples;
  }
  await storage.close();

  // Batches of 3 → 15 updates per aggregator → 5 partials each.
  const expectedPartials = 10;
  const leader1 = start(['leader', storageUrl, redis.url, 'L1', String(expectedPartials), '150']);
  await leader1.waitFor(/^LEADING L1/);
  const aggs = [0, 1].map((r) => start(['aggregator', storageUrl, redis.url, `A${r}`, '2', String(r), '3']));
  // Kill the first leader after it folded (and checkpointed) a few partials.
  await leader1.waitFor(/^FOLDED 3$/);
  leader1.kill();
  assert.equal((await leader1.exited).signal, 'SIGKILL');
  for (const a of aggs) assert.equal((await a.exited).code, 0);
  const leader2 = start(['leader', storageUrl, redis.url, 'L2', String(expectedPartials), '0']);
  const end = await leader2.exited;
  assert.equal(end.code, 0, end.stderr);
  assert.ok(leader2.lines.includes('DONE'));

  const check = await openStorage(storageUrl);
  try {
    // The killed leader's token is fenced off: a late write from it would be refused.
    const tokenOf = (c: Child) =>
      Number(/token (\d+)/.exec(c.lines.find((l) => l.startsWith('LEADING')) ?? '')?.[1]);
    assert.ok(tokenOf(leader2) > tokenOf(leader1));
    await assert.rejects(
      check.saveCheckpoint({
        taskId: MP_TASK,
        version: 1_000,
        params: new Float32Array(MP_DIM),
        state: new Uint8Array(0),
        journalSeq: 0,
        createdAt: Date.now(),
        fencingToken: tokenOf(leader1),
      }),
      (e: unknown) => e instanceof StorageError && e.code === 'FENCED',
    );
    const cp = await check.latestCheckpoint(MP_TASK);
    assert.ok(cp);
    const state = JSON.parse(Buffer.from(cp.state).toString()) as {
      weight: number;
      count: number;
      ids: string[];
    };
    assert.equal(state.count, n, 'every update folded exactly once');
    assert.equal(state.weight, expectedWeight);
    assert.deepEqual([...state.ids].sort(), [
      'A0:0',
      'A0:1',
      'A0:2',
      'A0:3',
      'A0:4',
      'A1:0',
      'A1:1',
      'A1:2',
      'A1:3',
      'A1:4',
    ]);
    // The FedBuff-style step (Σ nᵢΔᵢ / Σ nᵢ) equals the single-process one up to float32 summation order.
    for (let j = 0; j < MP_DIM; j++) {
      const got = (cp.params[j] ?? 0) / state.weight;
      const want = (expectedSum[j] ?? 0) / expectedWeight;
      assert.ok(Math.abs(got - want) <= 1e-6 + 1e-5 * Math.abs(want), `coordinate ${j}: ${got} vs ${want}`);
    }
  } finally {
    await check.close();
  }
});
