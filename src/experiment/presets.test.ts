import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError } from '../core/errors.ts';
import { parseExperimentConfig, resolveRun } from './config.ts';
import { listPresets, presetConfig, presetRaw } from './presets.ts';

test('every preset validates and has a description', () => {
  const names = listPresets().map((p) => p.name);
  for (const required of ['default', 'headline-100', 'headline-1000', 'quick'])
    assert.ok(names.includes(required));
  for (const { name, description } of listPresets()) {
    assert.ok(description.length > 10, name);
    const config = presetConfig(name);
    assert.equal(config.name, name);
  }
});

test('headline presets tune every method with one grid and one budget', () => {
  for (const name of ['headline-100', 'headline-1000']) {
    const c = presetConfig(name);
    assert.ok(c.tuning !== undefined);
    const grids = c.runs.map((_, i) => JSON.stringify(resolveRun(c, i).grid));
    assert.equal(new Set(grids).size, 1, `${name} grids differ: ${grids.join(' | ')}`);
    assert.deepEqual(
      c.runs.map((r) => r.strategy.kind),
      ['fedbuff', 'sync', 'fedasync'],
    );
    const concurrency = name === 'headline-100' ? 100 : 1000;
    assert.equal(c.sim.concurrency, concurrency);
    assert.equal(c.sim.duration.kind, 'half_normal');
  }
});

test('unknown preset names are a ConfigError naming the known ones', () => {
  assert.throws(
    () => presetConfig('nope'),
    (e: unknown) => e instanceof ConfigError && /quick/.test(e.message),
  );
});

test('dp-fedbuff compares non-private FedBuff with DP-FedBuff and DP-FedAvgM at each ε, each stopping at its budget', () => {
  const c = presetConfig('dp-fedbuff');
  const [reference, ...priv] = c.runs;
  assert.equal(reference?.strategy.kind, 'fedbuff');
  assert.ok(reference?.strategy.kind === 'fedbuff' && reference.strategy.privacy === undefined);
  assert.equal(priv.length, 6);
  for (const run of priv) {
    const s = run.strategy;
    assert.ok(s.kind === 'fedbuff' || s.kind === 'sync');
    const p = s.privacy;
    assert.ok(p !== undefined, run.label);
    assert.equal(p.budget?.epsilon, p.targetEpsilon, run.label);
    assert.ok(run.label.includes(`ε=${p.targetEpsilon}`), run.label);
    // δ = 1/N, N the population (issue 3).
    assert.equal(p.delta, 1 / 3000);
    assert.ok(c.dataset.kind === 'mnist' && c.dataset.numClients === 3000);
  }
  assert.deepEqual(
    [...new Set(priv.map((r) => (r.strategy.kind === 'fedasync' ? 0 : r.strategy.privacy?.targetEpsilon)))],
    [8, 4, 1],
  );
});

test('a bad privacy block in a config is a ConfigError naming runs.i.strategy.privacy fields', () => {
  const raw = presetRaw('quick') as { runs: Array<{ strategy: Record<string, unknown> }> };
  (raw.runs[0] as { strategy: Record<string, unknown> }).strategy.privacy = { clipNorm: -1, delta: 1e-5 };
  assert.throws(
    () => parseExperimentConfig(raw),
    (e: unknown) =>
      e instanceof ConfigError &&
      e.issues.some((i) => i.path === 'runs.0.strategy.privacy.clipNorm') &&
      e.issues.some((i) => i.path === 'runs.0.strategy.privacy.noiseMultiplier'),
  );
});
