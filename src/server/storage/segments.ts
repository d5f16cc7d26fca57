/**
 * Journal payloads (update deltas) in append-only segment files beside a SQLite database, so that
 * the event loop never copies 400 kB into SQLite: the database keeps a small row per entry (seq,
 * idempotency key, segment, offset, length, checksum) and the bytes go to a segment.
 *
 * A writer thread computes each payload's checksum (checksum64, or CRC-32 where the segment is not
 * written with O_DIRECT or Wasm SIMD is missing), writes it at its offset (positional writes) and
 * fdatasyncs the segment once per batch; only then does the caller commit the rows that point at
 * the bytes (and sync the WAL before anyone is answered). So a committed row always points at
 * durable bytes, and a crash can only leave unreferenced bytes at a segment's end (a torn tail),
 * which nothing reads. A payload that is missing, short or fails its checksum when read back is a
 * StorageError('CORRUPT'), never a silently dropped entry.
 *
 * Payloads are copied once, at call time, into a reused shared buffer the writer thread reads (see
 * PayloadRing), so the caller may reuse its array at once. Each process writes only its own segments
 * (named by a random writer id), so several processes can share one database.
 *
 * Segments are written with O_DIRECT where the filesystem allows it: each payload starts at a
 * 4 KiB-aligned offset, and the thread copies a batch into page-aligned staging slots and writes
 * them past the page cache. On the development disk, buffered writes + fdatasync top out at
 * 490–575 MB/s (the kernel's writeback; `dd` with O_DIRECT reaches 1.3 GB/s), and ingest at
 * ~1,100 updates/s of 400 kB already writes ~440 MB/s; the page-cache copy and its writeback also
 * cost CPU (direct: ~0.1 ms less per update over the whole process, README "Production server").
 * The fdatasync per batch stays (device cache, file size). A filesystem that refuses O_DIRECT at
 * open or at write gets buffered writes, with the same layout.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, constants, fsyncSync, mkdirSync, openSync, readSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { crc32 } from 'node:zlib';
import { Checksum64, checksum64ModuleBytes, finishChecksum64 } from '../../core/checksum.ts';
import { StorageError } from './types.ts';

/** A segment is closed for writing once it holds this much (a few hundred 400 kB updates). */
export const SEGMENT_BYTES = 64 << 20;

/** Direct segments place every payload at a multiple of this (the page size; at least the disk's
 *  logical block size on common hardware, which O_DIRECT offsets, lengths and memory must match). */
export const ALIGN = 4096;
/** The writer thread's page-aligned staging slots for direct writes: a batch is copied into slots
 *  and each full slot is written asynchronously (libuv's pool, 4 threads by default; one is left
 *  for the WAL sync), so the thread sums and copies the next batch while the disk takes
 *  the last one. A direct write blocks for the device (a synchronous 3 MB write held this thread
 *  ~5.6 ms under ingest load, and the batches behind it waited ~8 ms to be read). 4 MiB: the
 *  disk's largest request here. */
const SLOT_BYTES = 4 << 20;
const SLOTS = 3;
/** Linux's O_DIRECT; undefined on platforms without it (they write through the page cache). */
const O_DIRECT: number | undefined = (constants as { O_DIRECT?: number }).O_DIRECT;

/**
 * The writer thread: each batch's bytes written at its offsets and their checksums (direct
 * segments: copied through the staging slots, summed there with checksum64, written
 * asynchronously; buffered ones: CRC-32, synchronous positional writes); then
 * one fdatasync per segment (and the folder for a new file) covering every batch written
 * meanwhile, and the answers. Batches written while a sync runs wait for the next one, so under
 * load one sync covers many of them.
 */
const WRITER = `
const { parentPort, workerData } = require('node:worker_threads');
const fs = require('node:fs');
const { crc32 } = require('node:zlib');
// Named for per-thread CPU figures (top -H, scripts/profile-ingest.ts); Linux only, best effort.
try { fs.writeFileSync('/proc/thread-self/comm', 'orchard-segment'); } catch {}
const ALIGN = ${ALIGN};
const SLOT_BYTES = ${SLOT_BYTES};
const SLOTS = ${SLOTS};
const message = (e) => String((e && e.message) || e);
/** Staging slots not being written (created at the first direct batch), in one shared Wasm memory
 *  whose last page holds the checksum kernel's sums. O_DIRECT needs aligned memory: a Wasm memory
 *  starts on a page boundary (a plain buffer need not). */
let free = null;
/** The checksum64 kernel (src/core/checksum.ts) on that memory; null: CRC-32 instead. */
let checksum = null;
// Past the slots and past any test shift of them (workerData.stagingShift).
const SUMS_AT = SLOTS * SLOT_BYTES + 4096;
let sums = null;
const makeSlots = () => {
  const pages = SLOTS * SLOT_BYTES / 65536 + 1;
  const memory = new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
  const all = Buffer.from(memory.buffer);
  sums = new BigUint64Array(memory.buffer, SUMS_AT, 8);
  try {
    const module = new WebAssembly.Module(workerData.checksumModule);
    checksum = new WebAssembly.Instance(module, { env: { mem: memory } }).exports.checksum64;
  } catch {
    checksum = null;
  }
  const shift = workerData.stagingShift;
  free = Array.from({ length: SLOTS }, (_, i) => all.subarray(shift + i * SLOT_BYTES, shift + (i + 1) * SLOT_BYTES));
};
/** Batches not started yet, oldest first; the direct batch being copied into slots. */
const queue = [];
let copying = null;
/** Batches fully written (or failed), waiting for a sync. */
let ready = [];
let syncing = false;

const writeAllSync = (fd, bytes, length, position) => {
  let done = 0;
  while (done < length) done += fs.writeSync(fd, bytes, done, length - done, position + done);
};

const answer = (batch, error) => {
  for (const w of batch)
    parentPort.postMessage(
      w.error !== undefined || error !== undefined
        ? { id: w.id, error: w.error !== undefined ? w.error : error }
        : { id: w.id, kind: w.kind, checks: w.checks, direct: w.direct },
    );
};

const sync = () => {
  if (syncing || ready.length === 0) return;
  syncing = true;
  const batch = ready;
  ready = [];
  const fds = new Set();
  const dirs = new Set();
  for (const w of batch) {
    if (w.error !== undefined) continue;
    fds.add(w.fd);
    if (w.syncDir !== null) dirs.add(w.syncDir);
  }
  Promise.all([...fds].map((fd) => new Promise((resolve, reject) => fs.fdatasync(fd, (e) => (e ? reject(e) : resolve())))))
    .then(() => {
      for (const dir of dirs) {
        const d = fs.openSync(dir, 'r');
        try { fs.fsyncSync(d); } finally { fs.closeSync(d); }
      }
    })
    .then(() => answer(batch, undefined), (e) => answer(batch, message(e)))
    .then(() => {
      syncing = false;
      sync();
    });
};

const settleIfWritten = (entry) => {
  if (entry.submitted && entry.writes === 0) {
    ready.push(entry);
    sync();
  }
};

/** Writes one filled slot at the file position 'at'; on EINVAL (direct I/O refused after all) the
 *  same bytes go through the page cache (fdatasync on the direct fd covers them: it syncs the
 *  file, whichever descriptor wrote). */
const submit = (m, entry, slot, filled, at) => {
  entry.writes++;
  const done = (error) => {
    if (error && error.code === 'EINVAL') {
      try {
        const fd = fs.openSync(m.path, 'r+');
        try { writeAllSync(fd, slot, filled, at); } finally { fs.closeSync(fd); }
        entry.direct = false;
        error = null;
      } catch (e) {
        error = e;
      }
    }
    if (error && entry.error === undefined) entry.error = message(error);
    free.push(slot);
    entry.writes--;
    settleIfWritten(entry);
    pump();
  };
  const step = (written) =>
    fs.write(m.fd, slot, written, filled - written, at + written, (error, n) => {
      if (error) done(error);
      else if (written + n < filled) step(written + n);
      else done(null);
    });
  step(0);
};

/** Starts a batch: a direct one gets its checksums while it is copied (the sums of each payload,
 *  finished by the caller), else CRC-32s here; a buffered segment's bytes are written here and now.
 *  Null once it is settled. */
const begin = (m) => {
  if (m.direct && free === null) makeSlots();
  const kind = m.direct && checksum !== null ? 'sum64' : 'crc32';
  const entry = { id: m.id, fd: m.fd, syncDir: m.syncDir, kind, checks: [], writes: 0, submitted: false };
  try {
    if (kind === 'crc32') for (const bytes of m.payloads) entry.checks.push(crc32(bytes));
    if (!m.direct)
      for (let i = 0; i < m.payloads.length; i++) writeAllSync(m.fd, m.payloads[i], m.payloads[i].length, m.offsets[i]);
  } catch (e) {
    entry.error = message(e);
  }
  if (m.direct && entry.error === undefined) return { m, entry, index: 0, done: 0, at: m.offsets[0] };
  entry.submitted = true;
  settleIfWritten(entry);
  return null;
};

/** Copies queued direct batches into free slots (payloads zero-padded to ALIGN, contiguous in the
 *  file from the batch's first offset) and writes each slot as it fills. */
const pump = () => {
  for (;;) {
    if (copying === null) {
      const m = queue.shift();
      if (m === undefined) return;
      copying = begin(m);
      continue;
    }
    const slot = free.pop();
    if (slot === undefined) return;
    const cur = copying;
    const { m, entry } = cur;
    let filled = 0;
    try {
      while (filled < SLOT_BYTES && cur.index < m.payloads.length) {
        const bytes = m.payloads[cur.index];
        if (cur.done === 0 && cur.at + filled !== m.offsets[cur.index])
          throw new Error('segment offsets are not contiguous');
        const n = Math.min(bytes.length - cur.done, SLOT_BYTES - filled);
        const piece = filled;
        // Buffer#fill: native memcpy, also from shared memory at any alignment.
        if (n > 0) slot.fill(bytes.subarray(cur.done, cur.done + n), filled, filled + n);
        if (entry.kind === 'sum64' && cur.done === 0) sums.fill(0n);
        filled += n;
        cur.done += n;
        const last = cur.done === bytes.length;
        if (last) {
          const padded = Math.ceil(filled / ALIGN) * ALIGN;
          slot.fill(0, filled, padded);
          filled = padded;
        }
        // While the piece is in cache. Pieces before the last end on a slot's end (a multiple of
        // 16 bytes from the payload's start); the last one's rounding up reads its zero padding.
        if (entry.kind === 'sum64') {
          checksum(slot.byteOffset + piece, Math.ceil(n / 16) * 16, SUMS_AT);
          if (last) entry.checks.push(Array.from(sums));
        }
        if (last) {
          cur.index++;
          cur.done = 0;
        }
      }
    } catch (e) {
      entry.error = message(e);
      cur.index = m.payloads.length;
      filled = 0;
    }
    const at = cur.at;
    cur.at += filled;
    if (cur.index === m.payloads.length) {
      entry.submitted = true;
      copying = null;
    }
    if (filled > 0) submit(m, entry, slot, filled, at);
    else {
      free.push(slot);
      settleIfWritten(entry);
    }
  }
};

parentPort.on('message', (m) => {
  if (m === 'close') { parentPort.close(); return; }
  queue.push(m);
  pump();
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
  /** Opened with O_DIRECT: payloads start at multiples of ALIGN. */
  readonly direct: boolean;
}

/** How a batch's payloads are checked when read back: CRC-32 (buffered segments, or no Wasm SIMD)
 *  or checksum64 (src/core/checksum.ts), one value per payload. */
export interface PayloadChecks {
  readonly kind: 'crc32' | 'sum64';
  readonly values: readonly number[];
}

/** One payload's stored check. */
export interface PayloadCheck {
  readonly kind: PayloadChecks['kind'];
  readonly value: number;
}

/** checksum64 for payloads read back, shared by every reader: a tailing coordinator makes a reader
 *  per poll, and each Checksum64 keeps a Wasm memory of its own. Readers run synchronously. */
const readerChecksum = new Checksum64();

export interface Placement {
  readonly segment: Segment;
  readonly offsets: readonly number[];
  /** The payloads' checksums, once their bytes are durable. */
  readonly written: Promise<PayloadChecks>;
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
  copy(payloads: readonly ArrayBufferView[]): { readonly views: Uint8Array[]; readonly release: () => void } {
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
    {
      readonly lengths: readonly number[];
      resolve: (checks: PayloadChecks) => void;
      reject: (e: unknown) => void;
    }
  >();
  /** Segments this writer stopped writing to, to be marked inactive in the next commit. */
  readonly retiredNames: string[] = [];
  /** Open new segments with O_DIRECT (turned off for good once the filesystem refuses it). */
  private direct: boolean;

  constructor(
    readonly dir: string,
    private readonly segmentBytes = SEGMENT_BYTES,
    direct = true,
    /** Tests only: start the staging slots this many bytes past a page boundary, so that direct
     *  writes are refused (EINVAL) and the page-cache fallback runs. */
    private readonly stagingShiftForTests = 0,
  ) {
    this.direct = direct && O_DIRECT !== undefined;
  }

  /** Whether new segments are written with O_DIRECT. */
  get directIo(): boolean {
    return this.direct;
  }

  /** Creates the folder (durably) and starts the writer thread. */
  open(): void {
    const created = mkdirSync(this.dir, { recursive: true });
    if (created !== undefined) syncDirectory(dirname(this.dir));
    this.startWorker();
  }

  private startWorker(): void {
    // execArgv []: the thread runs CommonJS source, and a host started with e.g.
    // `--input-type=module -e` would otherwise hand it flags that make `require` undefined.
    const worker = new Worker(WRITER, {
      eval: true,
      execArgv: [],
      workerData: { checksumModule: checksum64ModuleBytes(), stagingShift: this.stagingShiftForTests },
    });
    worker.unref();
    type Answer =
      | { id: number; error: string }
      | { id: number; kind: 'crc32'; checks: number[]; direct?: boolean }
      | { id: number; kind: 'sum64'; checks: bigint[][]; direct?: boolean };
    worker.on('message', (m: Answer) => {
      const w = this.waiting.get(m.id);
      if ('direct' in m && m.direct === false) this.direct = false;
      if (w === undefined) return;
      this.waiting.delete(m.id);
      if ('error' in m)
        w.reject(
          new StorageError('BACKEND_UNAVAILABLE', `sqlite: writing a journal segment failed: ${m.error}`),
        );
      else if (m.kind === 'crc32') w.resolve({ kind: 'crc32', values: m.checks });
      else
        w.resolve({
          kind: 'sum64',
          values: m.checks.map((sums, i) => finishChecksum64(sums, w.lengths[i] as number)),
        });
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
      const { fd, direct } = this.openSegment(join(this.dir, name));
      segment = {
        name,
        fd,
        size: 0,
        pending: 0,
        registered: false,
        retired: false,
        syncDir: true,
        closed: false,
        direct,
      };
      this.current = segment;
    }
    const offsets: number[] = [];
    for (const p of payloads) {
      offsets.push(segment.size);
      segment.size += segment.direct ? Math.ceil(p.byteLength / ALIGN) * ALIGN : p.byteLength;
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
    const lengths = payloads.map((p) => p.byteLength);
    const written = new Promise<PayloadChecks>((resolve, reject) => {
      this.waiting.set(id, { lengths, resolve, reject });
    }).finally(() => {
      seg.pending--;
      if (seg.retired && seg.pending === 0) closeSegment(seg);
    });
    // A failed write leaves unknown bytes behind: later batches go to a fresh segment.
    written.catch(() => {
      seg.retired = true;
    });
    worker.ref();
    const path = join(this.dir, seg.name);
    worker.postMessage({ id, fd: seg.fd, path, direct: seg.direct, payloads, offsets, syncDir });
    return { segment, offsets, written };
  }

  /** A new segment file, with O_DIRECT unless this writer or the filesystem has turned it off. */
  private openSegment(path: string): { fd: number; direct: boolean } {
    if (this.direct && O_DIRECT !== undefined) {
      try {
        const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | O_DIRECT;
        return { fd: openSync(path, flags, 0o644), direct: true };
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EINVAL') throw err;
        // Linux creates the file before it checks O_DIRECT: reopen what it made.
        this.direct = false;
        return { fd: openSync(path, 'w'), direct: false };
      }
    }
    return { fd: openSync(path, 'wx'), direct: false };
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

/** Reads journal payloads back, checking length and checksum; keeps files open for one read pass. */
export class SegmentReader {
  private readonly fds = new Map<string, number>();

  constructor(private readonly dir: string) {}

  /** A payload's bytes, checked against its stored CRC-32 or checksum64 (`check`). */
  read(name: string, offset: number, length: number, check: PayloadCheck, what: string): Uint8Array {
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
    const actual = check.kind === 'crc32' ? crc32(out) : readerChecksum.of(out);
    if (actual !== check.value)
      throw new StorageError(
        'CORRUPT',
        `${what}: ${check.kind === 'crc32' ? 'CRC-32' : 'checksum'} mismatch in journal segment ${name} at ${offset} (stored ${check.value}, read ${actual})`,
      );
    return out;
  }

  close(): void {
    for (const fd of this.fds.values()) closeQuietly(fd);
    this.fds.clear();
  }
}
