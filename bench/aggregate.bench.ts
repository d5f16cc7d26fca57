/**
 * Server-side aggregation: FedBuff-style weighted accumulation of 100 client updates of 1,000,000
 * floats into one buffer. Baseline: 100 Float32Array.set copies of the same bytes into a buffer — the
 * cheapest thing that touches the same data (a memcpy). Ratio = baseline ms / ours (1 = memcpy speed).
 *
 * Updates rotate over 10 distinct arrays (40 MB) so the data does not sit in cache.
 */
import { accumulate, accumulateJs } from '../src/fl/aggregate.ts';
import { UpdateArena } from '../src/fl/wasm.ts';
import { type BenchEntry, compareMs } from './harness.ts';

const N = 1_000_000;
const UPDATES = 100;
const DISTINCT = 10;

function fill(a: Float32Array, seed: number): Float32Array {
  for (let i = 0; i < a.length; i++) a[i] = Math.sin(i * 0.001 + seed);
  return a;
}

export async function run(): Promise<BenchEntry[]> {
  const arena = new UpdateArena(48 * N);
  const arenaUpdates = Array.from({ length: DISTINCT }, (_, k) => fill(arena.alloc(N), k));
  const plainUpdates = Array.from({ length: DISTINCT }, (_, k) => fill(new Float32Array(N), k));
  const arenaBuffer = arena.alloc(N);
  const plainBuffer = new Float32Array(N);
  const copyTarget = new Float32Array(N);
  const weight = 1 / UPDATES;

  const baseline = () => {
    for (let u = 0; u < UPDATES; u++) copyTarget.set(plainUpdates[u % DISTINCT] as Float32Array);
  };
  const inArena = () => {
    for (let u = 0; u < UPDATES; u++)
      accumulate(arenaBuffer, weight, arenaUpdates[u % DISTINCT] as Float32Array);
  };
  const plainIntoArena = () => {
    for (let u = 0; u < UPDATES; u++)
      accumulate(arenaBuffer, weight, plainUpdates[u % DISTINCT] as Float32Array);
  };
  const jsLoop = () => {
    for (let u = 0; u < UPDATES; u++)
      accumulateJs(plainBuffer, weight, plainUpdates[u % DISTINCT] as Float32Array);
  };

  const simd = arena.simd ? 'wasm SIMD f32x4' : 'JS fallback (no wasm SIMD here)';
  const a = compareMs(inArena, baseline, 7, 2);
  const b = compareMs(plainIntoArena, baseline, 7, 2);
  const c = compareMs(jsLoop, baseline, 5, 1);
  const entry = (
    name: string,
    r: { oursMs: number; baselineMs: number },
    note: string,
    goal?: string,
  ): BenchEntry => ({
    name,
    value: r.oursMs,
    unit: 'ms',
    baseline: r.baselineMs,
    ratio: r.baselineMs / r.oursMs,
    ...(goal === undefined ? {} : { goal }),
    note,
  });
  return [
    entry(
      'aggregate.fedbuff_1m',
      a,
      `${simd}; updates and buffer allocated in an UpdateArena (as with TrainScratch.deltaArena), read in place`,
      '≥ 0.5',
    ),
    entry(
      'aggregate.fedbuff_1m_plain',
      b,
      `${simd}; updates are ordinary Float32Arrays, copied into arena staging before the kernel`,
    ),
    entry('aggregate.fedbuff_1m_js', c, 'portable unrolled JS loop (the fallback)'),
  ];
}
