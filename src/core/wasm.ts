/**
 * The few pieces of the WebAssembly binary format that our hand-assembled kernels need (src/nn/simd.ts,
 * src/fl/wasm.ts, src/nn/fused.ts): LEB128 integers, sections, names and value types. Assembling in
 * TypeScript keeps the kernels free of toolchains and downloads.
 */

/** Unsigned LEB128. */
export function uleb(n: number): number[] {
  const out: number[] = [];
  let v = n >>> 0;
  do {
    let byte = v & 0x7f;
    v >>>= 7;
    if (v !== 0) byte |= 0x80;
    out.push(byte);
  } while (v !== 0);
  return out;
}

/** Signed LEB128 (i32.const immediates): 64 must encode as 0xc0 0x00, not 0x40 (which is −64). */
export function sleb(n: number): number[] {
  const out: number[] = [];
  let v = n | 0;
  for (;;) {
    const byte = v & 0x7f;
    v >>= 7;
    if ((v === 0 && (byte & 0x40) === 0) || (v === -1 && (byte & 0x40) !== 0)) {
      out.push(byte);
      return out;
    }
    out.push(byte | 0x80);
  }
}

/** A module section: id, byte length, body. */
export function section(id: number, body: number[]): number[] {
  return [id, ...uleb(body.length), ...body];
}

/** A length-prefixed ASCII name (imports, exports). */
export function name(s: string): number[] {
  return [...uleb(s.length), ...Array.from(s, (c) => c.charCodeAt(0))];
}

/** A SIMD-prefixed opcode (0xfd, then the LEB128 sub-opcode). */
export function simd(op: number): number[] {
  return [0xfd, ...uleb(op)];
}

export const I32 = 0x7f;
export const F32 = 0x7d;
export const V128 = 0x7b;
