/**
 * ggml tensor encodings we write: F32, F16, Q8_0 and Q4_0. Quantized types work on blocks of 32
 * consecutive values along a row (ggml's ne0), each block storing an f16 scale `d` and the codes.
 *
 * - Q8_0 (34 bytes/block): d = max|x| / 127, q = round(x / d) in [-127, 127], x ≈ q·d.
 * - Q4_0 (18 bytes/block): d = m / -8 where m is the value of largest magnitude (sign kept), so m
 *   maps to code 0 exactly; q = min(15, trunc(x/d + 8.5)), x ≈ (q − 8)·d. Code j sits in the low
 *   nibble of byte j and code j+16 in the high nibble (ggml's layout).
 */

export const QK = 32;

/** ggml_type ids as stored in GGUF tensor infos. */
export const GgmlTypeId = { F32: 0, F16: 1, Q4_0: 2, Q8_0: 8 } as const;
export type TensorType = keyof typeof GgmlTypeId;

const BLOCK_BYTES: Record<TensorType, { values: number; bytes: number }> = {
  F32: { values: 1, bytes: 4 },
  F16: { values: 1, bytes: 2 },
  Q4_0: { values: QK, bytes: 2 + QK / 2 },
  Q8_0: { values: QK, bytes: 2 + QK },
};

/** Bytes of `count` values stored as `type` (count must be a multiple of the block size). */
export function tensorBytes(type: TensorType, count: number): number {
  const b = BLOCK_BYTES[type];
  if (count % b.values !== 0)
    throw new RangeError(`${type} needs a multiple of ${b.values} values, got ${count}`);
  return (count / b.values) * b.bytes;
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** IEEE binary16 bits of `x`, round to nearest even (as the hardware/ggml conversion does). */
export function f32ToF16(x: number): number {
  f32[0] = x;
  const bits = u32[0] as number;
  const sign = (bits >>> 16) & 0x8000;
  const exp = (bits >>> 23) & 0xff;
  let mant = bits & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    let m = mant >>> shift;
    const rest = mant & ((1 << shift) - 1);
    if (rest > half || (rest === half && (m & 1) === 1)) m++;
    return sign | m;
  }
  let h = (e << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && (h & 1) === 1)) h++;
  return sign | h;
}

export function f16ToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const e = (h >>> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return sign * m * 2 ** -24;
  if (e === 0x1f) return m === 0 ? sign * Number.POSITIVE_INFINITY : Number.NaN;
  return sign * (1 + m / 1024) * 2 ** (e - 15);
}

/** Encodes `src` as `type` into `out` (which must hold tensorBytes(type, src.length) bytes). */
export function encodeTensor(type: TensorType, src: Float32Array, out: Uint8Array): void {
  const need = tensorBytes(type, src.length);
  if (out.length < need) throw new RangeError(`output holds ${out.length} bytes, ${type} needs ${need}`);
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
  switch (type) {
    case 'F32':
      for (let i = 0; i < src.length; i++) view.setFloat32(i * 4, src[i] as number, true);
      return;
    case 'F16':
      for (let i = 0; i < src.length; i++) view.setUint16(i * 2, f32ToF16(src[i] as number), true);
      return;
    case 'Q8_0':
      quantizeQ8_0(src, out, view);
      return;
    case 'Q4_0':
      quantizeQ4_0(src, out, view);
      return;
  }
}

function quantizeQ8_0(src: Float32Array, out: Uint8Array, view: DataView): void {
  const blocks = src.length / QK;
  for (let b = 0; b < blocks; b++) {
    const base = b * QK;
    let amax = 0;
    for (let j = 0; j < QK; j++) amax = Math.max(amax, Math.abs(src[base + j] as number));
    const d = amax / 127;
    const id = d !== 0 ? 1 / d : 0;
    const o = b * 34;
    view.setUint16(o, f32ToF16(d), true);
    for (let j = 0; j < QK; j++) {
      // Math.round rounds .5 up; C's roundf rounds half away from zero: match it for negatives.
      const v = (src[base + j] as number) * id;
      const q = v < 0 ? -Math.round(-v) : Math.round(v);
      out[o + 2 + j] = q & 0xff;
    }
  }
}

function quantizeQ4_0(src: Float32Array, out: Uint8Array, view: DataView): void {
  const blocks = src.length / QK;
  for (let b = 0; b < blocks; b++) {
    const base = b * QK;
    let amax = 0;
    let max = 0;
    for (let j = 0; j < QK; j++) {
      const v = src[base + j] as number;
      if (Math.abs(v) > amax) {
        amax = Math.abs(v);
        max = v;
      }
    }
    const d = max / -8;
    const id = d !== 0 ? 1 / d : 0;
    const o = b * 18;
    view.setUint16(o, f32ToF16(d), true);
    for (let j = 0; j < QK / 2; j++) {
      const lo = Math.min(15, Math.trunc((src[base + j] as number) * id + 8.5));
      const hi = Math.min(15, Math.trunc((src[base + j + QK / 2] as number) * id + 8.5));
      out[o + 2 + j] = lo | (hi << 4);
    }
  }
}

/** Decodes `count` values of `type` from `bytes` (the inverse of encodeTensor up to rounding). */
export function decodeTensor(type: TensorType, bytes: Uint8Array, count: number): Float32Array {
  const out = new Float32Array(count);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  switch (type) {
    case 'F32':
      for (let i = 0; i < count; i++) out[i] = view.getFloat32(i * 4, true);
      break;
    case 'F16':
      for (let i = 0; i < count; i++) out[i] = f16ToF32(view.getUint16(i * 2, true));
      break;
    case 'Q8_0':
      for (let b = 0; b < count / QK; b++) {
        const d = f16ToF32(view.getUint16(b * 34, true));
        for (let j = 0; j < QK; j++) out[b * QK + j] = view.getInt8(b * 34 + 2 + j) * d;
      }
      break;
    case 'Q4_0':
      for (let b = 0; b < count / QK; b++) {
        const d = f16ToF32(view.getUint16(b * 18, true));
        for (let j = 0; j < QK / 2; j++) {
          const byte = bytes[b * 18 + 2 + j] as number;
          out[b * QK + j] = ((byte & 0x0f) - 8) * d;
          out[b * QK + j + QK / 2] = ((byte >> 4) - 8) * d;
        }
      }
      break;
  }
  return out;
}
