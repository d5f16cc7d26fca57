/**
 * Event queue for the simulator: a binary min-heap keyed by (virtual time, insertion sequence).
 * Events are plain records of three numbers (kind, a, b) stored in pooled typed arrays, so millions
 * of events cost no per-event objects or closures. Ties in time pop in insertion order, which makes a
 * run's event order — and therefore its results — a pure function of its seed.
 */
import { invalidArgument } from '../core/errors.ts';

export class EventQueue {
  // Record storage, indexed by record id; ids are recycled through `free`.
  private times: Float64Array;
  private seqs: Float64Array;
  private kinds: Int32Array;
  private as: Int32Array;
  private bs: Int32Array;
  private free: Int32Array;
  private freeCount: number;
  /** Heap of record ids ordered by (time, seq). */
  private heap: Int32Array;
  private count = 0;
  private nextSeq = 0;

  /** Fields of the event returned by the last successful `pop()`. */
  time = 0;
  kind = 0;
  a = 0;
  b = 0;

  constructor(initialCapacity = 1024) {
    const cap = Math.max(1, Math.floor(initialCapacity));
    this.times = new Float64Array(cap);
    this.seqs = new Float64Array(cap);
    this.kinds = new Int32Array(cap);
    this.as = new Int32Array(cap);
    this.bs = new Int32Array(cap);
    this.heap = new Int32Array(cap);
    this.free = new Int32Array(cap);
    for (let i = 0; i < cap; i++) this.free[i] = cap - 1 - i;
    this.freeCount = cap;
  }

  get size(): number {
    return this.count;
  }

  /** Time of the earliest event, or Infinity when empty. */
  peekTime(): number {
    return this.count === 0 ? Number.POSITIVE_INFINITY : (this.times[this.heap[0] as number] as number);
  }

  /** Schedules an event; `kind`, `a` and `b` must be 32-bit integers. */
  push(time: number, kind: number, a: number, b: number): void {
    if (Number.isNaN(time)) throw invalidArgument('event time must not be NaN');
    if (this.freeCount === 0) this.grow();
    const id = this.free[--this.freeCount] as number;
    this.times[id] = time;
    this.seqs[id] = this.nextSeq++;
    this.kinds[id] = kind;
    this.as[id] = a;
    this.bs[id] = b;
    this.siftUp(this.count++, id);
  }

  /** Removes the earliest event into (time, kind, a, b); false when the queue is empty. */
  pop(): boolean {
    if (this.count === 0) return false;
    const heap = this.heap;
    const top = heap[0] as number;
    this.time = this.times[top] as number;
    this.kind = this.kinds[top] as number;
    this.a = this.as[top] as number;
    this.b = this.bs[top] as number;
    this.free[this.freeCount++] = top;
    const last = heap[--this.count] as number;
    if (this.count > 0) this.siftDown(0, last);
    return true;
  }

  clear(): void {
    const cap = this.heap.length;
    for (let i = 0; i < cap; i++) this.free[i] = cap - 1 - i;
    this.freeCount = cap;
    this.count = 0;
  }

  private less(x: number, y: number): boolean {
    const tx = this.times[x] as number;
    const ty = this.times[y] as number;
    return tx < ty || (tx === ty && (this.seqs[x] as number) < (this.seqs[y] as number));
  }

  /** Places record `id` at heap position `pos`, moving ancestors down until the order holds. */
  private siftUp(pos: number, id: number): void {
    const heap = this.heap;
    while (pos > 0) {
      const parent = (pos - 1) >> 1;
      const p = heap[parent] as number;
      if (!this.less(id, p)) break;
      heap[pos] = p;
      pos = parent;
    }
    heap[pos] = id;
  }

  private siftDown(pos: number, id: number): void {
    const heap = this.heap;
    const n = this.count;
    for (;;) {
      let child = 2 * pos + 1;
      if (child >= n) break;
      const right = child + 1;
      if (right < n && this.less(heap[right] as number, heap[child] as number)) child = right;
      const c = heap[child] as number;
      if (!this.less(c, id)) break;
      heap[pos] = c;
      pos = child;
    }
    heap[pos] = id;
  }

  private grow(): void {
    const old = this.heap.length;
    const cap = old * 2;
    const f64 = (src: Float64Array) => {
      const dst = new Float64Array(cap);
      dst.set(src);
      return dst;
    };
    const i32 = (src: Int32Array) => {
      const dst = new Int32Array(cap);
      dst.set(src);
      return dst;
    };
    this.times = f64(this.times);
    this.seqs = f64(this.seqs);
    this.kinds = i32(this.kinds);
    this.as = i32(this.as);
    this.bs = i32(this.bs);
    this.heap = i32(this.heap);
    // Only called when no record is free, so the new free list is exactly the new ids.
    this.free = new Int32Array(cap);
    for (let i = old; i < cap; i++) this.free[this.freeCount++] = cap - 1 - (i - old);
  }
}
