/**
 * Writes an experiment's outputs: results.json (everything), curves.csv (one row per evaluation
 * point) and a self-contained report.html (inline SVG plots and CSS, no scripts, works offline).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { reachedTarget } from '../experiment/compare.ts';
import type { ExperimentResult } from '../experiment/types.ts';
import type { RunSummary } from '../sim/types.ts';
import { accuracyEpsilonSpec, accuracySpec, renderSvg, stalenessSpec } from './plots.ts';

export interface ReportPaths {
  readonly dir: string;
  readonly results: string;
  readonly curves: string;
  readonly report: string;
}

export const CSV_COLUMNS = [
  'label',
  'seed',
  'time',
  'trips',
  'version',
  'bytesUp',
  'bytesDown',
  'accuracy',
  'loss',
  'inFlight',
  /** ε spent at that point; empty for runs without DP. */
  'epsilon',
] as const;

export function escapeHtml(text: string): string {
  return text
    .replaceAll('&', '&amp;')
    .replaceAll('<', '&lt;')
    .replaceAll('>', '&gt;')
    .replaceAll('"', '&quot;')
    .replaceAll("'", '&#39;');
}

function csvField(value: string | number): string {
  if (typeof value === 'number') return Number.isFinite(value) ? String(value) : '';
  return /[",\n\r]/.test(value) ? `"${value.replaceAll('"', '""')}"` : value;
}

export function curvesCsv(runs: readonly RunSummary[]): string {
  const lines = [CSV_COLUMNS.join(',')];
  for (const run of runs) {
    for (const p of run.curve) {
      lines.push(
        [
          run.label,
          run.seed,
          p.time,
          p.trips,
          p.version,
          p.bytesUp,
          p.bytesDown,
          p.accuracy,
          p.loss,
          p.inFlight,
          p.epsilon ?? '',
        ]
          .map(csvField)
          .join(','),
      );
    }
  }
  return `${lines.join('\n')}\n`;
}

/** JSON where non-finite numbers become null explicitly (JSON has no NaN/Infinity). */
export function resultsJson(result: ExperimentResult): string {
  return JSON.stringify(
    result,
    (_key, value) => (typeof value === 'number' && !Number.isFinite(value) ? null : value),
    2,
  );
}

function fmt(value: number | null | undefined, digits = 3): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return '—';
  if (Math.abs(value) >= 1e6) return value.toExponential(2);
  if (Number.isInteger(value)) return String(value);
  return value.toFixed(digits);
}

function fmtBytes(bytes: number | null | undefined): string {
  if (bytes === null || bytes === undefined || !Number.isFinite(bytes)) return '—';
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let v = bytes;
  let u = 0;
  while (v >= 1000 && u < units.length - 1) {
    v /= 1000;
    u++;
  }
  return `${u === 0 ? v : v.toFixed(1)} ${units[u]}`;
}

function fmtRatio(r: number | null | undefined): string {
  return r === null || r === undefined ? '—' : `${r.toFixed(2)}×`;
}

function rejectedText(rejected: Readonly<Record<string, number>>): string {
  const entries = Object.entries(rejected).filter(([, n]) => n > 0);
  if (entries.length === 0) return '0';
  const total = entries.reduce((s, [, n]) => s + n, 0);
  return `${total} (${entries.map(([k, n]) => `${k} ${n}`).join(', ')})`;
}

/** One row per run: the numbers a reader compares first. */
export interface SummaryRow {
  readonly label: string;
  readonly seed: number;
  readonly stopReason: string;
  readonly stopMessage: string;
  readonly finalAccuracy: number;
  readonly timeToTarget: number | null;
  readonly tripsToTarget: number | null;
  readonly bytesToTarget: number | null;
  readonly timeRatio: number | null;
  readonly tripsRatio: number | null;
  readonly bytesRatio: number | null;
  readonly accepted: number;
  readonly rejected: string;
  readonly wallSeconds: number;
  /** ε spent (null without DP). */
  readonly epsilon: number | null;
}

export function summaryRows(result: ExperimentResult): SummaryRow[] {
  return result.runs.map((run) => {
    const reached = result.target === null ? null : reachedTarget(run, result.target);
    const cmp = result.comparisons.find((c) => c.label === run.label && c.seed === run.seed);
    const isBaseline = result.runs[0]?.label === run.label;
    const baseRatio = isBaseline && reached !== null ? 1 : null;
    return {
      label: run.label,
      seed: run.seed,
      stopReason: run.stopReason,
      stopMessage: run.stopMessage ?? '',
      finalAccuracy: run.finalAccuracy,
      timeToTarget: reached?.time ?? null,
      tripsToTarget: reached?.trips ?? null,
      bytesToTarget: reached?.bytesUp ?? null,
      timeRatio: cmp?.timeRatio ?? baseRatio,
      tripsRatio: cmp?.tripsRatio ?? baseRatio,
      bytesRatio: cmp?.bytesRatio ?? baseRatio,
      accepted: run.counts.accepted,
      rejected: rejectedText(run.counts.rejected),
      wallSeconds: run.wallSeconds,
      epsilon: run.privacy?.epsilon ?? null,
    };
  });
}

/** A plain-text table for the terminal. */
export function summaryText(result: ExperimentResult): string {
  const rows = summaryRows(result);
  const multiSeed = result.config.seeds > 1;
  const anyPrivate = result.runs.some((r) => r.privacy !== undefined);
  const header = [
    'method',
    ...(multiSeed ? ['seed'] : []),
    'final acc',
    ...(anyPrivate ? ['ε'] : []),
    'time→target',
    'trips→target',
    'bytes→target',
    'time ×',
    'trips ×',
    'stop',
    'wall s',
  ];
  const body = rows.map((r) => [
    r.label,
    ...(multiSeed ? [String(r.seed)] : []),
    fmt(r.finalAccuracy, 4),
    ...(anyPrivate ? [fmt(r.epsilon, 2)] : []),
    fmt(r.timeToTarget, 1),
    fmt(r.tripsToTarget),
    fmtBytes(r.bytesToTarget),
    fmtRatio(r.timeRatio),
    fmtRatio(r.tripsRatio),
    r.stopReason,
    fmt(r.wallSeconds, 1),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((row) => (row[i] ?? '').length)));
  const line = (cells: string[]): string => cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ');
  const out = [line(header), line(widths.map((w) => '-'.repeat(w))), ...body.map(line)];
  out.push(
    '',
    result.target === null
      ? 'no target accuracy set'
      : `target accuracy ${result.target}; ratios = method ÷ ${result.runs[0]?.label ?? 'baseline'} (>1: baseline faster)`,
  );
  for (const run of result.runs) {
    if (run.stopReason === 'diverged')
      out.push(`${run.label} (seed ${run.seed}) diverged: ${run.stopMessage ?? ''}`);
  }
  return out.join('\n');
}

const STYLE = `
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2rem auto; max-width: 1100px; padding: 0 1rem; color: #222; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; } h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: .5rem 0; font-size: 13px; }
th, td { border: 1px solid #ddd; padding: 4px 8px; text-align: right; } th { background: #f5f5f5; }
td.l, th.l { text-align: left; }
.plots { display: flex; flex-wrap: wrap; gap: 1rem; } .plot { border: 1px solid #eee; padding: .5rem; }
.diverged { background: #fff1f0; border-left: 4px solid #d4380d; padding: .5rem 1rem; margin: .5rem 0; }
.muted { color: #666; } pre { background: #f7f7f7; padding: 1rem; overflow-x: auto; font-size: 12px; }
`;

function table(headers: string[], rows: string[][], leftColumns = 1): string {
  const th = headers
    .map((h, i) => `<th${i < leftColumns ? ' class="l"' : ''}>${escapeHtml(h)}</th>`)
    .join('');
  const trs = rows
    .map(
      (r) =>
        `<tr>${r.map((c, i) => `<td${i < leftColumns ? ' class="l"' : ''}>${escapeHtml(c)}</td>`).join('')}</tr>`,
    )
    .join('\n');
  return `<table><thead><tr>${th}</tr></thead><tbody>\n${trs}\n</tbody></table>`;
}

export async function reportHtml(result: ExperimentResult): Promise<string> {
  const { config, runs } = result;
  const plotted = runs.filter((r) => r.curve.length > 0);
  const accuracyPlots = await Promise.all(
    (['time', 'trips', 'bytesUp'] as const).map((x) => renderSvg(accuracySpec(plotted, x, result.target))),
  );
  const labels = [...new Set(runs.map((r) => r.label))];
  const stalenessPlots: string[] = [];
  for (const label of labels) {
    const hists = runs.filter((r) => r.label === label).map((r) => r.stalenessHistogram);
    if (hists.every((h) => h.length === 0)) continue;
    stalenessPlots.push(await renderSvg(stalenessSpec(label, hists)));
  }

  const privateRuns = plotted.filter((r) => r.privacy !== undefined);
  const privacyPlot = privateRuns.length === 0 ? '' : await renderSvg(accuracyEpsilonSpec(privateRuns));

  const rows = summaryRows(result);
  const anyPrivate = runs.some((r) => r.privacy !== undefined);
  const baseline = runs[0]?.label ?? 'baseline';
  const summaryTable = table(
    [
      'method',
      'seed',
      'final accuracy',
      ...(anyPrivate ? ['ε spent'] : []),
      'time to target (s)',
      'trips to target',
      'bytes up to target',
      `time × ${baseline}`,
      `trips × ${baseline}`,
      `bytes × ${baseline}`,
      'stop reason',
      'accepted',
      'rejected',
      'wall time (s)',
    ],
    rows.map((r) => [
      r.label,
      String(r.seed),
      fmt(r.finalAccuracy, 4),
      ...(anyPrivate ? [fmt(r.epsilon, 2)] : []),
      fmt(r.timeToTarget, 1),
      fmt(r.tripsToTarget),
      fmtBytes(r.bytesToTarget),
      fmtRatio(r.timeRatio),
      fmtRatio(r.tripsRatio),
      fmtRatio(r.bytesRatio),
      r.stopReason,
      fmt(r.accepted),
      r.rejected,
      fmt(r.wallSeconds, 2),
    ]),
  );

  const diverged = runs
    .filter((r) => r.stopReason === 'diverged')
    .map(
      (r) =>
        `<div class="diverged"><strong>${escapeHtml(r.label)}</strong> (seed ${r.seed}) diverged: ${escapeHtml(r.stopMessage ?? 'no message')}</div>`,
    )
    .join('\n');

  const settingsTable = table(
    ['method', 'seed', 'strategy', 'client lr', 'epochs', 'batch'],
    result.settings.map((s) => [
      s.label,
      String(s.seed),
      JSON.stringify(s.strategy),
      String(s.local.lr),
      String(s.local.epochs),
      String(s.local.batchSize),
    ]),
  );

  const tuningSections = result.tuning
    .map((t) => {
      const budget = [
        t.budget.maxTrips === undefined ? '' : `${t.budget.maxTrips} trips`,
        t.budget.maxTime === undefined ? '' : `${t.budget.maxTime} virtual s`,
      ]
        .filter((s) => s !== '')
        .join(' or ');
      const best =
        t.best === null
          ? 'none (all diverged)'
          : `client lr ${t.best.clientLr}, server lr ${t.best.serverLr}`;
      return `<h3>${escapeHtml(t.label)}</h3><p class="muted">budget ${escapeHtml(budget)}; metric ${escapeHtml(t.metric)}; chosen: ${escapeHtml(best)}</p>${table(
        ['client lr', 'server lr', 'score', 'stop reason', 'wall time (s)'],
        t.candidates.map((c) => [
          String(c.clientLr),
          String(c.serverLr),
          fmt(c.score, 4),
          c.stopReason,
          fmt(c.wallSeconds, 2),
        ]),
        0,
      )}`;
    })
    .join('\n');

  const env = result.environment;
  const title = `Orchard report: ${config.name}`;
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}</title>
<style>${STYLE}</style>
</head>
<body>
<h1>${escapeHtml(title)}</h1>
${config.description === undefined ? '' : `<p>${escapeHtml(config.description)}</p>`}
<p class="muted">Started ${escapeHtml(result.startedAt)}; wall time ${fmt(result.wallSeconds, 1)} s; Node ${escapeHtml(env.node)} on ${escapeHtml(env.platform)}/${escapeHtml(env.arch)}, ${env.cpus} × ${escapeHtml(env.cpuModel)}.</p>
<h2>Summary</h2>
<p>${result.target === null ? 'No target accuracy set.' : `Target accuracy ${escapeHtml(String(result.target))}. Ratios are each method's value divided by ${escapeHtml(baseline)}'s, for the same seed: above 1 means ${escapeHtml(baseline)} reached the target sooner; — means one of them never reached it.`}</p>
${diverged}
${summaryTable}
<h2>Accuracy</h2>
<div class="plots">
${accuracyPlots.map((svg) => `<div class="plot">${svg}</div>`).join('\n')}
</div>
${
  privateRuns.length === 0
    ? ''
    : `<h2>Privacy</h2>
${table(
  ['method', 'seed', 'ε', 'δ', 'noise multiplier σ', 'clip norm', 'noised steps', 'accountant', 'stop'],
  privateRuns.map((r) => [
    r.label,
    String(r.seed),
    fmt(r.privacy?.epsilon, 3),
    String(r.privacy?.delta),
    fmt(r.privacy?.noiseMultiplier, 4),
    fmt(r.privacy?.clipNorm, 4),
    fmt(r.privacy?.steps),
    r.privacy?.accountant ?? '',
    r.stopReason,
  ]),
)}
<p class="muted">User-level DP: each update clipped to the clip norm, Gaussian noise σ·C on the sum of a step's updates, fixed denominator. ε is accounted as Poisson subsampling with q = updates per step ÷ population (an approximation for fixed-size cohorts and FedBuff's buffer).</p>
<div class="plots"><div class="plot">${privacyPlot}</div></div>`
}
<h2>Staleness</h2>
<div class="plots">
${stalenessPlots.length === 0 ? '<p class="muted">No accepted updates recorded.</p>' : stalenessPlots.map((svg) => `<div class="plot">${svg}</div>`).join('\n')}
</div>
<h2>Settings used</h2>
${settingsTable}
${result.tuning.length === 0 ? '' : `<h2>Learning-rate tuning</h2>\n${tuningSections}`}
<h2>Configuration</h2>
<pre>${escapeHtml(JSON.stringify(config, (_k, v) => (typeof v === 'number' && !Number.isFinite(v) ? String(v) : v), 2))}</pre>
</body>
</html>
`;
}

/** Writes results.json, curves.csv and report.html into `outDir` (created if needed). */
export async function writeReport(result: ExperimentResult, outDir: string): Promise<ReportPaths> {
  const dir = resolve(outDir);
  // Render before touching the disk so a rendering failure leaves no half-written output.
  const html = await reportHtml(result);
  const json = resultsJson(result);
  const csv = curvesCsv(result.runs);
  mkdirSync(dir, { recursive: true });
  const paths: ReportPaths = {
    dir,
    results: join(dir, 'results.json'),
    curves: join(dir, 'curves.csv'),
    report: join(dir, 'report.html'),
  };
  writeFileSync(paths.results, json);
  writeFileSync(paths.curves, csv);
  writeFileSync(paths.report, html);
  return paths;
}
