import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ConfigError } from '../core/errors.ts';
import {
  jsonErrorOffset,
  loadExperimentConfig,
  parseConfigText,
  parseExperimentConfig,
  resolveRun,
} from './config.ts';

function minimal(): Record<string, unknown> {
  return {
    name: 'tiny',
    dataset: { kind: 'synthetic', numClients: 20 },
    model: { kind: 'softmax' },
    sim: { maxTrips: 50 },
    runs: [{ label: 'FedBuff', strategy: { kind: 'fedbuff' } }],
  };
}

function issuesOf(fn: () => unknown): Map<string, string> {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof ConfigError, `expected ConfigError, got ${String(e)}`);
    return new Map(e.issues.map((i) => [i.path, i.message]));
  }
  assert.fail('expected a ConfigError');
}

test('a minimal config parses and fills defaults', () => {
  const c = parseExperimentConfig(minimal());
  assert.equal(c.seed, 0);
  assert.equal(c.seeds, 1);
  assert.equal(c.local.batchSize, 10);
  assert.equal(c.sim.concurrency, 100);
  assert.equal(c.sim.maxTrips, 50);
  assert.equal(c.runs[0]?.strategy.kind, 'fedbuff');
});

test('several wrong fields are all reported with dotted paths', () => {
  const raw = {
    ...minimal(),
    seed: 'x',
    sim: { maxTrips: 50, concurrency: -3, duration: { kind: 'half_normal' } },
    runs: [
      { label: 'A', strategy: { kind: 'fedbuff', bufferSize: 0 } },
      { label: 'B', strategy: { kind: 'nope' } },
    ],
  };
  const issues = issuesOf(() => parseExperimentConfig(raw));
  for (const path of [
    'seed',
    'sim.concurrency',
    'sim.duration.sigma',
    'runs.0.strategy.bufferSize',
    'runs.1.strategy.kind',
  ]) {
    assert.ok(issues.has(path), `missing issue for ${path}; got ${[...issues.keys()].join(', ')}`);
  }
  assert.match(issues.get('sim.duration.sigma') ?? '', /missing/);
});

test('unknown keys are rejected at every level', () => {
  const raw = {
    ...minimal(),
    colour: 'red',
    sim: { maxTrips: 50, concurency: 10 },
    runs: [{ label: 'A', strategy: { kind: 'fedbuff', bufferSise: 3 }, extra: true }],
  };
  const issues = issuesOf(() => parseExperimentConfig(raw));
  assert.equal(issues.get('colour'), 'unknown field');
  assert.equal(issues.get('sim.concurency'), 'unknown field');
  assert.equal(issues.get('runs.0.strategy.bufferSise'), 'unknown field');
  assert.equal(issues.get('runs.0.extra'), 'unknown field');
});

test('missing required fields and empty run lists are reported', () => {
  const issues = issuesOf(() => parseExperimentConfig({ runs: [] }));
  assert.ok(issues.has('name'));
  assert.ok(issues.has('dataset'));
  assert.ok(issues.has('model'));
  assert.ok(issues.has('runs'));
});

test('cross-field checks: duplicate labels, no stop condition, model/dataset mismatch, fedasync alpha grid', () => {
  const raw = {
    ...minimal(),
    model: { kind: 'embedding_bag' },
    sim: {},
    tuning: { serverLr: [0.5, 2], budget: { maxTrips: 10 } },
    runs: [
      { label: 'A', strategy: { kind: 'fedbuff' }, sim: { maxTrips: 5 } },
      { label: 'A', strategy: { kind: 'fedasync' }, sim: { maxTrips: 5 } },
      { label: 'C', strategy: { kind: 'fedbuff' } },
    ],
  };
  const issues = issuesOf(() => parseExperimentConfig(raw));
  assert.ok(issues.has('model.kind'));
  assert.match(issues.get('runs.1.label') ?? '', /duplicate/);
  assert.match(issues.get('sim') ?? '', /stop condition/);
  assert.match(issues.get('tuning.serverLr') ?? '', /alpha/);
});

test('tuning budget needs maxTrips or maxTime', () => {
  const issues = issuesOf(() => parseExperimentConfig({ ...minimal(), tuning: { budget: {} } }));
  assert.ok(issues.has('tuning.budget'));
});

test('per-run overrides change only the named fields', () => {
  const raw = {
    ...minimal(),
    local: { lr: 0.2, epochs: 3 },
    sim: { maxTrips: 50, concurrency: 7 },
    runs: [
      { label: 'A', strategy: { kind: 'fedbuff' }, local: { lr: 0.01 }, sim: { maxTrips: 9 } },
      { label: 'B', strategy: { kind: 'fedasync' } },
    ],
  };
  const c = parseExperimentConfig(raw);
  const a = resolveRun(c, 0);
  assert.equal(a.local.lr, 0.01);
  assert.equal(a.local.epochs, 3); // not reset to the schema default 1
  assert.equal(a.sim.maxTrips, 9);
  assert.equal(a.sim.concurrency, 7); // not reset to the schema default 100
  const b = resolveRun(c, 1);
  assert.equal(b.local.lr, 0.2);
  assert.equal(b.sim.maxTrips, 50);
  const bad = issuesOf(() =>
    parseExperimentConfig({
      ...raw,
      runs: [{ label: 'A', strategy: { kind: 'fedbuff' }, sim: { nope: 1 } }],
    }),
  );
  assert.equal(bad.get('runs.0.sim.nope'), 'unknown field');
});

test('tuning grids: shared, per-run replacement, and opt-out', () => {
  const c = parseExperimentConfig({
    ...minimal(),
    tuning: { clientLr: [0.1, 0.2], serverLr: [1], budget: { maxTrips: 10 } },
    runs: [
      { label: 'A', strategy: { kind: 'fedbuff' } },
      { label: 'B', strategy: { kind: 'fedasync' }, tuning: { serverLr: [0.3, 0.6] } },
      { label: 'C', strategy: { kind: 'fedbuff' }, tuning: false },
    ],
  });
  assert.deepEqual(resolveRun(c, 0).grid, { clientLr: [0.1, 0.2], serverLr: [1] });
  assert.deepEqual(resolveRun(c, 1).grid, { clientLr: [0.1, 0.2], serverLr: [0.3, 0.6] });
  assert.equal(resolveRun(c, 2).grid, null);
  assert.equal(c.tuning?.metric, 'final_accuracy');
});

test('JSON syntax errors name the file, line and column', () => {
  const text = '{\n  "name": "x",\n  "seed": ,\n}';
  // Hand count: line 3 is `  "seed": ,` and the comma is its 11th character.
  assert.equal(jsonErrorOffset(text), text.indexOf(',', text.indexOf('"seed"')));
  const issues = issuesOf(() => parseConfigText(text, 'my.json'));
  const message = issues.get('') ?? '';
  assert.match(message, /^my\.json:3:11: JSON syntax error/);
  assert.equal(jsonErrorOffset('{"a": [1, 2]}'), -1);
  assert.equal(jsonErrorOffset('{"a": 1'), 7); // unexpected end
  assert.equal(jsonErrorOffset('{"a": 1,}'), 8); // trailing comma: '}' where a key must be
  assert.equal(jsonErrorOffset('[01]'), 2); // leading zero: the '1' after '0' is unexpected
});

test('loading a missing or malformed file gives a ConfigError', () => {
  const dir = mkdtempSync(join(tmpdir(), 'orchard-config-'));
  const missing = issuesOf(() => loadExperimentConfig(join(dir, 'nope.json')));
  assert.match(missing.get('') ?? '', /ENOENT/);
  const file = join(dir, 'ok.json');
  writeFileSync(file, JSON.stringify(minimal()));
  assert.equal(loadExperimentConfig(file).name, 'tiny');
});
