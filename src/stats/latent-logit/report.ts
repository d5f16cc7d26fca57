/** Results JSON and a self-contained HTML report (inline SVG plots, no scripts) for the logit reproduction. */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type * as vl from 'vega-lite';
import { escapeHtml } from '../../report/index.ts';
import { renderSvg } from '../../report/plots.ts';
import type { LogitReproResult, MethodName, SettingResult } from './repro.ts';

export interface LogitReportPaths {
  readonly results: string;
  readonly report: string;
}

const METHOD_LABEL: Record<MethodName, string> = {
  convex: 'convex latent-effect',
  'convex-rank': 'convex, rank-truncated',
  pooled: 'pooled logit',
  'per-individual': 'per-individual ridge',
  mixed: 'mixed logit (SML)',
};

export function settingLabel(s: SettingResult): string {
  const { kind, n, T, d, r } = s.setting;
  return `${kind} n=${n} T=${T} d=${d} r=${r}`;
}

interface Row {
  readonly setting: string;
  readonly method: string;
  readonly value: number;
}

function rows(result: LogitReproResult, pick: (m: SettingResult['methods'][number]) => number): Row[] {
  return result.settings.flatMap((s) =>
    s.methods.map((m) => ({ setting: settingLabel(s), method: METHOD_LABEL[m.method], value: pick(m) })),
  );
}

function barSpec(title: string, data: Row[], axisTitle: string, log: boolean): vl.TopLevelSpec {
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title,
    width: 640,
    height: 260,
    data: { values: data },
    mark: 'bar',
    encoding: {
      x: { field: 'setting', type: 'nominal', title: null, axis: { labelAngle: -20, labelLimit: 220 } },
      xOffset: { field: 'method', type: 'nominal' },
      y: {
        field: 'value',
        type: 'quantitative',
        title: axisTitle,
        ...(log ? { scale: { type: 'log' } } : {}),
      },
      color: { field: 'method', type: 'nominal', title: 'method', legend: { labelLimit: 260 } },
      tooltip: [{ field: 'value', type: 'quantitative' }],
    },
  } as vl.TopLevelSpec;
}

/** Held-out NLL over the (λ1, λ2) grid of one setting's path; the selected point is outlined. */
function pathSpec(s: SettingResult): vl.TopLevelSpec {
  const best = Math.min(...s.convexPath.map((p) => p.heldOutNll));
  const values = s.convexPath.map((p) => ({
    l1: p.lambda1Ratio.toPrecision(2),
    l2: p.lambda2Ratio.toPrecision(2),
    nll: p.heldOutNll,
    rank: p.rank,
    selected: p.heldOutNll === best,
  }));
  const sortDesc = (field: 'l1' | 'l2'): string[] =>
    [...new Set(values.map((v) => v[field]))].sort((a, b) => Number(b) - Number(a));
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title: `λ path, ${settingLabel(s)}: held-out NLL (label: rank of U)`,
    width: 300,
    height: 220,
    data: { values },
    encoding: {
      x: { field: 'l1', type: 'ordinal', sort: sortDesc('l1'), title: 'λ1 / λ1_max' },
      y: { field: 'l2', type: 'ordinal', sort: sortDesc('l2'), title: 'λ2 / λ2_max' },
    },
    layer: [
      {
        mark: 'rect',
        encoding: {
          color: {
            field: 'nll',
            type: 'quantitative',
            title: 'held-out NLL',
            scale: { scheme: 'viridis', reverse: true },
          },
          stroke: { condition: { test: 'datum.selected', value: 'red' }, value: null },
          strokeWidth: { value: 3 },
        },
      },
      { mark: { type: 'text', fontSize: 10 }, encoding: { text: { field: 'rank', type: 'quantitative' } } },
    ],
  } as vl.TopLevelSpec;
}

function fmt(v: number, digits = 3): string {
  if (!Number.isFinite(v)) return String(v);
  if (v !== 0 && Math.abs(v) < 10 ** -digits) return v.toExponential(1);
  return v.toFixed(digits);
}

/** Rank of the fitted U and the true r, for the low-rank methods only. */
function rankText(s: SettingResult, m: SettingResult['methods'][number]): string {
  const rank = m.details.rank;
  return typeof rank === 'number' ? `${rank} (${s.setting.r})` : '—';
}

/** Selected rank of U by each rule next to the true rank, per setting. */
function rankSpec(result: LogitReproResult): vl.TopLevelSpec {
  const values = result.settings.flatMap((s) => [
    { setting: settingLabel(s), rule: 'true rank r', rank: s.setting.r },
    ...s.methods
      .filter((m) => typeof m.details.rank === 'number')
      .map((m) => ({
        setting: settingLabel(s),
        rule: METHOD_LABEL[m.method],
        rank: m.details.rank as number,
      })),
  ]);
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title: 'Rank of U: λ chosen by held-out likelihood vs rank-truncated vs the truth',
    width: 640,
    height: 220,
    data: { values },
    mark: 'bar',
    encoding: {
      x: { field: 'setting', type: 'nominal', title: null, axis: { labelAngle: -20, labelLimit: 220 } },
      xOffset: { field: 'rule', type: 'nominal' },
      y: { field: 'rank', type: 'quantitative', title: 'rank of U' },
      color: { field: 'rule', type: 'nominal', title: null, legend: { labelLimit: 260 } },
    },
  } as vl.TopLevelSpec;
}

/** A plain-text table of every setting × method (also used by the CLI). */
export function reproTable(result: LogitReproResult): string {
  const head = [
    'setting',
    'method',
    'rank U (true)',
    'recovery err',
    'held-out LL',
    'oracle LL',
    'seconds',
    'instability',
  ];
  const body = result.settings.flatMap((s) =>
    s.methods.map((m) => [
      settingLabel(s),
      METHOD_LABEL[m.method],
      rankText(s, m),
      fmt(m.recoveryError),
      fmt(m.heldOutLogLik, 4),
      fmt(s.oracleHeldOutLogLik, 4),
      fmt(m.seconds, 2),
      m.instability.toExponential(1),
    ]),
  );
  const widths = head.map((h, k) => Math.max(h.length, ...body.map((r) => (r[k] as string).length)));
  const line = (r: string[]): string => `| ${r.map((c, k) => c.padEnd(widths[k] as number)).join(' | ')} |`;
  return [line(head), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...body.map(line)].join('\n');
}

export async function logitReportHtml(result: LogitReproResult): Promise<string> {
  // Instability can be exactly 0; a log axis needs a floor, stated in the plot title.
  const floor = 1e-12;
  const plots = await Promise.all([
    renderSvg(
      barSpec(
        'Coefficient recovery error ‖B̂ − B‖_F / ‖B‖_F (lower is better)',
        rows(result, (m) => m.recoveryError),
        'relative error',
        false,
      ),
    ),
    renderSvg(
      barSpec(
        'Held-out log-likelihood per situation, minus the oracle (true coefficients); closer to 0 is better',
        result.settings.flatMap((s) =>
          s.methods.map((m) => ({
            setting: settingLabel(s),
            method: METHOD_LABEL[m.method],
            value: m.heldOutLogLik - s.oracleHeldOutLogLik,
          })),
        ),
        'held-out LL − oracle LL',
        false,
      ),
    ),
    renderSvg(
      barSpec(
        'Fitting time including tuning (s, log scale)',
        rows(result, (m) => Math.max(m.seconds, 1e-4)),
        'seconds',
        true,
      ),
    ),
    renderSvg(
      barSpec(
        `Instability across ${result.restarts} random restarts: max ‖B̂_restart − B̂‖_F / ‖B̂‖_F (log scale, floored at ${floor})`,
        rows(result, (m) => Math.max(m.instability, floor)),
        'relative spread',
        true,
      ),
    ),
    renderSvg(rankSpec(result)),
  ]);
  const pathPlots = await Promise.all(result.settings.map((s) => renderSvg(pathSpec(s))));
  const tableRows = result.settings
    .flatMap((s) =>
      s.methods.map(
        (m) =>
          `<tr><td>${escapeHtml(settingLabel(s))}</td><td>${escapeHtml(METHOD_LABEL[m.method])}</td><td>${rankText(s, m)}</td><td>${fmt(m.recoveryError)}</td>` +
          `<td>${fmt(m.heldOutLogLik, 4)}</td><td>${fmt(s.oracleHeldOutLogLik, 4)}</td><td>${fmt(m.seconds, 2)}</td>` +
          `<td>${m.instability.toExponential(1)}</td><td>${escapeHtml(
            Object.entries(m.details)
              .map(([k, v]) => `${k}=${typeof v === 'number' ? fmt(v, 4) : v}`)
              .join(', '),
          )}</td></tr>`,
      ),
    )
    .join('\n');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Convex latent-effect logit: reproduction</title>
<style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}
td:first-child,td:nth-child(2),td:last-child{text-align:left}th{background:#f3f3f3}figure{margin:1.5em 0}</style></head>
<body>
<h1>Convex latent-effect logit: reproduction on simulated panels</h1>
<p>Each individual i has coefficients β<sub>i</sub> = w + u<sub>i</sub> with w sparse and U = [u<sub>1</sub> … u<sub>n</sub>] of rank r.
The convex model minimizes the mean negative log-likelihood + λ1‖w‖₁ + λ2‖U‖<sub>*</sub> (FISTA, λ chosen on a warm-started path by a per-individual holdout).
The nuclear norm shrinks every singular value alike, so the likelihood-best λ2 admits small noise directions and its rank overshoots r;
the <i>rank-truncated</i> row keeps the top k singular triplets of the same convex fit, k chosen by held-out likelihood on the same holdout (no extra fits).
Baselines: a pooled logit (one β for all), a ridge logit per individual (ridge chosen by the same kind of holdout), and a mixed logit with
independent normal coefficients by simulated maximum likelihood (Halton draws, BFGS, one random start per restart; the best likelihood is kept,
individual coefficients are posterior means). Scores are on an independent test panel of the same individuals.
Times are wall-clock (single-threaded, on whatever else the machine was running) and include tuning: the λ path for the convex model, the ridge grid for per-individual fits, all ${result.restarts} starts for the mixed logit.
Instability refits each method from ${result.restarts} random starting points (at the selected λ for the convex model).</p>
<p>${result.quick ? '<strong>Quick run</strong> (small settings). ' : ''}Seed ${result.seed}; total ${result.seconds.toFixed(1)} s.</p>
${plots.map((svg) => `<figure>${svg}</figure>`).join('\n')}
<h2>λ paths of the convex model</h2>
<p>Warm-started from λ_max (zero solution) downwards on a per-individual training split; the red cell is the selected λ.</p>
<div style="display:flex;flex-wrap:wrap;gap:1em">${pathPlots.map((svg) => `<figure>${svg}</figure>`).join('\n')}</div>
<h2>All results</h2>
<table><thead><tr><th>setting</th><th>method</th><th>rank U (true)</th><th>recovery error</th><th>held-out LL</th><th>oracle LL</th><th>seconds</th><th>instability</th><th>details</th></tr></thead>
<tbody>
${tableRows}
</tbody></table>
</body></html>
`;
}

export async function writeLogitReport(result: LogitReproResult, outDir: string): Promise<LogitReportPaths> {
  mkdirSync(outDir, { recursive: true });
  const paths = { results: join(outDir, 'logit-results.json'), report: join(outDir, 'logit-report.html') };
  const html = await logitReportHtml(result);
  writeFileSync(paths.results, `${JSON.stringify(result, null, 2)}\n`);
  writeFileSync(paths.report, html);
  return paths;
}
