import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ConfigError } from '../../core/errors.ts';
import { freePort } from '../../testing/services.ts';
import { openStorage, parseStorageUrl, redact, SqliteStorage, StorageError } from './index.ts';

test('parseStorageUrl: folders, sqlite: forms, postgres URLs', () => {
  const dir = mkdtempSync(join(tmpdir(), 'orchard-url-'));
  try {
    mkdirSync(join(dir, 'data.db'));
    assert.deepEqual(parseStorageUrl('./orchard-data'), {
      kind: 'sqlite',
      file: join('./orchard-data', 'orchard.db'),
    });
    assert.deepEqual(parseStorageUrl('/var/lib/orchard'), {
      kind: 'sqlite',
      file: '/var/lib/orchard/orchard.db',
    });
    assert.deepEqual(parseStorageUrl('sqlite:/srv/o'), { kind: 'sqlite', file: '/srv/o/orchard.db' });
    assert.deepEqual(parseStorageUrl('sqlite:/srv/o/main.db'), { kind: 'sqlite', file: '/srv/o/main.db' });
    assert.deepEqual(parseStorageUrl('sqlite:///srv/o/x.sqlite'), {
      kind: 'sqlite',
      file: '/srv/o/x.sqlite',
    });
    assert.deepEqual(parseStorageUrl('sqlite::memory:'), { kind: 'sqlite', file: ':memory:' });
    // An existing folder whose name looks like a file is still a folder.
    assert.deepEqual(parseStorageUrl(join(dir, 'data.db')), {
      kind: 'sqlite',
      file: join(dir, 'data.db', 'orchard.db'),
    });
    assert.deepEqual(parseStorageUrl('postgres://u:p@db.internal:5432/orchard'), {
      kind: 'postgres',
      connectionString: 'postgres://u:p@db.internal:5432/orchard',
    });
    assert.equal(parseStorageUrl('postgresql://h/db').kind, 'postgres');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('parseStorageUrl: baseDir resolves relative sqlite: paths only', () => {
  const base = '/srv/data';
  const parse = (url: string) => parseStorageUrl(url, { baseDir: base });
  assert.deepEqual(parse('sqlite:main.db'), { kind: 'sqlite', file: '/srv/data/main.db' });
  assert.deepEqual(parse('sqlite:sub/x.sqlite3'), { kind: 'sqlite', file: '/srv/data/sub/x.sqlite3' });
  assert.deepEqual(parse('sqlite:db'), { kind: 'sqlite', file: '/srv/data/db/orchard.db' });
  assert.deepEqual(parse('sqlite:/abs/main.db'), { kind: 'sqlite', file: '/abs/main.db' });
  assert.deepEqual(parse('sqlite:///abs/main.db'), { kind: 'sqlite', file: '/abs/main.db' });
  assert.deepEqual(parse('sqlite::memory:'), { kind: 'sqlite', file: ':memory:' });
  // A plain folder path is not a sqlite: URL: it stays relative to the working directory.
  assert.deepEqual(parse('./elsewhere'), { kind: 'sqlite', file: join('./elsewhere', 'orchard.db') });
  assert.equal(parse('postgres://h/db').kind, 'postgres');
  assert.throws(
    () => parse('sqlite:'),
    (e: unknown) => e instanceof ConfigError,
  );
});

test('openStorage: baseDir puts a relative sqlite: file in the data folder', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'orchard-base-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const storage = await openStorage('sqlite:nested/main.db', { baseDir: dir });
  await storage.putTask({ taskId: 't', spec: {}, createdAt: 1 });
  await storage.close();
  assert.ok(existsSync(join(dir, 'nested', 'main.db')));
  assert.ok(!existsSync(join(process.cwd(), 'nested', 'main.db')));
});

test('parseStorageUrl: unknown schemes and empty values are ConfigErrors', () => {
  for (const bad of ['', '   ', 'mysql://h/db', 'redis://localhost:6379', 'sqlite:', 'postgres://']) {
    assert.throws(
      () => parseStorageUrl(bad),
      (e: unknown) =>
        e instanceof ConfigError && e.code === 'CONFIG_INVALID' && e.issues[0]?.path === 'storage',
      bad,
    );
  }
  assert.equal(redact('postgres://orchard:s3cret@h:5432/db'), 'postgres://orchard:***@h:5432/db');
});

test('openStorage: a folder path creates <folder>/orchard.db and it persists', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'orchard-open-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const folder = join(dir, 'nested', 'orchard-data');
  const s1 = await openStorage(folder);
  assert.ok(s1 instanceof SqliteStorage);
  await s1.putTask({ taskId: 'mnist', spec: { k: 10 }, createdAt: 1 });
  await s1.close();
  assert.ok(existsSync(join(folder, 'orchard.db')));
  const s2 = await openStorage(`sqlite:${join(folder, 'orchard.db')}`);
  assert.deepEqual(await s2.getTask('mnist'), { taskId: 'mnist', spec: { k: 10 }, createdAt: 1 });
  await s2.close();
});

test('openStorage: unreachable PostgreSQL is BACKEND_UNAVAILABLE', async () => {
  const port = await freePort();
  await assert.rejects(
    openStorage(`postgres://postgres@127.0.0.1:${port}/x`, { postgres: { connectTimeoutMs: 1000 } }),
    (e: unknown) => e instanceof StorageError && e.code === 'BACKEND_UNAVAILABLE',
  );
});
