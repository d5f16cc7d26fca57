/**
 * Results JSON and a self-contained HTML report (inline SVG plots, tables) for one or more lottery runs
 * of the same configuration under different seeds; with several seeds every cell is mean ± sd.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TopLevelSpec } from 'vega-lite';
import { OrchardError } from '../../core/errors.ts';
import { escapeHtml } from '../../report/index.ts';
import { renderSvg } from '../../report/plots.ts';
import type { InitStrategy, LotteryResult } from './transfer.ts';

export interface LotteryReportPaths {
  readonly results: string;
  readonly report: string;
}

/** Mean and sample standard deviation (0 for one value). */
export interface Stat {
  readonly mean: number;
  readonly sd: number;
  readonly n: number;
}

export interface SummaryRow {
  readonly round: number;
  readonly sparsity: number;
  readonly sourceAccuracy: Stat;
  readonly zeroShotTargetAccuracy: Stat;
  readonly target: ReadonlyMap<InitStrategy, Stat>;
}

const pct = (x: number, digits = 1): string => `${(100 * x).toFixed(digits)}%`;

function stat(values: readonly number[]): Stat {
  const n = values.length;
  const mean = values.reduce((s, v) => s + v, 0) / n;
  const sd = n > 1 ? Math.sqrt(values.reduce((s, v) => s + (v - mean) ** 2, 0) / (n - 1)) : 0;
  return { mean, sd, n };
}

function fmt(s: Stat): string {
  return s.n > 1 ? `${s.mean.toFixed(4)} ± ${s.sd.toFixed(4)}` : s.mean.toFixed(4);
}

function asList(results: LotteryResult | readonly LotteryResult[]): readonly LotteryResult[] {
  const list = Array.isArray(results) ? (results as readonly LotteryResult[]) : [results as LotteryResult];
  if (list.length === 0) throw new OrchardError('INVALID_ARGUMENT', 'no lottery results to report');
  return list;
}

/** Per-round statistics over the runs (rounds are matched by index; all runs share one schedule). */
export function summarizeLottery(results: LotteryResult | readonly LotteryResult[]): SummaryRow[] {
  const runs = asList(results);
  const first = runs[0] as LotteryResult;
  return first.rounds.map((r) => {
    const target = new Map<InitStrategy, Stat>();
    for (const s of first.config.strategies) {
      const values = runs.flatMap((run) =>
        run.points.filter((p) => p.round === r.round && p.strategy === s).map((p) => p.accuracy),
      );
      if (values.length > 0) target.set(s, stat(values));
    }
    const roundsOf = runs.flatMap((run) => run.rounds.filter((x) => x.round === r.round));
    return {
      round: r.round,
      sparsity: r.sparsity,
      sourceAccuracy: stat(roundsOf.map((x) => x.sourceAccuracy)),
      zeroShotTargetAccuracy: stat(roundsOf.map((x) => x.zeroShotTargetAccuracy)),
      target,
    };
  });
}

/** Plain-text table of target accuracy per strategy (for the console and the closing note). */
export function lotteryTableText(results: LotteryResult | readonly LotteryResult[]): string {
  const runs = asList(results);
  const strategies = (runs[0] as LotteryResult).config.strategies;
  const head = ['round', 'sparsity', 'src acc', 'zero-shot', ...strategies];
  const rows = summarizeLottery(runs).map((row) => [
    String(row.round),
    pct(row.sparsity),
    fmt(row.sourceAccuracy),
    fmt(row.zeroShotTargetAccuracy),
    ...strategies.map((s) => {
      const v = row.target.get(s);
      return v === undefined ? '' : fmt(v);
    }),
  ]);
  const widths = head.map((h, c) => Math.max(h.length, ...rows.map((r) => (r[c] ?? '').length)));
  const line = (cells: readonly string[]) =>
    `| ${cells.map((v, c) => v.padStart(widths[c] ?? 0)).join(' | ')} |`;
  return [line(head), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.map(line)].join('\n');
}

const remainingAxis = {
  field: 'remaining',
  type: 'quantitative',
  title: 'weights remaining (%, log scale)',
  scale: { type: 'log', reverse: true },
} as const;

/** Mean curves with ±1 sd bars (bars only when there are several seeds). */
function curveSpec(
  title: string,
  yTitle: string,
  values: { remaining: number; mean: number; lo: number; hi: number; curve: string }[],
  order: readonly string[],
  withBars: boolean,
): TopLevelSpec {
  const color = {
    field: 'curve',
    type: 'nominal',
    title: null,
    sort: [...order],
    legend: { labelLimit: 400 },
  };
  const line = {
    mark: { type: 'line', point: true },
    encoding: {
      x: remainingAxis,
      y: { field: 'mean', type: 'quantitative', title: yTitle, scale: { zero: false } },
      color,
    },
  };
  const bars = {
    mark: { type: 'rule' },
    encoding: {
      x: remainingAxis,
      y: { field: 'lo', type: 'quantitative' },
      y2: { field: 'hi' },
      color,
    },
  };
  return {
    width: 620,
    height: 320,
    title,
    data: { values },
    layer: withBars ? [line, bars] : [line],
  } as TopLevelSpec;
}

function htmlTable(head: readonly string[], rows: readonly (readonly string[])[]): string {
  const th = head.map((h) => `<th>${escapeHtml(h)}</th>`).join('');
  const trs = rows.map((r) => `<tr>${r.map((c) => `<td>${escapeHtml(c)}</td>`).join('')}</tr>`).join('\n');
  return `<table><thead><tr>${th}</tr></thead><tbody>\n${trs}\n</tbody></table>`;
}

export async function lotteryReportHtml(results: LotteryResult | readonly LotteryResult[]): Promise<string> {
  const runs = asList(results);
  const first = runs[0] as LotteryResult;
  const c = first.config;
  const strategies = c.strategies;
  const summary = summarizeLottery(runs);
  const many = runs.length > 1;
  const point = (remaining: number, s: Stat, curve: string) => ({
    remaining,
    mean: s.mean,
    lo: s.mean - s.sd,
    hi: s.mean + s.sd,
    curve,
  });
  const targetValues = summary.flatMap((row) =>
    strategies.flatMap((s) => {
      const v = row.target.get(s);
      return v === undefined ? [] : [point(100 * (1 - row.sparsity), v, s)];
    }),
  );
  const sourceCurves = ['source test (ticket trained on source)', 'target test, no retraining'];
  const sourceValues = summary.flatMap((row) => [
    point(100 * (1 - row.sparsity), row.sourceAccuracy, sourceCurves[0] as string),
    point(100 * (1 - row.sparsity), row.zeroShotTargetAccuracy, sourceCurves[1] as string),
  ]);
  const accRows = summary.map((row) => {
    let best = Number.NEGATIVE_INFINITY;
    for (const v of row.target.values()) best = Math.max(best, v.mean);
    return [
      String(row.round),
      pct(row.sparsity),
      ...strategies.map((s) => {
        const v = row.target.get(s);
        return v === undefined ? '' : `${fmt(v)}${v.mean === best ? ' ★' : ''}`;
      }),
    ];
  });
  const srcRows = summary.map((row, i) => [
    String(row.round),
    pct(row.sparsity),
    pct(first.rounds[i]?.overallSparsity ?? Number.NaN),
    fmt(row.sourceAccuracy),
    fmt(row.zeroShotTargetAccuracy),
  ]);
  const last = first.rounds[first.rounds.length - 1];
  const layerRows = (last?.layers ?? []).map((l) => [
    l.name,
    l.role,
    String(l.total),
    String(l.kept),
    pct(l.sparsity),
  ]);
  const [targetSvg, sourceSvg] = await Promise.all([
    renderSvg(
      curveSpec(
        `Target-domain test accuracy after retraining, by initialization${many ? ' (mean ± sd)' : ''}`,
        'target test accuracy',
        targetValues,
        strategies,
        many,
      ),
    ),
    renderSvg(
      curveSpec('IMP tickets found on the source domain', 'test accuracy', sourceValues, sourceCurves, many),
    ),
  ]);
  const seconds = runs.reduce((s, r) => s + r.seconds, 0);
  const settings = [
    ['task', `${c.task}: ${first.description}`],
    ['model', `${first.modelName}, ${first.numParams} parameters`],
    [
      'examples',
      `source ${first.sizes.sourceTrain} train / ${first.sizes.sourceTest} test; target ${first.sizes.targetTrain} train / ${first.sizes.targetTest} test`,
    ],
    [
      'pruning',
      `IMP, ${c.scope} magnitude, ${pct(c.pruneRate, 0)} of the remaining weights per round, ${c.rounds} rounds, biases ${c.includeBiases ? 'pruned' : 'kept'}`,
    ],
    ['rewinding', c.rewindStep === 0 ? 'to the initialization' : `to iteration ${c.rewindStep}`],
    [
      'source training',
      `${c.sourceTrain.steps} steps, batch ${c.sourceTrain.batchSize}, lr ${c.sourceTrain.lr}, momentum ${c.sourceTrain.momentum}`,
    ],
    [
      'target training',
      `${c.targetTrain.steps} steps, batch ${c.targetTrain.batchSize}, lr ${c.targetTrain.lr}, momentum ${c.targetTrain.momentum}`,
    ],
    ['seeds', runs.map((r) => r.config.seed).join(', ')],
    ['run time', `${seconds.toFixed(1)} s`],
  ];
  const testN = first.sizes.targetTest;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Lottery tickets under distribution shift: ${escapeHtml(c.task)}</title>
<style>
body{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
</style></head><body>
<h1>Lottery tickets under distribution shift</h1>
${htmlTable(['setting', 'value'], settings)}
<p>Tickets are found by iterative magnitude pruning on the source domain. Each ticket is then retrained in
isolation on the target domain, starting from: <b>original-init</b> (θ0 ⊙ m), <b>reinit</b> (fresh random
weights ⊙ m), <b>rewind</b> (θk ⊙ m), <b>source-trained</b> (the ticket's source weights, fine-tuned), and
the control <b>random-mask</b> (θ0 ⊙ m′, m′ random with the same per-layer sparsity). ★ marks the best
mean at each sparsity. With ${testN} target test examples one accuracy near 0.9 has a binomial standard
error of about ${(100 * Math.sqrt((0.9 * 0.1) / Math.max(1, testN))).toFixed(1)} points, so smaller gaps
${many ? 'need the seed spread to judge' : 'are within noise for a single seed'}.</p>
<h2>Target accuracy vs sparsity</h2>
${targetSvg}
${htmlTable(['round', 'sparsity', ...strategies], accRows)}
<h2>Source tickets</h2>
${sourceSvg}
${htmlTable(['round', 'weight sparsity', 'all-parameter sparsity', 'source test acc', 'zero-shot target acc'], srcRows)}
<h2>Per-layer sparsity of the sparsest ticket${many ? ' (first seed)' : ''}</h2>
${htmlTable(['segment', 'role', 'total', 'kept', 'sparsity'], layerRows)}
</body></html>
`;
}

/** Writes lottery-results.json and lottery-report.html into `outDir` (created when missing). */
export async function writeLotteryReport(
  results: LotteryResult | readonly LotteryResult[],
  outDir: string,
): Promise<LotteryReportPaths> {
  const runs = asList(results);
  mkdirSync(outDir, { recursive: true });
  const paths = {
    results: join(outDir, 'lottery-results.json'),
    report: join(outDir, 'lottery-report.html'),
  };
  const html = await lotteryReportHtml(runs);
  const summary = summarizeLottery(runs).map((row) => ({
    ...row,
    target: Object.fromEntries(row.target),
  }));
  writeFileSync(paths.results, `${JSON.stringify({ runs, summary }, null, 2)}\n`);
  writeFileSync(paths.report, html);
  return paths;
}
