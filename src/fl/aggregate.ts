/**
 * Weighted accumulation of client deltas into a server buffer: buffer += weight · delta. Every
 * strategy funnels updates through here, so it is the server's inner loop for large models.
 */
import { ShapeError } from '../core/errors.ts';

/** buffer += weight · delta (float32 storage, products rounded once per element). */
export function accumulate(buffer: Float32Array, weight: number, delta: Float32Array): void {
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
