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
 * aggregation, which would, is refused by task.ts). A block that is never returned (a request
 * failing between body and handler) is simply not reused. The pool stops lending past a cap in
 * bytes (then the caller falls back to an ordinary buffer), which also bounds the arena memory the
 * pool keeps: blocks are reused, never given back to the arena.
 */
import { defaultArena } from '../fl/wasm.ts';

/** Block sizes are rounded up to this, so bodies of one model (headers vary a little) share a size. */
const SIZE_CLASS_BYTES = 64 << 10;

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

  /**
   * @param maxLentBytes block bytes out at once before `lend` answers null; the blocks of a size
   *   class therefore never add up to more than this (never-returned blocks neither).
   */
  constructor(private readonly maxLentBytes = 96 << 20) {}

  /** A block for a body of `length` bytes, or null (empty body, or too many lent). */
  lend(length: number): LentBody | null {
    if (length <= 0) return null;
    const size = Math.ceil(length / SIZE_CLASS_BYTES) * SIZE_CLASS_BYTES;
    if (this.lentBytes + size > this.maxLentBytes) return null;
    const block = this.free.get(size)?.pop() ?? this.allocate(size);
    this.lent++;
    this.lentBytes += size;
    let returned = false;
    const bytes = Buffer.from(block.buffer, block.byteOffset, length);
    return {
      bytes,
      write: (chunk, offset) => {
        const end = offset + chunk.length;
        if (!(Number.isInteger(offset) && offset >= 0 && end <= length))
          throw new RangeError(`chunk of ${chunk.length} bytes at ${offset} runs past the body's ${length}`);
        if (chunk.length > 0) bytes.fill(chunk, offset, end);
      },
      release: () => {
        if (returned) return;
        returned = true;
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
        const floats = defaultArena().alloc(size / 4);
        this.owned.push(floats);
        return new Uint8Array(floats.buffer, floats.byteOffset, size);
      } catch {
        this.arenaUsable = false;
      }
    }
    return new Uint8Array(new SharedArrayBuffer(size));
  }
}
