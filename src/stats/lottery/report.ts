/** Results JSON and a self-contained HTML report (inline SVG plots, tables) for a lottery run. */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TopLevelSpec } from 'vega-lite';
import { escapeHtml } from '../../report/index.ts';
import { renderSvg } from '../../report/plots.ts';
import type { InitStrategy, LotteryResult } from './transfer.ts';

export interface LotteryReportPaths {
  readonly results: string;
  readonly report: string;
}

const pct = (x: number, digits = 1): string => `${(100 * x).toFixed(digits)}%`;

/** Rows of (sparsity, accuracy per strategy), in round order. */
export function accuracyTable(
  result: LotteryResult,
): { round: number; sparsity: number; acc: Map<InitStrategy, number> }[] {
  return result.rounds.map((r) => {
    const acc = new Map<InitStrategy, number>();
    for (const p of result.points) if (p.round === r.round) acc.set(p.strategy, p.accuracy);
    return { round: r.round, sparsity: r.sparsity, acc };
  });
}

/** Plain-text table of target accuracy per strategy (for the console and the closing note). */
export function lotteryTableText(result: LotteryResult): string {
  const strategies = result.config.strategies;
  const head = ['round', 'sparsity', 'src acc', 'zero-shot', ...strategies];
  const rows = accuracyTable(result).map((row) => {
    const r = result.rounds.find((x) => x.round === row.round);
    return [
      String(row.round),
      pct(row.sparsity),
      r === undefined ? '' : r.sourceAccuracy.toFixed(4),
      r === undefined ? '' : r.zeroShotTargetAccuracy.toFixed(4),
      ...strategies.map((s) => row.acc.get(s)?.toFixed(4) ?? ''),
    ];
  });
  const widths = head.map((h, c) => Math.max(h.length, ...rows.map((r) => (r[c] ?? '').length)));
  const line = (cells: readonly string[]) =>
    `| ${cells.map((v, c) => v.padStart(widths[c] ?? 0)).join(' | ')} |`;
  return [line(head), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.map(line)].join('\n');
}

function remainingAxis() {
  return {
    field: 'remaining',
    type: 'quantitative',
    title: 'weights remaining (%, log scale)',
    scale: { type: 'log', reverse: true },
  } as const;
}

function targetSpec(result: LotteryResult): TopLevelSpec {
  const values = result.points.map((p) => ({
    remaining: 100 * (1 - p.sparsity),
    accuracy: p.accuracy,
    strategy: p.strategy,
  }));
  return {
    width: 620,
    height: 320,
    title: 'Target-domain test accuracy after retraining, by initialization',
    data: { values },
    mark: { type: 'line', point: true },
    encoding: {
      x: remainingAxis(),
      y: { field: 'accuracy', type: 'quantitative', title: 'target test accuracy', scale: { zero: false } },
      color: { field: 'strategy', type: 'nominal', sort: [...result.config.strategies] },
    },
  } as TopLevelSpec;
}

function sourceSpec(result: LotteryResult): TopLevelSpec {
  const values = result.rounds.flatMap((r) => [
    {
      remaining: 100 * (1 - r.sparsity),
      accuracy: r.sourceAccuracy,
      curve: 'source test (ticket trained on source)',
    },
    {
      remaining: 100 * (1 - r.sparsity),
      accuracy: r.zeroShotTargetAccuracy,
      curve: 'target test, no retraining',
    },
  ]);
  return {
    width: 620,
    height: 260,
    title: 'IMP tickets on the source domain',
    data: { values },
    mark: { type: 'line', point: true },
    encoding: {
      x: remainingAxis(),
      y: { field: 'accuracy', type: 'quantitative', title: 'test accuracy', scale: { zero: false } },
      color: { field: 'curve', type: 'nominal', legend: { labelLimit: 400 } },
    },
  } as TopLevelSpec;
}

function htmlTable(head: readonly string[], rows: readonly (readonly string[])[]): string {
  const th = head.map((h) => `<th>${escapeHtml(h)}</th>`).join('');
  const trs = rows.map((r) => `<tr>${r.map((c) => `<td>${escapeHtml(c)}</td>`).join('')}</tr>`).join('\n');
  return `<table><thead><tr>${th}</tr></thead><tbody>\n${trs}\n</tbody></table>`;
}

export async function lotteryReportHtml(result: LotteryResult): Promise<string> {
  const c = result.config;
  const strategies = c.strategies;
  const table = accuracyTable(result);
  const best = (row: (typeof table)[number]) => Math.max(...row.acc.values());
  const accRows = table.map((row) => [
    String(row.round),
    pct(row.sparsity),
    ...strategies.map((s) => {
      const v = row.acc.get(s);
      return v === undefined ? '' : `${v.toFixed(4)}${v === best(row) ? ' ★' : ''}`;
    }),
  ]);
  const srcRows = result.rounds.map((r) => [
    String(r.round),
    pct(r.sparsity),
    pct(r.overallSparsity),
    r.sourceAccuracy.toFixed(4),
    r.zeroShotTargetAccuracy.toFixed(4),
  ]);
  const last = result.rounds[result.rounds.length - 1];
  const layerRows = (last?.layers ?? []).map((l) => [
    l.name,
    l.role,
    String(l.total),
    String(l.kept),
    pct(l.sparsity),
  ]);
  const [targetSvg, sourceSvg] = await Promise.all([
    renderSvg(targetSpec(result)),
    renderSvg(sourceSpec(result)),
  ]);
  const settings = [
    ['task', `${c.task}: ${result.description}`],
    ['model', `${result.modelName}, ${result.numParams} parameters`],
    [
      'examples',
      `source ${result.sizes.sourceTrain} train / ${result.sizes.sourceTest} test; target ${result.sizes.targetTrain} train / ${result.sizes.targetTest} test`,
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
    ['seed', String(c.seed)],
    ['run time', `${result.seconds.toFixed(1)} s`],
  ];
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
strategy at each sparsity.</p>
<h2>Target accuracy vs sparsity</h2>
${targetSvg}
${htmlTable(['round', 'sparsity', ...strategies], accRows)}
<h2>Source tickets</h2>
${sourceSvg}
${htmlTable(['round', 'weight sparsity', 'all-parameter sparsity', 'source test acc', 'zero-shot target acc'], srcRows)}
<h2>Per-layer sparsity of the sparsest ticket</h2>
${htmlTable(['segment', 'role', 'total', 'kept', 'sparsity'], layerRows)}
</body></html>
`;
}

/** Writes lottery-results.json and lottery-report.html into `outDir` (created when missing). */
export async function writeLotteryReport(result: LotteryResult, outDir: string): Promise<LotteryReportPaths> {
  mkdirSync(outDir, { recursive: true });
  const paths = {
    results: join(outDir, 'lottery-results.json'),
    report: join(outDir, 'lottery-report.html'),
  };
  const html = await lotteryReportHtml(result);
  writeFileSync(paths.results, `${JSON.stringify(result, null, 2)}\n`);
  writeFileSync(paths.report, html);
  return paths;
}
