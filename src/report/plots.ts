/**
 * Plots as SVG strings: Vega-Lite specs compiled to Vega and rendered headlessly (renderer 'none'
 * needs no canvas or DOM), so the report embeds them inline and works offline.
 */
import * as vega from 'vega';
import * as vl from 'vega-lite';
import type { RunSummary } from '../sim/types.ts';

/** Curves are thinned to this many points per run before plotting to keep SVGs small. */
const MAX_POINTS_PER_RUN = 600;

const WIDTH = 620;
const HEIGHT = 300;

export async function renderSvg(spec: vl.TopLevelSpec): Promise<string> {
  const compiled = vl.compile(spec);
  const view = new vega.View(vega.parse(compiled.spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/** Every k-th point plus the last, so the curve's end (final accuracy) is always drawn. */
function thin<T>(points: readonly T[], max: number): T[] {
  if (points.length <= max) return [...points];
  const step = Math.ceil(points.length / max);
  const out: T[] = [];
  for (let i = 0; i < points.length; i += step) out.push(points[i] as T);
  const last = points[points.length - 1] as T;
  if (out[out.length - 1] !== last) out.push(last);
  return out;
}

export type CurveAxis = 'time' | 'trips' | 'bytesUp';

const AXIS_TITLES: Record<CurveAxis, string> = {
  time: 'virtual time (s)',
  trips: 'client trips',
  bytesUp: 'bytes uploaded',
};

/** Accuracy against one progress measure, one line per method (and per seed). */
export function accuracySpec(
  runs: readonly RunSummary[],
  x: CurveAxis,
  target: number | null,
): vl.TopLevelSpec {
  const values: Array<Record<string, string | number>> = [];
  for (const run of runs) {
    for (const p of thin(run.curve, MAX_POINTS_PER_RUN)) {
      if (!Number.isFinite(p.accuracy)) continue;
      values.push({ method: run.label, seed: run.seed, x: p[x], accuracy: p.accuracy });
    }
  }
  const lineLayer = {
    mark: { type: 'line', interpolate: 'step-after' },
    encoding: {
      x: { field: 'x', type: 'quantitative', title: AXIS_TITLES[x] },
      y: { field: 'accuracy', type: 'quantitative', title: 'test accuracy', scale: { domain: [0, 1] } },
      color: {
        field: 'method',
        type: 'nominal',
        title: 'method',
        sort: runs.map((r) => r.label),
        legend: { labelLimit: 400 },
      },
      detail: { field: 'seed', type: 'nominal' },
    },
  };
  const title = `Accuracy vs ${AXIS_TITLES[x]}`;
  if (target === null)
    return { width: WIDTH, height: HEIGHT, title, data: { values }, ...lineLayer } as vl.TopLevelSpec;
  return {
    width: WIDTH,
    height: HEIGHT,
    title: `${title} (dashed: target ${target})`,
    data: { values },
    layer: [
      lineLayer,
      {
        data: { values: [{ target }] },
        mark: { type: 'rule', strokeDash: [6, 4], color: '#888' },
        encoding: { y: { field: 'target', type: 'quantitative' } },
      },
    ],
  } as vl.TopLevelSpec;
}

/** Accuracy against privacy spent (ε), for runs with DP: the privacy–utility trade-off. */
export function accuracyEpsilonSpec(runs: readonly RunSummary[]): vl.TopLevelSpec {
  const values: Array<Record<string, string | number>> = [];
  for (const run of runs) {
    for (const p of thin(run.curve, MAX_POINTS_PER_RUN)) {
      if (p.epsilon === undefined || !Number.isFinite(p.epsilon) || !Number.isFinite(p.accuracy)) continue;
      values.push({ method: run.label, seed: run.seed, epsilon: p.epsilon, accuracy: p.accuracy });
    }
  }
  return {
    width: WIDTH,
    height: HEIGHT,
    title: 'Accuracy vs privacy spent (ε)',
    data: { values },
    mark: { type: 'line', point: true },
    encoding: {
      x: { field: 'epsilon', type: 'quantitative', title: 'ε spent' },
      y: { field: 'accuracy', type: 'quantitative', title: 'test accuracy', scale: { domain: [0, 1] } },
      color: { field: 'method', type: 'nominal', title: 'method', legend: { labelLimit: 400 } },
      detail: { field: 'seed', type: 'nominal' },
    },
  } as vl.TopLevelSpec;
}

/** Accepted updates by staleness for one method (seeds summed). */
export function stalenessSpec(label: string, histograms: ReadonlyArray<readonly number[]>): vl.TopLevelSpec {
  const totals: number[] = [];
  for (const h of histograms) {
    for (let s = 0; s < h.length; s++) totals[s] = (totals[s] ?? 0) + (h[s] as number);
  }
  // Long tails (FedAsync at high concurrency sees staleness in the hundreds) are grouped into ~60 bars.
  const width = Math.max(1, Math.ceil(totals.length / 60));
  const values: Array<{ staleness: number; end: number; count: number }> = [];
  for (let s = 0; s < totals.length; s += width) {
    let count = 0;
    for (let k = s; k < Math.min(s + width, totals.length); k++) count += totals[k] ?? 0;
    values.push({ staleness: s, end: Math.min(s + width, totals.length), count });
  }
  return {
    width: Math.min(WIDTH, Math.max(200, values.length * 12)),
    height: 160,
    title: `Staleness of accepted updates: ${label}`,
    data: { values },
    mark: { type: 'bar', stroke: 'white', strokeWidth: 0.5 },
    encoding: {
      x: { field: 'staleness', type: 'quantitative', title: 'staleness (server versions; last bin = tail)' },
      x2: { field: 'end' },
      y: { field: 'count', type: 'quantitative', title: 'accepted updates' },
      // With x2 set, Vega-Lite draws ranged bars and no longer anchors y at zero by itself.
      y2: { datum: 0 },
    },
  } as vl.TopLevelSpec;
}
