import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import pg from 'pg';
import {
  freePort,
  type PostgresInstance,
  requireService,
  skipUnlessService,
  startPostgres,
} from '../../testing/services.ts';
import { checkTwoWriters } from './append-child.ts';
import { runStorageConformance } from './conformance.ts';
import { PostgresStorage } from './postgres.ts';
import { StorageError } from './types.ts';

const skip = skipUnlessService('postgres');

// One server for the file, started on first use; each conformance test gets its own database.
let server: Promise<PostgresInstance> | null = null;
const getServer = () => {
  server ??= startPostgres();
  return server;
};
after(async () => {
  if (server) await (await server).stop();
});

let dbCounter = 0;

async function adminQuery(sql: string): Promise<void> {
  const admin = new pg.Client({ connectionString: (await getServer()).connectionString });
  await admin.connect();
  try {
    await admin.query(sql);
  } finally {
    await admin.end();
  }
}

runStorageConformance(
  'postgres',
  async () => {
    const srv = await getServer();
    const db = `conf_${process.pid}_${++dbCounter}`;
    await adminQuery(`CREATE DATABASE ${db}`);
    return {
      async open() {
        const s = new PostgresStorage({ connectionString: srv.urlFor(db), maxConnections: 8 });
        await s.init();
        return s;
      },
      async dispose() {
        await adminQuery(`DROP DATABASE ${db} WITH (FORCE)`);
      },
    };
  },
  { skip },
);

const isUnavailable = (err: unknown) => err instanceof StorageError && err.code === 'BACKEND_UNAVAILABLE';

test('postgres: nothing listening → BACKEND_UNAVAILABLE within the connect timeout', async () => {
  const port = await freePort();
  const s = new PostgresStorage({
    connectionString: `postgres://postgres@127.0.0.1:${port}/postgres`,
    connectTimeoutMs: 1000,
  });
  const t0 = Date.now();
  await assert.rejects(s.init(), isUnavailable);
  assert.ok(Date.now() - t0 < 5000, 'failed fast');
  await s.close();
});

test('postgres: two processes appending at once: every key once, seqs 1..n, tailable without gaps', async (t) => {
  if (!requireService(t, 'postgres')) return;
  const srv = await getServer();
  await adminQuery('CREATE DATABASE multiwriter');
  await checkTwoWriters(srv.urlFor('multiwriter'));
});

test('postgres: group commit bounded by bytes keeps call order and every byte', async (t) => {
  if (!requireService(t, 'postgres')) return;
  const srv = await getServer();
  await adminQuery('CREATE DATABASE bigbatch');
  const s = new PostgresStorage({ connectionString: srv.urlFor('bigbatch'), appendBatchBytes: 100_000 });
  await s.init();
  t.after(() => s.close());
  // 40 kB deltas against a 100 kB bound: batches of at most 3 (the first append always goes).
  const deltas = Array.from({ length: 20 }, (_, i) => new Float32Array(10_000).fill(i + 0.5));
  const results = await Promise.all(
    deltas.map((delta, i) =>
      s.appendAccepted({
        taskId: 'big',
        idempotencyKey: `k${i}`,
        deviceId: 'd',
        assignmentId: 'a',
        baseVersion: 0,
        numExamples: 1,
        delta,
        response: null,
        acceptedAt: 1,
      }),
    ),
  );
  assert.deepEqual(
    results.map((r) => r.seq),
    deltas.map((_, i) => i + 1),
  );
  const journal = await s.journalSince('big', 0);
  assert.equal(journal.length, 20);
  for (const [i, e] of journal.entries()) {
    assert.equal(e.delta.length, 10_000);
    assert.ok(e.delta.every((v) => v === i + 0.5));
  }
});

// Last in the file: it stops the shared server.
test('postgres: server stopped mid-use → typed errors, never a crash', async (t) => {
  if (!requireService(t, 'postgres')) return;
  const own = await getServer();
  const s = new PostgresStorage({ connectionString: own.connectionString, connectTimeoutMs: 1000 });
  await s.init();
  const e = {
    taskId: 't',
    idempotencyKey: 'k1',
    deviceId: 'd',
    assignmentId: 'a',
    baseVersion: 0,
    numExamples: 1,
    delta: new Float32Array([1]),
    response: { ok: true },
    acceptedAt: 1,
  };
  assert.deepEqual(await s.appendAccepted(e), { kind: 'appended', seq: 1 });
  await own.stop();
  await assert.rejects(s.appendAccepted({ ...e, idempotencyKey: 'k2' }), isUnavailable);
  await assert.rejects(s.journalSince('t', 0), isUnavailable);
  await s.close();
});
