/**
 * Benchmark plumbing. Each `*.bench.ts` file exports `run(): Promise<BenchEntry[]>`. A ratio is always
 * baseline time / our time for the same work, both measured in the same process, interleaved, so that
 * machine noise hits both alike.
 */
export interface BenchEntry {
  readonly name: string;
  readonly value: number;
  readonly unit: string;
  /** Baseline figure in the same unit, or null when the entry has none. */
  readonly baseline: number | null;
  readonly ratio: number | null;
  readonly goal?: string;
  readonly note?: string;
}

/** Median of the fastest half of `reps` timings of fn, in milliseconds. */
export function timeMs(fn: () => void, reps = 9, warmup = 2): number {
  for (let i = 0; i < warmup; i++) fn();
  const t: number[] = [];
  for (let i = 0; i < reps; i++) {
    const s = process.hrtime.bigint();
    fn();
    t.push(Number(process.hrtime.bigint() - s) / 1e6);
  }
  t.sort((a, b) => a - b);
  return t[Math.floor((reps - 1) / 4)] as number;
}

/**
 * Times `ours` and `baseline` alternately (A B A B ...) and returns both robust timings in ms.
 * Interleaving makes the ratio robust against slow phases of a shared machine.
 */
export function compareMs(
  ours: () => void,
  baseline: () => void,
  reps = 9,
  warmup = 2,
): { oursMs: number; baselineMs: number } {
  for (let i = 0; i < warmup; i++) {
    ours();
    baseline();
  }
  const a: number[] = [];
  const b: number[] = [];
  for (let i = 0; i < reps; i++) {
    let s = process.hrtime.bigint();
    ours();
    a.push(Number(process.hrtime.bigint() - s) / 1e6);
    s = process.hrtime.bigint();
    baseline();
    b.push(Number(process.hrtime.bigint() - s) / 1e6);
  }
  a.sort((x, y) => x - y);
  b.sort((x, y) => x - y);
  const q = Math.floor((reps - 1) / 4);
  return { oursMs: a[q] as number, baselineMs: b[q] as number };
}
