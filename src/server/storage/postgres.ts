/**
 * PostgreSQL storage backend (`pg` pool), same semantics as the SQLite one (conformance.ts).
 *
 * Concurrency: every write that depends on a task's counters first locks that task's row in
 * `task_seq` (INSERT … ON CONFLICT DO UPDATE … RETURNING takes the row lock), so appends and
 * checkpoints of one task are serialized across connections and processes while other tasks
 * proceed in parallel. Under READ COMMITTED each later statement sees rows committed by the
 * previous lock holder, so the idempotency check after the lock is exact; the primary key on
 * (task_id, key) is the last line of defence. Appends are group-committed per task: while one
 * transaction of a task is in flight, later appends of that task queue and share the next one, in
 * call order; reads and checkpoints of a task first wait for the appends called before them.
 * Folded commits (`commitFolded`) queue in the same line and run alone in their own transaction,
 * so they take effect in call order with the appends around them.
 *
 * Durability: with the server's default synchronous_commit=on, COMMIT returns after the WAL is
 * flushed, and `appendAccepted` resolves only after COMMIT. A COMMIT that fails on a broken
 * connection has an unknown outcome: the caller gets BACKEND_UNAVAILABLE, and a retry with the same
 * idempotency key is answered as a duplicate if the first one did commit.
 */
import pg from 'pg';
import {
  bytesToBuffer,
  type CheckpointRow,
  checkJournalSeq,
  checkpointFromRow,
  type DeviceRow,
  decodeJson,
  deviceFromRow,
  encodeJson,
  entryFromRow,
  fencedError,
  firstDuplicate,
  float32ToBytes,
  type JournalRow,
  type TaskRow,
  taskFromRow,
  validateCheckpoint,
  validateDevice,
  validateEntry,
  validateFencingToken,
  validateFoldedCommit,
  validateLimit,
  validateMetric,
  validatePrune,
  validateRejections,
  validateRoundState,
  validateTask,
} from './codec.ts';
import type {
  AppendResult,
  Checkpoint,
  DeviceRecord,
  FoldedCommit,
  FoldedCommitResult,
  JournalEntry,
  JournalEntryInput,
  MetricRecord,
  RoundStateRecord,
  Storage,
  TaskRecord,
} from './types.ts';
import { StorageError } from './types.ts';

export interface PostgresStorageOptions {
  readonly connectionString: string;
  /** Pool size; default 10. */
  readonly maxConnections?: number;
  /** How long to wait for a connection before BACKEND_UNAVAILABLE; default 5000 ms. */
  readonly connectTimeoutMs?: number;
  /** Client-side limit for one query; default 30000 ms. */
  readonly queryTimeoutMs?: number;
  /** Checkpoints kept per task; default 3. */
  readonly keepCheckpoints?: number;
  /** Most delta bytes group-committed in one transaction (at least one append); default 16 MiB. */
  readonly appendBatchBytes?: number;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS orchard_tasks (
  task_id text PRIMARY KEY,
  spec text NOT NULL,
  created_at double precision NOT NULL
);
CREATE TABLE IF NOT EXISTS orchard_task_seq (
  task_id text PRIMARY KEY,
  last_seq bigint NOT NULL,
  checkpoint_seq bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS orchard_checkpoints (
  task_id text NOT NULL,
  version bigint NOT NULL,
  params bytea NOT NULL,
  state bytea NOT NULL,
  journal_seq bigint NOT NULL,
  created_at double precision NOT NULL,
  PRIMARY KEY (task_id, version)
);
CREATE TABLE IF NOT EXISTS orchard_journal (
  task_id text NOT NULL,
  seq bigint NOT NULL,
  idempotency_key text NOT NULL,
  device_id text NOT NULL,
  assignment_id text NOT NULL,
  base_version bigint NOT NULL,
  num_examples double precision NOT NULL,
  delta bytea NOT NULL,
  response text NOT NULL,
  accepted_at double precision NOT NULL,
  PRIMARY KEY (task_id, seq)
);
CREATE TABLE IF NOT EXISTS orchard_idempotency (
  task_id text NOT NULL,
  key text NOT NULL,
  seq bigint NOT NULL,
  response text NOT NULL,
  expires_at double precision,
  PRIMARY KEY (task_id, key)
);
ALTER TABLE orchard_idempotency ADD COLUMN IF NOT EXISTS expires_at double precision;
CREATE INDEX IF NOT EXISTS orchard_idempotency_expiry ON orchard_idempotency (task_id, expires_at)
  WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS orchard_devices (
  device_id text PRIMARY KEY,
  token_hash text NOT NULL UNIQUE,
  created_at double precision NOT NULL,
  revoked_at double precision
);
CREATE TABLE IF NOT EXISTS orchard_metrics (
  id bigserial PRIMARY KEY,
  task_id text NOT NULL,
  version bigint NOT NULL,
  at double precision NOT NULL,
  vals text NOT NULL
);
CREATE INDEX IF NOT EXISTS orchard_metrics_task ON orchard_metrics (task_id, id);
CREATE TABLE IF NOT EXISTS orchard_rejections (
  task_id text NOT NULL,
  reason text NOT NULL,
  count bigint NOT NULL,
  PRIMARY KEY (task_id, reason)
);
CREATE TABLE IF NOT EXISTS orchard_fences (
  task_id text PRIMARY KEY,
  token bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS orchard_round_state (
  task_id text PRIMARY KEY,
  state text NOT NULL,
  updated_at double precision NOT NULL
);
CREATE TABLE IF NOT EXISTS orchard_folded (
  task_id text PRIMARY KEY,
  version bigint NOT NULL,
  params bytea NOT NULL,
  state bytea NOT NULL,
  journal_seq bigint NOT NULL,
  created_at double precision NOT NULL
);
`;

/** Serializes schema creation across processes starting at once (CREATE … IF NOT EXISTS can race). */
const SCHEMA_LOCK_KEY = 0x0ca7c4a2d;

const LOCK_SEQ =
  'INSERT INTO orchard_task_seq (task_id, last_seq, checkpoint_seq) VALUES ($1, 0, 0) ' +
  'ON CONFLICT (task_id) DO UPDATE SET last_seq = orchard_task_seq.last_seq ' +
  'RETURNING last_seq, checkpoint_seq';

type Row = Record<string, unknown>;

const INT8_OID = 20;
/**
 * int8 columns (seqs, versions, ids) parsed as numbers, as SQLite returns them, so both backends
 * share the row conversion in codec.ts; every value we store fits a double exactly.
 */
const TYPES: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === INT8_OID
      ? Number
      : pg.types.getTypeParser(oid, format as 'text')) as typeof pg.types.getTypeParser,
};

const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENOTFOUND',
  'EPIPE',
]);

/** Connection-level failures (server down, unreachable, shutting down, out of connections). */
function isUnavailable(err: unknown): boolean {
  const e = err as { code?: unknown; message?: unknown };
  const code = typeof e.code === 'string' ? e.code : '';
  const msg = typeof e.message === 'string' ? e.message : '';
  return (
    NETWORK_CODES.has(code) ||
    code.startsWith('08') || // connection exception
    code.startsWith('57P') || // operator intervention: admin shutdown, crash shutdown, cannot connect now
    code.startsWith('53') || // insufficient resources (too many connections)
    /timeout|terminated|Connection ended|not queryable|connect/i.test(msg)
  );
}

function mapError(err: unknown): unknown {
  if (err instanceof StorageError) return err;
  if (isUnavailable(err)) {
    return new StorageError('BACKEND_UNAVAILABLE', `postgres unavailable: ${(err as Error).message}`);
  }
  return err;
}

/** Which of `keys` the task applied before: each one's seq and stored response (JSON text). */
async function appliedKeys(
  c: pg.PoolClient,
  taskId: string,
  keys: readonly string[],
): Promise<Map<string, { seq: number; response: string }>> {
  const known = new Map<string, { seq: number; response: string }>();
  const { rows } = await c.query(
    'SELECT key, seq, response FROM orchard_idempotency WHERE task_id = $1 AND key = ANY($2)',
    [taskId, keys],
  );
  for (const r of rows as Row[])
    known.set(String(r.key), { seq: r.seq as number, response: String(r.response) });
  return known;
}

interface QueuedAppend {
  readonly kind: 'append';
  readonly entry: JournalEntryInput;
  readonly delta: Buffer;
  readonly response: string;
  readonly resolve: (r: AppendResult) => void;
  readonly reject: (err: unknown) => void;
}

/** A validated `commitFolded` call, copied at call time (the caller may reuse its arrays). */
interface QueuedFolded {
  readonly kind: 'folded';
  readonly commit: Pick<FoldedCommit, 'taskId' | 'version' | 'createdAt' | 'fencingToken'>;
  readonly params: Buffer;
  readonly state: Buffer;
  /** The entries' keys, responses as JSON text, and key expiries, in entry order. */
  readonly keys: readonly string[];
  readonly responses: readonly string[];
  readonly expires: ReadonlyArray<number | null>;
  readonly resolve: (r: FoldedCommitResult) => void;
  readonly reject: (err: unknown) => void;
}

/** A task's writes in call order: appends (group-committed) and folded commits (one each). */
interface AppendQueue {
  items: Array<QueuedAppend | QueuedFolded>;
  running: Promise<void> | null;
}

/** Appends per transaction at most (bounds statement size: 10 parameters per row). */
const MAX_APPEND_BATCH = 256;
const MAX_APPEND_BATCH_BYTES = 16 * 1024 * 1024;

/** `($1, $2), ($3, $4)` for `rows` rows of `width` parameters. */
function placeholders(rows: number, width: number): string {
  const out: string[] = [];
  for (let r = 0; r < rows; r++) {
    const cols: string[] = [];
    for (let c = 1; c <= width; c++) cols.push(`$${r * width + c}`);
    out.push(`(${cols.join(', ')})`);
  }
  return out.join(', ');
}

/** The task's fence (0 if none); call with the task's seq row locked. */
async function readFence(c: pg.PoolClient, taskId: string): Promise<number> {
  const row = (await c.query('SELECT token FROM orchard_fences WHERE task_id = $1', [taskId])).rows[0] as
    | Row
    | undefined;
  return row ? (row.token as number) : 0;
}

async function writeFence(c: pg.PoolClient, taskId: string, token: number): Promise<void> {
  await c.query(
    'INSERT INTO orchard_fences (task_id, token) VALUES ($1, $2) ' +
      'ON CONFLICT (task_id) DO UPDATE SET token = GREATEST(orchard_fences.token, excluded.token)',
    [taskId, token],
  );
}

export class PostgresStorage implements Storage {
  private readonly options: Required<PostgresStorageOptions>;
  private pool: pg.Pool | null = null;
  private readonly appendQueues = new Map<string, AppendQueue>();

  constructor(options: PostgresStorageOptions) {
    if (typeof options.connectionString !== 'string' || options.connectionString.length === 0) {
      throw new StorageError('INVALID_INPUT', 'PostgresStorage: connectionString must be a non-empty string');
    }
    const keep = options.keepCheckpoints ?? 3;
    if (!Number.isSafeInteger(keep) || keep < 1) {
      throw new StorageError('INVALID_INPUT', 'PostgresStorage: keepCheckpoints must be an integer ≥ 1');
    }
    this.options = {
      connectionString: options.connectionString,
      maxConnections: options.maxConnections ?? 10,
      connectTimeoutMs: options.connectTimeoutMs ?? 5000,
      queryTimeoutMs: options.queryTimeoutMs ?? 30_000,
      keepCheckpoints: keep,
      appendBatchBytes: options.appendBatchBytes ?? MAX_APPEND_BATCH_BYTES,
    };
  }

  async init(): Promise<void> {
    if (!this.pool) {
      const pool = new pg.Pool({
        connectionString: this.options.connectionString,
        max: this.options.maxConnections,
        connectionTimeoutMillis: this.options.connectTimeoutMs,
        query_timeout: this.options.queryTimeoutMs,
        idleTimeoutMillis: 30_000,
        types: TYPES,
      });
      // An idle client losing its connection emits here; without a listener the process would
      // crash. The next query gets a fresh connection or a typed error.
      pool.on('error', () => {});
      this.pool = pool;
    }
    await this.tx(async (c) => {
      await c.query('SELECT pg_advisory_xact_lock($1)', [SCHEMA_LOCK_KEY]);
      await c.query(SCHEMA);
    });
  }

  async close(): Promise<void> {
    for (const taskId of [...this.appendQueues.keys()]) await this.appendsSettled(taskId);
    const pool = this.pool;
    this.pool = null;
    await pool?.end();
  }

  private getPool(): pg.Pool {
    if (!this.pool)
      throw new StorageError('BACKEND_UNAVAILABLE', 'PostgresStorage is not open (call init())');
    return this.pool;
  }

  private async query<R = Row>(text: string, values: unknown[] = []): Promise<R[]> {
    const pool = this.getPool();
    try {
      return (await pool.query(text, values)).rows as R[];
    } catch (err) {
      throw mapError(err);
    }
  }

  private async client(): Promise<pg.PoolClient> {
    try {
      return await this.getPool().connect();
    } catch (err) {
      throw mapError(err);
    }
  }

  /** Runs `fn` in a transaction; `fn` may return {rollback: value} to end it without writing. */
  private async tx<T>(fn: (c: pg.PoolClient) => Promise<T | { rollback: T }>): Promise<T> {
    const c = await this.client();
    let broken: Error | undefined;
    try {
      await c.query('BEGIN');
      const out = await fn(c);
      if (typeof out === 'object' && out !== null && 'rollback' in out) {
        await c.query('ROLLBACK');
        return out.rollback;
      }
      await c.query('COMMIT');
      return out;
    } catch (err) {
      if (isUnavailable(err)) broken = err as Error;
      else await c.query('ROLLBACK').catch(() => {});
      throw mapError(err);
    } finally {
      // A client whose connection failed is destroyed rather than returned to the pool.
      c.release(broken);
    }
  }

  async putTask(task: TaskRecord): Promise<void> {
    validateTask(task);
    const spec = encodeJson(task.spec, 'task spec');
    await this.query(
      'INSERT INTO orchard_tasks (task_id, spec, created_at) VALUES ($1, $2, $3) ' +
        'ON CONFLICT (task_id) DO UPDATE SET spec = excluded.spec, created_at = excluded.created_at',
      [task.taskId, spec, task.createdAt],
    );
  }

  async getTask(taskId: string): Promise<TaskRecord | null> {
    const [row] = await this.query<TaskRow>('SELECT * FROM orchard_tasks WHERE task_id = $1', [taskId]);
    return row ? taskFromRow(row) : null;
  }

  async listTasks(): Promise<TaskRecord[]> {
    return (await this.query<TaskRow>('SELECT * FROM orchard_tasks ORDER BY created_at, task_id')).map(
      taskFromRow,
    );
  }

  async saveCheckpoint(cp: Checkpoint): Promise<void> {
    validateCheckpoint(cp);
    const params = float32ToBytes(cp.params);
    const state = bytesToBuffer(cp.state);
    await this.appendsSettled(cp.taskId);
    await this.tx(async (c) => {
      const seqs = (await c.query(LOCK_SEQ, [cp.taskId])).rows[0] as Row;
      if (cp.fencingToken !== undefined) {
        const fence = await readFence(c, cp.taskId);
        if (cp.fencingToken < fence) throw fencedError(cp.taskId, cp.fencingToken, fence);
        if (cp.fencingToken > fence) await writeFence(c, cp.taskId, cp.fencingToken);
      }
      const latest = (
        await c.query('SELECT max(version) AS v FROM orchard_checkpoints WHERE task_id = $1', [cp.taskId])
      ).rows[0] as Row;
      if (latest.v !== null && cp.version <= (latest.v as number)) {
        throw new StorageError(
          'VERSION_NOT_INCREASING',
          `checkpoint version ${cp.version} is not above the stored ${latest.v as number} for task ${cp.taskId}`,
        );
      }
      checkJournalSeq(cp, seqs.checkpoint_seq as number, seqs.last_seq as number);
      await c.query(
        'INSERT INTO orchard_checkpoints (task_id, version, params, state, journal_seq, created_at) ' +
          'VALUES ($1, $2, $3, $4, $5, $6)',
        [cp.taskId, cp.version, params, state, cp.journalSeq, cp.createdAt],
      );
      await c.query('DELETE FROM orchard_journal WHERE task_id = $1 AND seq <= $2', [
        cp.taskId,
        cp.journalSeq,
      ]);
      await c.query('UPDATE orchard_task_seq SET checkpoint_seq = $2 WHERE task_id = $1', [
        cp.taskId,
        cp.journalSeq,
      ]);
      await c.query(
        'DELETE FROM orchard_checkpoints WHERE task_id = $1 AND version NOT IN ' +
          '(SELECT version FROM orchard_checkpoints WHERE task_id = $1 ORDER BY version DESC LIMIT $2)',
        [cp.taskId, this.options.keepCheckpoints],
      );
    });
  }

  async latestCheckpoint(taskId: string): Promise<Checkpoint | null> {
    const [row] = await this.query<CheckpointRow>(
      'SELECT * FROM orchard_checkpoints WHERE task_id = $1 ORDER BY version DESC LIMIT 1',
      [taskId],
    );
    return row ? checkpointFromRow(row) : null;
  }

  /**
   * Group commit per task: while one transaction of a task is in flight, later appends of that
   * task queue up and go together in the next one (one lock, one commit). Seqs follow call order;
   * each promise resolves after its transaction committed.
   */
  appendAccepted(e: JournalEntryInput): Promise<AppendResult> {
    let item: Omit<QueuedAppend, 'resolve' | 'reject'>;
    try {
      validateEntry(e);
      this.getPool();
      item = {
        kind: 'append',
        entry: e,
        delta: float32ToBytes(e.delta),
        response: encodeJson(e.response, 'response'),
      };
    } catch (err) {
      return Promise.reject(err);
    }
    const q = this.queueOf(e.taskId);
    const done = new Promise<AppendResult>((resolve, reject) => q.items.push({ ...item, resolve, reject }));
    q.running ??= this.drainAppends(e.taskId, q);
    return done;
  }

  /** The task's write queue, created if needed. */
  private queueOf(taskId: string): AppendQueue {
    let queue = this.appendQueues.get(taskId);
    if (!queue) {
      queue = { items: [], running: null };
      this.appendQueues.set(taskId, queue);
    }
    return queue;
  }

  /**
   * Queued behind the task's appends called before it (and ahead of those called after), then
   * committed alone in one transaction: fence, key checks, seqs, keys, folded state, truncation.
   */
  commitFolded(commit: FoldedCommit): Promise<FoldedCommitResult> {
    let item: Omit<QueuedFolded, 'resolve' | 'reject'>;
    try {
      validateFoldedCommit(commit);
      this.getPool();
      const { taskId, version, createdAt, fencingToken } = commit;
      item = {
        kind: 'folded',
        commit: { taskId, version, createdAt, ...(fencingToken === undefined ? {} : { fencingToken }) },
        params: float32ToBytes(commit.params),
        state: bytesToBuffer(commit.state),
        keys: commit.entries.map((e) => e.idempotencyKey),
        responses: commit.entries.map((e) => encodeJson(e.response, 'response')),
        expires: commit.entries.map((e) => e.keyExpiresAt ?? null),
      };
    } catch (err) {
      return Promise.reject(err);
    }
    const q = this.queueOf(commit.taskId);
    const done = new Promise<FoldedCommitResult>((resolve, reject) =>
      q.items.push({ ...item, resolve, reject }),
    );
    q.running ??= this.drainAppends(commit.taskId, q);
    return done;
  }

  async foldedState(taskId: string): Promise<Checkpoint | null> {
    await this.appendsSettled(taskId);
    const [row] = await this.query<CheckpointRow>('SELECT * FROM orchard_folded WHERE task_id = $1', [
      taskId,
    ]);
    return row ? checkpointFromRow(row) : null;
  }

  /** Commits the task's queued appends batch by batch until the queue is empty. */
  private async drainAppends(taskId: string, q: AppendQueue): Promise<void> {
    try {
      while (q.items.length > 0) {
        const head = q.items[0];
        if (head?.kind === 'folded') {
          q.items.shift();
          try {
            head.resolve(await this.foldedTx(head));
          } catch (err) {
            head.reject(err);
          }
          continue;
        }
        // Bounded by count and bytes (one multi-row INSERT carries the whole batch), and by the
        // next folded commit (it keeps its place in call order).
        const batch: QueuedAppend[] = [];
        let bytes = 0;
        for (const next of q.items) {
          if (next.kind !== 'append' || batch.length === MAX_APPEND_BATCH) break;
          bytes += next.delta.byteLength;
          if (batch.length > 0 && bytes > this.options.appendBatchBytes) break;
          batch.push(next);
        }
        q.items.splice(0, batch.length);
        try {
          const results = await this.appendBatch(taskId, batch);
          for (const [i, item] of batch.entries()) {
            const r = results[i];
            if (r instanceof StorageError) item.reject(r);
            else item.resolve(r as AppendResult);
          }
        } catch (err) {
          // The transaction rolled back (or its outcome is unknown): none of the batch is acknowledged.
          for (const item of batch) item.reject(err);
        }
      }
    } finally {
      q.running = null;
      if (q.items.length === 0) this.appendQueues.delete(taskId);
      else q.running = this.drainAppends(taskId, q);
    }
  }

  /** Settles once every append of `taskId` called before now has committed or failed. */
  private async appendsSettled(taskId: string): Promise<void> {
    for (;;) {
      const running = this.appendQueues.get(taskId)?.running;
      if (!running) return;
      await running;
    }
  }

  private appendBatch(
    taskId: string,
    batch: readonly QueuedAppend[],
  ): Promise<Array<AppendResult | StorageError>> {
    return this.tx(async (c) => {
      // Taking the counter row's lock first serializes this task's writers across processes; the
      // key lookup after it sees every key committed before.
      const locked = (await c.query(LOCK_SEQ, [taskId])).rows[0] as Row;
      let lastSeq = locked.last_seq as number;
      const initialFence = await readFence(c, taskId);
      let fence = initialFence;
      const keys = batch.map((b) => b.entry.idempotencyKey);
      const known = await appliedKeys(c, taskId, keys);
      const results: Array<AppendResult | StorageError> = [];
      const fresh: Array<{ item: QueuedAppend; seq: number }> = [];
      for (const item of batch) {
        const token = item.entry.fencingToken;
        if (token !== undefined) {
          if (token < fence) {
            // Fails alone and writes nothing; the rest of the batch commits.
            results.push(fencedError(taskId, token, fence));
            continue;
          }
          fence = token;
        }
        const seen = known.get(item.entry.idempotencyKey);
        if (seen) {
          results.push({ kind: 'duplicate', seq: seen.seq, response: decodeJson(seen.response, 'response') });
          continue;
        }
        const seq = ++lastSeq;
        known.set(item.entry.idempotencyKey, { seq, response: item.response });
        fresh.push({ item, seq });
        results.push({ kind: 'appended', seq });
      }
      if (fence > initialFence) await writeFence(c, taskId, fence);
      if (fresh.length > 0) {
        await c.query('UPDATE orchard_task_seq SET last_seq = $2 WHERE task_id = $1', [taskId, lastSeq]);
        const keyRows: unknown[] = [];
        const entryRows: unknown[] = [];
        for (const { item, seq } of fresh) {
          const e = item.entry;
          keyRows.push(taskId, e.idempotencyKey, seq, item.response, e.keyExpiresAt ?? null);
          entryRows.push(
            taskId,
            seq,
            e.idempotencyKey,
            e.deviceId,
            e.assignmentId,
            e.baseVersion,
            e.numExamples,
            item.delta,
            item.response,
            e.acceptedAt,
          );
        }
        await c.query(
          `INSERT INTO orchard_idempotency (task_id, key, seq, response, expires_at) VALUES ${placeholders(fresh.length, 5)}`,
          keyRows,
        );
        await c.query(
          'INSERT INTO orchard_journal (task_id, seq, idempotency_key, device_id, assignment_id, base_version, ' +
            `num_examples, delta, response, accepted_at) VALUES ${placeholders(fresh.length, 10)}`,
          entryRows,
        );
      }
      return results;
    });
  }

  private foldedTx(item: QueuedFolded): Promise<FoldedCommitResult> {
    const { commit } = item;
    const taskId = commit.taskId;
    return this.tx<FoldedCommitResult>(async (c) => {
      // The counter row's lock first, as appends and checkpoints take it.
      const locked = (await c.query(LOCK_SEQ, [taskId])).rows[0] as Row;
      const token = commit.fencingToken;
      let raiseFence = false;
      if (token !== undefined) {
        const fence = await readFence(c, taskId);
        if (token < fence) throw fencedError(taskId, token, fence);
        raiseFence = token > fence;
      }
      const versions = (
        await c.query(
          'SELECT (SELECT max(version) FROM orchard_checkpoints WHERE task_id = $1) AS checkpoint, ' +
            '(SELECT version FROM orchard_folded WHERE task_id = $1) AS folded',
          [taskId],
        )
      ).rows[0] as Row;
      for (const [what, v] of [
        ['latest checkpoint', versions.checkpoint],
        ['stored folded state', versions.folded],
      ] as const) {
        if (v !== null && commit.version < (v as number)) {
          throw new StorageError(
            'VERSION_NOT_INCREASING',
            `folded commit version ${commit.version} is below the ${what}'s ${v as number} for task ${taskId}`,
          );
        }
      }
      const { keys } = item;
      const known = await appliedKeys(c, taskId, keys);
      const duplicate = firstDuplicate(keys, item.responses, (key) => known.get(key));
      if (duplicate !== null) return { rollback: duplicate };
      if (raiseFence) await writeFence(c, taskId, token as number);
      const first = (locked.last_seq as number) + 1;
      const seqs = keys.map((_, i) => first + i);
      const journalSeq = first + keys.length - 1;
      await c.query('UPDATE orchard_task_seq SET last_seq = $2 WHERE task_id = $1', [taskId, journalSeq]);
      // One statement for any number of entries (a multi-row VALUES would hit the parameter limit).
      await c.query(
        'INSERT INTO orchard_idempotency (task_id, key, seq, response, expires_at) ' +
          'SELECT $1, k, s, r, x FROM unnest($2::text[], $3::bigint[], $4::text[], $5::double precision[]) ' +
          'AS t(k, s, r, x)',
        [taskId, keys, seqs, item.responses, item.expires],
      );
      await c.query(
        'INSERT INTO orchard_folded (task_id, version, params, state, journal_seq, created_at) ' +
          'VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (task_id) DO UPDATE SET version = excluded.version, ' +
          'params = excluded.params, state = excluded.state, journal_seq = excluded.journal_seq, ' +
          'created_at = excluded.created_at',
        [taskId, commit.version, item.params, item.state, journalSeq, commit.createdAt],
      );
      // Every entry so far is inside the state. checkpoint_seq stays: it bounds checkpoints only,
      // and a later checkpoint may still name a journalSeq below this one.
      await c.query('DELETE FROM orchard_journal WHERE task_id = $1 AND seq <= $2', [taskId, journalSeq]);
      return { kind: 'committed', seqs };
    });
  }

  async journalSince(taskId: string, afterSeq: number): Promise<JournalEntry[]> {
    await this.appendsSettled(taskId);
    return (
      await this.query<JournalRow>(
        'SELECT * FROM orchard_journal WHERE task_id = $1 AND seq > $2 ORDER BY seq',
        [taskId, afterSeq],
      )
    ).map(entryFromRow);
  }

  async lookupIdempotencyKey(
    taskId: string,
    key: string,
  ): Promise<{ seq: number; response: unknown } | null> {
    const [row] = await this.query(
      'SELECT seq, response FROM orchard_idempotency WHERE task_id = $1 AND key = $2',
      [taskId, key],
    );
    return row ? { seq: row.seq as number, response: decodeJson(String(row.response), 'response') } : null;
  }

  async pruneIdempotencyKeys(taskId: string, expiredBefore: number): Promise<number> {
    validatePrune(taskId, expiredBefore);
    const rows = await this.query(
      'DELETE FROM orchard_idempotency WHERE task_id = $1 AND expires_at < $2 RETURNING 1 AS gone',
      [taskId, expiredBefore],
    );
    return rows.length;
  }

  async fence(taskId: string, token: number): Promise<void> {
    if (typeof taskId !== 'string' || taskId.length === 0) {
      throw new StorageError('INVALID_INPUT', 'taskId must be a non-empty string');
    }
    validateFencingToken(token);
    // Appends called before the fence keep their place in call order.
    await this.appendsSettled(taskId);
    await this.tx(async (c) => {
      await c.query(LOCK_SEQ, [taskId]);
      const fence = await readFence(c, taskId);
      if (token < fence) throw fencedError(taskId, token, fence);
      if (token > fence) await writeFence(c, taskId, token);
    });
  }

  async putDevice(d: DeviceRecord): Promise<void> {
    validateDevice(d);
    await this.query(
      'INSERT INTO orchard_devices (device_id, token_hash, created_at, revoked_at) VALUES ($1, $2, $3, $4) ' +
        'ON CONFLICT (device_id) DO UPDATE SET token_hash = excluded.token_hash, ' +
        'created_at = excluded.created_at, revoked_at = excluded.revoked_at',
      [d.deviceId, d.tokenHash, d.createdAt, d.revokedAt],
    );
  }

  async deviceByTokenHash(tokenHash: string): Promise<DeviceRecord | null> {
    const [row] = await this.query<DeviceRow>('SELECT * FROM orchard_devices WHERE token_hash = $1', [
      tokenHash,
    ]);
    return row ? deviceFromRow(row) : null;
  }

  async revokeDevice(deviceId: string, at: number): Promise<boolean> {
    if (typeof at !== 'number' || !Number.isFinite(at)) {
      throw new StorageError('INVALID_INPUT', 'revokedAt must be a finite number');
    }
    const rows = await this.query(
      'UPDATE orchard_devices SET revoked_at = COALESCE(revoked_at, $1) WHERE device_id = $2 RETURNING device_id',
      [at, deviceId],
    );
    return rows.length > 0;
  }

  async putRoundState(r: RoundStateRecord): Promise<void> {
    validateRoundState(r);
    const state = encodeJson(r.state, 'round state');
    await this.tx(async (c) => {
      if (r.fencingToken !== undefined) {
        // Under the task's row lock, as fence() and checkpoints take it.
        await c.query(LOCK_SEQ, [r.taskId]);
        const fence = await readFence(c, r.taskId);
        if (r.fencingToken < fence) throw fencedError(r.taskId, r.fencingToken, fence);
        if (r.fencingToken > fence) await writeFence(c, r.taskId, r.fencingToken);
      }
      await c.query(
        'INSERT INTO orchard_round_state (task_id, state, updated_at) VALUES ($1, $2, $3) ' +
          'ON CONFLICT (task_id) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at',
        [r.taskId, state, r.updatedAt],
      );
    });
  }

  async roundState(taskId: string): Promise<RoundStateRecord | null> {
    const [row] = await this.query(
      'SELECT task_id, state, updated_at FROM orchard_round_state WHERE task_id = $1',
      [taskId],
    );
    return row
      ? {
          taskId: String(row.task_id),
          state: decodeJson(String(row.state), 'round state'),
          updatedAt: row.updated_at as number,
        }
      : null;
  }

  async addRejections(taskId: string, counts: Readonly<Record<string, number>>): Promise<void> {
    validateRejections(taskId, counts);
    const entries = Object.entries(counts).filter(([, n]) => n > 0);
    if (entries.length === 0) return;
    // One statement: every reason is added or none.
    await this.query(
      'INSERT INTO orchard_rejections (task_id, reason, count) ' +
        'SELECT $1, r, c FROM unnest($2::text[], $3::bigint[]) AS t(r, c) ' +
        'ON CONFLICT (task_id, reason) DO UPDATE SET count = orchard_rejections.count + EXCLUDED.count',
      [taskId, entries.map(([r]) => r), entries.map(([, n]) => n)],
    );
  }

  async rejections(taskId: string): Promise<Record<string, number>> {
    validateRejections(taskId, {});
    const rows = await this.query<{ reason: string; count: string }>(
      'SELECT reason, count FROM orchard_rejections WHERE task_id = $1 ORDER BY reason',
      [taskId],
    );
    return Object.fromEntries(rows.map((r) => [r.reason, Number(r.count)]));
  }

  async appendMetric(m: MetricRecord): Promise<void> {
    validateMetric(m);
    const vals = encodeJson(m.values, 'metric values');
    await this.query('INSERT INTO orchard_metrics (task_id, version, at, vals) VALUES ($1, $2, $3, $4)', [
      m.taskId,
      m.version,
      m.at,
      vals,
    ]);
  }

  async metrics(taskId: string, limit: number): Promise<MetricRecord[]> {
    validateLimit(limit);
    const rows = await this.query(
      'SELECT task_id, version, at, vals FROM (SELECT * FROM orchard_metrics WHERE task_id = $1 ' +
        'ORDER BY id DESC LIMIT $2) recent ORDER BY id',
      [taskId, limit],
    );
    return rows.map((r) => ({
      taskId: String(r.task_id),
      version: r.version as number,
      at: r.at as number,
      values: decodeJson(String(r.vals), 'metric values') as Record<string, unknown>,
    }));
  }
}
