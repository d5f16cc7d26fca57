/**
 * Central finite differences for checking hand-written backward passes. Parameters are float32, so
 * the step actually taken is measured from the stored values (f32(p + h) − f32(p − h)) rather than
 * assumed to be 2h, and the scalar being differentiated is accumulated in float64.
 */

export interface GradMismatch {
  readonly index: number;
  readonly analytic: number;
  readonly numeric: number;
}

/**
 * Compares analytic[i] with the central difference of f w.r.t. values[i] for each i in `indices`.
 * Returns the entries whose error exceeds atol + rtol·max(|analytic|, |numeric|).
 */
export function finiteDifferenceMismatches(
  f: () => number,
  values: Float32Array,
  analytic: ArrayLike<number>,
  indices: Iterable<number>,
  options: { h?: number; atol?: number; rtol?: number } = {},
): GradMismatch[] {
  const h = options.h ?? 1e-3;
  const atol = options.atol ?? 1e-3;
  const rtol = options.rtol ?? 1e-2;
  const bad: GradMismatch[] = [];
  for (const i of indices) {
    const orig = values[i] as number;
    values[i] = orig + h;
    const up = values[i] as number;
    const fUp = f();
    values[i] = orig - h;
    const down = values[i] as number;
    const fDown = f();
    values[i] = orig;
    const numeric = (fUp - fDown) / (up - down);
    const a = analytic[i] as number;
    if (!(Math.abs(a - numeric) <= atol + rtol * Math.max(Math.abs(a), Math.abs(numeric))))
      bad.push({ index: i, analytic: a, numeric });
  }
  return bad;
}

/** All of 0..n-1 when n ≤ max, else `max` distinct indices drawn by the given uniform source. */
export function sampleIndices(n: number, max: number, next: () => number): number[] {
  if (n <= max) return Array.from({ length: n }, (_, i) => i);
  const chosen = new Set<number>();
  while (chosen.size < max) chosen.add(Math.floor(next() * n));
  return [...chosen].sort((a, b) => a - b);
}
