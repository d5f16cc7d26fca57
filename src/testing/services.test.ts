import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { createConnection } from 'node:net';
import { test } from 'node:test';
import pg from 'pg';
import {
  requireService,
  ServiceError,
  serviceMissing,
  skipUnlessService,
  startPostgres,
  startRedis,
  withFreshPortOnConflict,
} from './services.ts';

/** One raw RESP command over a fresh socket; resolves with the first reply line, or null on error. */
function redisCommand(port: number, ...args: string[]): Promise<string | null> {
  return new Promise((resolve) => {
    const sock = createConnection({ host: '127.0.0.1', port });
    let buf = '';
    sock.setTimeout(2000, () => {
      sock.destroy();
      resolve(null);
    });
    sock.on('error', () => resolve(null));
    sock.on('connect', () =>
      sock.write(`*${args.length}\r\n${args.map((a) => `$${a.length}\r\n${a}\r\n`).join('')}`),
    );
    sock.on('data', (d) => {
      buf += d.toString();
      const lines = buf.split('\r\n');
      // Bulk replies ($n) carry their value on the next line.
      if (lines[0]?.startsWith('$') && lines[0] !== '$-1' && lines.length < 3) return;
      if (lines.length < 2) return;
      sock.destroy();
      resolve(lines[0]?.startsWith('$') && lines[0] !== '$-1' ? (lines[1] ?? null) : (lines[0] ?? null));
    });
  });
}

test('skip/fail rule: a missing binary skips locally and throws under CI', () => {
  const saved = { PATH: process.env.PATH, CI: process.env.CI };
  try {
    process.env.PATH = '/nonexistent';
    assert.match(serviceMissing('redis') ?? '', /redis-server/);
    delete process.env.CI;
    assert.match(String(skipUnlessService('redis')), /not available/);
    process.env.CI = 'true';
    assert.throws(
      () => skipUnlessService('redis'),
      (e: unknown) => e instanceof ServiceError && e.code === 'SERVICE_MISSING',
    );
  } finally {
    process.env.PATH = saved.PATH;
    if (saved.CI === undefined) delete process.env.CI;
    else process.env.CI = saved.CI;
  }
});

test('startRedis: answers on its port, restart empties it, stop frees the port', async (t) => {
  if (!requireService(t, 'redis')) return;
  const redis = await startRedis();
  t.after(() => redis.stop());
  assert.equal(redis.url, `redis://127.0.0.1:${redis.port}`);
  assert.equal(await redisCommand(redis.port, 'SET', 'k', 'v1'), '+OK');
  assert.equal(await redisCommand(redis.port, 'GET', 'k'), 'v1');
  await redis.restart();
  // --save '' and --appendonly no: a restarted instance starts empty.
  assert.equal(await redisCommand(redis.port, 'GET', 'k'), '$-1');
  await redis.kill();
  assert.equal(await redisCommand(redis.port, 'PING'), null);
  await redis.start();
  assert.equal(await redisCommand(redis.port, 'PING'), '+PONG');
  await redis.stop();
  assert.equal(await redisCommand(redis.port, 'PING'), null);
});

test('startPostgres: accepts SQL as superuser, stop shuts it down and removes its data', async (t) => {
  if (!requireService(t, 'postgres')) return;
  const server = await startPostgres();
  t.after(() => server.stop());
  const client = new pg.Client({ connectionString: server.connectionString });
  await client.connect();
  await client.query('CREATE DATABASE scratch');
  const r = await client.query<{ answer: number }>('SELECT 6 * 7 AS answer');
  assert.equal(r.rows[0]?.answer, 42);
  await client.end();
  const other = new pg.Client({ connectionString: server.urlFor('scratch') });
  await other.connect();
  assert.equal((await other.query('SELECT current_database() AS db')).rows[0]?.db, 'scratch');
  await other.end();
  await server.stop();
  const after = new pg.Client({ connectionString: server.connectionString, connectionTimeoutMillis: 1000 });
  after.on('error', () => {});
  await assert.rejects(after.connect());
  assert.equal(existsSync(server.dir), false);
});

test('a start that lost its port to another process is retried on a new port; other failures are not', async () => {
  let starts = 0;
  let ports = 0;
  await withFreshPortOnConflict(
    async () => {
      if (++starts < 3) throw new ServiceError('SERVICE_START_FAILED', 'bind: Address already in use');
    },
    async () => {
      ports++;
    },
  );
  assert.deepEqual([starts, ports], [3, 2]);
  let tries = 0;
  await assert.rejects(
    withFreshPortOnConflict(
      async () => {
        tries++;
        throw new ServiceError('SERVICE_START_FAILED', 'initdb: permission denied');
      },
      async () => {},
    ),
    /permission denied/,
  );
  assert.equal(tries, 1);
});
