/**
 * A hand-assembled WebAssembly SIMD (f32x4) kernel for buffer += w · delta, and the arena that makes it
 * pay off. A JS loop over Float32Array is compute-bound (≈ 1 ns per element); the SIMD loop runs at
 * memory bandwidth. But wasm code only reads its own linear memory, and copying a delta in costs as
 * much as the accumulation itself, so the kernel is only a clear win when the delta and the buffer
 * were allocated in that memory from the start: UpdateArena hands out Float32Array views of it.
 *
 * The memory is shared (SharedArrayBuffer-backed) on purpose: growing a non-shared wasm memory
 * detaches its old ArrayBuffer and would silently empty every view handed out, while a shared one
 * keeps old views valid across growth.
 */
import { invalidArgument } from '../core/errors.ts';

import {
  BLOCK,
  br,
  brIf,
  END,
  F32,
  I32,
  I32_ADD,
  I32_GE_U,
  i32Const,
  LOOP,
  lazyModule,
  localGet,
  localSet,
  sharedMemoryKernel,
  uleb,
  V128,
  v128LoadAt,
  v128StoreAt,
} from '../core/wasm.ts';

const F32X4_SPLAT = [0xfd, 0x13];
const F32X4_ADD = [0xfd, 0xe4, 0x01];
const F32X4_MUL = [0xfd, 0xe6, 0x01];

/** Bytes per loop iteration of the kernel: 4 vectors of 4 floats. */
export const KERNEL_BLOCK_BYTES = 64;

/**
 * axpy(buf, delta, nbytes, w): for nbytes (a multiple of 64) starting at byte addresses buf and delta,
 * buf += w · delta. Params 0..3, locals 4 (v128 splat of w) and 5 (i32 end address).
 */
function axpyBody(): number[] {
  const code: number[] = [
    ...localGet(3),
    ...F32X4_SPLAT,
    ...localSet(4),
    ...localGet(0),
    ...localGet(2),
    ...I32_ADD,
    ...localSet(5),
    ...BLOCK,
    ...LOOP,
    ...localGet(0),
    ...localGet(5),
    ...I32_GE_U,
    ...brIf(1), // out of the block
  ];
  for (const offset of [0, 16, 32, 48]) {
    code.push(
      ...localGet(0),
      ...localGet(0),
      ...v128LoadAt(offset),
      ...localGet(1),
      ...v128LoadAt(offset),
      ...localGet(4),
      ...F32X4_MUL,
      ...F32X4_ADD,
      ...v128StoreAt(offset),
    );
  }
  code.push(
    ...localGet(0),
    ...i32Const(KERNEL_BLOCK_BYTES),
    ...I32_ADD,
    ...localSet(0),
    ...localGet(1),
    ...i32Const(KERNEL_BLOCK_BYTES),
    ...I32_ADD,
    ...localSet(1),
    ...br(0), // to the loop head
    ...END, // loop
    ...END, // block
    ...END, // function
  );
  const locals = [2, 1, V128, 1, I32];
  const body = [...locals, ...code];
  return [...uleb(body.length), ...body];
}

const MAX_PAGES = 32768; // 2 GiB of address space, reserved up front for a shared memory

const simdModule = lazyModule(() =>
  sharedMemoryKernel('axpy', [I32, I32, I32, F32], [], axpyBody(), MAX_PAGES),
);

type AxpyFn = (buf: number, delta: number, nbytes: number, w: number) => void;

export function simdAvailable(): boolean {
  return simdModule() !== null;
}

const PAGE = 65536;
const ALIGN = KERNEL_BLOCK_BYTES;

/**
 * Float32Array views of one wasm memory, for update deltas and server buffers. Blocks are 64-byte
 * aligned; freed blocks are kept per float count (all updates of one model have the same length) and
 * reused. Views stay valid when the memory grows.
 */
export class UpdateArena {
  readonly memory: WebAssembly.Memory;
  private readonly kernel: AxpyFn | null;
  private top = ALIGN; // byte 0 is left unused so that no view starts at address 0
  private readonly freeBlocks = new Map<number, number[]>();
  private readonly buffers = new Set<ArrayBufferLike>();
  private staging: Float32Array | null = null;
  /** Frees blocks whose views were dropped without free(): [byte offset, float count]. */
  private readonly reclaim = new FinalizationRegistry<readonly [number, number]>(([offset, length]) =>
    this.release(offset, length),
  );

  constructor(initialBytes = 1 << 20) {
    const module = simdModule();
    const pages = Math.max(1, Math.ceil(initialBytes / PAGE));
    this.memory = new WebAssembly.Memory({ initial: pages, maximum: MAX_PAGES, shared: true });
    this.track(this.memory.buffer);
    if (module === null) this.kernel = null;
    else {
      const instance = new WebAssembly.Instance(module, { env: { mem: this.memory } });
      this.kernel = instance.exports.axpy as AxpyFn;
    }
  }

  /** True when the SIMD kernel is in use (false: accumulation falls back to JS). */
  get simd(): boolean {
    return this.kernel !== null;
  }

  /** A zeroed Float32Array of `length` floats living in the arena. */
  alloc(length: number): Float32Array {
    if (!(Number.isInteger(length) && length >= 0))
      throw invalidArgument(`arena length must be an integer ≥ 0, got ${length}`);
    const reuse = this.freeBlocks.get(length)?.pop();
    if (reuse !== undefined) {
      const view = new Float32Array(this.memory.buffer, reuse, length);
      view.fill(0);
      this.reclaim.register(view, [reuse, length], view);
      return view;
    }
    const bytes = Math.ceil((length * 4) / ALIGN) * ALIGN || ALIGN;
    const offset = this.top;
    const need = offset + bytes;
    const have = this.memory.buffer.byteLength;
    if (need > have) {
      const grow = Math.max(Math.ceil((need - have) / PAGE), Math.ceil(have / PAGE / 2));
      const maxGrow = MAX_PAGES - have / PAGE;
      if (need - have > maxGrow * PAGE)
        throw invalidArgument(`update arena is full (${have} bytes); cannot allocate ${bytes} more`);
      this.memory.grow(Math.min(grow, maxGrow));
      this.track(this.memory.buffer);
    }
    this.top = need;
    const view = new Float32Array(this.memory.buffer, offset, length);
    this.reclaim.register(view, [offset, length], view);
    return view;
  }

  private track(buffer: ArrayBufferLike): void {
    this.buffers.add(buffer);
    arenaOfBuffer.set(buffer, this);
  }

  /**
   * Returns a view's block for reuse. The caller must not touch `view` (or subarrays of it)
   * afterwards. Blocks of views that are garbage collected without free() are reclaimed too.
   */
  free(view: Float32Array): void {
    // unregister() is true only for a live view alloc() returned: subarrays and double frees fail.
    if (!this.reclaim.unregister(view))
      throw invalidArgument(
        'array is not a live block of this arena (foreign, a subarray, or already freed)',
      );
    this.release(view.byteOffset, view.length);
  }

  private release(offset: number, length: number): void {
    let list = this.freeBlocks.get(length);
    if (list === undefined) {
      list = [];
      this.freeBlocks.set(length, list);
    }
    list.push(offset);
  }

  owns(view: Float32Array): boolean {
    return this.buffers.has(view.buffer);
  }

  /** Bytes of address space in use (high-water mark). */
  get bytesReserved(): number {
    return this.top;
  }

  /**
   * buffer += w · delta with the SIMD kernel; `buffer` must be owned by this arena. A delta from
   * outside is first copied into a staging block (still about twice as fast as the JS loop for large
   * vectors). Returns false when SIMD is unavailable, leaving the work to the caller.
   */
  axpy(buffer: Float32Array, weight: number, delta: Float32Array): boolean {
    const kernel = this.kernel;
    if (kernel === null || !this.owns(buffer)) return false;
    let source = delta;
    if (!this.owns(delta)) {
      if (this.staging === null || this.staging.length < delta.length) {
        if (this.staging !== null) this.free(this.staging);
        this.staging = this.alloc(delta.length);
      }
      source = this.staging;
      source.set(delta);
    }
    const n = buffer.length;
    const bulkBytes = Math.floor((n * 4) / ALIGN) * ALIGN;
    if (bulkBytes > 0) kernel(buffer.byteOffset, source.byteOffset, bulkBytes, weight);
    // f32 products, like the kernel: the tail must round the same way as the bulk.
    const w = Math.fround(weight);
    for (let i = bulkBytes / 4; i < n; i++)
      buffer[i] = Math.fround((buffer[i] as number) + Math.fround(w * (source[i] as number)));
    return true;
  }
}

/** Which arena a SharedArrayBuffer belongs to, so accumulate() can find the kernel for any view. */
const arenaOfBuffer = new WeakMap<ArrayBufferLike, UpdateArena>();

/** The arena that allocated `view`, if any. */
export function arenaOf(view: Float32Array): UpdateArena | undefined {
  return arenaOfBuffer.get(view.buffer);
}

let shared: UpdateArena | undefined;
/** The process-wide arena strategies allocate their buffers in; deltas allocated here hit the fast path. */
export function defaultArena(): UpdateArena {
  shared ??= new UpdateArena();
  return shared;
}
