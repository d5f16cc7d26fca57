/**
 * The Orchard production server: `startServer` runs the roles (coordinator, selector, aggregator)
 * over one Storage and serves the HTTP API, the event stream and the dashboard. With no options it
 * serves the foundation's default MNIST FedBuff task from SQLite in ./orchard-data.
 */
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { ConfigError } from '../core/errors.ts';
import { type AdmissionCounter, LocalAdmissionCounter } from './admission.ts';
import { type AggregationTarget, Aggregator, JournalTarget, PartialTarget } from './aggregator.ts';
import { AssignmentSigner } from './assignment.ts';
import { DeviceAuth, newSecret } from './auth.ts';
import { TaskCoordinator } from './coordinator.ts';
import { buildHttp, type HttpLimits } from './http.ts';
import { type Lease, LocalLease } from './lease.ts';
import type { PartialExchange } from './scaleout/partials.ts';
import { type SelectableTask, Selector } from './selector.ts';
import { openStorage } from './storage/index.ts';
import type { Storage } from './storage/types.ts';
import { defaultTask, parseTaskSpec, type TaskSpec, taskRuntime } from './task.ts';

export { ApiError } from './errors.ts';
export { defaultTask, parseTaskSpec, type TaskSpec } from './task.ts';

export type Role = 'coordinator' | 'selector' | 'aggregator';
export const ALL_ROLES: readonly Role[] = ['coordinator', 'selector', 'aggregator'];

export interface ServerOptions {
  /** A Storage instance, or a URL (see storage/index.ts): a folder, `sqlite:<path>`, `sqlite::memory:`,
   *  `postgres://…`. Default: SQLite file orchard.db in dataDir. */
  readonly storage?: Storage | string;
  /** Data folder (SQLite file, server secrets). Default ./orchard-data. */
  readonly dataDir?: string;
  readonly port?: number;
  readonly host?: string;
  /** Task definition (raw or parsed TaskSpec). Default: the MNIST FedBuff task. */
  readonly task?: unknown;
  readonly enrollmentKey?: string;
  readonly adminToken?: string;
  /** HMAC key of assignment ids (base64url); every process of one deployment needs the same. */
  readonly assignmentKey?: string;
  /** Roles this process runs (default all). The coordinator also aggregates: it folds updates. */
  readonly roles?: readonly Role[];
  readonly lease?: Lease;
  /** Coordinator lease time-to-live; renewed every third of it (default 10 s). */
  readonly leaseTtlMs?: number;
  readonly admission?: AdmissionCounter;
  /**
   * Partial-aggregate exchange (e.g. RedisPartialExchange). When roles run as separate processes,
   * aggregators push partial sums of what they accepted and the coordinator folds those instead of
   * tailing the journal. Unused by the embedded server (all roles in one process).
   */
  readonly exchange?: PartialExchange;
  /** Partial-sum tuning: aggregator flush delay, leader orphan timeout (defaults 20 ms, 3 s). */
  readonly partialFlushMs?: number;
  readonly orphanAfterMs?: number;
  readonly limits?: Partial<HttpLimits>;
  /**
   * Embedded server: journal each accepted update's delta instead of storing the task's state once
   * per group commit (see CoordinatorOptions.journalDeltas). For comparisons; default false.
   */
  readonly journalDeltas?: boolean;
  readonly log?: (message: string) => void;
}

export interface RunningServer {
  /** Origin, e.g. http://127.0.0.1:8080 (the dashboard is at `${url}/`). */
  readonly url: string;
  readonly enrollmentKey: string;
  readonly adminToken: string;
  readonly taskId: string;
  readonly storage: Storage;
  /** The coordinator of `taskId` (null when this process does not run that role). */
  readonly coordinator: TaskCoordinator | null;
  close(): Promise<void>;
}

interface Secrets {
  enrollmentKey: string;
  adminToken: string;
  assignmentKey: string;
}

/** Secrets persist in the data folder (mode 0600) so a restart keeps tokens and assignments valid. */
function loadSecrets(dataDir: string | null): Secrets {
  const fresh = (): Secrets => ({
    enrollmentKey: newSecret(24),
    adminToken: newSecret(32),
    assignmentKey: newSecret(32),
  });
  if (dataDir === null) return fresh();
  const path = join(dataDir, 'secrets.json');
  if (existsSync(path)) {
    const parsed = JSON.parse(readFileSync(path, 'utf8')) as Partial<Secrets>;
    if (
      typeof parsed.enrollmentKey === 'string' &&
      typeof parsed.adminToken === 'string' &&
      typeof parsed.assignmentKey === 'string'
    )
      return parsed as Secrets;
    throw new ConfigError(
      [{ path, message: 'server secrets file is damaged; delete it to generate new secrets' }],
      'server secrets',
    );
  }
  const secrets = fresh();
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(secrets, null, 2)}\n`, { mode: 0o600 });
  renameSync(tmp, path);
  return secrets;
}

export async function startServer(options: ServerOptions = {}): Promise<RunningServer> {
  const log = options.log ?? (() => {});
  const roles = new Set(options.roles ?? ALL_ROLES);
  for (const role of roles)
    if (!ALL_ROLES.includes(role))
      throw new ConfigError([{ path: 'roles', message: `unknown role ${role}` }], 'server');
  // All roles in one process: the coordinator folds each update before journaling it (exact
  // answers). Otherwise aggregators journal and the coordinator folds the journal in seq order.
  const embedded = ALL_ROLES.every((role) => roles.has(role));
  // Everything that needs no storage is checked before any is opened.
  const spec: TaskSpec = options.task === undefined ? defaultTask() : parseTaskSpec(options.task);
  if (spec.strategy.kind === 'sync' && !embedded)
    throw new ConfigError(
      [
        {
          path: 'roles',
          message: "sync rounds need all roles in one process (the round's cohort lives in the coordinator)",
        },
      ],
      'server',
    );
  if (spec.strategy.kind === 'fedbuff' && spec.strategy.privacy !== undefined && !embedded)
    throw new ConfigError(
      [
        {
          path: 'roles',
          message: 'DP tasks need all roles in one process (each noised step is checkpointed first)',
        },
      ],
      'server',
    );
  const usesDataDir =
    options.storage === undefined || typeof options.storage === 'string' || options.dataDir !== undefined;
  const dataDir = usesDataDir ? resolve(options.dataDir ?? './orchard-data') : null;
  if (dataDir !== null) mkdirSync(dataDir, { recursive: true });
  const secrets = loadSecrets(dataDir);
  const enrollmentKey = options.enrollmentKey ?? secrets.enrollmentKey;
  const adminToken = options.adminToken ?? secrets.adminToken;
  const assignmentKey = Buffer.from(options.assignmentKey ?? secrets.assignmentKey, 'base64url');

  const ownsStorage = typeof options.storage !== 'object';
  const storage =
    typeof options.storage === 'object'
      ? options.storage
      : await openStorage(options.storage ?? dataDir ?? '.', { baseDir: dataDir ?? '.' });
  try {
    await storage.init();
    const stored = await storage.getTask(spec.taskId);
    if (stored !== null && JSON.stringify(parseTaskSpec(stored.spec)) !== JSON.stringify(spec))
      throw new ConfigError(
        [
          {
            path: 'task',
            message: `task ${spec.taskId} already exists in this storage with a different definition`,
          },
        ],
        'task',
      );
  } catch (error) {
    if (ownsStorage) await storage.close();
    throw error;
  }

  const runtime = taskRuntime(spec);
  const admission = options.admission ?? new LocalAdmissionCounter();
  const lease = options.lease ?? new LocalLease();
  const signer = new AssignmentSigner(assignmentKey);

  const exchange = embedded ? undefined : options.exchange;
  const coordinators = new Map<string, TaskCoordinator>();
  let coordinator: TaskCoordinator | null = null;
  if (roles.has('coordinator')) {
    coordinator = new TaskCoordinator(runtime, {
      storage,
      lease,
      holderId: `${process.pid}-${randomUUID()}`,
      ...(options.leaseTtlMs === undefined ? {} : { leaseTtlMs: options.leaseTtlMs }),
      tail: !embedded,
      ...(options.journalDeltas === true ? { journalDeltas: true } : {}),
      ...(exchange === undefined
        ? {}
        : {
            partials: {
              exchange,
              ...(options.orphanAfterMs === undefined ? {} : { orphanAfterMs: options.orphanAfterMs }),
            },
          }),
      inFlight: () => admission.inFlight(spec.taskId),
      log,
    });
    try {
      await coordinator.start();
    } catch (error) {
      await coordinator.close();
      if (ownsStorage) await storage.close();
      throw error;
    }
    coordinators.set(spec.taskId, coordinator);
  }

  // Selectors and aggregators without a coordinator in this process learn versions from the checkpoints.
  let polledVersion: number | null = null;
  let poller: NodeJS.Timeout | null = null;
  if (coordinator === null && (roles.has('selector') || roles.has('aggregator'))) {
    const poll = async () => {
      try {
        polledVersion = (await storage.latestCheckpoint(spec.taskId))?.version ?? null;
      } catch (error) {
        log(`version poll failed: ${(error as Error).message}`);
      }
    };
    await poll();
    poller = setInterval(() => void poll(), 500);
    poller.unref();
  }
  const c = coordinator;
  const selectable: SelectableTask = {
    spec,
    currentVersion: () => (c === null ? polledVersion : c.ready ? c.version : null),
    cohort: spec.strategy.kind === 'sync' ? c : null,
    finished: () => c?.finished() ?? null,
    planExtras: {
      modelInput: runtime.modelInput,
      seed: spec.seed,
      ...(spec.dataset === undefined ? {} : { dataset: spec.dataset }),
    },
  };
  const selector = roles.has('selector')
    ? new Selector({ tasks: () => [selectable], admission, signer })
    : null;
  const partialTarget =
    exchange !== undefined && roles.has('aggregator')
      ? new PartialTarget(
          runtime,
          storage,
          () => selectable.currentVersion(),
          exchange,
          `${hostname()}-${process.pid}-${randomUUID().slice(0, 8)}`,
          { ...(options.partialFlushMs === undefined ? {} : { flushMs: options.partialFlushMs }), log },
        )
      : null;
  const journalTarget =
    embedded || partialTarget !== null
      ? null
      : new JournalTarget(runtime, storage, () => selectable.currentVersion());
  const target: AggregationTarget | null = embedded ? coordinator : (partialTarget ?? journalTarget);
  const aggregator = roles.has('aggregator')
    ? new Aggregator({
        storage,
        coordinator: (id) => (id === spec.taskId ? target : null),
        admission,
        signer,
      })
    : null;

  let dashboardHtml: (() => string) | null = null;
  try {
    const modulePath = './dashboard/page.ts';
    const mod = (await import(modulePath)) as { dashboardHtml?: () => string };
    dashboardHtml = mod.dashboardHtml ?? null;
  } catch {
    dashboardHtml = null;
  }

  const numParams = runtime.initialParams.length;
  const limits: HttpLimits = {
    maxUpdateBytes: numParams * 4 + 64 * 1024,
    maxJsonBytes: 64 * 1024,
    bodyTimeoutMs: 30_000,
    idleTimeoutMs: 60_000,
    ...options.limits,
  };
  const auth = new DeviceAuth(storage, enrollmentKey, adminToken);
  const app = buildHttp(
    { auth, storage, admission, selector, aggregator, coordinators, dashboardHtml, log },
    limits,
  );
  const host = options.host ?? '127.0.0.1';
  const shutdown = async () => {
    if (poller !== null) clearInterval(poller);
    await app.close();
    await partialTarget?.close();
    await journalTarget?.close();
    for (const co of coordinators.values()) await co.close();
    if (ownsStorage) await storage.close();
  };
  try {
    await app.listen({ port: options.port ?? 0, host });
  } catch (error) {
    // E.g. the port is taken: release what was started, so the caller's process can exit.
    await shutdown();
    throw error;
  }
  const address = app.server.address();
  if (address === null || typeof address === 'string') throw new Error('server has no TCP address');
  const shownHost = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  const url = `http://${shownHost === '0.0.0.0' ? '127.0.0.1' : shownHost === '[::]' ? '[::1]' : shownHost}:${address.port}`;

  let closed = false;
  return {
    url,
    enrollmentKey,
    adminToken,
    taskId: spec.taskId,
    storage,
    coordinator,
    async close() {
      if (closed) return;
      closed = true;
      await shutdown();
    },
  };
}
