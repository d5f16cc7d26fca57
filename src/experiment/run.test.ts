import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ConfigError } from '../core/errors.ts';
import { parseCsv } from '../data/loaders.ts';
import { StrategySpecSchema } from '../fl/spec.ts';
import { rdpEpsilon } from '../privacy/dp/rdp.ts';
import { writeReport } from '../report/index.ts';
import { parseExperimentConfig } from './config.ts';
import { presetConfig } from './presets.ts';
import { progressFraction, runExperiment, serverLrOf, withPopulation, withServerLr } from './run.ts';

test('quick preset end to end: results.json, curves.csv and report.html agree', async () => {
  const config = presetConfig('quick');
  const events: string[] = [];
  const result = await runExperiment(config, {
    onRunStart: (info) => events.push(`start ${info.label}`),
    onRunEnd: (info) => events.push(`end ${info.label}`),
  });
  assert.equal(result.runs.length, 3);
  assert.deepEqual(
    result.runs.map((r) => r.label),
    config.runs.map((r) => r.label),
  );
  assert.equal(events.length, 6);
  for (const run of result.runs) {
    assert.notEqual(run.stopReason, 'diverged');
    assert.ok(run.curve.length > 1, `${run.label} has a curve`);
    assert.ok(run.finalAccuracy > 1 / 5, `${run.label} beats chance (5 classes): ${run.finalAccuracy}`);
  }
  assert.equal(result.comparisons.length, 2);

  const dir = mkdtempSync(join(tmpdir(), 'orchard-e2e-'));
  const paths = await writeReport(result, dir);
  const json = JSON.parse(readFileSync(paths.results, 'utf8')) as {
    runs: Array<{ label: string; seed: number; curve: Array<Record<string, number>> }>;
    config: { name: string };
  };
  assert.equal(json.config.name, 'quick');
  const rows = parseCsv(readFileSync(paths.curves, 'utf8'), paths.curves).map((r) => r.fields);
  const header = rows[0] as string[];
  const points = json.runs.flatMap((r) => r.curve.map((p) => ({ label: r.label, seed: r.seed, p })));
  assert.equal(rows.length - 1, points.length);
  points.forEach(({ label, seed, p }, i) => {
    const row = rows[i + 1] as string[];
    assert.equal(row[0], label);
    assert.equal(Number(row[1]), seed);
    for (let c = 2; c < header.length; c++) {
      const value = p[header[c] as string];
      // Optional columns (ε without DP) are empty cells, absent from the JSON point.
      if (value === undefined) assert.equal(row[c], '', `column ${header[c]}`);
      else assert.equal(Number(row[c]), value, `column ${header[c]}`);
    }
  });
  const html = readFileSync(paths.report, 'utf8');
  assert.ok((html.match(/<svg /g)?.length ?? 0) >= 4, 'accuracy and staleness plots are inline SVG');
  assert.ok(!/<script/i.test(html));
});

test('tuning picks the best-scoring candidate and the full run uses it', async () => {
  const config = parseExperimentConfig({
    name: 'tune',
    seed: 3,
    dataset: { kind: 'synthetic', numClients: 30, dim: 10, numClasses: 3, testSize: 300 },
    model: { kind: 'softmax' },
    local: { lr: 0.05 },
    sim: { concurrency: 5, maxTrips: 60, evalEvery: 2 },
    tuning: { clientLr: [0.001, 0.3], serverLr: [0.5, 1], budget: { maxTrips: 40 } },
    runs: [
      { label: 'buff', strategy: { kind: 'fedbuff', bufferSize: 3 } },
      { label: 'async', strategy: { kind: 'fedasync' }, tuning: false },
    ],
  });
  const result = await runExperiment(config);
  assert.equal(result.tuning.length, 1);
  const t = result.tuning[0];
  assert.ok(t !== undefined);
  assert.equal(t.candidates.length, 4);
  const scored = t.candidates.filter((c) => c.score !== null);
  const top = Math.max(...scored.map((c) => c.score as number));
  const first = t.candidates.find((c) => c.score === top);
  assert.deepEqual(t.best, { clientLr: first?.clientLr, serverLr: first?.serverLr });
  const used = result.settings.find((s) => s.label === 'buff');
  assert.equal(used?.local.lr, t.best?.clientLr);
  assert.equal(used && serverLrOf(used.strategy), t.best?.serverLr);
  // The untuned run keeps its configured values.
  const asyncSettings = result.settings.find((s) => s.label === 'async');
  assert.equal(asyncSettings?.local.lr, 0.05);
  assert.equal(asyncSettings && serverLrOf(asyncSettings.strategy), 0.6);
});

test('seeds repeat every run with consecutive seeds', async () => {
  const config = parseExperimentConfig({
    name: 'seeds',
    seed: 10,
    seeds: 2,
    target: 0.3,
    dataset: { kind: 'synthetic', numClients: 20, dim: 5, numClasses: 3, testSize: 100 },
    model: { kind: 'softmax' },
    sim: { concurrency: 4, maxTrips: 20 },
    runs: [
      { label: 'a', strategy: { kind: 'fedbuff', bufferSize: 2 } },
      { label: 'b', strategy: { kind: 'fedasync' } },
    ],
  });
  const result = await runExperiment(config);
  assert.deepEqual(
    result.runs.map((r) => `${r.label}@${r.seed}`),
    ['a@10', 'b@10', 'a@11', 'b@11'],
  );
  assert.deepEqual(
    result.comparisons.map((c) => `${c.label}@${c.seed}`),
    ['b@10', 'b@11'],
  );
});

test('withServerLr changes the optimizer lr, or FedAsync alpha', () => {
  assert.deepEqual(
    withServerLr({ kind: 'fedasync', alpha: 0.6, staleness: { kind: 'constant' }, maxStaleness: 3 }, 0.2),
    {
      kind: 'fedasync',
      alpha: 0.2,
      staleness: { kind: 'constant' },
      maxStaleness: 3,
    },
  );
  const s = withServerLr(
    {
      kind: 'sync',
      cohortSize: 5,
      overSelection: 0,
      roundTimeout: 10,
      minUpdates: 1,
      serverOptimizer: { kind: 'momentum', lr: 1, momentum: 0.9, nesterov: false },
    },
    0.3,
  );
  assert.deepEqual(s.kind === 'sync' ? s.serverOptimizer : null, {
    kind: 'momentum',
    lr: 0.3,
    momentum: 0.9,
    nesterov: false,
  });
});

test('progress fraction is the nearest stop condition', () => {
  assert.equal(progressFraction({ maxTrips: 100, maxTime: 10 }, { time: 5, trips: 20, version: 0 }), 0.5);
  assert.equal(progressFraction({ maxTrips: 100 }, { time: 5, trips: 150, version: 0 }), 1);
  assert.equal(progressFraction({ maxVersions: 8 }, { time: 5, trips: 150, version: 2 }), 0.25);
});

test('a DP run gets the dataset client count as its population, reports ε, and refuses a larger population', async () => {
  const raw = (population?: number) => ({
    name: 'dp',
    dataset: { kind: 'synthetic', numClients: 40, dim: 5, numClasses: 3, testSize: 100 },
    model: { kind: 'softmax' },
    sim: { concurrency: 8, maxTrips: 40 },
    runs: [
      {
        label: 'dp',
        strategy: {
          kind: 'fedbuff',
          bufferSize: 4,
          privacy: { clipNorm: 1, noiseMultiplier: 1, delta: 1e-5, ...(population ? { population } : {}) },
        },
      },
    ],
  });
  const result = await runExperiment(parseExperimentConfig(raw()));
  const run = result.runs[0];
  assert.equal(run?.privacy?.steps, 10);
  // q = 4/40 filled in from the dataset: compare with the accountant at that rate.
  const expected = rdpEpsilon({ noiseMultiplier: 1, samplingRate: 0.1, steps: 10, delta: 1e-5 }).epsilon;
  assert.ok(Math.abs((run?.privacy?.epsilon as number) - expected) < 1e-12);
  assert.equal(withPopulation(StrategySpecSchema.parse({ kind: 'fedasync' }), 5).kind, 'fedasync');
  await assert.rejects(
    runExperiment(parseExperimentConfig(raw(1000))),
    (e: unknown) =>
      e instanceof ConfigError && e.issues.some((i) => i.path === 'strategy.privacy.population'),
  );
});
