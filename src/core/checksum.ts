/**
 * A 52-bit checksum for journal payloads that a Wasm SIMD kernel computes at memory speed: a
 * Fletcher-style sum over four interleaved lanes with 64-bit sums, then a multiply-xorshift mix.
 * It replaces CRC-32 on the segment writer's path (zlib's CRC-32 in Node 20 has no SIMD path:
 * 140–180 µs per 400 kB update here; this kernel 37–42 µs in the same run, and it reads data the
 * writer has just copied, still in cache). Like a CRC it detects
 * accidental damage (torn writes, zeroed or stale sectors, flipped bits), not tampering.
 *
 * Definition. The bytes are zero-padded to a multiple of 16 and read as little-endian u32 words
 * w[0..n); word k belongs to lane k mod 4. Per lane j, with 64-bit wrap-around:
 *   A_j = Σ w[k] over the lane's words,   B_j = Σ of A_j after each of its additions.
 * Then, from x = byte length: for v in A_0..A_3, B_0..B_3: x = (x XOR v)·0x9e3779b97f4a7c15 mod 2^64,
 * x ^= x >> 32; the checksum is x >> 12 (52 bits: a safe JavaScript integer, an SQLite INTEGER).
 *
 * Why these sums: A catches any change to a lane's total; B weights each word by its distance from
 * the end, so moved, swapped or zeroed blocks change it. With 64-bit sums of 32-bit words a change of
 * two words cancels in A and B only if their distance is a multiple of 2^33 words (unlike Fletcher
 * mod 2^32, where two flipped top bits an even distance apart cancel). The length, mixed in, tells
 * the zero padding from real zeros.
 *
 * checksum64(ptr, byteLength, state): `byteLength` a multiple of 16; `state` the address of 64 bytes
 * holding the sums (A_0, A_1, A_2, A_3, B_0, ..., B_3 as u64), read and written back, so one payload
 * can be summed in pieces (each a multiple of 16 bytes) that follow each other. Zero the state
 * before a payload's first piece.
 */
import {
  BLOCK,
  br,
  brIf,
  END,
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

const I32_GT_U = [0x4b];
const extendLowU = simd(0xc9);
const extendHighU = simd(0xca);
const i64x2Add = simd(0xce);

/** Bytes per bulk step (four 16-byte vectors); the rest goes 16 bytes a step. */
const BULK_BYTES = 64;

function checksumBody(): number[] {
  const [PTR, LENGTH, STATE] = [0, 1, 2];
  const END_PTR = 3;
  const [V, A01, A23, B01, B23] = [4, 5, 6, 7, 8];
  const code: number[] = [];
  const emit = (...parts: number[][]) => {
    for (const part of parts) code.push(...part);
  };
  const step = (offset: number) => {
    emit(get(PTR), v128LoadAt(offset), set(V));
    emit(get(A01), get(V), extendLowU, i64x2Add, set(A01), get(B01), get(A01), i64x2Add, set(B01));
    emit(get(A23), get(V), extendHighU, i64x2Add, set(A23), get(B23), get(A23), i64x2Add, set(B23));
  };
  emit(get(PTR), get(LENGTH), I32_ADD, set(END_PTR));
  emit(get(STATE), v128LoadAt(0), set(A01), get(STATE), v128LoadAt(16), set(A23));
  emit(get(STATE), v128LoadAt(32), set(B01), get(STATE), v128LoadAt(48), set(B23));
  emit(BLOCK, LOOP);
  // Leave when fewer than 64 bytes remain: end − ptr < 64, tested without wrap as ptr + 64 > end.
  emit(get(PTR), i32c(BULK_BYTES), I32_ADD, get(END_PTR), I32_GT_U, brIf(1));
  for (let k = 0; k < BULK_BYTES / 16; k++) step(16 * k);
  emit(get(PTR), i32c(BULK_BYTES), I32_ADD, set(PTR), br(0), END, END);
  emit(BLOCK, LOOP, get(PTR), get(END_PTR), I32_GE_U, brIf(1));
  step(0);
  emit(get(PTR), i32c(16), I32_ADD, set(PTR), br(0), END, END);
  emit(get(STATE), get(A01), v128StoreAt(0), get(STATE), get(A23), v128StoreAt(16));
  emit(get(STATE), get(B01), v128StoreAt(32), get(STATE), get(B23), v128StoreAt(48));
  emit(END);
  const locals = [2, 1, I32, 5, V128];
  const body = [...locals, ...code];
  return [...uleb(body.length), ...body];
}

/** The kernel's module (imports a shared memory `env.mem`, exports `checksum64`); null without
 *  Wasm SIMD. Its bytes travel to worker threads, which compile their own copy. */
export function checksum64ModuleBytes(): Uint8Array<ArrayBuffer> {
  return sharedMemoryKernel('checksum64', [I32, I32, I32], [], checksumBody(), 65536);
}

const checksumModule = lazyModule(checksum64ModuleBytes);

/** True when the runtime runs the kernel (Wasm SIMD and shared memory available). */
export function checksum64Available(): boolean {
  return checksumModule() !== null;
}

const MASK64 = (1n << 64n) - 1n;
const MIX = 0x9e3779b97f4a7c15n;

/** The checksum from the eight sums (A_0..A_3, B_0..B_3) and the payload's byte length. */
export function finishChecksum64(sums: ArrayLike<bigint>, byteLength: number): number {
  let x = BigInt(byteLength);
  for (let i = 0; i < 8; i++) {
    x = ((x ^ (sums[i] as bigint)) * MIX) & MASK64;
    x ^= x >> 32n;
  }
  return Number(x >> 12n);
}

/** Bytes a payload of `byteLength` occupies for the kernel (zero-padded to a multiple of 16). */
export const paddedForChecksum = (byteLength: number): number => Math.ceil(byteLength / 16) * 16;

/**
 * Checksums byte arrays outside Wasm memory (reading payloads back) by copying them into a private
 * shared memory; the kernel where it runs, else the same definition in plain JavaScript (BigInt,
 * ~100× slower).
 */
export class Checksum64 {
  private memory: WebAssembly.Memory | null = null;
  private kernel: ((ptr: number, length: number, state: number) => void) | null = null;

  /** The checksum of `bytes` (see the module comment). */
  of(bytes: Uint8Array): number {
    const module = checksumModule();
    if (module === null) return checksum64Js(bytes);
    const need = 64 + paddedForChecksum(bytes.length);
    const memory = this.memoryFor(need, module);
    const view = new Uint8Array(memory.buffer, 0, need);
    view.fill(0, 0, 64);
    view.set(bytes, 64);
    view.fill(0, 64 + bytes.length);
    (this.kernel as (ptr: number, length: number, state: number) => void)(64, need - 64, 0);
    return finishChecksum64(new BigUint64Array(memory.buffer, 0, 8), bytes.length);
  }

  private memoryFor(bytes: number, module: WebAssembly.Module): WebAssembly.Memory {
    const pages = Math.ceil(bytes / 65536);
    if (this.memory === null || this.memory.buffer.byteLength < bytes) {
      const size = Math.max(pages, 16);
      this.memory = new WebAssembly.Memory({ initial: size, maximum: size, shared: true });
      this.kernel = new WebAssembly.Instance(module, { env: { mem: this.memory } }).exports.checksum64 as (
        ptr: number,
        length: number,
        state: number,
      ) => void;
    }
    return this.memory;
  }
}

/** The definition in plain JavaScript (no Wasm SIMD). */
function checksum64Js(bytes: Uint8Array): number {
  const padded = new Uint8Array(paddedForChecksum(bytes.length));
  padded.set(bytes);
  const words = new DataView(padded.buffer);
  const sums = new BigUint64Array(8);
  for (let k = 0; k < padded.length / 4; k++) {
    const lane = k % 4;
    sums[lane] = ((sums[lane] as bigint) + BigInt(words.getUint32(4 * k, true))) & MASK64;
    sums[4 + lane] = ((sums[4 + lane] as bigint) + (sums[lane] as bigint)) & MASK64;
  }
  return finishChecksum64(sums, bytes.length);
}
