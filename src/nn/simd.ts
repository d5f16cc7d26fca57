/**
 * A WebAssembly SIMD (f32x4) matrix kernel for the large dense layers, where scalar JS tops out near
 * 2 GMAC/s. The module is assembled here from its binary encoding (no toolchain, no download) and
 * compiled synchronously; when the runtime lacks Wasm SIMD, `simdGemm` is null and callers keep
 * their scalar kernels.
 *
 * Exported function gemm_nt(out, a, b, m, n, k) — byte addresses into the module's memory — computes
 * out[i·n + j] = Σ_t a[i·k + t] · b[j·k + t] for m a multiple of 4, n even and k a multiple of 4
 * (callers pad with zeros), in blocks of 4 rows × 2 columns with eight f32x4 running sums.
 */

import {
  I32_ADD as ADD,
  BLOCK,
  br,
  brIf,
  END,
  localGet as get,
  I32,
  i32Const as i32c,
  LOOP,
  name,
  section,
  localSet as set,
  simd,
  uleb,
  V128,
  v128LoadAt,
  v128StoreAt,
} from '../core/wasm.ts';

const MUL = [0x6c];
const GE_S = [0x4e];
const GT_S = [0x4a];
const v128Load = [...simd(0x00), 4, 0]; // align 2^4, offset 0
const f32LoadAt = (offset: number) => [0x2a, 2, ...uleb(offset)];
const f32StoreAt = (offset: number) => [0x38, 2, ...uleb(offset)];
const f32x4Splat = simd(0x13);
const f32x4Add = simd(0xe4);
const f32x4Mul = simd(0xe6);
const lane = (l: number) => [...simd(0x1f), l];
const F32_ADD = [0x92];
const v128Zero = [...simd(0x0c), ...new Array(16).fill(0)];

/**
 * gemm_nt body for blocks of R rows of A × C rows of B: R·C f32x4 running sums, R + C vector loads
 * per 4·R·C multiply-adds. Requires m % R = 0, n % C = 0, k % 4 = 0.
 */
function gemmBody(R: number, C: number): number[] {
  const [OUT, A, B, M, N, K] = [0, 1, 2, 3, 4, 5];
  const [I, J, T, KB, PO] = [6, 7, 8, 9, 10];
  const pa = (r: number) => 11 + r;
  const pb = (c: number) => 11 + R + c;
  const i32Locals = 5 + R + C;
  const v0 = 6 + i32Locals;
  const acc = (r: number, c: number) => v0 + r * C + c;
  const xv = (r: number) => v0 + R * C + r;
  const wv = (c: number) => v0 + R * C + R + c;
  const v128Locals = R * C + R + C;
  const code: number[] = [];
  const emit = (...parts: number[][]) => {
    for (const part of parts) code.push(...part);
  };
  emit(get(K), i32c(4), MUL, set(KB), i32c(0), set(I));
  emit(BLOCK, LOOP, get(I), get(M), GE_S, brIf(1));
  // pa_r = a + (i + r)·kb
  emit(get(A), get(I), get(KB), MUL, ADD, set(pa(0)));
  for (let r = 1; r < R; r++) emit(get(pa(r - 1)), get(KB), ADD, set(pa(r)));
  emit(i32c(0), set(J));
  emit(BLOCK, LOOP, get(J), get(N), GE_S, brIf(1));
  emit(get(B), get(J), get(KB), MUL, ADD, set(pb(0)));
  for (let c = 1; c < C; c++) emit(get(pb(c - 1)), get(KB), ADD, set(pb(c)));
  for (let r = 0; r < R; r++) for (let c = 0; c < C; c++) emit(v128Zero, set(acc(r, c)));
  emit(i32c(0), set(T));
  emit(BLOCK, LOOP, get(T), get(KB), GE_S, brIf(1));
  for (let r = 0; r < R; r++) emit(get(pa(r)), get(T), ADD, v128Load, set(xv(r)));
  for (let c = 0; c < C; c++) emit(get(pb(c)), get(T), ADD, v128Load, set(wv(c)));
  for (let r = 0; r < R; r++)
    for (let c = 0; c < C; c++)
      emit(get(acc(r, c)), get(xv(r)), get(wv(c)), f32x4Mul, f32x4Add, set(acc(r, c)));
  emit(get(T), i32c(16), ADD, set(T), br(0), END, END);
  // po = out + (i·n + j)·4; out[(i + r)·n + j + c] = horizontal sum of acc(r, c)
  emit(get(OUT), get(I), get(N), MUL, get(J), ADD, i32c(4), MUL, ADD, set(PO));
  for (let r = 0; r < R; r++)
    for (let c = 0; c < C; c++) {
      const s = acc(r, c);
      emit(get(PO), get(N), i32c(4 * r), MUL, ADD);
      emit(get(s), lane(0), get(s), lane(1), F32_ADD, get(s), lane(2), F32_ADD, get(s), lane(3), F32_ADD);
      emit(f32StoreAt(4 * c));
    }
  emit(get(J), i32c(C), ADD, set(J), br(0), END, END);
  emit(get(I), i32c(R), ADD, set(I), br(0), END, END, END);
  const body = [2, ...uleb(i32Locals), I32, ...uleb(v128Locals), V128, ...code];
  return [...uleb(body.length), ...body];
}

/** Rows of A per gemm_nt block (callers pad m to a multiple) and rows of B (pad n). */
export const GEMM_ROW_BLOCK = 4;
export const GEMM_COL_BLOCK = 2;

/**
 * gemm_tn_acc body: out[j·k + t] += Σ_e a[e·m + j] · b[e·k + t], JB rows of out × 16 columns per
 * pass (4·JB f32x4 running sums; each loaded vector of b feeds JB multiply-adds), then 4 columns
 * at a time for the rest. Requires m % JB = 0 and k % 4 = 0.
 */
function gemmTnAccBody(JB: number): number[] {
  const [OUT, A, B, N, M, K] = [0, 1, 2, 3, 4, 5];
  const [J, T, E, PA, PB, KB, MB] = [6, 7, 8, 9, 10, 11, 12];
  const po = (r: number) => 13 + r;
  const i32Locals = 7 + JB;
  const v0 = 6 + i32Locals;
  const acc = (r: number, q: number) => v0 + r * 4 + q;
  const gv = (r: number) => v0 + JB * 4 + r;
  const bv = (q: number) => v0 + JB * 5 + q;
  const v128Locals = JB * 5 + 4;
  const code: number[] = [];
  const emit = (...parts: number[][]) => {
    for (const part of parts) code.push(...part);
  };
  emit(get(K), i32c(4), MUL, set(KB), get(M), i32c(4), MUL, set(MB), i32c(0), set(J));
  emit(BLOCK, LOOP, get(J), get(M), GE_S, brIf(1));
  emit(i32c(0), set(T));
  // Main pass: 16 columns (64 bytes) at a time while they fit.
  emit(BLOCK, LOOP, get(T), i32c(64), ADD, get(KB), GT_S, brIf(1));
  // po_r = out + (j + r)·kb + t; load the running sums from out
  emit(get(OUT), get(J), get(KB), MUL, ADD, get(T), ADD, set(po(0)));
  for (let r = 1; r < JB; r++) emit(get(po(r - 1)), get(KB), ADD, set(po(r)));
  for (let r = 0; r < JB; r++)
    for (let q = 0; q < 4; q++) emit(get(po(r)), v128LoadAt(16 * q), set(acc(r, q)));
  emit(get(A), get(J), i32c(4), MUL, ADD, set(PA), get(B), get(T), ADD, set(PB), i32c(0), set(E));
  emit(BLOCK, LOOP, get(E), get(N), GE_S, brIf(1));
  for (let r = 0; r < JB; r++) emit(get(PA), f32LoadAt(4 * r), f32x4Splat, set(gv(r)));
  for (let q = 0; q < 4; q++) emit(get(PB), v128LoadAt(16 * q), set(bv(q)));
  for (let r = 0; r < JB; r++)
    for (let q = 0; q < 4; q++)
      emit(get(acc(r, q)), get(gv(r)), get(bv(q)), f32x4Mul, f32x4Add, set(acc(r, q)));
  emit(get(PA), get(MB), ADD, set(PA), get(PB), get(KB), ADD, set(PB), get(E), i32c(1), ADD, set(E));
  emit(br(0), END, END);
  for (let r = 0; r < JB; r++)
    for (let q = 0; q < 4; q++) emit(get(po(r)), get(acc(r, q)), v128StoreAt(16 * q));
  emit(get(T), i32c(64), ADD, set(T), br(0), END, END);
  // Tail: the remaining k % 16 columns, 4 at a time.
  emit(BLOCK, LOOP, get(T), get(KB), GE_S, brIf(1));
  emit(get(OUT), get(J), get(KB), MUL, ADD, get(T), ADD, set(po(0)));
  for (let r = 1; r < JB; r++) emit(get(po(r - 1)), get(KB), ADD, set(po(r)));
  for (let r = 0; r < JB; r++) emit(get(po(r)), v128LoadAt(0), set(acc(r, 0)));
  emit(get(A), get(J), i32c(4), MUL, ADD, set(PA), get(B), get(T), ADD, set(PB), i32c(0), set(E));
  emit(BLOCK, LOOP, get(E), get(N), GE_S, brIf(1));
  emit(get(PB), v128LoadAt(0), set(bv(0)));
  for (let r = 0; r < JB; r++)
    emit(
      get(acc(r, 0)),
      get(PA),
      f32LoadAt(4 * r),
      f32x4Splat,
      get(bv(0)),
      f32x4Mul,
      f32x4Add,
      set(acc(r, 0)),
    );
  emit(get(PA), get(MB), ADD, set(PA), get(PB), get(KB), ADD, set(PB), get(E), i32c(1), ADD, set(E));
  emit(br(0), END, END);
  for (let r = 0; r < JB; r++) emit(get(po(r)), get(acc(r, 0)), v128StoreAt(0));
  emit(get(T), i32c(16), ADD, set(T), br(0), END, END);
  emit(get(J), i32c(JB), ADD, set(J), br(0), END, END, END);
  const body = [2, ...uleb(i32Locals), I32, ...uleb(v128Locals), V128, ...code];
  return [...uleb(body.length), ...body];
}

/** Rows of out per gemm_tn_acc pass (callers pad m to a multiple). */
export const TN_ROW_BLOCK = 2;

function axpyBody(): number[] {
  // axpy(y, x, alpha, n): y[i] += alpha · x[i] for i < n; n % 4 = 0.
  const [Y, X, ALPHA, N] = [0, 1, 2, 3];
  const [STOP, AV] = [4, 5];
  const code: number[] = [
    ...get(ALPHA),
    ...f32x4Splat,
    ...set(AV),
    ...get(Y),
    ...get(N),
    ...i32c(4),
    ...MUL,
    ...ADD,
    ...set(STOP),
    ...BLOCK,
    ...LOOP,
    ...get(Y),
    ...get(STOP),
    ...GE_S,
    ...brIf(1),
    ...get(Y),
    ...get(Y),
    ...v128LoadAt(0),
    ...get(X),
    ...v128LoadAt(0),
    ...get(AV),
    ...f32x4Mul,
    ...f32x4Add,
    ...v128StoreAt(0),
    ...get(Y),
    ...i32c(16),
    ...ADD,
    ...set(Y),
    ...get(X),
    ...i32c(16),
    ...ADD,
    ...set(X),
    ...br(0),
    ...END,
    ...END,
    ...END,
  ];
  const body = [2, 1, I32, 1, V128, ...code];
  return [...uleb(body.length), ...body];
}

function moduleBytes(): Uint8Array<ArrayBuffer> {
  const F32 = 0x7d;
  const type = section(1, [2, 0x60, 6, I32, I32, I32, I32, I32, I32, 0, 0x60, 4, I32, I32, F32, I32, 0]);
  const func = section(3, [3, 0, 0, 1]);
  const memory = section(5, [1, 0x00, 1]);
  const exports = section(7, [
    4,
    ...name('axpy'),
    0x00,
    2,
    ...name('gemm_nt'),
    0x00,
    0,
    ...name('gemm_tn_acc'),
    0x00,
    1,
    ...name('mem'),
    0x02,
    0,
  ]);
  const code = section(10, [
    3,
    ...gemmBody(GEMM_ROW_BLOCK, GEMM_COL_BLOCK),
    ...gemmTnAccBody(TN_ROW_BLOCK),
    ...axpyBody(),
  ]);
  return new Uint8Array([
    0x00,
    0x61,
    0x73,
    0x6d,
    0x01,
    0x00,
    0x00,
    0x00,
    ...type,
    ...func,
    ...memory,
    ...exports,
    ...code,
  ]);
}

export class SimdGemm {
  private readonly memory: WebAssembly.Memory;
  private readonly fn: (out: number, a: number, b: number, m: number, n: number, k: number) => void;
  private readonly fnTn: (out: number, a: number, b: number, n: number, m: number, k: number) => void;
  private readonly fnAxpy: (y: number, x: number, alpha: number, n: number) => void;
  /** Float32 view of the whole module memory (refreshed after growth). */
  heap: Float32Array;

  constructor(instance: WebAssembly.Instance) {
    this.memory = instance.exports.mem as WebAssembly.Memory;
    this.fn = instance.exports.gemm_nt as SimdGemm['fn'];
    this.fnTn = instance.exports.gemm_tn_acc as SimdGemm['fnTn'];
    this.fnAxpy = instance.exports.axpy as SimdGemm['fnAxpy'];
    this.heap = new Float32Array(this.memory.buffer);
  }

  /** Ensures the memory holds at least `floats` float32 values. */
  reserve(floats: number): void {
    const bytes = floats * 4;
    if (this.memory.buffer.byteLength < bytes) {
      this.memory.grow(Math.ceil((bytes - this.memory.buffer.byteLength) / 65536));
      this.heap = new Float32Array(this.memory.buffer);
    }
  }

  /** heap[out ..] = heap[a ..](m×k) · heap[b ..](n×k)ᵀ; float indices; m % 4 = 0, n % 2 = 0, k % 4 = 0. */
  gemmNT(out: number, a: number, b: number, m: number, n: number, k: number): void {
    this.fn(out * 4, a * 4, b * 4, m, n, k);
  }

  /** heap[out + j·k + t] += Σ_e heap[a + e·m + j] · heap[b + e·k + t] (out += Aᵀ·B, A n×m, B n×k); m even, k % 4 = 0. */
  gemmTNAcc(out: number, a: number, b: number, n: number, m: number, k: number): void {
    this.fnTn(out * 4, a * 4, b * 4, n, m, k);
  }

  /** heap[y + i] += alpha · heap[x + i] for i < n; n % 4 = 0 (alpha is rounded to float32). */
  axpy(y: number, x: number, alpha: number, n: number): void {
    this.fnAxpy(y * 4, x * 4, alpha, n);
  }

  /**
   * y += alpha · x for JS arrays of any length, via the module memory (three memcpys and one SIMD
   * pass beat a scalar loop for long vectors).
   */
  axpyArrays(y: Float32Array, alpha: number, x: Float32Array): void {
    const n = y.length;
    const n4 = (n + 3) & ~3;
    this.reserve(2 * n4);
    const heap = this.heap;
    heap.set(y, 0);
    heap.set(x, n4);
    heap.fill(0, n, n4);
    heap.fill(0, n4 + n, 2 * n4);
    this.axpy(0, n4, alpha, n4);
    y.set(heap.subarray(0, n));
  }
}

let compiled: WebAssembly.Module | null | undefined;

/**
 * A new kernel instance with its own memory, or null without Wasm SIMD. For callers that keep state
 * in kernel memory across calls (fused.ts), where the shared instance would be overwritten by others.
 */
export function createSimdGemm(): SimdGemm | null {
  try {
    compiled ??= new WebAssembly.Module(moduleBytes());
    return new SimdGemm(new WebAssembly.Instance(compiled, {}));
  } catch {
    compiled = null;
    return null; // no Wasm SIMD in this runtime: scalar kernels only
  }
}

function build(): SimdGemm | null {
  return createSimdGemm();
}

/** The shared SIMD kernel, or null when Wasm SIMD is unavailable. */
export const simdGemm: SimdGemm | null = build();

/** For tests: the failure, if any, of assembling the module. */
export function simdBuildError(): string | null {
  try {
    new WebAssembly.Module(moduleBytes());
    return null;
  } catch (e) {
    return String(e);
  }
}
