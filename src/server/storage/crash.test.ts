/**
 * Crash durability at the storage level: a child process stores updates (journal appends, or
 * folded commits of one to three updates with the model after them) and prints each acknowledged
 * seq; we kill -9 it at a seeded random point, reopen, and check that every
 * acknowledged update is present exactly once and the recovered model (checkpoint + journal)
 * equals the hand-computed sum of exactly the updates that were stored. Repeated on one database
 * so each round also recovers from the previous crash.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { Rng } from '../../core/rng.ts';
import { requireService, startPostgres } from '../../testing/services.ts';
import { CRASH_TASK, DIM, deltaFor } from './crash-child.ts';
import { openStorage } from './index.ts';

const CHILD = fileURLToPath(new URL('./crash-child.ts', import.meta.url));

interface Ack {
  kind: string;
  seq: number;
  key: number;
}

/** Runs the child until it has acknowledged `acks` new updates, waits `extraMs`, then SIGKILLs it. */
function runAndKill(
  url: string,
  mode: Mode,
  firstKey: number,
  retryFrom: number,
  acks: number,
  extraMs: number,
) {
  return new Promise<Ack[]>((resolve, reject) => {
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', CHILD, url, String(firstKey), String(retryFrom), mode],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    const got: Ack[] = [];
    let stderr = '';
    let killed = false;
    const deadline = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`child did not reach ${acks} acks within 30 s: ${stderr}`));
    }, 30_000);
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    createInterface({ input: child.stdout }).on('line', (line) => {
      const m = /^ACK (\w+) (\d+) (\d+)$/.exec(line);
      if (!m) return;
      got.push({ kind: m[1] ?? '', seq: Number(m[2]), key: Number(m[3]) });
      if (!killed && got.filter((a) => a.key >= firstKey).length >= acks) {
        killed = true;
        setTimeout(() => child.kill('SIGKILL'), extraMs);
      }
    });
    child.on('exit', (code, signal) => {
      clearTimeout(deadline);
      if (signal === 'SIGKILL' && killed) resolve(got);
      else reject(new Error(`child exited on its own (${code ?? signal}): ${stderr}`));
    });
  });
}

/** How the child stores updates: one journal append each, or folded commits (see crash-child.ts). */
type Mode = 'journal' | 'folded';

async function crashRounds(url: string, mode: Mode, seed: number, rounds: number): Promise<void> {
  const rng = new Rng(seed);
  const ackedSeq = new Map<number, number>();
  let nextKey = 0;
  for (let round = 0; round < rounds; round++) {
    const acks = 3 + rng.int(25);
    const extraMs = rng.int(4);
    // Re-send the last two keys of the previous round: one was acknowledged, one was probably in flight.
    const retryFrom = Math.max(0, nextKey - 2);
    const got = await runAndKill(url, mode, nextKey, retryFrom, acks, extraMs);
    for (const a of got) {
      const before = ackedSeq.get(a.key);
      if (before !== undefined) {
        assert.equal(a.kind, 'duplicate', `key ${a.key} acknowledged twice as new`);
        assert.equal(a.seq, before, `key ${a.key} changed seq`);
      }
      ackedSeq.set(a.key, a.seq);
    }
    nextKey = Math.max(...got.map((a) => a.key)) + 2;

    // Recover as a restarted server would and compare with an independent sum.
    const s = await openStorage(url);
    try {
      const present: Array<{ key: number; seq: number }> = [];
      // Past the last acknowledged key (nextKey - 2): the child's folded groups hold up to three keys,
      // all of which may be stored, unacknowledged, when it is killed.
      for (let key = 0; key < nextKey + 2; key++) {
        const hit = await s.lookupIdempotencyKey(CRASH_TASK, `k${key}`);
        if (hit) present.push({ key, seq: hit.seq });
      }
      for (const [key, seq] of ackedSeq) {
        assert.equal(
          present.find((p) => p.key === key)?.seq,
          seq,
          `round ${round}: acknowledged key ${key} lost`,
        );
      }
      // Seqs of stored updates are exactly 1..n: nothing stored twice, no gaps.
      assert.deepEqual(
        present.map((p) => p.seq).sort((a, b) => a - b),
        present.map((_, i) => i + 1),
      );
      // Resume point: the checkpoint, or the folded state when it covers more of the journal.
      const checkpoint = await s.latestCheckpoint(CRASH_TASK);
      const folded = await s.foldedState(CRASH_TASK);
      const cp = folded !== null && folded.journalSeq > (checkpoint?.journalSeq ?? 0) ? folded : checkpoint;
      if (mode === 'folded') assert.ok(folded !== null, `round ${round}: no folded state stored`);
      const journal = await s.journalSince(CRASH_TASK, cp?.journalSeq ?? 0);
      assert.deepEqual(
        journal.map((e) => e.seq),
        Array.from({ length: journal.length }, (_, i) => (cp?.journalSeq ?? 0) + i + 1),
      );
      const recovered = new Float64Array(DIM);
      for (let j = 0; j < DIM; j++) recovered[j] = cp?.params[j] ?? 0;
      for (const e of journal)
        for (let j = 0; j < DIM; j++) recovered[j] = (recovered[j] ?? 0) + (e.delta[j] ?? 0);
      const expected = new Float64Array(DIM);
      for (const p of present) {
        const d = deltaFor(p.key);
        for (let j = 0; j < DIM; j++) expected[j] = (expected[j] ?? 0) + (d[j] ?? 0);
      }
      assert.deepEqual([...recovered], [...expected], `round ${round}: recovered model`);
    } finally {
      await s.close();
    }
  }
}

for (const mode of ['journal', 'folded'] as const) {
  test(`sqlite, ${mode}: kill -9 at random points, 5 rounds: every acknowledged update present exactly once`, async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'orchard-crash-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    await crashRounds(join(dir, 'data'), mode, 20261128, 5);
  });

  test(`postgres, ${mode}: kill -9 at random points, 3 rounds: every acknowledged update present exactly once`, async (t) => {
    if (!requireService(t, 'postgres')) return;
    const server = await startPostgres();
    t.after(() => server.stop());
    const admin = new pg.Client({ connectionString: server.connectionString });
    await admin.connect();
    await admin.query('CREATE DATABASE crash');
    await admin.end();
    await crashRounds(server.urlFor('crash'), mode, 7, 3);
  });
}
