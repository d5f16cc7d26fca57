/**
 * Reused shared-memory blocks for update bodies, so that the 400 kB of an upload is written once
 * (from the socket's chunks into the block) and then only read: the aggregator's norm pass, the
 * strategy's fold and the storage's segment writer thread all read it in place.
 *
 * - The blocks live in the strategies' wasm arena (src/fl/wasm.ts), so FedBuff's fold runs the
 *   SIMD kernel on the delta directly instead of first copying it into a staging block.
 * - Their memory is a SharedArrayBuffer, so the SQLite storage hands the delta to its writer thread
 *   without copying it into its own ring (see `JournalEntryInput.deltaStable`).
 * - A fresh 400 kB allocation per request (and its page faults and external-memory GC pressure)
 *   becomes a reused block whose pages stay warm.
 *
 * A block is lent for one request and returned when the request's handling is over (the update
 * route's handler, after `Aggregator.submit` settled: by then the fold read the delta and the
 * journal append settled, and no served strategy keeps a delta past its fold — secure
 * aggregation, which would, is refused by task.ts). A coordinator with folded commits stores no
 * delta, so it returns the block right after the fold (`FoldInput.releaseDelta`): blocks are reused
 * last in, first out, so a few stay hot in cache instead of ~64 cold ones each waiting for a commit
 * (copying the socket's chunks into a cold block cost ~2.5 times as much). A block that is never returned (a request
 * failing between body and handler) is simply not reused. The pool stops lending past a cap in
 * bytes (then the caller falls back to an ordinary buffer), which also bounds the arena memory the
 * pool keeps: blocks are reused, never given back to the arena.
 */
import { type ResumableSumsqFn, resumableSumsqFor } from '../core/sumsq.ts';
import { defaultArena } from '../fl/wasm.ts';
import { frameFloatStart } from './protocol.ts';

/** Block sizes are rounded up to this, so bodies of one model (headers vary a little) share a size. */
const SIZE_CLASS_BYTES = 64 << 10;
/** Each block starts with the running sums of the resumable norm kernel (eight f64x2), then the body. */
const SUMS_BYTES = 128;
/** The kernel's bulk step: pieces summed before the body is whole are multiples of this. */
const STEP_BYTES = 64;

/**
 * Σx² of an update frame's floats, taken chunk by chunk as the body arrives (each chunk is summed
 * right after it is copied into the block, while it is still in cache; a pass over the whole body
 * afterwards reads it back from memory, ~60 µs per 400 kB under load against ~20 in pieces). The
 * frame's float region is found from its first 12 bytes the way `decodeFrame` finds it; whether the
 * frame is valid is still `decodeFrame`'s call, and `presummedSquares` answers only for the exact
 * float view it returns. The result is bit for bit that of one kernel call over the floats
 * (src/core/sumsq.ts).
 */
class RunningSquares {
  /** Body offset of the first float; -1 until the first 12 bytes are in. */
  private floatStart = -1;
  /** Body bytes summed so far (from floatStart on). */
  private summedTo = 0;
  /** Body bytes received in order; a chunk out of order turns summing off. */
  private received = 0;
  private usable = true;

  constructor(
    private readonly kernel: ResumableSumsqFn,
    private readonly bytes: Buffer,
    /** Address of the running sums in the kernel's memory. */
    private readonly sumsAt: number,
  ) {}

  /** The body's bytes [offset, offset + length) were just written. */
  advance(offset: number, length: number): void {
    if (!this.usable) return;
    if (offset !== this.received) {
      this.usable = false;
      return;
    }
    this.received += length;
    const body = this.bytes;
    if (this.floatStart < 0) {
      if (this.received < 12) return;
      const start = frameFloatStart(body.readUInt32LE(8));
      if (start > body.length || (body.length - start) % 4 !== 0) {
        this.usable = false;
        return;
      }
      this.floatStart = start;
      this.summedTo = start;
      new Uint8Array(body.buffer, this.sumsAt, SUMS_BYTES).fill(0);
    }
    const steps = Math.floor(Math.max(0, this.received - this.summedTo) / STEP_BYTES);
    if (steps === 0) return;
    this.kernel(body.byteOffset + this.summedTo, (steps * STEP_BYTES) / 4, this.sumsAt, 0);
    this.summedTo += steps * STEP_BYTES;
  }

  /** Σx² of `floats` if they are exactly this whole body's float region, else null. */
  finish(floats: Float32Array): number | null {
    const body = this.bytes;
    if (
      !this.usable ||
      this.floatStart < 0 ||
      this.received !== body.length ||
      floats.buffer !== body.buffer ||
      floats.byteOffset !== body.byteOffset + this.floatStart ||
      floats.byteLength !== body.length - this.floatStart
    )
      return null;
    // finish = 1 leaves the running sums as they are: every call returns the same value.
    return this.kernel(body.byteOffset + this.summedTo, (body.length - this.summedTo) / 4, this.sumsAt, 1);
  }
}

/** Running sums of lent bodies, by the body buffer handed out (dropped when the block is returned). */
const runningSquares = new WeakMap<Uint8Array, RunningSquares>();

/**
 * Σx² of `floats` (NaN or Infinity when any is not finite), when they are the float region of a
 * body lent by a BodyPool and read in whole, in order: summed as its chunks arrived. Null otherwise
 * (the caller sums them itself).
 */
export function presummedSquares(body: Uint8Array, floats: Float32Array): number | null {
  return runningSquares.get(body)?.finish(floats) ?? null;
}

export interface LentBody {
  /** Exactly the body's length, backed by shared memory. */
  readonly bytes: Buffer;
  /**
   * Copies `chunk` into `bytes` at byte `offset` (RangeError past the end). Use it instead of
   * `chunk.copy(bytes, offset)`: V8 copies into shared memory with relaxed atomic stores, eight
   * bytes at a time only where source and destination addresses agree mod 8, else byte by byte.
   * A socket chunk's start (after the HTTP headers, or wherever a read ended) and the body offset it
   * goes to rarely agree, so `copy` takes ~270 µs per 400 kB there against ~40 µs aligned. This
   * copies with Node's native memcpy (`Buffer#fill` with a buffer value exactly as long as the
   * range), ~12 µs per 400 kB whatever the alignment. Nothing else touches a lent block while its
   * body is being read, so the copy needs no atomicity.
   */
  write(chunk: Uint8Array, offset: number): void;
  /** Returns the block to the pool; later calls do nothing. Nothing may use `bytes` afterwards. */
  release(): void;
}

export class BodyPool {
  private readonly free = new Map<number, Uint8Array[]>();
  /** Every arena block this pool took, held for good: the arena reclaims a block whose view is
   *  garbage collected, which must never happen to one a request may still be reading. */
  private readonly owned: Float32Array[] = [];
  private lent = 0;
  private lentBytes = 0;
  private arenaUsable = true;
  /** The resumable norm kernel on the arena's memory; null until a block came from the arena (or
   *  where the kernel cannot run): bodies in plain shared buffers are summed after they arrive. */
  private kernel: ResumableSumsqFn | null = null;
  private readonly arenaBlocks = new WeakSet<Uint8Array>();

  /**
   * @param maxLentBytes block bytes out at once before `lend` answers null; the blocks of a size
   *   class therefore never add up to more than this (never-returned blocks neither).
   */
  constructor(private readonly maxLentBytes = 96 << 20) {}

  /** A block for a body of `length` bytes, or null (empty body, or too many lent). */
  lend(length: number): LentBody | null {
    if (length <= 0) return null;
    const size = Math.ceil((length + SUMS_BYTES) / SIZE_CLASS_BYTES) * SIZE_CLASS_BYTES;
    if (this.lentBytes + size > this.maxLentBytes) return null;
    const block = this.free.get(size)?.pop() ?? this.allocate(size);
    this.lent++;
    this.lentBytes += size;
    let returned = false;
    const bytes = Buffer.from(block.buffer, block.byteOffset + SUMS_BYTES, length);
    const kernel = this.kernel;
    const squares =
      kernel === null || !this.arenaBlocks.has(block)
        ? null
        : new RunningSquares(kernel, bytes, block.byteOffset);
    if (squares !== null) runningSquares.set(bytes, squares);
    return {
      bytes,
      write: (chunk, offset) => {
        const end = offset + chunk.length;
        if (!(Number.isInteger(offset) && offset >= 0 && end <= length))
          throw new RangeError(`chunk of ${chunk.length} bytes at ${offset} runs past the body's ${length}`);
        if (chunk.length > 0) bytes.fill(chunk, offset, end);
        squares?.advance(offset, chunk.length);
      },
      release: () => {
        if (returned) return;
        returned = true;
        runningSquares.delete(bytes);
        this.lent--;
        this.lentBytes -= size;
        let list = this.free.get(size);
        if (list === undefined) {
          list = [];
          this.free.set(size, list);
        }
        list.push(block);
      },
    };
  }

  /** Blocks lent and not returned yet. */
  get outstanding(): number {
    return this.lent;
  }

  private allocate(size: number): Uint8Array {
    if (this.arenaUsable) {
      try {
        const arena = defaultArena();
        const floats = arena.alloc(size / 4);
        this.owned.push(floats);
        this.kernel ??= resumableSumsqFor(arena.memory);
        const block = new Uint8Array(floats.buffer, floats.byteOffset, size);
        this.arenaBlocks.add(block);
        return block;
      } catch {
        this.arenaUsable = false;
      }
    }
    return new Uint8Array(new SharedArrayBuffer(size));
  }
}
