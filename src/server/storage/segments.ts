/**
 * Journal payloads (update deltas) in append-only segment files beside a SQLite database, so that
 * the event loop never copies 400 kB into SQLite: the database keeps a small row per entry (seq,
 * idempotency key, segment, offset, length, CRC-32) and the bytes go to a segment.
 *
 * A writer thread computes each payload's CRC-32, writes it at its offset (positional writes) and
 * fdatasyncs the segment once per batch; only then does the caller commit the rows that point at
 * the bytes (and sync the WAL before anyone is answered). So a committed row always points at
 * durable bytes, and a crash can only leave unreferenced bytes at a segment's end (a torn tail),
 * which nothing reads. A payload that is missing, short or fails its CRC when read back is a
 * StorageError('CORRUPT'), never a silently dropped entry.
 *
 * Payloads are copied once, at call time, into a reused shared buffer the writer thread reads (see
 * PayloadRing), so the caller may reuse its array at once. Each process writes only its own segments
 * (named by a random writer id), so several processes can share one database.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, mkdirSync, openSync, readSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { crc32 } from 'node:zlib';
import { StorageError } from './types.ts';

/** A segment is closed for writing once it holds this much (a few hundred 400 kB updates). */
export const SEGMENT_BYTES = 64 << 20;

/**
 * The writer thread: CRC and positional writes per batch as it arrives; then one fdatasync per
 * segment (and the folder for a new file) covering every batch that arrived meanwhile, and the
 * answers. Batches queue up here while a sync runs, so under load one sync covers many of them.
 */
const WRITER = `
const { parentPort } = require('node:worker_threads');
const { writeSync, fdatasyncSync, fsyncSync, openSync, closeSync } = require('node:fs');
const { crc32 } = require('node:zlib');
let waiting = [];
let scheduled = false;
const syncAll = () => {
  scheduled = false;
  const batch = waiting;
  waiting = [];
  const fds = new Set();
  const dirs = new Set();
  for (const w of batch) {
    if (w.error !== undefined) continue;
    fds.add(w.fd);
    if (w.syncDir !== null) dirs.add(w.syncDir);
  }
  let error;
  try {
    for (const fd of fds) fdatasyncSync(fd);
    for (const dir of dirs) {
      const d = openSync(dir, 'r');
      try { fsyncSync(d); } finally { closeSync(d); }
    }
  } catch (e) {
    error = String((e && e.message) || e);
  }
  for (const w of batch)
    parentPort.postMessage(
      w.error !== undefined || error !== undefined
        ? { id: w.id, error: w.error !== undefined ? w.error : error }
        : { id: w.id, crcs: w.crcs },
    );
};
parentPort.on('message', (m) => {
  if (m === 'close') { parentPort.close(); return; }
  const entry = { id: m.id, fd: m.fd, syncDir: m.syncDir, crcs: [] };
  try {
    for (let i = 0; i < m.payloads.length; i++) {
      const bytes = m.payloads[i];
      const offset = m.offsets[i];
      entry.crcs.push(crc32(bytes));
      let done = 0;
      while (done < bytes.length) done += writeSync(m.fd, bytes, done, bytes.length - done, offset + done);
    }
  } catch (e) {
    entry.error = String((e && e.message) || e);
  }
  waiting.push(entry);
  // After every message already queued has been written: one sync for all of them.
  if (!scheduled) { scheduled = true; setImmediate(syncAll); }
});
`;

export interface Segment {
  readonly name: string;
  readonly fd: number;
  size: number;
  /** Batches posted to the writer and not answered yet (the fd is closed once it is 0 after a roll). */
  pending: number;
  /** True once a committed row registers it (the first batch's transaction inserts the row). */
  registered: boolean;
  /** Stop writing here (full, or a write failed): the next batch opens a new segment. */
  retired: boolean;
  /** The folder must be synced with the first batch (the new file's directory entry). */
  syncDir: boolean;
  closed: boolean;
}

export interface Placement {
  readonly segment: Segment;
  readonly offsets: readonly number[];
  readonly written: Promise<number[]>;
}

/**
 * Payloads on their way to the writer thread: copied at call time into a SharedArrayBuffer that the
 * thread reads in place. A reused ring (warm pages, one memcpy per payload) instead of a fresh
 * allocation per payload; batches are released in the order the writer answers them (FIFO). A
 * batch that does not fit gets a fresh buffer of its own.
 */
export class PayloadRing {
  private bytes: Uint8Array | null = null;
  private head = 0;
  /** Regions handed out and not released yet, oldest first. */
  private readonly live: Array<{ readonly start: number; readonly end: number; released: boolean }> = [];

  constructor(private readonly size = 16 << 20) {}

  /** Copies `payloads` into one region; `release` frees it once the writer is done with it. */
  copy(payloads: readonly Float32Array[]): { readonly views: Uint8Array[]; readonly release: () => void } {
    const total = payloads.reduce((s, p) => s + p.byteLength, 0);
    const start = this.reserve(total);
    const target = start === null ? new Uint8Array(new SharedArrayBuffer(total)) : (this.bytes as Uint8Array);
    let at = start ?? 0;
    const views: Uint8Array[] = [];
    for (const p of payloads) {
      const src = new Uint8Array(p.buffer, p.byteOffset, p.byteLength);
      target.set(src, at);
      views.push(target.subarray(at, at + src.byteLength));
      at += src.byteLength;
    }
    if (start === null) return { views, release: () => {} };
    const region = { start, end: at, released: false };
    this.live.push(region);
    return {
      views,
      release: () => {
        region.released = true;
        while (this.live.length > 0 && (this.live[0] as { released: boolean }).released) this.live.shift();
        if (this.live.length === 0) this.head = 0;
      },
    };
  }

  private reserve(length: number): number | null {
    if (length > this.size / 2) return null;
    this.bytes ??= new Uint8Array(new SharedArrayBuffer(this.size));
    const oldest = this.live[0];
    if (oldest === undefined) {
      this.head = length;
      return 0;
    }
    const tail = oldest.start;
    if (this.head >= tail) {
      // Free: [head, size) and [0, tail).
      if (this.head + length <= this.size) return this.take(length);
      if (length < tail) {
        this.head = 0;
        return this.take(length);
      }
      return null;
    }
    // Wrapped: free is [head, tail).
    return this.head + length < tail ? this.take(length) : null;
  }

  private take(length: number): number {
    const at = this.head;
    this.head += length;
    return at;
  }
}

export class SegmentWriter {
  readonly writerId = randomBytes(8).toString('hex');
  private worker: Worker | null = null;
  private closing = false;
  private current: Segment | null = null;
  private counter = 0;
  private nextId = 0;
  private readonly waiting = new Map<
    number,
    { resolve: (crcs: number[]) => void; reject: (e: unknown) => void }
  >();
  /** Segments this writer stopped writing to, to be marked inactive in the next commit. */
  readonly retiredNames: string[] = [];

  constructor(
    readonly dir: string,
    private readonly segmentBytes = SEGMENT_BYTES,
  ) {}

  /** Creates the folder (durably) and starts the writer thread. */
  open(): void {
    const created = mkdirSync(this.dir, { recursive: true });
    if (created !== undefined) syncDirectory(dirname(this.dir));
    this.startWorker();
  }

  private startWorker(): void {
    // execArgv []: the thread runs CommonJS source, and a host started with e.g.
    // `--input-type=module -e` would otherwise hand it flags that make `require` undefined.
    const worker = new Worker(WRITER, { eval: true, execArgv: [] });
    worker.unref();
    worker.on('message', (m: { id: number; crcs?: number[]; error?: string }) => {
      const w = this.waiting.get(m.id);
      if (w === undefined) return;
      this.waiting.delete(m.id);
      if (m.error !== undefined)
        w.reject(
          new StorageError('BACKEND_UNAVAILABLE', `sqlite: writing a journal segment failed: ${m.error}`),
        );
      else w.resolve(m.crcs as number[]);
      if (this.waiting.size === 0) worker.unref();
    });
    worker.on('error', (error) => this.failAll(worker, error));
    worker.on('exit', () => this.failAll(worker, new Error('the segment writer thread exited')));
    this.worker = worker;
  }

  private failAll(worker: Worker, error: unknown): void {
    // Only the current thread's end fails the writes in flight (an old thread's late 'exit' after
    // a restart must not), and the next write starts a new thread.
    if (this.worker !== worker) return;
    this.worker = null;
    const e = new StorageError('BACKEND_UNAVAILABLE', `sqlite: segment writer: ${(error as Error).message}`);
    for (const w of this.waiting.values()) w.reject(e);
    this.waiting.clear();
  }

  /** Reserves room for `payloads` in one segment (opening a new one if needed) and writes them. */
  write(payloads: readonly Uint8Array[]): Placement {
    const total = payloads.reduce((s, p) => s + p.byteLength, 0);
    let segment = this.current;
    if (
      segment === null ||
      segment.retired ||
      (segment.size > 0 && segment.size + total > this.segmentBytes)
    ) {
      if (segment !== null) this.retire(segment);
      const name = `${this.writerId}-${String(this.counter++).padStart(6, '0')}.seg`;
      const fd = openSync(join(this.dir, name), 'wx');
      segment = {
        name,
        fd,
        size: 0,
        pending: 0,
        registered: false,
        retired: false,
        syncDir: true,
        closed: false,
      };
      this.current = segment;
    }
    const offsets: number[] = [];
    for (const p of payloads) {
      offsets.push(segment.size);
      segment.size += p.byteLength;
    }
    if (this.worker === null && !this.closing) this.startWorker();
    const worker = this.worker;
    const seg = segment;
    if (worker === null)
      return {
        segment,
        offsets,
        written: Promise.reject(
          new StorageError('BACKEND_UNAVAILABLE', 'sqlite: the segment writer is not running'),
        ),
      };
    const id = this.nextId++;
    const syncDir = seg.syncDir ? this.dir : null;
    seg.syncDir = false;
    seg.pending++;
    const written = new Promise<number[]>((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
    }).finally(() => {
      seg.pending--;
      if (seg.retired && seg.pending === 0) closeSegment(seg);
    });
    // A failed write leaves unknown bytes behind: later batches go to a fresh segment.
    written.catch(() => {
      seg.retired = true;
    });
    worker.ref();
    worker.postMessage({ id, fd: seg.fd, payloads, offsets, syncDir });
    return { segment, offsets, written };
  }

  /** Stops writing to `segment` (it is marked inactive by the next commit, then reclaimable). */
  retire(segment: Segment): void {
    if (segment === this.current) this.current = null;
    if (!segment.retired) segment.retired = true;
    if (!this.retiredNames.includes(segment.name)) this.retiredNames.push(segment.name);
    if (segment.pending === 0) closeSegment(segment);
  }

  /** The segment being written, if any. */
  get active(): Segment | null {
    return this.current;
  }

  /** Stops the writer thread (after every write was answered). */
  async close(): Promise<void> {
    const current = this.current;
    if (current !== null) this.retire(current);
    this.closing = true;
    const worker = this.worker;
    this.worker = null;
    if (worker !== null) await worker.terminate();
  }
}

/** Closes a segment's fd once (a second close could hit a reused descriptor number). */
function closeSegment(segment: Segment): void {
  if (segment.closed) return;
  segment.closed = true;
  closeQuietly(segment.fd);
}

function closeQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // already closed
  }
}

export function syncDirectory(path: string): void {
  const fd = openSync(path, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Reads journal payloads back, checking length and CRC-32; keeps files open for one read pass. */
export class SegmentReader {
  private readonly fds = new Map<string, number>();

  constructor(private readonly dir: string) {}

  read(name: string, offset: number, length: number, crc: number, what: string): Uint8Array {
    let fd = this.fds.get(name);
    if (fd === undefined) {
      try {
        fd = openSync(join(this.dir, name), 'r');
      } catch (err) {
        throw new StorageError(
          'CORRUPT',
          `${what}: journal segment ${name} cannot be opened (${(err as Error).message}); its payload is lost`,
        );
      }
      this.fds.set(name, fd);
    }
    const out = new Uint8Array(length);
    let done = 0;
    while (done < length) {
      const n = readSync(fd, out, done, length - done, offset + done);
      if (n === 0)
        throw new StorageError(
          'CORRUPT',
          `${what}: journal segment ${name} ends at ${offset + done}, the payload needs ${offset + length}`,
        );
      done += n;
    }
    const actual = crc32(out);
    if (actual !== crc)
      throw new StorageError(
        'CORRUPT',
        `${what}: CRC-32 mismatch in journal segment ${name} at ${offset} (stored ${crc}, read ${actual})`,
      );
    return out;
  }

  close(): void {
    for (const fd of this.fds.values()) closeQuietly(fd);
    this.fds.clear();
  }
}
