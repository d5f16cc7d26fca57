/**
 * The embedded storage backend: one SQLite file (better-sqlite3) in the data folder.
 *
 * Durability: WAL journal. For a file database the commit itself does not fsync
 * (synchronous=NORMAL: SQLite still syncs around checkpoints, so the file is always consistent);
 * instead the WAL file is fdatasync'd on libuv's thread pool after the commit, and no call
 * resolves before the sync that covers its commit (and every earlier one) finished. That is the
 * guarantee of synchronous=FULL (an acknowledged append survives `kill -9` and power loss) without
 * blocking the event loop for the disk flush. Appends called in the same event-loop turn are
 * group-committed: one transaction and one sync for the lot, each promise resolved after that sync
 * (a sync per append would cap a busy server at a few hundred updates per second). Any other call
 * first commits the queued appends, so every call observes the appends made before it. better-sqlite3 is
 * synchronous, so each transaction is atomic with respect to every other call; a second process
 * opening the same file is serialized by SQLite's own locks (busy_timeout).
 *
 * Checkpoints (copying WAL pages into the database file, about as much work as the append itself)
 * run on a second connection in a worker thread, so the event loop only writes the WAL; the main
 * connection also checkpoints once the WAL passes 64 MiB: a checkpoint running beside a busy writer
 * never finishes the WAL, and only a writer's own complete checkpoint lets the WAL start over, so
 * that one copies just the tail the worker had not reached yet.
 *
 * Journal payloads: for a file database, an update's delta is not stored in its journal row but in a
 * segment file beside the database (`<file>-payloads/`, see segments.ts): a writer thread writes and
 * fdatasyncs the batch's payloads, then the batch's rows (seq, key, segment, offset, length,
 * CRC-32) are committed here and the WAL synced, and only then do the appends resolve. The event
 * loop thus never copies a 400 kB payload into SQLite (that insert cost ~0.4 ms of its CPU per
 * update), and the checkpointer no longer copies it a second time. Segments nobody references any
 * more (the checkpoint that dropped their journal prefix is durable) are deleted. A folded commit's
 * state (params and strategy state, ~800 kB for 100,000 parameters) goes the same way: its bytes to
 * the segment, then its row with their place and checksums; the segment of a state the next commit
 * replaced is deleted once nothing else points at it. ':memory:' keeps payloads inline.
 *
 * New files use 16 KiB pages: a 400 kB update is ~25 overflow pages instead of ~100 (less per-page
 * work; 64 KiB pages save a little more there but double the WAL bytes of a small commit, since
 * every page a commit touches is written whole); existing files keep their page size.
 */
import { closeSync, fdatasync, fstatSync, openSync, readdirSync, statSync } from 'node:fs';
import { unlink } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import Database from 'better-sqlite3';
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
import {
  type PayloadCheck,
  type PayloadChecks,
  PayloadRing,
  type Placement,
  type Segment,
  SegmentReader,
  SegmentWriter,
} from './segments.ts';
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

export interface SqliteStorageOptions {
  /** Database file, or ':memory:' (tests; nothing survives close). */
  readonly path: string;
  /** Checkpoints kept per task (older ones are deleted on save); default 3. */
  readonly keepCheckpoints?: number;
  /** How long a write waits for another process's lock before failing; default 5000 ms. */
  readonly busyTimeoutMs?: number;
  /** Journal payload segment size (file databases); default SEGMENT_BYTES (64 MiB). Tests use less. */
  readonly segmentBytes?: number;
  /** Write payload segments with O_DIRECT where the filesystem allows it (see segments.ts); default
   *  true. False: through the page cache. */
  readonly directIo?: boolean;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS tasks (
  task_id TEXT PRIMARY KEY,
  spec TEXT NOT NULL,
  created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS task_seq (
  task_id TEXT PRIMARY KEY,
  last_seq INTEGER NOT NULL,
  checkpoint_seq INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS checkpoints (
  task_id TEXT NOT NULL,
  version INTEGER NOT NULL,
  params BLOB NOT NULL,
  state BLOB NOT NULL,
  journal_seq INTEGER NOT NULL,
  created_at REAL NOT NULL,
  PRIMARY KEY (task_id, version)
);
CREATE TABLE IF NOT EXISTS folded_states (
  task_id TEXT PRIMARY KEY,
  version INTEGER NOT NULL,
  params BLOB NOT NULL,
  state BLOB NOT NULL,
  journal_seq INTEGER NOT NULL,
  created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS journal (
  task_id TEXT NOT NULL,
  seq INTEGER NOT NULL,
  idempotency_key TEXT NOT NULL,
  device_id TEXT NOT NULL,
  assignment_id TEXT NOT NULL,
  base_version INTEGER NOT NULL,
  num_examples REAL NOT NULL,
  delta BLOB NOT NULL,
  response TEXT NOT NULL,
  accepted_at REAL NOT NULL,
  PRIMARY KEY (task_id, seq)
);
CREATE TABLE IF NOT EXISTS idempotency (
  task_id TEXT NOT NULL,
  key TEXT NOT NULL,
  seq INTEGER NOT NULL,
  response TEXT NOT NULL,
  expires_at REAL,
  PRIMARY KEY (task_id, key)
);
CREATE TABLE IF NOT EXISTS devices (
  device_id TEXT PRIMARY KEY,
  token_hash TEXT NOT NULL UNIQUE,
  created_at REAL NOT NULL,
  revoked_at REAL
);
CREATE TABLE IF NOT EXISTS metrics (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  task_id TEXT NOT NULL,
  version INTEGER NOT NULL,
  at REAL NOT NULL,
  vals TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS metrics_task ON metrics (task_id, id);
CREATE TABLE IF NOT EXISTS rejections (
  task_id TEXT NOT NULL,
  reason TEXT NOT NULL,
  count INTEGER NOT NULL,
  PRIMARY KEY (task_id, reason)
);
CREATE TABLE IF NOT EXISTS fences (
  task_id TEXT PRIMARY KEY,
  token INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS round_state (
  task_id TEXT PRIMARY KEY,
  state TEXT NOT NULL,
  updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS segments (
  name TEXT PRIMARY KEY,
  writer TEXT NOT NULL,
  active INTEGER NOT NULL,
  created_at REAL NOT NULL
);
`;

/** Journal columns of a payload kept in a segment file (added to files created before them).
 *  seg_crc: the payload's CRC-32, or seg_sum: its checksum64 (src/core/checksum.ts); one is set. */
const SEGMENT_COLUMNS = [
  'seg TEXT',
  'seg_offset INTEGER',
  'seg_length INTEGER',
  'seg_crc INTEGER',
  'seg_sum INTEGER',
];

/** Folded-state columns of a state kept in a segment file (added to files created before them):
 *  then `params` and `state` are empty and both payloads sit in `seg`, checked by `seg_kind`
 *  ('crc32' or 'sum64', as PayloadChecks) against `params_check` and `state_check`. */
const FOLDED_SEGMENT_COLUMNS = [
  'seg TEXT',
  'seg_kind TEXT',
  'params_offset INTEGER',
  'params_length INTEGER',
  'params_check INTEGER',
  'state_offset INTEGER',
  'state_length INTEGER',
  'state_check INTEGER',
];

/** Another writer's segment that nothing references and that has not changed for this long is a
 *  crashed writer's leftover and is deleted (a live writer whose segment went gets a retryable error). */
const STALE_SEGMENT_MS = 10 * 60_000;

const NO_BYTES = Buffer.alloc(0);
const EMPTY_PARAMS = new Float32Array(0);
const noop = () => {};

/** Runs PASSIVE checkpoints on its own connection shortly after the main thread reports commits. */
const CHECKPOINTER = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.driver);
const db = new Database(workerData.path, { timeout: workerData.busyTimeoutMs });
db.pragma('synchronous = NORMAL');
// Named for per-thread CPU figures (top -H, scripts/profile-ingest.ts); Linux only, best effort.
try { require('node:fs').writeFileSync('/proc/thread-self/comm', 'orchard-ckpt'); } catch {}
let timer = null;
const checkpoint = () => {
  timer = null;
  try { db.pragma('wal_checkpoint(PASSIVE)'); } catch {}
};
parentPort.on('message', (m) => {
  if (m === 'close') {
    if (timer !== null) clearTimeout(timer);
    db.close();
    parentPort.close();
    return;
  }
  if (timer === null) timer = setTimeout(checkpoint, 20);
});
`;

/** Main-connection checkpoint threshold in 64 KiB units (64 MiB of WAL): a backstop if the worker lags. */
const BACKSTOP_CHECKPOINT_PAGES = 1024;
/** The worker checkpoints after about this much journal data: often enough to keep the WAL short,
 *  rarely enough that its syncs do not queue on the disk in front of every commit's own sync. */
const CHECKPOINT_EVERY_BYTES = 16 << 20;

interface MetricRow {
  task_id: string;
  version: number;
  at: number;
  vals: string;
}

type Statements = ReturnType<typeof prepare>;

interface SegmentJournalRow extends JournalRow {
  seg: string | null;
  seg_offset: number | null;
  seg_length: number | null;
  seg_crc: number | null;
  seg_sum: number | null;
}

/** A folded-state row; `seg` non-null: the payloads are in that segment (FOLDED_SEGMENT_COLUMNS). */
interface FoldedRow extends CheckpointRow {
  seg: string | null;
  seg_kind: string | null;
  params_offset: number | null;
  params_length: number | null;
  params_check: number | null;
  state_offset: number | null;
  state_length: number | null;
  state_check: number | null;
}

/** Where a batch's payloads went: segment, offsets, checksums (null: inline in the rows). */
interface SegmentRefs {
  readonly placement: Placement;
  readonly checks: PayloadChecks;
}

/** Where a folded commit's params and state went (payloads 0 and 1 of the placement), and their sizes. */
interface FoldedRefs extends SegmentRefs {
  readonly sizes: { readonly params: number; readonly state: number };
}

/** A folded commit's transaction: its result, and whether a segment may have lost its last reference. */
interface FoldedOutcome {
  readonly result: FoldedCommitResult;
  readonly reclaim: boolean;
}

/** The segment columns of a folded state kept inline. */
const NO_SEGMENT = [null, null, null, null, null, null, null, null] as const;

interface QueuedAppend {
  /** The entry without its delta (the payload is `delta`): the caller's array is not kept alive. */
  readonly entry: Omit<JournalEntryInput, 'delta'>;
  /** Inline payload (':memory:'), or the bytes for a segment (in the ring the writer thread reads). */
  readonly delta: Uint8Array;
  /** Frees the payload's ring space once the writer thread is done with it. */
  readonly release: () => void;
  readonly response: string;
  readonly resolve: (r: AppendResult) => void;
  readonly reject: (err: unknown) => void;
}

function mapSqliteError(err: unknown): StorageError {
  if (err instanceof StorageError) return err;
  const e = err as Error & { code?: string };
  if (e.code === 'SQLITE_CORRUPT' || e.code === 'SQLITE_NOTADB')
    return new StorageError('CORRUPT', e.message);
  return new StorageError('BACKEND_UNAVAILABLE', `sqlite: ${e.message}`);
}

/** A folded commit that found a duplicate key: thrown to roll its transaction back. */
class RolledBack {
  constructor(readonly result: FoldedCommitResult) {}
}

function prepare(db: Database.Database) {
  return {
    putTask: db.prepare(
      'INSERT INTO tasks (task_id, spec, created_at) VALUES (?, ?, ?) ' +
        'ON CONFLICT (task_id) DO UPDATE SET spec = excluded.spec, created_at = excluded.created_at',
    ),
    getTask: db.prepare<[string], TaskRow>('SELECT * FROM tasks WHERE task_id = ?'),
    listTasks: db.prepare<[], TaskRow>('SELECT * FROM tasks ORDER BY created_at, task_id'),
    seqRow: db.prepare<[string], { last_seq: number; checkpoint_seq: number }>(
      'SELECT last_seq, checkpoint_seq FROM task_seq WHERE task_id = ?',
    ),
    setLastSeq: db.prepare(
      'INSERT INTO task_seq (task_id, last_seq, checkpoint_seq) VALUES (?, ?, 0) ' +
        'ON CONFLICT (task_id) DO UPDATE SET last_seq = excluded.last_seq',
    ),
    setCheckpointSeq: db.prepare(
      'INSERT INTO task_seq (task_id, last_seq, checkpoint_seq) VALUES (?, 0, ?) ' +
        'ON CONFLICT (task_id) DO UPDATE SET checkpoint_seq = excluded.checkpoint_seq',
    ),
    lookupKey: db.prepare<[string, string], { seq: number; response: string }>(
      'SELECT seq, response FROM idempotency WHERE task_id = ? AND key = ?',
    ),
    insertKeyIfNew: db.prepare(
      'INSERT INTO idempotency (task_id, key, seq, response, expires_at) VALUES (?, ?, ?, ?, ?) ' +
        'ON CONFLICT (task_id, key) DO NOTHING',
    ),
    pruneKeys: db.prepare('DELETE FROM idempotency WHERE task_id = ? AND expires_at < ?'),
    insertEntry: db.prepare(
      'INSERT INTO journal (task_id, seq, idempotency_key, device_id, assignment_id, base_version, ' +
        'num_examples, delta, response, accepted_at, seg, seg_offset, seg_length, seg_crc, seg_sum) ' +
        'VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
    ),
    registerSegment: db.prepare(
      'INSERT INTO segments (name, writer, active, created_at) VALUES (?, ?, 1, ?)',
    ),
    segmentExists: db.prepare<[string], { active: number }>('SELECT active FROM segments WHERE name = ?'),
    deactivateSegment: db.prepare('UPDATE segments SET active = 0 WHERE name = ?'),
    unreferencedSegments: db.prepare<[], { name: string; writer: string; active: number }>(
      'SELECT name, writer, active FROM segments s WHERE NOT EXISTS (SELECT 1 FROM journal j WHERE j.seg = s.name) ' +
        'AND NOT EXISTS (SELECT 1 FROM folded_states f WHERE f.seg = s.name)',
    ),
    deleteSegment: db.prepare('DELETE FROM segments WHERE name = ?'),
    allSegments: db.prepare<[], { name: string }>('SELECT name FROM segments'),
    journalSince: db.prepare<[string, number], SegmentJournalRow>(
      'SELECT * FROM journal WHERE task_id = ? AND seq > ? ORDER BY seq',
    ),
    journalEntryExists: db.prepare<[string, number], { one: number }>(
      'SELECT 1 AS one FROM journal WHERE task_id = ? AND seq = ?',
    ),
    truncateJournal: db.prepare('DELETE FROM journal WHERE task_id = ? AND seq <= ?'),
    latestVersion: db.prepare<[string], { version: number }>(
      'SELECT version FROM checkpoints WHERE task_id = ? ORDER BY version DESC LIMIT 1',
    ),
    latestCheckpoint: db.prepare<[string], CheckpointRow>(
      'SELECT * FROM checkpoints WHERE task_id = ? ORDER BY version DESC LIMIT 1',
    ),
    foldedState: db.prepare<[string], FoldedRow>('SELECT * FROM folded_states WHERE task_id = ?'),
    foldedHead: db.prepare<[string], { version: number; seg: string | null }>(
      'SELECT version, seg FROM folded_states WHERE task_id = ?',
    ),
    putFoldedState: db.prepare(
      'INSERT INTO folded_states (task_id, version, params, state, journal_seq, created_at, seg, seg_kind, ' +
        'params_offset, params_length, params_check, state_offset, state_length, state_check) ' +
        'VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (task_id) DO UPDATE SET ' +
        'version = excluded.version, params = excluded.params, state = excluded.state, ' +
        'journal_seq = excluded.journal_seq, created_at = excluded.created_at, seg = excluded.seg, ' +
        'seg_kind = excluded.seg_kind, params_offset = excluded.params_offset, ' +
        'params_length = excluded.params_length, params_check = excluded.params_check, ' +
        'state_offset = excluded.state_offset, state_length = excluded.state_length, ' +
        'state_check = excluded.state_check',
    ),
    insertCheckpoint: db.prepare(
      'INSERT INTO checkpoints (task_id, version, params, state, journal_seq, created_at) ' +
        'VALUES (?, ?, ?, ?, ?, ?)',
    ),
    pruneCheckpoints: db.prepare(
      'DELETE FROM checkpoints WHERE task_id = ? AND version NOT IN ' +
        '(SELECT version FROM checkpoints WHERE task_id = ? ORDER BY version DESC LIMIT ?)',
    ),
    putDevice: db.prepare(
      'INSERT INTO devices (device_id, token_hash, created_at, revoked_at) VALUES (?, ?, ?, ?) ' +
        'ON CONFLICT (device_id) DO UPDATE SET token_hash = excluded.token_hash, ' +
        'created_at = excluded.created_at, revoked_at = excluded.revoked_at',
    ),
    deviceByToken: db.prepare<[string], DeviceRow>('SELECT * FROM devices WHERE token_hash = ?'),
    revokeDevice: db.prepare('UPDATE devices SET revoked_at = COALESCE(revoked_at, ?) WHERE device_id = ?'),
    getFence: db.prepare<[string], { token: number }>('SELECT token FROM fences WHERE task_id = ?'),
    raiseFence: db.prepare(
      'INSERT INTO fences (task_id, token) VALUES (?, ?) ' +
        'ON CONFLICT (task_id) DO UPDATE SET token = max(token, excluded.token)',
    ),
    appendMetric: db.prepare('INSERT INTO metrics (task_id, version, at, vals) VALUES (?, ?, ?, ?)'),
    addRejection: db.prepare(
      'INSERT INTO rejections (task_id, reason, count) VALUES (?, ?, ?) ' +
        'ON CONFLICT (task_id, reason) DO UPDATE SET count = count + excluded.count',
    ),
    rejections: db.prepare<[string], { reason: string; count: number }>(
      'SELECT reason, count FROM rejections WHERE task_id = ? ORDER BY reason',
    ),
    putRoundState: db.prepare(
      'INSERT INTO round_state (task_id, state, updated_at) VALUES (?, ?, ?) ' +
        'ON CONFLICT (task_id) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at',
    ),
    roundState: db.prepare<[string], { task_id: string; state: string; updated_at: number }>(
      'SELECT task_id, state, updated_at FROM round_state WHERE task_id = ?',
    ),
    metrics: db.prepare<[string, number], MetricRow>(
      'SELECT task_id, version, at, vals FROM (SELECT * FROM metrics WHERE task_id = ? ' +
        'ORDER BY id DESC LIMIT ?) ORDER BY id',
    ),
  };
}

export class SqliteStorage implements Storage {
  readonly path: string;
  private readonly keepCheckpoints: number;
  private readonly busyTimeoutMs: number;
  private readonly segmentBytes: number | undefined;
  private readonly directIo: boolean;
  private db: Database.Database | null = null;
  private st: Statements | null = null;
  private appendTx: ((batch: readonly QueuedAppend[]) => Array<AppendResult | StorageError>) | null = null;
  private fenceTx: ((taskId: string, token: number) => void) | null = null;
  /** Appends waiting for the next group commit (one transaction, one fsync for all of them). */
  private queued: QueuedAppend[] = [];
  private flushScheduled = false;
  private checkpointTx: ((cp: Checkpoint) => void) | null = null;
  private foldedTx:
    | ((
        commit: FoldedCommit,
        responses: readonly string[],
        refs: FoldedRefs | null,
        retired: readonly string[],
      ) => FoldedOutcome)
    | null = null;
  private roundStateTx: ((r: RoundStateRecord, state: string) => void) | null = null;
  /** The WAL file, synced after commits; null for ':memory:' (nothing to make durable). */
  private walFd: number | null = null;
  /** Commits made / covered by a finished WAL sync (a sync covers every commit before it started). */
  private commits = 0;
  private syncedCommits = 0;
  private syncing: Promise<void> | null = null;
  private checkpointer: Worker | null = null;
  private bytesSinceCheckpoint = 0;
  /** Payload segments (file databases); null: payloads inline (':memory:'). */
  private segments: SegmentWriter | null = null;
  private readonly ring = new PayloadRing();
  private segmentAppendTx:
    | ((
        batch: readonly QueuedAppend[],
        refs: SegmentRefs,
        retired: readonly string[],
      ) => Array<AppendResult | StorageError>)
    | null = null;
  /** Batches whose payloads are being written: their rows commit in batch order along this chain. */
  private commitTail: Promise<void> = Promise.resolve();
  private pendingBatches = 0;

  constructor(options: SqliteStorageOptions) {
    if (typeof options.path !== 'string' || options.path.length === 0) {
      throw new StorageError('INVALID_INPUT', 'SqliteStorage: path must be a non-empty string');
    }
    const keep = options.keepCheckpoints ?? 3;
    if (!Number.isSafeInteger(keep) || keep < 1) {
      throw new StorageError('INVALID_INPUT', 'SqliteStorage: keepCheckpoints must be an integer ≥ 1');
    }
    this.path = options.path;
    this.keepCheckpoints = keep;
    this.busyTimeoutMs = options.busyTimeoutMs ?? 5000;
    this.segmentBytes = options.segmentBytes;
    this.directIo = options.directIo ?? true;
  }

  /** Whether journal payload segments are written with O_DIRECT now (false: page cache, or no
   *  segments: ':memory:' or not open). */
  get journalDirectIo(): boolean {
    return this.segments?.directIo ?? false;
  }

  async init(): Promise<void> {
    if (this.db) return;
    let db: Database.Database;
    try {
      db = new Database(this.path, { timeout: this.busyTimeoutMs });
    } catch (err) {
      throw new StorageError('BACKEND_UNAVAILABLE', `cannot open ${this.path}: ${(err as Error).message}`);
    }
    try {
      const file = this.path !== ':memory:';
      // Only takes effect on a new, empty file (before WAL mode and the first table).
      if (file) db.pragma('page_size = 16384');
      db.pragma('journal_mode = WAL');
      // File databases: commits are made durable by syncWal() (see the header comment).
      db.pragma(file ? 'synchronous = NORMAL' : 'synchronous = FULL');
      db.pragma('foreign_keys = ON');
      db.exec(SCHEMA);
      const columns = new Set(
        (db.pragma('table_info(journal)') as Array<{ name: string }>).map((c) => c.name),
      );
      for (const column of SEGMENT_COLUMNS)
        if (!columns.has(column.split(' ')[0] as string)) db.exec(`ALTER TABLE journal ADD COLUMN ${column}`);
      const foldedColumns = new Set(
        (db.pragma('table_info(folded_states)') as Array<{ name: string }>).map((c) => c.name),
      );
      for (const column of FOLDED_SEGMENT_COLUMNS)
        if (!foldedColumns.has(column.split(' ')[0] as string))
          db.exec(`ALTER TABLE folded_states ADD COLUMN ${column}`);
      db.exec('CREATE INDEX IF NOT EXISTS journal_seg ON journal (seg) WHERE seg IS NOT NULL');
      // Databases made before keys could expire get the column (their keys have none: kept).
      const keyColumns = new Set(
        (db.pragma('table_info(idempotency)') as Array<{ name: string }>).map((c) => c.name),
      );
      if (!keyColumns.has('expires_at')) db.exec('ALTER TABLE idempotency ADD COLUMN expires_at REAL');
      db.exec(
        'CREATE INDEX IF NOT EXISTS idempotency_expiry ON idempotency (task_id, expires_at) WHERE expires_at IS NOT NULL',
      );
      if (file) {
        this.walFd = openSync(`${this.path}-wal`, 'r');
        const pages =
          BACKSTOP_CHECKPOINT_PAGES * (65536 / (db.pragma('page_size', { simple: true }) as number));
        db.pragma(`wal_autocheckpoint = ${pages}`);
        this.checkpointer = new Worker(CHECKPOINTER, {
          eval: true,
          execArgv: [], // CommonJS source: see SegmentWriter.startWorker
          workerData: {
            driver: createRequire(import.meta.url).resolve('better-sqlite3'),
            path: this.path,
            busyTimeoutMs: this.busyTimeoutMs,
          },
        });
        this.checkpointer.unref();
        // A failed checkpointer only costs speed: the backstop checkpoints on the main connection.
        this.checkpointer.on('error', () => {
          this.checkpointer = null;
          if (this.db === db) db.pragma('wal_autocheckpoint = 1000');
        });
      }
    } catch (err) {
      db.close();
      const msg = (err as Error).message;
      throw new StorageError(/not a database|malformed/i.test(msg) ? 'CORRUPT' : 'BACKEND_UNAVAILABLE', msg);
    }
    const st = prepare(db);
    this.db = db;
    this.st = st;
    if (this.path !== ':memory:') {
      const segments = new SegmentWriter(`${this.path}-payloads`, this.segmentBytes, this.directIo);
      try {
        segments.open();
      } catch (err) {
        db.close();
        this.db = null;
        this.st = null;
        throw new StorageError(
          'BACKEND_UNAVAILABLE',
          `cannot open ${segments.dir}: ${(err as Error).message}`,
        );
      }
      this.segments = segments;
    }

    /** Throws FENCED if `token` is below the task's fence, else raises the fence to it. `known`:
     *  fences this transaction already read or raised (an append batch reads each task's once). */
    const checkFence = (taskId: string, token: number | undefined, known?: Map<string, number>) => {
      if (token === undefined) return;
      const fence = known?.get(taskId) ?? st.getFence.get(taskId)?.token ?? 0;
      known?.set(taskId, Math.max(fence, token));
      if (token < fence) throw fencedError(taskId, token, fence);
      if (token > fence) st.raiseFence.run(taskId, token);
    };
    /**
     * What one append transaction has read so far. Each task's fence and last seq are read once
     * per batch and the seq written back once at its end (`finishBatch`), instead of three
     * statements per entry; the write lock (IMMEDIATE) keeps them valid until the commit, and a
     * rollback discards the batch and its state together.
     */
    interface BatchState {
      readonly fences: Map<string, number>;
      readonly lastSeqs: Map<string, number>;
    }
    const newBatch = (): BatchState => ({ fences: new Map(), lastSeqs: new Map() });
    const finishBatch = (batch: BatchState) => {
      for (const [taskId, seq] of batch.lastSeqs) st.setLastSeq.run(taskId, seq);
    };
    this.fenceTx = db.transaction((taskId: string, token: number) => checkFence(taskId, token)).immediate;
    const appendOne = (
      state: BatchState,
      e: Omit<JournalEntryInput, 'delta'>,
      delta: Uint8Array,
      response: string,
      seg: string | null = null,
      offset: number | null = null,
      check: PayloadCheck | null = null,
    ): AppendResult => {
      checkFence(e.taskId, e.fencingToken, state.fences);
      const last = state.lastSeqs.get(e.taskId) ?? st.seqRow.get(e.taskId)?.last_seq ?? 0;
      const seq = last + 1;
      // The key's row is the dedup check: a key already applied inserts nothing and keeps its seq.
      const inserted = st.insertKeyIfNew.run(
        e.taskId,
        e.idempotencyKey,
        seq,
        response,
        e.keyExpiresAt ?? null,
      );
      if (inserted.changes === 0) {
        const existing = st.lookupKey.get(e.taskId, e.idempotencyKey);
        if (!existing) throw new StorageError('CORRUPT', 'an idempotency key both exists and does not');
        return { kind: 'duplicate', seq: existing.seq, response: decodeJson(existing.response, 'response') };
      }
      state.lastSeqs.set(e.taskId, seq);
      st.insertEntry.run(
        e.taskId,
        seq,
        e.idempotencyKey,
        e.deviceId,
        e.assignmentId,
        e.baseVersion,
        e.numExamples,
        seg === null ? delta : NO_BYTES,
        response,
        e.acceptedAt,
        seg,
        offset,
        seg === null ? null : delta.byteLength,
        check?.kind === 'crc32' ? check.value : null,
        check?.kind === 'sum64' ? check.value : null,
      );
      return { kind: 'appended', seq };
    };
    // In queue order, so seqs follow call order; a key repeated within the batch sees the first.
    // IMMEDIATE: take the write lock at BEGIN, so a second process writing the same file waits
    // (busy_timeout) instead of failing when a read transaction cannot be upgraded.
    this.appendTx = db.transaction((batch: readonly QueuedAppend[]) => {
      const state = newBatch();
      const results = batch.map((q): AppendResult | StorageError => {
        try {
          return appendOne(state, q.entry, q.delta, q.response);
        } catch (err) {
          // A fenced entry fails alone (it wrote nothing: the check comes first); others commit.
          if (err instanceof StorageError && err.code === 'FENCED') return err;
          throw err;
        }
      });
      finishBatch(state);
      return results;
    }).immediate;

    const writerId = this.segments?.writerId ?? '';
    /** Where a segment's payloads go: checks that it still exists (registering it on first use) and
     *  marks the segments the writer finished as inactive. */
    const useSegment = (segment: Segment, retired: readonly string[]) => {
      if (!segment.registered) st.registerSegment.run(segment.name, writerId, Date.now());
      else if (st.segmentExists.get(segment.name) === undefined)
        // Reclaimed as a crashed writer's leftover while this process sat idle: refuse, retryably.
        throw new StorageError(
          'BACKEND_UNAVAILABLE',
          `sqlite: journal segment ${segment.name} was reclaimed; retry`,
        );
      for (const name of retired) st.deactivateSegment.run(name);
    };

    // Segment payloads: the rows of a batch whose bytes are already durable in `refs.placement`.
    this.segmentAppendTx = db.transaction(
      (batch: readonly QueuedAppend[], refs: SegmentRefs, retired: readonly string[]) => {
        const segment = refs.placement.segment;
        useSegment(segment, retired);
        const state = newBatch();
        const results = batch.map((q, i): AppendResult | StorageError => {
          try {
            return appendOne(
              state,
              q.entry,
              q.delta,
              q.response,
              segment.name,
              refs.placement.offsets[i] as number,
              { kind: refs.checks.kind, value: refs.checks.values[i] as number },
            );
          } catch (err) {
            if (err instanceof StorageError && err.code === 'FENCED') return err;
            throw err;
          }
        });
        finishBatch(state);
        return results;
      },
    ).immediate;

    const foldedOne = (
      commit: FoldedCommit,
      responses: readonly string[],
      refs: FoldedRefs | null,
      retired: readonly string[],
    ): FoldedOutcome => {
      checkFence(commit.taskId, commit.fencingToken);
      const head = st.foldedHead.get(commit.taskId);
      const floor = Math.max(st.latestVersion.get(commit.taskId)?.version ?? 0, head?.version ?? 0);
      if (commit.version < floor)
        throw new StorageError(
          'VERSION_NOT_INCREASING',
          `folded state version ${commit.version} is below the stored ${floor} for task ${commit.taskId}`,
        );
      const last = st.seqRow.get(commit.taskId)?.last_seq ?? 0;
      const seqs = commit.entries.map((_, i) => last + 1 + i);
      const duplicate = firstDuplicate(
        commit.entries.map((e) => e.idempotencyKey),
        responses,
        (key) => st.lookupKey.get(commit.taskId, key),
      );
      // Thrown, so that the transaction rolls back (the fence it may have raised included).
      if (duplicate !== null) throw new RolledBack(duplicate);
      for (const [i, e] of commit.entries.entries())
        st.insertKeyIfNew.run(commit.taskId, e.idempotencyKey, seqs[i], responses[i], e.keyExpiresAt ?? null);
      const journalSeq = last + commit.entries.length;
      st.setLastSeq.run(commit.taskId, journalSeq);
      if (refs === null)
        st.putFoldedState.run(
          commit.taskId,
          commit.version,
          float32ToBytes(commit.params),
          bytesToBuffer(commit.state),
          journalSeq,
          commit.createdAt,
          ...NO_SEGMENT,
        );
      else {
        useSegment(refs.placement.segment, retired);
        st.putFoldedState.run(
          commit.taskId,
          commit.version,
          NO_BYTES,
          NO_BYTES,
          journalSeq,
          commit.createdAt,
          refs.placement.segment.name,
          refs.checks.kind,
          refs.placement.offsets[0] as number,
          refs.sizes.params,
          refs.checks.values[0] as number,
          refs.placement.offsets[1] as number,
          refs.sizes.state,
          refs.checks.values[1] as number,
        );
      }
      const dropped = st.truncateJournal.run(commit.taskId, journalSeq).changes;
      const left = head?.seg ?? null;
      return {
        result: { kind: 'committed', seqs },
        // The previous state's segment, or journal rows' ones, may have lost their last reference.
        reclaim: dropped > 0 || (left !== null && left !== refs?.placement.segment.name),
      };
    };
    this.foldedTx = db.transaction(foldedOne).immediate;
    this.roundStateTx = db.transaction((r: RoundStateRecord, state: string) => {
      checkFence(r.taskId, r.fencingToken);
      st.putRoundState.run(r.taskId, state, r.updatedAt);
    }).immediate;
    this.checkpointTx = db.transaction((cp: Checkpoint) => {
      checkFence(cp.taskId, cp.fencingToken);
      const latest = st.latestVersion.get(cp.taskId);
      if (latest && cp.version <= latest.version) {
        throw new StorageError(
          'VERSION_NOT_INCREASING',
          `checkpoint version ${cp.version} is not above the stored ${latest.version} for task ${cp.taskId}`,
        );
      }
      const seqs = st.seqRow.get(cp.taskId);
      checkJournalSeq(cp, seqs?.checkpoint_seq ?? 0, seqs?.last_seq ?? 0);
      st.insertCheckpoint.run(
        cp.taskId,
        cp.version,
        float32ToBytes(cp.params),
        bytesToBuffer(cp.state),
        cp.journalSeq,
        cp.createdAt,
      );
      st.truncateJournal.run(cp.taskId, cp.journalSeq);
      st.setCheckpointSeq.run(cp.taskId, cp.journalSeq);
      st.pruneCheckpoints.run(cp.taskId, cp.taskId, this.keepCheckpoints);
    }).immediate;
    await this.reclaimSegments();
  }

  /**
   * Deletes payload segments no journal row references any more: this process's and other
   * writers' finished (inactive) ones, and those a crashed writer left active that have not changed
   * for STALE_SEGMENT_MS; also files no row registers that old (a writer died before its first
   * commit). The rows go first, in a transaction that re-checks that nothing references them, and
   * the files only after the WAL (with every commit that dropped their journal entries) is synced,
   * so a row that survives a crash never points at a deleted file.
   */
  private async reclaimSegments(): Promise<void> {
    const segments = this.segments;
    const db = this.db;
    const st = this.st;
    if (segments === null || db === null || st === null) return;
    const now = Date.now();
    const ageOf = (name: string): number => {
      try {
        return now - statSync(join(segments.dir, name)).mtimeMs;
      } catch {
        return Number.POSITIVE_INFINITY; // missing: nothing to keep
      }
    };
    const active = segments.active?.name;
    let doomed: string[];
    try {
      doomed = db
        .transaction(() => {
          const out: string[] = [];
          for (const row of st.unreferencedSegments.all()) {
            if (row.name === active) continue;
            const mine = row.writer === segments.writerId;
            if (row.active === 0 || (!mine && ageOf(row.name) > STALE_SEGMENT_MS)) {
              st.deleteSegment.run(row.name);
              out.push(row.name);
            }
          }
          return out;
        })
        .immediate();
      const registered = new Set(st.allSegments.all().map((r) => r.name));
      for (const name of readdirSync(segments.dir))
        if (
          name.endsWith('.seg') &&
          !registered.has(name) &&
          !name.startsWith(segments.writerId) &&
          ageOf(name) > STALE_SEGMENT_MS
        )
          doomed.push(name);
    } catch (err) {
      throw mapSqliteError(err);
    }
    if (doomed.length === 0) return;
    this.commits++;
    await this.durable();
    // On the thread pool: unlinking a 64 MiB file costs the kernel a while. Gone already is fine.
    await Promise.all(doomed.map((name) => unlink(join(segments.dir, name)).catch(() => {})));
  }

  async close(): Promise<void> {
    if (this.db) this.flushQueued();
    await this.commitTail;
    const segments = this.segments;
    if (segments !== null && this.db !== null && this.st !== null) {
      // Finish this writer's segment: it becomes reclaimable once nothing references it.
      const st = this.st;
      const current = segments.active;
      if (current !== null) segments.retire(current);
      const retired = segments.retiredNames.splice(0);
      try {
        this.db
          .transaction(() => {
            for (const name of retired) st.deactivateSegment.run(name);
          })
          .immediate();
        this.commits++;
        await this.reclaimSegments();
      } catch {
        // Best effort: a leftover segment is reclaimed by the next writer.
      }
      await segments.close();
    }
    this.segments = null;
    await this.durable().catch(() => {});
    const checkpointer = this.checkpointer;
    this.checkpointer = null;
    if (checkpointer !== null) {
      // The main connection must close last: it checkpoints the rest and removes the WAL.
      checkpointer.ref();
      const exited = new Promise<void>((resolve) => checkpointer.once('exit', () => resolve()));
      checkpointer.postMessage('close');
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, 2000);
      });
      await Promise.race([exited, timeout]);
      clearTimeout(timer);
      await checkpointer.terminate();
    }
    if (this.walFd !== null) closeSync(this.walFd);
    this.walFd = null;
    const db = this.db;
    this.db = null;
    this.st = null;
    this.appendTx = null;
    this.checkpointTx = null;
    this.foldedTx = null;
    this.roundStateTx = null;
    this.fenceTx = null;
    db?.close();
  }

  private statements(): Statements {
    if (!this.st) throw new StorageError('BACKEND_UNAVAILABLE', 'SqliteStorage is not open (call init())');
    return this.st;
  }

  /**
   * Commits every queued append in one transaction and settles their promises. Runs on the next
   * event-loop turn after the first append of a batch, and before any other operation, so every
   * operation observes the appends called before it.
   */
  private flushQueued(): void {
    this.flushScheduled = false;
    const batch = this.queued;
    if (batch.length === 0) return;
    this.queued = [];
    if (this.segments !== null) {
      this.flushToSegment(batch, this.segments);
      return;
    }
    let results: Array<AppendResult | StorageError>;
    try {
      if (!this.appendTx) throw new StorageError('BACKEND_UNAVAILABLE', 'SqliteStorage is not open');
      results = this.appendTx(batch);
    } catch (err) {
      // The transaction rolled back: none of the batch was written.
      const mapped = mapSqliteError(err);
      for (const q of batch) q.reject(mapped);
      return;
    }
    this.commits++;
    this.nudgeCheckpointer(batch.reduce((n, q) => n + q.delta.length + 1024, 0));
    this.answerWhenDurable(batch, results);
  }

  /** Answers a committed batch, each append with its own result, once the WAL sync that covers it
   *  is done: nobody hears of a commit before. */
  private answerWhenDurable(
    batch: readonly QueuedAppend[],
    results: ReadonlyArray<AppendResult | StorageError>,
  ): void {
    this.durable().then(
      () => {
        for (const [i, q] of batch.entries()) {
          const r = results[i];
          if (r instanceof StorageError) q.reject(r);
          else q.resolve(r as AppendResult);
        }
      },
      (err: unknown) => {
        for (const q of batch) q.reject(err);
      },
    );
  }

  /** WAL bytes committed since the checkpointer last ran: it runs again after CHECKPOINT_EVERY_BYTES. */
  private nudgeCheckpointer(bytes: number): void {
    this.bytesSinceCheckpoint += bytes;
    if (this.checkpointer !== null && this.bytesSinceCheckpoint >= CHECKPOINT_EVERY_BYTES) {
      this.bytesSinceCheckpoint = 0;
      this.checkpointer.postMessage(0);
    }
  }

  /**
   * Segment path of a group commit: the writer thread writes and syncs the payloads, then (in batch
   * order) the rows are committed and the WAL synced, then the appends resolve.
   */
  private flushToSegment(batch: readonly QueuedAppend[], segments: SegmentWriter): void {
    const release = () => {
      for (const q of batch) q.release();
    };
    const rows = this.segmentCommit(
      segments,
      batch.map((q) => q.delta),
      release,
      (refs, retired) => {
        if (!this.segmentAppendTx) throw new StorageError('BACKEND_UNAVAILABLE', 'SqliteStorage is not open');
        const results = this.segmentAppendTx(batch, refs, retired);
        this.nudgeCheckpointer(1024 * batch.length);
        return results;
      },
    );
    // Not holding up the next batch's rows.
    rows.then(
      (results) => this.answerWhenDurable(batch, results),
      (err: unknown) => {
        for (const q of batch) q.reject(err);
      },
    );
  }

  /**
   * A commit whose payloads go to a segment (append batches, folded states): the writer thread
   * writes `payloads` (memory it may read in place; `release` once it is done with them), then, in
   * call order with every other segment commit (seqs follow it), `tx` runs with where they went once
   * they are durable. Resolves with `tx`'s result once its transaction committed, before the WAL
   * sync; rejects when the write or `tx` failed, and then no row points at the bytes. `wrote`: whether
   * the transaction stayed (a rolled-back duplicate registers nothing).
   */
  private segmentCommit<T>(
    segments: SegmentWriter,
    payloads: readonly Uint8Array[],
    release: () => void,
    tx: (refs: SegmentRefs, retired: readonly string[]) => T,
    wrote: (result: T) => boolean = () => true,
  ): Promise<T> {
    let placement: Placement;
    try {
      placement = segments.write(payloads);
      placement.written.then(release, release);
    } catch (err) {
      release();
      return Promise.reject(
        new StorageError('BACKEND_UNAVAILABLE', `sqlite: cannot open a segment: ${(err as Error).message}`),
      );
    }
    this.pendingBatches++;
    const commitRows = async (): Promise<T> => {
      const checks = await placement.written;
      const retired = segments.retiredNames.slice();
      let result: T;
      try {
        result = tx({ placement, checks }, retired);
      } catch (err) {
        // Rolled back: no row points at these bytes. A reclaimed segment is not written again.
        if (err instanceof StorageError && err.code === 'BACKEND_UNAVAILABLE')
          segments.retire(placement.segment);
        throw mapSqliteError(err);
      }
      if (wrote(result)) {
        placement.segment.registered = true;
        segments.retiredNames.splice(0, retired.length);
        this.commits++;
      }
      return result;
    };
    const rows = this.commitTail.then(commitRows);
    const done = () => {
      this.pendingBatches--;
    };
    this.commitTail = rows.then(done, done);
    return rows;
  }

  /** Resolves once every commit made so far is on disk (one fdatasync covers all before it). */
  private async durable(): Promise<void> {
    const target = this.commits;
    while (this.syncedCommits < target) {
      if (this.syncing === null) {
        const sync = this.syncWal();
        this.syncing = sync;
        // Cleared when it settles (syncWal may finish without waiting: no WAL to sync).
        sync.then(
          () => this.syncDone(sync),
          () => this.syncDone(sync),
        );
      }
      await this.syncing;
    }
  }

  private syncDone(sync: Promise<void>): void {
    if (this.syncing === sync) this.syncing = null;
  }

  private async syncWal(): Promise<void> {
    const covers = this.commits;
    try {
      const fd = this.walFd;
      if (fd !== null) {
        // SQLite keeps the WAL file while a connection is open; if it was replaced anyway, sync the new one.
        if (fstatSync(fd).ino !== statSync(`${this.path}-wal`).ino) {
          closeSync(fd);
          this.walFd = openSync(`${this.path}-wal`, 'r');
        }
        const current = this.walFd as number;
        await new Promise<void>((resolve, reject) =>
          fdatasync(current, (err) => (err === null ? resolve() : reject(err))),
        );
      }
      this.syncedCommits = Math.max(this.syncedCommits, covers);
    } catch (err) {
      throw new StorageError(
        'BACKEND_UNAVAILABLE',
        `sqlite: syncing the WAL failed: ${(err as Error).message}`,
      );
    }
  }

  /**
   * Runs a synchronous database call, mapping driver errors to StorageError, and resolves once
   * everything committed so far is durable (a read never reports data a power loss could undo).
   */
  private async run<T>(fn: (st: Statements) => T, writes = false): Promise<T> {
    this.statements();
    this.flushQueued();
    // Payloads still being written: their rows commit first, so this call observes them.
    if (this.pendingBatches > 0) await this.commitTail;
    const st = this.statements();
    let result: T;
    try {
      result = fn(st);
    } catch (err) {
      throw mapSqliteError(err);
    }
    if (writes) this.commits++;
    await this.durable();
    return result;
  }

  async putTask(task: TaskRecord): Promise<void> {
    validateTask(task);
    const spec = encodeJson(task.spec, 'task spec');
    await this.run((st) => st.putTask.run(task.taskId, spec, task.createdAt), true);
  }

  async getTask(taskId: string): Promise<TaskRecord | null> {
    const row = await this.run((st) => st.getTask.get(taskId));
    return row ? taskFromRow(row) : null;
  }

  async listTasks(): Promise<TaskRecord[]> {
    return (await this.run((st) => st.listTasks.all())).map(taskFromRow);
  }

  async saveCheckpoint(checkpoint: Checkpoint): Promise<void> {
    validateCheckpoint(checkpoint);
    await this.run(() => {
      if (!this.checkpointTx) throw new StorageError('BACKEND_UNAVAILABLE', 'SqliteStorage is not open');
      this.checkpointTx(checkpoint);
    }, true);
    // The journal prefix it dropped may have been the last reference to some segments.
    await this.reclaimSegments().catch(() => {});
  }

  async commitFolded(commit: FoldedCommit): Promise<FoldedCommitResult> {
    validateFoldedCommit(commit);
    const responses = commit.entries.map((e) => encodeJson(e.response, 'response'));
    const segments = this.segments;
    const { result, reclaim } =
      segments === null
        ? await this.run(() => this.foldedInTx(commit, responses, null), true)
        : await this.foldedToSegment(commit, responses, segments);
    if (reclaim) await this.reclaimSegments().catch(() => {});
    return result;
  }

  private foldedInTx(
    commit: FoldedCommit,
    responses: readonly string[],
    refs: FoldedRefs | null,
    retired: readonly string[] = [],
  ): FoldedOutcome {
    if (!this.foldedTx) throw new StorageError('BACKEND_UNAVAILABLE', 'SqliteStorage is not open');
    try {
      return this.foldedTx(commit, responses, refs, retired);
    } catch (err) {
      if (err instanceof RolledBack) return { result: err.result, reclaim: false };
      throw err;
    }
  }

  /**
   * Segment path of a folded commit: the state's ~800 kB go to the segment writer thread (copied
   * into its ring now: the caller may change its arrays once this returns) instead of through
   * SQLite's WAL on the event loop; once they are durable the row that points at them is committed,
   * in call order with the append batches (one seq sequence), and the WAL synced.
   */
  private async foldedToSegment(
    commit: FoldedCommit,
    responses: readonly string[],
    segments: SegmentWriter,
  ): Promise<FoldedOutcome> {
    this.statements();
    // Appends called before this commit take their seqs first.
    this.flushQueued();
    const copied = this.ring.copy([commit.params, commit.state]);
    // The caller's arrays are not kept: only sizes are needed from here on.
    const rowCommit: FoldedCommit = { ...commit, params: EMPTY_PARAMS, state: NO_BYTES };
    const sizes = { params: commit.params.byteLength, state: commit.state.byteLength };
    const outcome = await this.segmentCommit(
      segments,
      copied.views,
      copied.release,
      (refs, retired) => this.foldedInTx(rowCommit, responses, { ...refs, sizes }, retired),
      (o) => o.result.kind === 'committed',
    );
    // Nobody hears of the commit before the WAL sync that covers it.
    await this.durable();
    return outcome;
  }

  async foldedState(taskId: string): Promise<Checkpoint | null> {
    // The payloads are read in the same synchronous step as the row: a segment the row points at is
    // deleted only after a later row no longer does (and that row is durable).
    return await this.run((st) => {
      const row = st.foldedState.get(taskId);
      if (row === undefined) return null;
      if (row.seg === null) return checkpointFromRow(row);
      const reader = new SegmentReader(this.segments?.dir ?? `${this.path}-payloads`);
      try {
        const kind = row.seg_kind === 'sum64' ? 'sum64' : 'crc32';
        const what = `folded state of task ${taskId}`;
        const read = (offset: number | null, length: number | null, check: number | null) =>
          Buffer.from(
            reader.read(row.seg as string, offset ?? 0, length ?? 0, { kind, value: check ?? 0 }, what)
              .buffer,
          );
        return checkpointFromRow({
          ...row,
          params: read(row.params_offset, row.params_length, row.params_check),
          state: read(row.state_offset, row.state_length, row.state_check),
        });
      } finally {
        reader.close();
      }
    });
  }

  async latestCheckpoint(taskId: string): Promise<Checkpoint | null> {
    const row = await this.run((st) => st.latestCheckpoint.get(taskId));
    return row ? checkpointFromRow(row) : null;
  }

  /**
   * Group commit: appends called in the same event-loop turn share one transaction and one WAL sync.
   * Each promise resolves only after that transaction is committed and synced; seqs follow call order.
   */
  appendAccepted(entry: JournalEntryInput): Promise<AppendResult> {
    try {
      validateEntry(entry);
      this.statements();
    } catch (err) {
      return Promise.reject(err);
    }
    let response: string;
    try {
      response = encodeJson(entry.response, 'response');
    } catch (err) {
      return Promise.reject(err);
    }
    // A copy (the caller may reuse its array): into the ring the segment writer thread reads from,
    // or for the row; none for a stable delta already in shared memory, which the thread reads in
    // place (the promise settles only after the thread answered, or after it is gone).
    let delta: Uint8Array;
    let release = noop;
    const d = entry.delta;
    if (this.segments !== null && entry.deltaStable === true && d.buffer instanceof SharedArrayBuffer)
      delta = new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
    else if (this.segments !== null) {
      const copied = this.ring.copy([entry.delta]);
      delta = copied.views[0] as Uint8Array;
      release = copied.release;
    } else delta = float32ToBytes(entry.delta);
    return new Promise<AppendResult>((resolve, reject) => {
      const { delta: _caller, deltaStable: _stable, ...fields } = entry;
      this.queued.push({ entry: fields, delta, release, response, resolve, reject });
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        setImmediate(() => this.flushQueued());
      }
    });
  }

  async journalSince(taskId: string, afterSeq: number): Promise<JournalEntry[]> {
    // Payloads are read in the same synchronous step as the rows: this process deletes a segment only
    // after its rows are gone, so none of the rows read here can lose its file meanwhile.
    return await this.run((st) => {
      const rows = st.journalSince.all(taskId, afterSeq);
      if (!rows.some((r) => r.seg !== null)) return rows.map(entryFromRow);
      const reader = new SegmentReader(this.segments?.dir ?? `${this.path}-payloads`);
      try {
        return rows.map((r) => {
          if (r.seg === null) return entryFromRow(r);
          const what = `journal entry ${r.task_id}#${r.seq}`;
          const check =
            r.seg_sum !== null
              ? ({ kind: 'sum64', value: r.seg_sum } as const)
              : r.seg_crc !== null
                ? ({ kind: 'crc32', value: r.seg_crc } as const)
                : null;
          if (r.seg_offset === null || r.seg_length === null || check === null)
            throw new StorageError('CORRUPT', `${what}: incomplete segment reference`);
          let bytes: Uint8Array;
          try {
            bytes = reader.read(r.seg, r.seg_offset, r.seg_length, check, what);
          } catch (err) {
            // Another process's checkpoint may have dropped the row (and then its segment) since the
            // read above: that is a moved-on journal, retryable, not damage.
            if (st.journalEntryExists.get(r.task_id, r.seq) === undefined)
              throw new StorageError(
                'BACKEND_UNAVAILABLE',
                `${what} was checkpointed while being read; retry`,
              );
            throw err;
          }
          return entryFromRow({ ...r, delta: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength) });
        });
      } finally {
        reader.close();
      }
    });
  }

  async lookupIdempotencyKey(
    taskId: string,
    key: string,
  ): Promise<{ seq: number; response: unknown } | null> {
    const row = await this.run((st) => st.lookupKey.get(taskId, key));
    return row ? { seq: row.seq, response: decodeJson(row.response, 'response') } : null;
  }

  async pruneIdempotencyKeys(taskId: string, expiredBefore: number): Promise<number> {
    validatePrune(taskId, expiredBefore);
    return await this.run((st) => st.pruneKeys.run(taskId, expiredBefore).changes, true);
  }

  async fence(taskId: string, token: number): Promise<void> {
    if (typeof taskId !== 'string' || taskId.length === 0) {
      throw new StorageError('INVALID_INPUT', 'taskId must be a non-empty string');
    }
    validateFencingToken(token);
    await this.run(() => {
      if (!this.fenceTx) throw new StorageError('BACKEND_UNAVAILABLE', 'SqliteStorage is not open');
      this.fenceTx(taskId, token);
    }, true);
  }

  async putDevice(device: DeviceRecord): Promise<void> {
    validateDevice(device);
    await this.run(
      (st) => st.putDevice.run(device.deviceId, device.tokenHash, device.createdAt, device.revokedAt),
      true,
    );
  }

  async deviceByTokenHash(tokenHash: string): Promise<DeviceRecord | null> {
    const row = await this.run((st) => st.deviceByToken.get(tokenHash));
    return row ? deviceFromRow(row) : null;
  }

  async revokeDevice(deviceId: string, at: number): Promise<boolean> {
    if (typeof at !== 'number' || !Number.isFinite(at)) {
      throw new StorageError('INVALID_INPUT', 'revokedAt must be a finite number');
    }
    return await this.run((st) => st.revokeDevice.run(at, deviceId).changes > 0, true);
  }

  async putRoundState(record: RoundStateRecord): Promise<void> {
    validateRoundState(record);
    const state = encodeJson(record.state, 'round state');
    await this.run(() => {
      if (!this.roundStateTx) throw new StorageError('BACKEND_UNAVAILABLE', 'SqliteStorage is not open');
      this.roundStateTx(record, state);
    }, true);
  }

  async roundState(taskId: string): Promise<RoundStateRecord | null> {
    const row = await this.run((st) => st.roundState.get(taskId));
    return row
      ? { taskId: row.task_id, state: decodeJson(row.state, 'round state'), updatedAt: row.updated_at }
      : null;
  }

  async addRejections(taskId: string, counts: Readonly<Record<string, number>>): Promise<void> {
    validateRejections(taskId, counts);
    const entries = Object.entries(counts).filter(([, n]) => n > 0);
    if (entries.length === 0) return;
    await this.run((st) => {
      const db = this.db as Database.Database;
      db.transaction(() => {
        for (const [reason, n] of entries) st.addRejection.run(taskId, reason, n);
      }).immediate();
    }, true);
  }

  async rejections(taskId: string): Promise<Record<string, number>> {
    validateRejections(taskId, {});
    const rows = await this.run((st) => st.rejections.all(taskId));
    return Object.fromEntries(rows.map((r) => [r.reason, r.count]));
  }

  async appendMetric(metric: MetricRecord): Promise<void> {
    validateMetric(metric);
    const vals = encodeJson(metric.values, 'metric values');
    await this.run((st) => st.appendMetric.run(metric.taskId, metric.version, metric.at, vals), true);
  }

  async metrics(taskId: string, limit: number): Promise<MetricRecord[]> {
    validateLimit(limit);
    return (await this.run((st) => st.metrics.all(taskId, limit))).map((r) => ({
      taskId: r.task_id,
      version: r.version,
      at: r.at,
      values: decodeJson(r.vals, 'metric values') as Record<string, unknown>,
    }));
  }
}
