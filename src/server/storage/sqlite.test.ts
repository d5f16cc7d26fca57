import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import { checkTwoWriters } from './append-child.ts';
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

test('sqlite: two processes appending to one file at once: every key once, seqs 1..n, tailable', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'orchard-sqlite-mw-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  await checkTwoWriters(join(dir, 'data'));
});
