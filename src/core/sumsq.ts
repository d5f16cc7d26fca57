/**
 * A hand-assembled WebAssembly SIMD kernel for the sum of squares of float32 values that live in a
 * shared wasm memory (the strategies' update arena, src/fl/wasm.ts, where the server's update
 * bodies are read in place). It is the same reduction as `sumOfSquares` in vec.ts — every float
 * widened to float64 before it is squared (the square of a float32 is exact in float64) and summed
 * in float64 — with sixteen running sums (eight f64x2 vectors) instead of four, so it runs several
 * times faster than the JS loop on large updates.
 *
 * NaN and ±Infinity propagate as in the JS loop: the squares are ≥ 0 (or NaN), so any NaN element
 * makes the result NaN and any ±Infinity (without a NaN) makes it +Infinity; a finite result proves
 * every element finite. Finite float32 squares stay below 1.2e77, so no finite input overflows.
 *
 * sumsq(ptr, count) → f64: ptr is the byte address of the first float (any multiple of 4; the
 * loads need no alignment), count the number of floats. The bulk runs 16 floats (64 bytes) a step:
 * eight 8-byte loads (v128.load64_zero), each widened by f64x2.promote_low_f32x4, squared and added
 * to its own f64x2 running sum; the rest one float at a time.
 */
import {
  BLOCK,
  br,
  brIf,
  END,
  F64,
  localGet as get,
  I32,
  I32_ADD,
  I32_GE_U,
  i32Const as i32c,
  LOOP,
  lazyModule,
  localSet as set,
  sharedMemoryKernel,
  simd,
  uleb,
  V128,
  v128LoadAt,
  v128StoreAt,
} from './wasm.ts';

const I32_AND = [0x71];
const I32_SHL = [0x74];
const load64ZeroAt = (offset: number) => [...simd(0x5d), 3, ...uleb(offset)];
const f32Load = [0x2a, 2, 0];
const F64_PROMOTE_F32 = [0xbb];
const F64_MUL = [0xa2];
const F64_ADD = [0xa0];
const v128Zero = [...simd(0x0c), ...new Array<number>(16).fill(0)];
const f64x2PromoteLow = simd(0x5f);
const f64x2Mul = simd(0xf2);
const f64x2Add = simd(0xf0);
const f64x2Lane = (l: number) => [...simd(0x21), l];
const F64_ZERO = [0x44, 0, 0, 0, 0, 0, 0, 0, 0];
const RETURN = [0x0f];

/** Bytes per bulk step: eight loads of two floats, each widened to an f64x2. */
const STEP_BYTES = 64;

/**
 * The kernel's body. `resumable` adds two parameters, `state` (the byte address of 128 bytes holding
 * the eight running sums) and `finish`: the sums start from `state` instead of zero, and with
 * finish = 0 the bulk's sums are stored back there and 0 is returned without the reduction or the
 * tail. So a run of calls over consecutive pieces whose lengths are multiples of 16 floats, then
 * one with finish = 1 over the rest, adds every float into the same running sum in the same order as
 * one call over the whole: the result is bit for bit the same.
 */
function sumsqBody(resumable: boolean): number[] {
  const [PTR, COUNT] = [0, 1];
  const [STATE, FINISH] = [2, 3]; // resumable only
  const first = resumable ? 4 : 2;
  const [END_PTR, BULK_END] = [first, first + 1];
  const acc = (k: number) => first + 2 + k; // eight f64x2 running sums
  const W = first + 10;
  const [SUM, WIDE] = [first + 11, first + 12]; // f64
  const code: number[] = [];
  const emit = (...parts: number[][]) => {
    for (const part of parts) code.push(...part);
  };
  // end = ptr + 4·count; bulkEnd = ptr + 4·(count rounded down to a multiple of 16)
  emit(get(PTR), get(COUNT), i32c(2), I32_SHL, I32_ADD, set(END_PTR));
  emit(get(PTR), get(COUNT), i32c(-16), I32_AND, i32c(2), I32_SHL, I32_ADD, set(BULK_END));
  for (let k = 0; k < 8; k++)
    emit(resumable ? [...get(STATE), ...v128LoadAt(16 * k)] : v128Zero, set(acc(k)));
  emit(BLOCK, LOOP, get(PTR), get(BULK_END), I32_GE_U, brIf(1));
  for (let k = 0; k < 8; k++) {
    emit(get(PTR), load64ZeroAt(8 * k), f64x2PromoteLow, set(W));
    emit(get(acc(k)), get(W), get(W), f64x2Mul, f64x2Add, set(acc(k)));
  }
  emit(get(PTR), i32c(STEP_BYTES), I32_ADD, set(PTR), br(0), END, END);
  if (resumable) {
    // Not finishing: keep the sums for the next call.
    emit(BLOCK, get(FINISH), brIf(0));
    for (let k = 0; k < 8; k++) emit(get(STATE), get(acc(k)), v128StoreAt(16 * k));
    emit(F64_ZERO, RETURN, END);
  }
  // Pairwise: ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7)), then its two lanes.
  for (const [a, b] of [
    [0, 1],
    [2, 3],
    [4, 5],
    [6, 7],
    [0, 2],
    [4, 6],
    [0, 4],
  ] as const)
    emit(get(acc(a)), get(acc(b)), f64x2Add, set(acc(a)));
  emit(get(acc(0)), f64x2Lane(0), get(acc(0)), f64x2Lane(1), F64_ADD, set(SUM));
  // Tail, one float at a time.
  emit(BLOCK, LOOP, get(PTR), get(END_PTR), I32_GE_U, brIf(1));
  emit(get(PTR), f32Load, F64_PROMOTE_F32, set(WIDE));
  emit(get(SUM), get(WIDE), get(WIDE), F64_MUL, F64_ADD, set(SUM));
  emit(get(PTR), i32c(4), I32_ADD, set(PTR), br(0), END, END);
  emit(get(SUM), END);
  const locals = [3, 2, I32, 9, V128, 2, F64];
  const body = [...locals, ...code];
  return [...uleb(body.length), ...body];
}

/** Pages a shared memory given to the kernel may have at most (4 GiB, the whole i32 range). */
const MAX_PAGES = 65536;

const sumsqModule = lazyModule(() =>
  sharedMemoryKernel('sumsq', [I32, I32], [F64], sumsqBody(false), MAX_PAGES),
);
const resumableModule = lazyModule(() =>
  sharedMemoryKernel('sumsq', [I32, I32, I32, I32], [F64], sumsqBody(true), MAX_PAGES),
);

type SumsqFn = (ptr: number, count: number) => number;
/** The resumable kernel (see `sumsqBody`): finish is 0 or 1. */
export type ResumableSumsqFn = (ptr: number, count: number, state: number, finish: number) => number;

/** True when the runtime runs the kernel (Wasm SIMD and shared memory available). */
export function sumsqSimdAvailable(): boolean {
  return sumsqModule() !== null;
}

/** One instance of each kernel per memory; null where it cannot be linked (no SIMD, memory not shared). */
const instances = new WeakMap<WebAssembly.Memory, SumsqFn | null>();
const resumableInstances = new WeakMap<WebAssembly.Memory, ResumableSumsqFn | null>();

function instanceFor<F>(
  cache: WeakMap<WebAssembly.Memory, F | null>,
  module: WebAssembly.Module | null,
  memory: WebAssembly.Memory,
): F | null {
  let kernel = cache.get(memory);
  if (kernel !== undefined) return kernel;
  kernel = null;
  if (module !== null) {
    try {
      kernel = new WebAssembly.Instance(module, { env: { mem: memory } }).exports.sumsq as F;
    } catch {
      kernel = null;
    }
  }
  cache.set(memory, kernel);
  return kernel;
}

const kernelFor = (memory: WebAssembly.Memory) => instanceFor<SumsqFn>(instances, sumsqModule(), memory);

/**
 * The resumable kernel on `memory`, or null where it cannot run: for floats that arrive piece by
 * piece (an upload body read chunk by chunk), summed while each piece is still in cache. The state
 * is 128 bytes of `memory` (16-byte aligned is best), zeroed before the first call; every call but
 * the last covers a multiple of 16 floats, and the pieces are consecutive. The last call (finish = 1)
 * returns exactly what `sumOfSquaresInMemory` returns for all the floats at once.
 */
export function resumableSumsqFor(memory: WebAssembly.Memory): ResumableSumsqFn | null {
  return instanceFor<ResumableSumsqFn>(resumableInstances, resumableModule(), memory);
}

/**
 * Σ x[i]² in float64 (see the module comment; same value as `sumOfSquares(x)` up to the order of
 * the float64 additions) for `x`, a view of `memory`'s shared buffer (any buffer `memory` ever had:
 * a shared memory's views stay valid as it grows). Returns null, leaving the work to the caller,
 * where the kernel is not available for this memory or `x` does not lie within it.
 */
export function sumOfSquaresInMemory(memory: WebAssembly.Memory, x: Float32Array): number | null {
  const kernel = kernelFor(memory);
  if (kernel === null) return null;
  const end = x.byteOffset + x.byteLength;
  // The kernel's end address must not wrap around the i32 range.
  if (end > memory.buffer.byteLength || end >= 2 ** 32) return null;
  return kernel(x.byteOffset, x.length);
}
