import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { parseCsv } from '../data/loaders.ts';
import { compareRuns } from '../experiment/compare.ts';
import { parseExperimentConfig } from '../experiment/config.ts';
import { point, summary } from '../experiment/fixtures.ts';
import type { ExperimentResult } from '../experiment/types.ts';
import { CSV_COLUMNS, curvesCsv, escapeHtml, summaryText, writeReport } from './index.ts';
import { stalenessSpec } from './plots.ts';

const TRICKY = 'Fed<b>Async</b> "a,b" & co';

function fixtureResult(): ExperimentResult {
  const config = parseExperimentConfig({
    name: 'report <fixture>',
    description: 'hand-made summaries & <tags>',
    dataset: { kind: 'synthetic', numClients: 20 },
    model: { kind: 'softmax' },
    sim: { maxTrips: 100 },
    target: 0.8,
    runs: [
      { label: 'FedBuff', strategy: { kind: 'fedbuff' } },
      { label: TRICKY, strategy: { kind: 'fedasync' } },
      { label: 'Broken', strategy: { kind: 'fedbuff' } },
    ],
  });
  const runs = [
    summary('FedBuff', 0, [point(1, 10, 0.3), point(2.5, 20, 0.6), point(4, 30, 0.8125)]),
    summary(TRICKY, 0, [point(1, 10, 0.2), point(3, 30, 0.5), point(8, 60, 0.85)], {
      stalenessHistogram: [1, 5, 9, 2],
    }),
    summary('Broken', 0, [], {
      stopReason: 'diverged',
      stopMessage: 'loss became NaN at version 3 <boom>',
      stalenessHistogram: [],
    }),
  ];
  return {
    config,
    target: 0.8,
    runs,
    settings: runs.map((r) => ({
      label: r.label,
      seed: 0,
      strategy: { kind: 'fedasync', alpha: 0.6, staleness: { kind: 'constant' }, maxStaleness: 5 },
      local: { epochs: 1, batchSize: 10, lr: 0.05 },
    })),
    tuning: [
      {
        label: 'FedBuff',
        metric: 'final_accuracy',
        budget: { maxTrips: 30 },
        candidates: [
          { clientLr: 0.1, serverLr: 1, score: 0.7, stopReason: 'max_trips', wallSeconds: 0.1 },
          { clientLr: 1, serverLr: 1, score: null, stopReason: 'diverged', wallSeconds: 0.1 },
        ],
        best: { clientLr: 0.1, serverLr: 1 },
      },
    ],
    comparisons: compareRuns(runs, 0.8),
    startedAt: '2026-01-01T00:00:00.000Z',
    wallSeconds: 1.5,
    environment: { node: 'v20', platform: 'linux', arch: 'x64', cpus: 2, cpuModel: 'test cpu' },
  };
}

test('curves.csv has one row per curve point and its numbers match results.json exactly', async () => {
  const result = fixtureResult();
  const dir = mkdtempSync(join(tmpdir(), 'orchard-report-'));
  const paths = await writeReport(result, dir);
  const json = JSON.parse(readFileSync(paths.results, 'utf8')) as {
    runs: Array<{ label: string; seed: number; curve: Array<Record<string, number>> }>;
  };
  const rows = parseCsv(readFileSync(paths.curves, 'utf8'), paths.curves).map((r) => r.fields);
  assert.deepEqual(rows[0], [...CSV_COLUMNS]);
  const expected = json.runs.flatMap((r) => r.curve.map((p) => ({ label: r.label, seed: r.seed, p })));
  assert.equal(rows.length - 1, expected.length);
  assert.equal(expected.length, 6);
  expected.forEach((e, i) => {
    const row = rows[i + 1] as string[];
    assert.equal(row[0], e.label);
    assert.equal(Number(row[1]), e.seed);
    for (let c = 2; c < CSV_COLUMNS.length; c++) {
      const column = CSV_COLUMNS[c] as string;
      // Optional columns (ε without DP) are empty cells, absent from the JSON point.
      if (e.p[column] === undefined) assert.equal(row[c], '', `row ${i + 1} column ${column}`);
      else assert.equal(Number(row[c]), e.p[column], `row ${i + 1} column ${column}`);
    }
  });
  // The diverged run's NaN final accuracy is an explicit null in JSON.
  assert.equal(
    (JSON.parse(readFileSync(paths.results, 'utf8')) as { runs: Array<{ finalAccuracy: unknown }> }).runs[2]
      ?.finalAccuracy,
    null,
  );
});

test('report.html is self-contained, escapes text, embeds SVG plots and shows divergence', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'orchard-report-'));
  const paths = await writeReport(fixtureResult(), dir);
  const html = readFileSync(paths.report, 'utf8');
  // 3 accuracy plots + staleness for the two methods with histograms.
  assert.equal(html.match(/<svg /g)?.length, 5);
  assert.ok(/<path[^>]+d="M/.test(html), 'plots contain drawn paths');
  assert.ok(!/<script/i.test(html), 'no scripts');
  assert.ok(!/<link/i.test(html), 'no external stylesheets');
  assert.ok(!/(src|href)="https?:/i.test(html), 'no external resources');
  assert.ok(!html.includes('<b>'), 'labels are escaped');
  assert.ok(!html.includes('<boom>'), 'messages are escaped');
  assert.ok(html.includes(escapeHtml(TRICKY)));
  assert.ok(html.includes('loss became NaN at version 3 &lt;boom&gt;'));
  assert.ok(html.includes('report &lt;fixture&gt;'));
  // Ratios vs FedBuff: time 8/4 = 2.00×, trips 60/30 = 2.00×, bytes 6000/3000 = 2.00×.
  assert.equal(html.match(/2\.00×/g)?.length, 3);
});

test('escapeHtml covers the five special characters', () => {
  assert.equal(
    escapeHtml(`<a href="x" title='y'>&</a>`),
    '&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;&lt;/a&gt;',
  );
});

test('CSV quotes fields containing commas or quotes', () => {
  const csv = curvesCsv([summary('a,"b"', 1, [point(1, 2, 0.5)])]);
  assert.equal(csv.split('\n')[1]?.startsWith('"a,""b""",1,1,2,'), true);
});

test('terminal summary lists methods, ratios and divergence', () => {
  const text = summaryText(fixtureResult());
  assert.match(text, /FedBuff/);
  assert.match(text, /2\.00×/);
  assert.match(text, /Broken \(seed 0\) diverged: loss became NaN/);
});

test('long staleness tails are grouped into at most 60 bars without losing updates', () => {
  const hist = Array.from({ length: 1000 }, (_, s) => (s < 10 ? 100 : 1)); // 10·100 + 990·1 = 1990
  const spec = stalenessSpec('x', [hist, [5]]) as {
    data: { values: Array<{ staleness: number; end: number; count: number }> };
  };
  const bars = spec.data.values;
  assert.ok(bars.length <= 60);
  assert.equal(
    bars.reduce((s, b) => s + b.count, 0),
    1995,
  );
  // Bin width ceil(1000/60) = 17: the first bar holds staleness 0..16 = 10·100 + 7·1 + the extra 5.
  assert.deepEqual(bars[0], { staleness: 0, end: 17, count: 1012 });
});

test('DP runs: ε column in both summaries, a privacy section with the accuracy-vs-ε plot, ε in curves.csv', async () => {
  const base = fixtureResult();
  const eps = [0, 1.5, 3.25];
  const dpRun = summary(
    'DP-FedBuff',
    0,
    [point(1, 10, 0.3), point(2, 20, 0.5), point(3, 30, 0.7)].map((p, i) => ({
      ...p,
      epsilon: eps[i] as number,
    })),
    {
      stopReason: 'privacy_budget',
      privacy: {
        epsilon: 3.25,
        delta: 1e-5,
        noiseMultiplier: 1.1,
        clipNorm: 0.5,
        steps: 3,
        accountant: 'rdp',
      },
    },
  );
  const result: ExperimentResult = {
    ...base,
    runs: [...base.runs, dpRun],
    settings: [
      ...base.settings,
      { ...(base.settings[0] as ExperimentResult['settings'][number]), label: 'DP-FedBuff' },
    ],
  };
  const text = summaryText(result);
  const lines = text.split('\n');
  assert.ok(lines[0]?.includes('ε'), 'ε column header');
  assert.match(lines.find((l) => l.startsWith('DP-FedBuff')) ?? '', /3\.25.*privacy_budget/);
  const csv = curvesCsv(result.runs).trim().split('\n');
  assert.equal(csv[0]?.split(',').at(-1), 'epsilon');
  const dpRows = csv.filter((l) => l.startsWith('DP-FedBuff'));
  assert.deepEqual(
    dpRows.map((l) => l.split(',').at(-1)),
    ['0', '1.5', '3.25'],
  );
  assert.ok(
    csv.filter((l) => l.startsWith('FedBuff,')).every((l) => l.endsWith(',')),
    'empty ε without DP',
  );
  const dir = mkdtempSync(join(tmpdir(), 'orchard-report-'));
  const html = readFileSync((await writeReport(result, dir)).report, 'utf8');
  assert.ok(html.includes('ε spent'));
  assert.ok(html.includes('<h2>Privacy</h2>'));
  assert.ok(html.includes('Accuracy vs privacy spent (ε)'));
  // 3 accuracy plots + 3 staleness (the DP fixture has a histogram too) + 1 accuracy-vs-ε.
  assert.equal(html.match(/<svg /g)?.length, 7);
  // Without DP runs there is no privacy section.
  const plain = readFileSync(
    (await writeReport(base, mkdtempSync(join(tmpdir(), 'orchard-report-')))).report,
    'utf8',
  );
  assert.ok(!plain.includes('<h2>Privacy</h2>'));
  assert.ok(!plain.includes('ε spent'));
});
