// Installs the system services the tests drive (Chromium for browser tests, Redis for scale-out,
// PostgreSQL for the second storage backend) when they are missing and this machine can install
// them (root with apt-get, as on CI). Elsewhere it only reports what is missing; tests that need a
// missing service skip locally and fail under CI=true.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';

const has = (cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
const hasPostgres = () =>
  has('postgres') ||
  (existsSync('/usr/lib/postgresql') &&
    readdirSync('/usr/lib/postgresql').some((v) => existsSync(`/usr/lib/postgresql/${v}/bin/postgres`)));

const wanted = [
  { pkg: 'chromium', present: () => has('chromium') },
  { pkg: 'redis-server', present: () => has('redis-server') },
  { pkg: 'postgresql', present: hasPostgres },
];

export function ensureSystemDeps() {
  const missing = wanted.filter((w) => !w.present()).map((w) => w.pkg);
  if (missing.length === 0) return;
  const root = typeof process.getuid === 'function' && process.getuid() === 0;
  if (!root || !has('apt-get')) {
    console.warn(
      `system packages missing (${missing.join(', ')}); tests that need them will skip outside CI`,
    );
    return;
  }
  console.log(`installing system packages: ${missing.join(', ')}`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  // A deadline on every apt-get call: a hung mirror must fail the run, not stall it.
  const run = (args) =>
    spawnSync('apt-get', args, { stdio: ['ignore', 'ignore', 'inherit'], env, timeout: 15 * 60_000 }).status;
  if (run(['install', '-y', '-qq', ...missing]) !== 0) {
    run(['update', '-qq']);
    if (run(['install', '-y', '-qq', ...missing]) !== 0)
      throw new Error(`apt-get install ${missing.join(' ')} failed`);
  }
  // Debian starts services it installs; the tests run their own instances on free ports instead.
  spawnSync('sh', ['-c', 'service redis-server stop; service postgresql stop'], { stdio: 'ignore' });
}
