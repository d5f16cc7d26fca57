import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { runStorageConformance } from './conformance.ts';
import { SqliteStorage } from './sqlite.ts';
import { StorageError } from './types.ts';

runStorageConformance('sqlite', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'orchard-sqlite-'));
  return {
    async open() {
      const s = new SqliteStorage({ path: join(dir, 'orchard.db') });
      await s.init();
      return s;
    },
    async dispose() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
});

test('sqlite: the file is opened in WAL mode with synchronous=FULL (fsync on every commit)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'orchard-sqlite-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'orchard.db');
  const s = new SqliteStorage({ path });
  await s.init();
  // Read the settings through a second, independent connection: journal_mode is persistent.
  const probe = new Database(path, { readonly: true });
  assert.equal(probe.pragma('journal_mode', { simple: true }), 'wal');
  probe.close();
  // synchronous is per-connection: check the storage's own connection via its behaviour contract.
  const db = (s as unknown as { db: Database.Database }).db;
  assert.equal(db.pragma('synchronous', { simple: true }), 2 /* FULL */);
  await s.close();
});

test('sqlite: keeps only the newest keepCheckpoints checkpoints', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'orchard-sqlite-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'orchard.db');
  const s = new SqliteStorage({ path, keepCheckpoints: 2 });
  await s.init();
  for (let v = 1; v <= 5; v++) {
    await s.saveCheckpoint({
      taskId: 't',
      version: v,
      params: new Float32Array(4),
      state: new Uint8Array(0),
      journalSeq: 0,
      createdAt: v,
    });
  }
  await s.close();
  const probe = new Database(path, { readonly: true });
  const versions = probe.prepare('SELECT version FROM checkpoints ORDER BY version').pluck().all();
  probe.close();
  assert.deepEqual(versions, [4, 5]);
});

test('sqlite: a file that is not a database gives a typed error', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'orchard-sqlite-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'orchard.db');
  writeFileSync(path, 'this is not sqlite, just some text that is long enough to have a header'.repeat(20));
  const s = new SqliteStorage({ path });
  await assert.rejects(s.init(), (err: unknown) => err instanceof StorageError && err.code === 'CORRUPT');
  assert.throws(() => new SqliteStorage({ path: '' }), StorageError);
});

/** Runs append-child.ts to completion and parses its result lines. */
function runWriter(url: string, prefix: string, count: number) {
  return new Promise<Array<{ key: string; kind: string; seq: number }>>((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        fileURLToPath(new URL('./append-child.ts', import.meta.url)),
        url,
        prefix,
        String(count),
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => {
      out += d;
    });
    child.stderr.on('data', (d) => {
      err += d;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      if (code !== 0) return reject(new Error(`writer ${prefix} exited ${code}: ${err}`));
      resolve(
        out
          .trim()
          .split('\n')
          .map((l) => {
            const [, key = '', kind = '', seq = '0'] = l.split(' ');
            return { key, kind, seq: Number(seq) };
          }),
      );
    });
  });
}

test('sqlite: two processes appending to one file at once: every key once, seqs 1..n', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'orchard-sqlite-mw-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const url = join(dir, 'data');
  const [a, b] = await Promise.all([runWriter(url, 'a', 40), runWriter(url, 'b', 40)]);
  const appended = [...a, ...b].filter((r) => r.kind === 'appended');
  // 40 own keys each + 40 shared keys appended by exactly one of the two.
  assert.equal(appended.length, 120);
  assert.equal(new Set(appended.map((r) => r.key)).size, 120);
  assert.deepEqual(
    appended.map((r) => r.seq).sort((x, y) => x - y),
    Array.from({ length: 120 }, (_, i) => i + 1),
  );
  const seqOf = new Map(appended.map((r) => [r.key, r.seq]));
  for (const r of [...a, ...b].filter((x) => x.kind === 'duplicate')) assert.equal(r.seq, seqOf.get(r.key));
  const s = new SqliteStorage({ path: join(url, 'orchard.db') });
  await s.init();
  const journal = await s.journalSince('multi', 0);
  await s.close();
  assert.equal(journal.length, 120);
  for (const e of journal) assert.equal(seqOf.get(e.idempotencyKey), e.seq);
});
