/** Time-, trips- and bytes-to-target comparisons between runs (pure functions of run summaries). */
import type { RunSummary } from '../sim/types.ts';

/** How much more a method needed than the baseline to reach the target (other ÷ baseline). */
export interface Comparison {
  readonly label: string;
  readonly baseline: string;
  readonly seed: number;
  /** > 1 means the baseline got there faster; null when either did not reach the target. */
  readonly timeRatio: number | null;
  readonly tripsRatio: number | null;
  readonly bytesRatio: number | null;
}

export interface ToTarget {
  readonly time: number;
  readonly trips: number;
  readonly bytesUp: number;
}

/** When a run first reached `target`: the simulator's record, else the first curve point at or above it. */
export function reachedTarget(run: RunSummary, target: number): ToTarget | null {
  if (run.stopReason === 'diverged') return null;
  if (run.toTarget !== undefined) return run.toTarget;
  const point = run.curve.find((p) => p.accuracy >= target);
  return point === undefined ? null : { time: point.time, trips: point.trips, bytesUp: point.bytesUp };
}

function ratio(other: number | undefined, base: number | undefined): number | null {
  if (other === undefined || base === undefined) return null;
  if (base === 0) return other === 0 ? 1 : null;
  return other / base;
}

/**
 * Ratios of each run's time, trips and upload bytes to the target over the baseline run's (the first
 * label), matched by seed.
 */
export function compareRuns(runs: readonly RunSummary[], target: number | null): Comparison[] {
  const first = runs[0];
  if (target === null || first === undefined) return [];
  const baseline = first.label;
  const out: Comparison[] = [];
  for (const run of runs) {
    if (run.label === baseline) continue;
    const base = runs.find((r) => r.label === baseline && r.seed === run.seed);
    const b = base === undefined ? null : reachedTarget(base, target);
    const o = reachedTarget(run, target);
    out.push({
      label: run.label,
      baseline,
      seed: run.seed,
      timeRatio: ratio(o?.time, b?.time),
      tripsRatio: ratio(o?.trips, b?.trips),
      bytesRatio: ratio(o?.bytesUp, b?.bytesUp),
    });
  }
  return out;
}
