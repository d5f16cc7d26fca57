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

test('sqlite: WAL mode, 16 KiB pages for a new file, and nothing resolves before the WAL sync', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'orchard-sqlite-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'orchard.db');
  const s = new SqliteStorage({ path });
  await s.init();
  // Read the settings through a second, independent connection: both are stored in the file.
  const probe = new Database(path, { readonly: true });
  assert.equal(probe.pragma('journal_mode', { simple: true }), 'wal');
  assert.equal(probe.pragma('page_size', { simple: true }), 16384);
  probe.close();
  // The commit does not fsync (NORMAL); durability comes from the explicit WAL sync instead.
  const internals = s as unknown as { db: Database.Database; commits: number; syncedCommits: number };
  assert.equal(internals.db.pragma('synchronous', { simple: true }), 1 /* NORMAL */);
  const entry = (key: string) => ({
    taskId: 't',
    idempotencyKey: key,
    deviceId: 'd',
    assignmentId: key,
    baseVersion: 0,
    numExamples: 1,
    delta: new Float32Array([1, 2, 3]),
    response: { ok: true },
    acceptedAt: 1,
  });
  const before = internals.commits;
  const settled = await Promise.all([s.appendAccepted(entry('a')), s.appendAccepted(entry('b'))]);
  assert.deepEqual(
    settled.map((r) => r.kind),
    ['appended', 'appended'],
  );
  // One group commit for both, and a finished sync that covers it when the promises resolved.
  assert.equal(internals.commits, before + 1);
  assert.ok(internals.syncedCommits >= internals.commits);
  await s.putDevice({ deviceId: 'd1', tokenHash: 'a'.repeat(64), createdAt: 1, revokedAt: null });
  assert.equal(internals.commits, before + 2);
  assert.ok(internals.syncedCommits >= internals.commits);
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

test('sqlite: an in-memory database (no WAL file to sync) answers a series of writes and reads', async () => {
  const s = new SqliteStorage({ path: ':memory:' });
  await s.init();
  for (let i = 0; i < 5; i++) {
    await s.putTask({ taskId: `t${i}`, spec: { i }, createdAt: i });
    const appended = await s.appendAccepted({
      taskId: 't0',
      idempotencyKey: `k${i}`,
      deviceId: 'd',
      assignmentId: `k${i}`,
      baseVersion: 0,
      numExamples: 1,
      delta: new Float32Array([i]),
      response: { i },
      acceptedAt: i,
    });
    assert.deepEqual(appended, { kind: 'appended', seq: i + 1 });
  }
  assert.equal((await s.listTasks()).length, 5);
  assert.deepEqual(
    (await s.journalSince('t0', 0)).map((e) => e.delta[0]),
    [0, 1, 2, 3, 4],
  );
  await s.close();
});

test('sqlite: a stable delta in shared memory is written in place, any other delta is copied at call time', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'orchard-sqlite-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const s = new SqliteStorage({ path: join(dir, 'orchard.db') });
  await s.init();
  const values = (k: number) => Float32Array.from({ length: 1000 }, (_, i) => Math.sin(i + 1000 * k));
  const entry = (key: string, delta: Float32Array, deltaStable?: boolean) => ({
    taskId: 't',
    idempotencyKey: key,
    deviceId: 'd',
    assignmentId: key,
    baseVersion: 0,
    numExamples: 1,
    delta,
    ...(deltaStable === undefined ? {} : { deltaStable }),
    response: { ok: true },
    acceptedAt: 1,
  });
  // Shared and stable: read in place, so it must stay as it is until the append settles.
  const shared = new Float32Array(new SharedArrayBuffer(4000 + 64), 64, 1000);
  shared.set(values(1));
  const a = s.appendAccepted(entry('shared-stable', shared, true));
  // Shared but not declared stable, and a plain array: both copied at once, so changing them right
  // after the call (before the append settles) must not change what is stored.
  const sharedCopy = new Float32Array(new SharedArrayBuffer(4000));
  sharedCopy.set(values(2));
  const b = s.appendAccepted(entry('shared-unstable', sharedCopy));
  const plain = values(3);
  const c = s.appendAccepted(entry('plain-stable', plain, true));
  sharedCopy.fill(7);
  plain.fill(7);
  assert.deepEqual(
    (await Promise.all([a, b, c])).map((r) => r.kind),
    ['appended', 'appended', 'appended'],
  );
  const stored = await s.journalSince('t', 0);
  assert.deepEqual(
    stored.map((e) => e.idempotencyKey),
    ['shared-stable', 'shared-unstable', 'plain-stable'],
  );
  assert.deepEqual(Array.from(stored[0]?.delta ?? []), Array.from(values(1)));
  assert.deepEqual(Array.from(stored[1]?.delta ?? []), Array.from(values(2)));
  assert.deepEqual(Array.from(stored[2]?.delta ?? []), Array.from(values(3)));
  await s.close();
});

test('a database made before keys could expire gets the column; its keys have no expiry and are kept', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'orchard-sqlite-keys-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'orchard.db');
  const old = new Database(path);
  old.exec(
    'CREATE TABLE idempotency (task_id TEXT NOT NULL, key TEXT NOT NULL, seq INTEGER NOT NULL, ' +
      'response TEXT NOT NULL, PRIMARY KEY (task_id, key))',
  );
  old.prepare('INSERT INTO idempotency VALUES (?, ?, ?, ?)').run('t', 'legacy', 7, '{"ok":1}');
  old.close();
  const s = new SqliteStorage({ path });
  await s.init();
  t.after(() => s.close());
  assert.deepEqual(await s.lookupIdempotencyKey('t', 'legacy'), { seq: 7, response: { ok: 1 } });
  assert.equal(await s.pruneIdempotencyKeys('t', 1e15), 0);
  assert.equal((await s.lookupIdempotencyKey('t', 'legacy'))?.seq, 7);
});
