import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import { SqliteStorage } from './sqlite.ts';

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
