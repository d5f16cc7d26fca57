/**
 * Durable journal appends (src/server/storage), SQLite in a temp folder, WAL fdatasync'd before
 * each append resolves.
 *
 * storage.sqlite_append_grouped: appends per second of 7,850-float updates (the MNIST softmax
 * model) with 64 appends in flight, as a busy server issues them; group commit puts the appends of
 * one event-loop turn in one transaction and one fsync. Baseline: the same appends awaited one at a
 * time (a transaction and an fsync each). Ratio = baseline time / grouped time, interleaved.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SqliteStorage } from '../src/server/storage/sqlite.ts';
import type { BenchEntry } from './harness.ts';

const DIM = 7850;
const PER_REP = 256;
const IN_FLIGHT = 64;

export async function run(): Promise<BenchEntry[]> {
  const dir = mkdtempSync(join(tmpdir(), 'orchard-bench-storage-'));
  const storage = new SqliteStorage({ path: join(dir, 'orchard.db') });
  await storage.init();
  const delta = new Float32Array(DIM).fill(0.25);
  let key = 0;
  const append = () =>
    storage.appendAccepted({
      taskId: 'bench',
      idempotencyKey: `k${key++}`,
      deviceId: 'd',
      assignmentId: 'a',
      baseVersion: 0,
      numExamples: 10,
      delta,
      response: { status: 'accepted' },
      acceptedAt: Date.now(),
    });
  const grouped = async () => {
    let left = PER_REP;
    await Promise.all(
      Array.from({ length: IN_FLIGHT }, async () => {
        while (left-- > 0) await append();
      }),
    );
  };
  const oneByOne = async () => {
    for (let i = 0; i < PER_REP; i++) await append();
  };
  const time = async (fn: () => Promise<void>) => {
    const t0 = process.hrtime.bigint();
    await fn();
    return Number(process.hrtime.bigint() - t0) / 1e6;
  };
  try {
    await grouped();
    await oneByOne();
    const ours: number[] = [];
    const base: number[] = [];
    for (let rep = 0; rep < 3; rep++) {
      ours.push(await time(grouped));
      base.push(await time(oneByOne));
    }
    const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)] as number;
    const oursMs = median(ours);
    const baseMs = median(base);
    return [
      {
        name: 'storage.sqlite_append_grouped',
        value: (PER_REP / oursMs) * 1000,
        unit: 'appends/s',
        baseline: (PER_REP / baseMs) * 1000,
        ratio: baseMs / oursMs,
        goal: 'ratio ≥ 2 (group commit pays for concurrent appends)',
        note: `${DIM}-float updates, ${IN_FLIGHT} in flight vs one at a time; every append durable before it resolves`,
      },
    ];
  } finally {
    await storage.close();
    rmSync(dir, { recursive: true, force: true });
  }
}
