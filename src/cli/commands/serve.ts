/**
 * `orchard serve`: the production server. With no arguments it serves the default MNIST FedBuff
 * task from SQLite in ./orchard-data and prints the dashboard URL, the enrollment key devices
 * register with and the admin token. It runs until SIGINT/SIGTERM, then closes cleanly (a kill -9
 * loses nothing acknowledged either: see the README's "Production server").
 */
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { Command } from 'commander';
import { ConfigError } from '../../core/errors.ts';
import type { AdmissionCounter } from '../../server/admission.ts';
import { ALL_ROLES, type Role, type ServerOptions, startServer } from '../../server/index.ts';
import type { Lease } from '../../server/lease.ts';
import type { PartialExchange } from '../../server/scaleout/partials.ts';
import { parseIntegerOption } from '../options.ts';

export interface ServeFlags {
  readonly port: string;
  readonly host: string;
  readonly dataDir: string;
  readonly storage?: string;
  readonly redis?: string;
  readonly role: string;
  readonly task?: string;
  readonly leaseTtl?: string;
}

function parseRoles(value: string): readonly Role[] {
  if (value === 'all') return ALL_ROLES;
  if (value === 'coordinator') return ['coordinator', 'aggregator'];
  if (value === 'selector' || value === 'aggregator') return [value];
  throw new ConfigError(
    [{ path: '--role', message: `expected all, coordinator, selector or aggregator, got '${value}'` }],
    'arguments',
  );
}

/** Shared coordinator leases and admission counters for several processes (src/server/scaleout). */
async function redisPrimitives(url: string): Promise<{
  lease: Lease;
  admission: AdmissionCounter;
  exchange: PartialExchange;
  close: () => Promise<void>;
}> {
  // Loaded on demand: ioredis is only needed by multi-process deployments.
  const { connectRedis, RedisAdmission, RedisLease, RedisPartialExchange } = await import(
    '../../server/scaleout/index.ts'
  );
  const redis = await connectRedis(url);
  return {
    lease: new RedisLease(redis),
    admission: new RedisAdmission(redis),
    exchange: new RedisPartialExchange(redis),
    close: async () => {
      redis.disconnect();
    },
  };
}

export async function serve(
  flags: ServeFlags,
  out: (line: string) => void = (l) => process.stdout.write(`${l}\n`),
): Promise<() => Promise<void>> {
  const port = parseIntegerOption('--port', flags.port);
  if (port < 0 || port > 65535)
    throw new ConfigError([{ path: '--port', message: `must be 0–65535, got ${port}` }], 'arguments');
  let task: unknown;
  if (flags.task !== undefined) {
    try {
      task = JSON.parse(readFileSync(flags.task, 'utf8'));
    } catch (error) {
      throw new ConfigError(
        [{ path: '--task', message: `cannot read ${flags.task}: ${(error as Error).message}` }],
        'arguments',
      );
    }
  }
  const leaseTtlMs =
    flags.leaseTtl === undefined ? undefined : parseIntegerOption('--lease-ttl', flags.leaseTtl);
  if (leaseTtlMs !== undefined && leaseTtlMs < 100)
    throw new ConfigError(
      [{ path: '--lease-ttl', message: `must be ≥ 100 ms, got ${leaseTtlMs}` }],
      'arguments',
    );
  const redis = flags.redis === undefined ? null : await redisPrimitives(flags.redis);
  const options: ServerOptions = {
    port,
    host: flags.host,
    dataDir: flags.dataDir,
    roles: parseRoles(flags.role),
    log: (message) => process.stderr.write(`orchard serve: ${message}\n`),
    ...(flags.storage === undefined ? {} : { storage: flags.storage }),
    ...(task === undefined ? {} : { task }),
    ...(leaseTtlMs === undefined ? {} : { leaseTtlMs }),
    ...(redis === null ? {} : { lease: redis.lease, admission: redis.admission, exchange: redis.exchange }),
  };
  let server: Awaited<ReturnType<typeof startServer>>;
  try {
    server = await startServer(options);
  } catch (error) {
    await redis?.close();
    throw error;
  }
  out(`orchard serve: task ${server.taskId}, roles ${flags.role}`);
  out(`dashboard:      ${server.url}/`);
  out(`enrollment key: ${server.enrollmentKey}`);
  out(`admin token:    ${server.adminToken}`);
  return async () => {
    await server.close();
    await redis?.close();
  };
}

export function registerServe(program: Command): void {
  program
    .command('serve')
    .description('run the federated-learning server (default task: MNIST FedBuff, SQLite in ./orchard-data)')
    .option('--port <n>', 'TCP port (0: any free port)', '8080')
    .option('--host <host>', 'interface to listen on', '127.0.0.1')
    .option('--data-dir <dir>', 'data folder: SQLite database and server secrets', './orchard-data')
    .option(
      '--storage <url>',
      'storage URL: sqlite:<file> (default sqlite:orchard.db in the data folder) or postgres://…',
    )
    .option(
      '--redis <url>',
      'Redis URL for shared coordinator leases, admission counters and the partial-sum exchange (several processes/machines)',
    )
    .option(
      '--role <role>',
      'roles this process runs: all, coordinator (with an aggregator), selector or aggregator',
      'all',
    )
    .option('--task <file>', 'task definition JSON (default: the MNIST FedBuff task)')
    .option(
      '--lease-ttl <ms>',
      'coordinator lease time-to-live: a successor can take over this long after a coordinator dies (default 10000)',
    )
    .action(async (flags: ServeFlags) => {
      const close = await serve(flags);
      await new Promise<void>((resolve) => {
        const stop = () => {
          process.off('SIGINT', stop);
          process.off('SIGTERM', stop);
          resolve();
        };
        process.on('SIGINT', stop);
        process.on('SIGTERM', stop);
      });
      await close();
    });
}

// `node --import tsx src/cli/commands/serve.ts …` runs the serve command without loading the other
// commands: faster restarts for the kill -9 test (which restarts the server 20 times).
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const program = new Command().name('orchard').exitOverride();
  registerServe(program);
  try {
    await program.parseAsync(['serve', ...process.argv.slice(2)], { from: 'user' });
  } catch (error) {
    process.stderr.write(`orchard serve: ${(error as Error).message}\n`);
    process.exitCode = error instanceof ConfigError ? 2 : 1;
  }
}
