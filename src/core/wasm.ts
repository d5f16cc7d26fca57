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
export const F64 = 0x7c;

/** Opcodes for locals, constants and structured control flow that every kernel uses. */
export const localGet = (index: number): number[] => [0x20, ...uleb(index)];
export const localSet = (index: number): number[] => [0x21, ...uleb(index)];
export const i32Const = (value: number): number[] => [0x41, ...sleb(value)];
export const BLOCK = [0x02, 0x40];
export const LOOP = [0x03, 0x40];
export const END = [0x0b];
export const brIf = (depth: number): number[] => [0x0d, ...uleb(depth)];
export const br = (depth: number): number[] => [0x0c, ...uleb(depth)];
export const I32_ADD = [0x6a];
export const I32_GE_U = [0x4f];
/** v128.load / v128.store with alignment hint 2^4 at a constant byte offset from the address. */
export const v128LoadAt = (offset: number): number[] => [...simd(0x00), 4, ...uleb(offset)];
export const v128StoreAt = (offset: number): number[] => [...simd(0x0b), 4, ...uleb(offset)];

/**
 * A module that imports one shared memory `env.mem` (1 page up to `maxPages`) and exports one
 * function `exportName` of the given parameter and result types, whose encoded body (locals and
 * code, length-prefixed) is `body`: the shape of the kernels that work on the update arena in place.
 */
export function sharedMemoryKernel(
  exportName: string,
  params: readonly number[],
  results: readonly number[],
  body: readonly number[],
  maxPages: number,
): Uint8Array<ArrayBuffer> {
  return new Uint8Array([
    ...[0x00, 0x61, 0x73, 0x6d], // \0asm
    ...[0x01, 0x00, 0x00, 0x00], // version 1
    ...section(1, [1, 0x60, params.length, ...params, results.length, ...results]),
    // import env.mem: shared memory (limits flag 3), min 1 page, max maxPages
    ...section(2, [1, ...name('env'), ...name('mem'), 0x02, 0x03, 1, ...uleb(maxPages)]),
    ...section(3, [1, 0]),
    ...section(7, [1, ...name(exportName), 0x00, 0]),
    ...section(10, [1, ...body]),
  ]);
}

/**
 * Compiles a module the first time it is asked for; null (remembered) where the runtime rejects it,
 * e.g. without Wasm SIMD or shared memory, so callers fall back to their JS loops.
 */
export function lazyModule(bytes: () => Uint8Array<ArrayBuffer>): () => WebAssembly.Module | null {
  let compiled: WebAssembly.Module | null | undefined;
  return () => {
    if (compiled !== undefined) return compiled;
    try {
      const b = bytes();
      compiled = WebAssembly.validate(b) ? new WebAssembly.Module(b) : null;
    } catch {
      compiled = null;
    }
    return compiled;
  };
}
