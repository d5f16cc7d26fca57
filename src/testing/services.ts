/**
 * Throwaway Redis and PostgreSQL instances for tests: each on a free loopback port, in its own
 * temp dir, started and stopped with deadlines, killed if the test process exits first.
 *
 * Rule for tests that need a service: skip locally when its binary is missing, fail when
 * process.env.CI is set (CI installs them; see scripts/system-deps.mjs).
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import type { TestContext } from 'node:test';
import pg from 'pg';

export type ServiceName = 'redis' | 'postgres';

export class ServiceError extends Error {
  constructor(
    readonly code: 'SERVICE_MISSING' | 'SERVICE_START_FAILED' | 'SERVICE_TIMEOUT',
    message: string,
  ) {
    super(message);
    this.name = 'ServiceError';
  }
}

function onPath(cmd: string): string | null {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir && existsSync(join(dir, cmd))) return join(dir, cmd);
  }
  return null;
}

/** The newest PostgreSQL bin directory (Debian layout /usr/lib/postgresql/<ver>/bin), else PATH. */
export function postgresBinDir(): string | null {
  const root = '/usr/lib/postgresql';
  if (existsSync(root)) {
    const versions = readdirSync(root)
      .filter(
        (v) => existsSync(join(root, v, 'bin', 'postgres')) && existsSync(join(root, v, 'bin', 'initdb')),
      )
      .sort((a, b) => Number.parseFloat(b) - Number.parseFloat(a));
    if (versions[0] !== undefined) return join(root, versions[0], 'bin');
  }
  const onPathPostgres = onPath('postgres');
  if (onPathPostgres && onPath('initdb')) return join(onPathPostgres, '..');
  return null;
}

/** Why the service cannot run here, or null when its binaries are present. */
export function serviceMissing(name: ServiceName): string | null {
  if (name === 'redis') return onPath('redis-server') ? null : 'redis-server is not on PATH';
  return postgresBinDir() ? null : 'PostgreSQL binaries (initdb, postgres) not found';
}

/**
 * For `describe(..., { skip })`: false when the service is available, a skip reason locally when
 * it is missing, and a thrown error under CI (a missing service must fail there, not skip).
 */
export function skipUnlessService(name: ServiceName): string | false {
  const missing = serviceMissing(name);
  if (!missing) return false;
  if (process.env.CI) throw new ServiceError('SERVICE_MISSING', `${name} is required under CI: ${missing}`);
  return `${name} not available: ${missing}`;
}

/** Inside a test: true when the service is available; otherwise skips (locally) or fails (CI). */
export function requireService(t: TestContext, name: ServiceName): boolean {
  const missing = serviceMissing(name);
  if (!missing) return true;
  if (process.env.CI) throw new ServiceError('SERVICE_MISSING', `${name} is required under CI: ${missing}`);
  t.skip(`${name} not available: ${missing}`);
  return false;
}

/** A port that was free a moment ago (the OS picks it; we release it for the service to bind). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Children still running when the test process exits are killed, so no service outlives its test. */
const live = new Set<ChildProcess>();
let exitHookInstalled = false;
function track(child: ChildProcess): void {
  live.add(child);
  child.once('exit', () => live.delete(child));
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once('exit', () => {
      for (const c of live) c.kill('SIGKILL');
    });
  }
}

/** Sends `signal`, waits up to `deadlineMs` for exit, then SIGKILLs and waits again. */
async function stopChild(child: ChildProcess, signal: NodeJS.Signals, deadlineMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill(signal);
  if (!(await settlesWithin(exited, deadlineMs))) {
    child.kill('SIGKILL');
    await settlesWithin(exited, 5000);
  }
}

/** True if `p` settles within `ms`; the timer is cleared either way so it never holds the process open. */
async function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((r) => {
    timer = setTimeout(() => r(false), ms);
  });
  try {
    return await Promise.race([p.then(() => true as const), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Collects the tail of a child's output for error messages. */
function captureOutput(child: ChildProcess): () => string {
  let out = '';
  const add = (b: Buffer) => {
    out = (out + b.toString()).slice(-4000);
  };
  child.stdout?.on('data', add);
  child.stderr?.on('data', add);
  return () => out;
}

/** Polls `probe` until it returns true, the child exits, or the deadline passes. */
async function waitReady(
  what: string,
  child: ChildProcess,
  output: () => string,
  probe: () => Promise<boolean>,
  deadlineMs: number,
): Promise<void> {
  const until = Date.now() + deadlineMs;
  while (Date.now() < until) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new ServiceError(
        'SERVICE_START_FAILED',
        `${what} exited (${child.exitCode ?? child.signalCode}):\n${output()}`,
      );
    }
    if (await probe()) return;
    await sleep(50);
  }
  await stopChild(child, 'SIGKILL', 2000);
  throw new ServiceError('SERVICE_TIMEOUT', `${what} not ready after ${deadlineMs} ms:\n${output()}`);
}

function redisPing(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = createConnection({ host: '127.0.0.1', port });
    let buf = '';
    const done = (ok: boolean) => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(500, () => done(false));
    sock.on('error', () => done(false));
    sock.on('connect', () => sock.write('PING\r\n'));
    sock.on('data', (d) => {
      buf += d.toString();
      if (buf.includes('\r\n')) done(buf.startsWith('+PONG'));
    });
  });
}

/**
 * Runs `start`; if the service failed because its port was taken in the moment between picking it
 * and binding it (another test process), picks a new port and tries again (3 attempts).
 */
export async function withFreshPortOnConflict(
  start: () => Promise<void>,
  newPort: () => Promise<void>,
): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await start();
      return;
    } catch (err) {
      const conflict = err instanceof ServiceError && /address already in use/i.test(err.message);
      if (!conflict || attempt >= 3) throw err;
      await newPort();
    }
  }
}

export interface RedisInstance {
  readonly url: string;
  readonly port: number;
  /** Stops the server (SIGTERM, SIGKILL after the deadline). Idempotent. */
  stop(): Promise<void>;
  /** Stops and starts it again on the same port, empty (no persistence). */
  restart(): Promise<void>;
  /** SIGKILLs the server without a clean shutdown (fault tests); `start()` brings it back. */
  kill(): Promise<void>;
  start(): Promise<void>;
}

export async function startRedis(options: { readyTimeoutMs?: number } = {}): Promise<RedisInstance> {
  const missing = serviceMissing('redis');
  if (missing) throw new ServiceError('SERVICE_MISSING', missing);
  const readyMs = options.readyTimeoutMs ?? 10_000;
  const dir = mkdtempSync(join(tmpdir(), 'orchard-redis-'));
  let port = await freePort();
  let child: ChildProcess | null = null;

  const start = async () => {
    if (child && child.exitCode === null && child.signalCode === null) return;
    const c = spawn(
      'redis-server',
      [
        '--port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--save',
        '',
        '--appendonly',
        'no',
        '--dir',
        dir,
        '--daemonize',
        'no',
        '--protected-mode',
        'no',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    track(c);
    const output = captureOutput(c);
    child = c;
    await waitReady(`redis-server on port ${port}`, c, output, () => redisPing(port), readyMs);
  };
  const stopWith = async (signal: NodeJS.Signals) => {
    if (child) await stopChild(child, signal, 5000);
    child = null;
  };

  try {
    await withFreshPortOnConflict(start, async () => {
      port = await freePort();
    });
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    start,
    kill: () => stopWith('SIGKILL'),
    async restart() {
      await stopWith('SIGTERM');
      await start();
    },
    async stop() {
      await stopWith('SIGTERM');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function postgresUser(): { uid: number; gid: number } | null {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return null;
  // PostgreSQL refuses to run as root: run it as the `postgres` system user.
  const line = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('postgres:'));
  const parts = line?.split(':');
  if (!parts || parts.length < 4) {
    throw new ServiceError(
      'SERVICE_START_FAILED',
      'running as root but there is no `postgres` user to run PostgreSQL',
    );
  }
  return { uid: Number(parts[2]), gid: Number(parts[3]) };
}

async function pgReady(connectionString: string): Promise<boolean> {
  const client = new pg.Client({ connectionString, connectionTimeoutMillis: 1000 });
  client.on('error', () => {});
  try {
    await client.connect();
    await client.query('SELECT 1');
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => {});
  }
}

export interface PostgresInstance {
  /** Superuser connection string to the `postgres` database (trust auth, loopback only). */
  readonly connectionString: string;
  readonly port: number;
  /** The temp dir holding the cluster and its unix socket (removed by stop). */
  readonly dir: string;
  /** A connection string for another database on the same server. */
  urlFor(database: string): string;
  /** Fast shutdown (SIGINT, SIGKILL after the deadline) and removal of the data dir. Idempotent. */
  stop(): Promise<void>;
}

export async function startPostgres(options: { readyTimeoutMs?: number } = {}): Promise<PostgresInstance> {
  const bin = postgresBinDir();
  if (!bin) throw new ServiceError('SERVICE_MISSING', 'PostgreSQL binaries not found');
  const readyMs = options.readyTimeoutMs ?? 60_000;
  const user = postgresUser();
  const dir = mkdtempSync(join(tmpdir(), 'orchard-pg-'));
  const data = join(dir, 'data');
  const cleanup = () => rmSync(dir, { recursive: true, force: true });
  if (user) chownSync(dir, user.uid, user.gid);
  const ids = user ? { uid: user.uid, gid: user.gid } : {};
  const env = { ...process.env, LC_ALL: 'C', LANG: 'C', HOME: dir };

  const init = spawnSync(
    join(bin, 'initdb'),
    [
      '-D',
      data,
      '-U',
      'postgres',
      '-A',
      'trust',
      '-E',
      'UTF8',
      '--no-locale',
      '--no-sync',
      '--no-instructions',
    ],
    { ...ids, env, cwd: dir, timeout: readyMs, encoding: 'utf8' },
  );
  if (init.status !== 0) {
    cleanup();
    const why = init.error ? init.error.message : `exit ${init.status ?? init.signal}`;
    throw new ServiceError('SERVICE_START_FAILED', `initdb failed (${why}):\n${init.stderr ?? ''}`);
  }

  let port = await freePort();
  let child: ChildProcess | null = null;
  const launch = async () => {
    const c = spawn(
      join(bin, 'postgres'),
      [
        '-D',
        data,
        '-p',
        String(port),
        '-k',
        dir,
        '-c',
        'listen_addresses=127.0.0.1',
        // Test instances: the OS page cache is durable enough (a killed client or server process
        // does not lose it); real deployments keep fsync on.
        '-c',
        'fsync=off',
        '-c',
        'full_page_writes=off',
        '-c',
        'shared_buffers=16MB',
        '-c',
        'max_connections=60',
      ],
      { ...ids, env, cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    track(c);
    child = c;
    const output = captureOutput(c);
    const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
    await waitReady(`postgres on port ${port}`, c, output, () => pgReady(url), readyMs);
  };
  try {
    await withFreshPortOnConflict(launch, async () => {
      port = await freePort();
    });
  } catch (err) {
    cleanup();
    throw err;
  }
  const connectionString = `postgres://postgres@127.0.0.1:${port}/postgres`;
  const running = child as ChildProcess | null;
  if (!running) throw new ServiceError('SERVICE_START_FAILED', 'postgres did not start');
  let stopped = false;
  return {
    connectionString,
    port,
    dir,
    urlFor: (database) => `postgres://postgres@127.0.0.1:${port}/${encodeURIComponent(database)}`,
    async stop() {
      if (stopped) return;
      stopped = true;
      await stopChild(running, 'SIGINT', 10_000);
      cleanup();
    },
  };
}
