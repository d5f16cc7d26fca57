/**
 * GGUF v3 writer (the llama.cpp model file format). Layout, all little-endian:
 *
 *   magic "GGUF" · u32 version (3) · u64 tensor count · u64 metadata count
 *   metadata: (string key, u32 value type, value)*
 *   tensor infos: (string name, u32 n_dims, u64 ne[n_dims] (ne0 = contiguous axis), u32 ggml type,
 *                  u64 offset into the data section)*
 *   padding to `general.alignment` (32 unless set) · tensor data, each tensor aligned
 *
 * A string is u64 byte length + UTF-8 bytes; an array is u32 item type + u64 count + items.
 * Tensor data is produced in chunks by a callback so that a 1B-parameter model never sits in memory
 * as float32; the file is written to a temporary name and renamed, so a reader never sees half a file.
 */
import { closeSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { encodeTensor, GgmlTypeId, QK, type TensorType, tensorBytes } from './quant.ts';

/** GGUF metadata value type ids. */
const ValueType = {
  u8: 0,
  i8: 1,
  u16: 2,
  i16: 3,
  u32: 4,
  i32: 5,
  f32: 6,
  bool: 7,
  string: 8,
  array: 9,
  u64: 10,
  i64: 11,
  f64: 12,
} as const;
export type ScalarKind = Exclude<keyof typeof ValueType, 'array'>;

export type GgufScalar =
  | { readonly kind: Exclude<ScalarKind, 'string' | 'bool' | 'u64' | 'i64'>; readonly value: number }
  | { readonly kind: 'u64' | 'i64'; readonly value: bigint | number }
  | { readonly kind: 'bool'; readonly value: boolean }
  | { readonly kind: 'string'; readonly value: string };
export type GgufValue =
  | GgufScalar
  | {
      readonly kind: 'array';
      readonly item: ScalarKind;
      readonly values: readonly (number | bigint | string | boolean)[];
    };

export const gguf = {
  u32: (value: number): GgufValue => ({ kind: 'u32', value }),
  i32: (value: number): GgufValue => ({ kind: 'i32', value }),
  f32: (value: number): GgufValue => ({ kind: 'f32', value }),
  bool: (value: boolean): GgufValue => ({ kind: 'bool', value }),
  str: (value: string): GgufValue => ({ kind: 'string', value }),
  arr: (item: ScalarKind, values: readonly (number | bigint | string | boolean)[]): GgufValue => ({
    kind: 'array',
    item,
    values,
  }),
};

export interface TensorSpec {
  readonly name: string;
  /** ggml order: ne[0] is the contiguous (row) axis. A weight mapping n_in → n_out is [n_in, n_out]. */
  readonly shape: readonly number[];
  readonly type: TensorType;
  /** Fills `out` with the values starting at flat index `start` (row-major with ne0 fastest). */
  readonly fill: (start: number, out: Float32Array) => void;
}

export interface GgufFile {
  readonly metadata: readonly (readonly [string, GgufValue])[];
  readonly tensors: readonly TensorSpec[];
  /** Data alignment in bytes (default 32; written as general.alignment when different). */
  readonly alignment?: number;
}

/** Growable little-endian byte sink for the header. */
class Bytes {
  private buf = new Uint8Array(1 << 16);
  private view = new DataView(this.buf.buffer);
  length = 0;
  private reserve(n: number): void {
    if (this.length + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.length + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }
  u8(v: number): void {
    this.reserve(1);
    this.view.setUint8(this.length, v);
    this.length += 1;
  }
  i8(v: number): void {
    this.reserve(1);
    this.view.setInt8(this.length, v);
    this.length += 1;
  }
  u16(v: number): void {
    this.reserve(2);
    this.view.setUint16(this.length, v, true);
    this.length += 2;
  }
  i16(v: number): void {
    this.reserve(2);
    this.view.setInt16(this.length, v, true);
    this.length += 2;
  }
  u32(v: number): void {
    this.reserve(4);
    this.view.setUint32(this.length, v, true);
    this.length += 4;
  }
  i32(v: number): void {
    this.reserve(4);
    this.view.setInt32(this.length, v, true);
    this.length += 4;
  }
  f32(v: number): void {
    this.reserve(4);
    this.view.setFloat32(this.length, v, true);
    this.length += 4;
  }
  f64(v: number): void {
    this.reserve(8);
    this.view.setFloat64(this.length, v, true);
    this.length += 8;
  }
  u64(v: bigint | number): void {
    this.reserve(8);
    this.view.setBigUint64(this.length, BigInt(v), true);
    this.length += 8;
  }
  i64(v: bigint | number): void {
    this.reserve(8);
    this.view.setBigInt64(this.length, BigInt(v), true);
    this.length += 8;
  }
  str(s: string): void {
    const b = Buffer.from(s, 'utf8');
    this.u64(b.length);
    this.reserve(b.length);
    this.buf.set(b, this.length);
    this.length += b.length;
  }
  bytes(): Uint8Array {
    return this.buf.subarray(0, this.length);
  }
}

function writeScalar(out: Bytes, kind: ScalarKind, v: number | bigint | string | boolean, key: string): void {
  const num = (): number => {
    if (typeof v !== 'number' || !Number.isFinite(v))
      throw new TypeError(`${key}: ${kind} needs a finite number`);
    return v;
  };
  const int = (lo: number, hi: number): number => {
    const n = num();
    if (!Number.isInteger(n) || n < lo || n > hi) throw new RangeError(`${key}: ${n} is not a valid ${kind}`);
    return n;
  };
  switch (kind) {
    case 'u8':
      out.u8(int(0, 0xff));
      return;
    case 'i8':
      out.i8(int(-0x80, 0x7f));
      return;
    case 'u16':
      out.u16(int(0, 0xffff));
      return;
    case 'i16':
      out.i16(int(-0x8000, 0x7fff));
      return;
    case 'u32':
      out.u32(int(0, 0xffffffff));
      return;
    case 'i32':
      out.i32(int(-0x80000000, 0x7fffffff));
      return;
    case 'f32':
      out.f32(num());
      return;
    case 'f64':
      out.f64(num());
      return;
    case 'bool':
      if (typeof v !== 'boolean') throw new TypeError(`${key}: bool needs a boolean`);
      out.u8(v ? 1 : 0);
      return;
    case 'string':
      if (typeof v !== 'string') throw new TypeError(`${key}: string needs a string`);
      out.str(v);
      return;
    case 'u64':
    case 'i64':
      if (typeof v !== 'bigint' && (typeof v !== 'number' || !Number.isInteger(v))) {
        throw new TypeError(`${key}: ${kind} needs an integer`);
      }
      if (kind === 'u64') out.u64(v);
      else out.i64(v);
      return;
  }
}

function writeValue(out: Bytes, key: string, value: GgufValue): void {
  out.u32(ValueType[value.kind]);
  if (value.kind === 'array') {
    out.u32(ValueType[value.item]);
    out.u64(value.values.length);
    for (const v of value.values) writeScalar(out, value.item, v, key);
  } else {
    writeScalar(out, value.kind, value.value, key);
  }
}

const align = (n: number, a: number): number => Math.ceil(n / a) * a;

/** Elements per fill() call: a multiple of the quantization block, ~4 MB of float32. */
const CHUNK = QK * 32768;

/** Writes `file` to `path` (atomically: temp file + rename). Returns the file size in bytes. */
export function writeGguf(path: string, file: GgufFile): number {
  const alignment = file.alignment ?? 32;
  if (!Number.isInteger(alignment) || alignment <= 0 || alignment % 8 !== 0) {
    throw new RangeError(`alignment must be a positive multiple of 8, got ${alignment}`);
  }
  const keys = new Set<string>();
  const metadata = [...file.metadata];
  if (alignment !== 32) metadata.push(['general.alignment', gguf.u32(alignment)]);
  for (const [k] of metadata) {
    if (keys.has(k)) throw new Error(`duplicate metadata key ${k}`);
    keys.add(k);
  }
  const names = new Set<string>();
  const header = new Bytes();
  header.u32(0x46554747); // "GGUF"
  header.u32(3);
  header.u64(file.tensors.length);
  header.u64(metadata.length);
  for (const [k, v] of metadata) {
    header.str(k);
    writeValue(header, k, v);
  }
  let offset = 0;
  for (const t of file.tensors) {
    if (names.has(t.name)) throw new Error(`duplicate tensor ${t.name}`);
    names.add(t.name);
    if (t.shape.length === 0 || t.shape.length > 4 || t.shape.some((d) => !Number.isInteger(d) || d <= 0)) {
      throw new RangeError(`${t.name}: bad shape [${t.shape.join(', ')}]`);
    }
    if (t.type !== 'F32' && t.type !== 'F16' && (t.shape[0] as number) % QK !== 0) {
      throw new RangeError(`${t.name}: ${t.type} rows must be a multiple of ${QK}, got ${t.shape[0]}`);
    }
    const count = t.shape.reduce((a, b) => a * b, 1);
    const size = tensorBytes(t.type, count);
    header.str(t.name);
    header.u32(t.shape.length);
    for (const d of t.shape) header.u64(d);
    header.u32(GgmlTypeId[t.type]);
    header.u64(offset);
    offset = align(offset + size, alignment);
  }
  const headerBytes = header.bytes();
  const dataStart = align(headerBytes.length, alignment);
  const tmp = `${path}.tmp-${process.pid}-${Date.now()}`;
  const fd = openSync(tmp, 'w');
  let ok = false;
  try {
    writeSync(fd, headerBytes);
    let pos = headerBytes.length;
    const pad = (to: number) => {
      if (to > pos) writeSync(fd, new Uint8Array(to - pos));
      pos = to;
    };
    pad(dataStart);
    const floats = new Float32Array(CHUNK);
    const encoded = new Uint8Array(tensorBytes('F32', CHUNK));
    file.tensors.forEach((t, i) => {
      const count = t.shape.reduce((a, b) => a * b, 1);
      for (let start = 0; start < count; start += CHUNK) {
        const n = Math.min(CHUNK, count - start);
        const chunk = floats.subarray(0, n);
        t.fill(start, chunk);
        const bytes = tensorBytes(t.type, n);
        encodeTensor(t.type, chunk, encoded);
        writeSync(fd, encoded, 0, bytes);
        pos += bytes;
      }
      if (i < file.tensors.length - 1) pad(align(pos, alignment));
    });
    ok = true;
    return pos;
  } finally {
    closeSync(fd);
    if (ok) renameSync(tmp, path);
    else rmSync(tmp, { force: true });
  }
}
