/**
 * Weighted accumulation of client deltas into a server buffer: buffer += weight · delta. Every
 * strategy funnels updates through here, so it is the server's inner loop for large models.
 *
 * Two paths, chosen by where the buffer lives (see bench/aggregate.bench.ts for the measurements):
 * - buffer in an UpdateArena (strategies allocate theirs there): the wasm SIMD kernel. A delta that
 *   also lives in the arena is read in place (≈ memcpy speed); any other delta is first copied into
 *   arena staging, which still beats the JS loop by about 2× on large vectors.
 * - otherwise a plain unrolled JS loop (≈ 1 ns per element, compute-bound).
 */
import { OrchardError, ShapeError } from '../core/errors.ts';
import { arenaOf, defaultArena } from './wasm.ts';

/** buffer += weight · delta in float32 storage. */
export function accumulate(buffer: Float32Array, weight: number, delta: Float32Array): void {
  if (buffer.length !== delta.length)
    throw new ShapeError(`delta has length ${delta.length}, buffer has ${buffer.length}`);
  const arena = arenaOf(buffer);
  if (arena?.axpy(buffer, weight, delta)) return;
  accumulateJs(buffer, weight, delta);
}

/** The portable loop (also the fallback where wasm SIMD is unavailable). */
export function accumulateJs(buffer: Float32Array, weight: number, delta: Float32Array): void {
  if (buffer.length !== delta.length)
    throw new ShapeError(`delta has length ${delta.length}, buffer has ${buffer.length}`);
  const n = buffer.length;
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    buffer[i] = (buffer[i] as number) + weight * (delta[i] as number);
    buffer[i + 1] = (buffer[i + 1] as number) + weight * (delta[i + 1] as number);
    buffer[i + 2] = (buffer[i + 2] as number) + weight * (delta[i + 2] as number);
    buffer[i + 3] = (buffer[i + 3] as number) + weight * (delta[i + 3] as number);
  }
  for (; i < n; i++) buffer[i] = (buffer[i] as number) + weight * (delta[i] as number);
}

let arenaUsable = true;
/**
 * A zeroed accumulation buffer on the fast path (the default arena), for strategies; an ordinary
 * array when the arena is full or shared wasm memory cannot be created (e.g. a browser page without
 * cross-origin isolation).
 */
export function allocAccumulator(length: number): Float32Array {
  if (arenaUsable) {
    try {
      return defaultArena().alloc(length);
    } catch (e) {
      // An OrchardError means the arena is full: fall back this once. Anything else means shared
      // wasm memory is unavailable here: stop trying.
      if (!(e instanceof OrchardError)) arenaUsable = false;
    }
  }
  return new Float32Array(length);
}
