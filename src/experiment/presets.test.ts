import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError } from '../core/errors.ts';
import { resolveRun } from './config.ts';
import { listPresets, presetConfig } from './presets.ts';

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
