/**
 * Metrics over an eval run, the results JSON and the PR-curve plot.
 *
 * Breakdowns:
 * - **per category**: the evaluation set of category c is every example tagged c plus every safe
 *   example with no tag at all. With the usual layout (only unsafe rows carry categories) that is
 *   "c's unsafe examples against all safe ones", so recall is per category and the false-positive
 *   rate is the shared one; with XSTest, where safe prompts are tagged by type too, it is the type's
 *   safe prompts against their unsafe contrasts. For S-code categories, `namedRecall` is the share of
 *   c's examples the guard flagged *and* named c for.
 * - **per language**: examples grouped by their `language` field (`unknown` when absent).
 * Examples the guard refused as input are counted in `errors` and left out of every metric.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type * as vl from 'vega-lite';
import { renderSvg } from '../../report/plots.ts';
import type { EvalDataset } from './datasets.ts';
import type { EvalPrediction } from './evaluate.ts';
import {
  type BinaryMetrics,
  binaryMetrics,
  type PrPoint,
  precisionRecallCurve,
  type ScoredExample,
  thinCurve,
} from './metrics.ts';

export const AUPRC_ESTIMATOR =
  'average precision, step-wise: sum over distinct thresholds of (R_k - R_{k-1}) * P_k, ties grouped (as scikit-learn average_precision_score)';

export interface CategoryMetrics extends BinaryMetrics {
  /** Examples tagged with the category. */
  readonly tagged: number;
  /** S-codes only: share of tagged unsafe examples flagged with this code named; null otherwise. */
  readonly namedRecall: number | null;
}

export interface EvalReport {
  readonly dataset: {
    readonly path: string;
    readonly format: string;
    readonly examples: number;
    readonly skipped: number;
  };
  readonly model: string;
  readonly threshold: number;
  readonly auprcEstimator: string;
  /**
   * How scores were obtained, with counts (e.g. { logprobs: 1670, "logprobs-bounded": 10 });
   * `softmax` counts backends that do not label their score (the contract's two-token softmax).
   */
  readonly scoreSources: Record<string, number>;
  /** True when some scores are hard 1/0 verdicts: AUPRC then describes one operating point. */
  readonly verdictOnlyScores: boolean;
  readonly errors: number;
  readonly overall: BinaryMetrics;
  readonly perCategory: Record<string, CategoryMetrics>;
  readonly perLanguage: Record<string, BinaryMetrics>;
  readonly prCurve: PrPoint[];
  readonly seconds: number;
  readonly predictions: EvalPrediction[];
}

function scored(predictions: readonly EvalPrediction[]): Array<ScoredExample & { p: EvalPrediction }> {
  const out: Array<ScoredExample & { p: EvalPrediction }> = [];
  for (const p of predictions) {
    if (p.error !== undefined || p.score === undefined || p.predictedUnsafe === undefined) continue;
    out.push({ unsafe: p.unsafe, score: p.score, predictedUnsafe: p.predictedUnsafe, p });
  }
  return out;
}

export function buildEvalReport(
  dataset: EvalDataset,
  predictions: EvalPrediction[],
  info: { model: string; threshold: number; seconds: number },
): EvalReport {
  const ok = scored(predictions);
  const categories = [...new Set(dataset.examples.flatMap((e) => e.categories))].sort((a, b) =>
    a.localeCompare(b, 'en', { numeric: true }),
  );
  const perCategory: Record<string, CategoryMetrics> = {};
  for (const c of categories) {
    const subset = ok.filter((e) => e.p.categories.includes(c) || (!e.unsafe && e.p.categories.length === 0));
    const tagged = ok.filter((e) => e.p.categories.includes(c));
    const taggedUnsafe = tagged.filter((e) => e.unsafe);
    const isCode = /^S\d+$/.test(c);
    perCategory[c] = {
      ...binaryMetrics(subset),
      tagged: tagged.length,
      namedRecall:
        isCode && taggedUnsafe.length > 0
          ? taggedUnsafe.filter((e) => e.predictedUnsafe && (e.p.predictedCategories ?? []).includes(c))
              .length / taggedUnsafe.length
          : null,
    };
  }
  const perLanguage: Record<string, BinaryMetrics> = {};
  if (ok.some((e) => e.p.language !== undefined)) {
    const languages = [...new Set(ok.map((e) => e.p.language ?? 'unknown'))].sort();
    for (const lang of languages)
      perLanguage[lang] = binaryMetrics(ok.filter((e) => (e.p.language ?? 'unknown') === lang));
  }
  const scoreSources: Record<string, number> = {};
  for (const e of ok) {
    const key = e.p.scoreSource ?? 'softmax';
    scoreSources[key] = (scoreSources[key] ?? 0) + 1;
  }
  return {
    dataset: {
      path: dataset.path,
      format: dataset.format,
      examples: dataset.examples.length,
      skipped: dataset.skipped.length,
    },
    model: info.model,
    threshold: info.threshold,
    auprcEstimator: AUPRC_ESTIMATOR,
    scoreSources,
    verdictOnlyScores: (scoreSources.verdict ?? 0) > 0,
    errors: predictions.length - ok.length,
    overall: binaryMetrics(ok),
    perCategory,
    perLanguage,
    prCurve: precisionRecallCurve(
      ok.map((e) => e.score),
      ok.map((e) => e.unsafe),
    ),
    seconds: info.seconds,
    predictions,
  };
}

const fmt = (x: number | null, digits = 3): string => (x === null ? '—' : x.toFixed(digits));

/**
 * PR curve with the operating point at the threshold marked. Drawn step-before: precision Pₖ holds
 * over (Rₖ₋₁, Rₖ], so the area under the drawn curve is exactly the reported AP.
 */
export function prCurveSpec(report: EvalReport): vl.TopLevelSpec {
  const curve = thinCurve(report.prCurve, 800);
  // Start at recall 0 with the first point's precision so the step shape is visible from the axis.
  const first = curve[0];
  const values = [
    ...(first === undefined ? [] : [{ recall: 0, precision: first.precision, threshold: first.threshold }]),
    ...curve.map((p) => ({ recall: p.recall, precision: p.precision, threshold: p.threshold })),
  ];
  const m = report.overall;
  const operating =
    m.precision !== null && m.recall !== null ? [{ recall: m.recall, precision: m.precision }] : [];
  return {
    width: 480,
    height: 360,
    title: `Precision–recall (AUPRC ${fmt(m.auprc)}, n = ${m.n}; dot: threshold ${report.threshold})`,
    layer: [
      {
        data: { values },
        mark: { type: 'line', interpolate: 'step-before' },
        encoding: {
          x: { field: 'recall', type: 'quantitative', title: 'recall', scale: { domain: [0, 1] } },
          y: { field: 'precision', type: 'quantitative', title: 'precision', scale: { domain: [0, 1] } },
          order: { field: 'recall', type: 'quantitative' },
        },
      },
      {
        data: { values: operating },
        mark: { type: 'point', filled: true, size: 80, color: '#d62728' },
        encoding: {
          x: { field: 'recall', type: 'quantitative' },
          y: { field: 'precision', type: 'quantitative' },
        },
      },
    ],
  } as vl.TopLevelSpec;
}

/** Writes results.json and pr-curve.svg into `outDir` (created if missing). */
export async function writeEvalOutputs(
  report: EvalReport,
  outDir: string,
): Promise<{ results: string; plot: string }> {
  mkdirSync(outDir, { recursive: true });
  const results = join(outDir, 'results.json');
  const plot = join(outDir, 'pr-curve.svg');
  writeFileSync(results, `${JSON.stringify(report, null, 1)}\n`);
  writeFileSync(plot, await renderSvg(prCurveSpec(report)));
  return { results, plot };
}

function row(name: string, m: BinaryMetrics, extra = ''): string {
  return `${name.padEnd(22)} ${String(m.n).padStart(6)} ${String(m.positives).padStart(6)} ${fmt(m.precision).padStart(9)} ${fmt(m.recall).padStart(7)} ${fmt(m.f1).padStart(7)} ${fmt(m.falsePositiveRate).padStart(7)} ${fmt(m.auprc).padStart(7)}${extra}`;
}

export function evalSummaryText(report: EvalReport): string {
  const lines: string[] = [];
  lines.push(
    `${report.dataset.examples} examples (${report.dataset.format}) from ${report.dataset.path}; model ${report.model}; threshold ${report.threshold}`,
  );
  if (report.dataset.skipped > 0) lines.push(`${report.dataset.skipped} rows skipped (no label)`);
  if (report.errors > 0) lines.push(`${report.errors} examples refused as input (see results.json)`);
  if (report.verdictOnlyScores)
    lines.push(
      'warning: some scores are 1/0 verdicts (server without logprobs); AUPRC is not a curve measure here',
    );
  const header = `${''.padEnd(22)} ${'n'.padStart(6)} ${'unsafe'.padStart(6)} ${'precision'.padStart(9)} ${'recall'.padStart(7)} ${'F1'.padStart(7)} ${'FPR'.padStart(7)} ${'AUPRC'.padStart(7)}`;
  lines.push(header, row('overall', report.overall));
  const cats = Object.entries(report.perCategory);
  if (cats.length > 0) {
    lines.push('per category:');
    for (const [c, m] of cats)
      lines.push(row(`  ${c}`, m, m.namedRecall === null ? '' : `  named ${fmt(m.namedRecall)}`));
  }
  const langs = Object.entries(report.perLanguage);
  if (langs.length > 0) {
    lines.push('per language:');
    for (const [l, m] of langs) lines.push(row(`  ${l}`, m));
  }
  lines.push(`AUPRC = ${AUPRC_ESTIMATOR}`);
  return `${lines.join('\n')}\n`;
}
