import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ConfigError } from '../../core/errors.ts';
import { heldOutSpecs } from '../../stats/online-krr/report.ts';
import { type KrrRunFlags, krrRunCommand, parseWindowList, selectSeries } from './krr.ts';

const BIN = join(import.meta.dirname, '..', '..', '..', 'bin', 'orchard.js');

function orchard(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function pemsFile(rows: number, badLine?: number): string {
  const dir = mkdtempSync(join(tmpdir(), 'orchard-krr-cli-'));
  const lines = ['timestamp,station,flow,speed,occupancy'];
  for (let i = 0; i < rows; i++) {
    const t = new Date(Date.UTC(2024, 0, 1) + i * 300_000).toISOString();
    const flow =
      i + 2 === badLine ? 'lots' : (500 + 300 * Math.sin((2 * Math.PI * i) / 288) + (i % 7)).toFixed(1);
    lines.push(`${t},400001,${flow},60,0.05`);
  }
  const file = join(dir, 'pems.csv');
  writeFileSync(file, `${lines.join('\n')}\n`);
  return file;
}

test('krr run on synthetic data prints every method as JSON', () => {
  const r = orchard(
    'krr',
    'run',
    '--synthetic',
    '--days',
    '2',
    '--window',
    '48',
    '--method',
    'all',
    '--json',
  );
  assert.equal(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout) as Array<{ method: string; rmse: number; compute: { flops: number } }>;
  assert.deepEqual(
    out.map((o) => o.method),
    ['online', 'fixed', 'grid', 'random'],
  );
  for (const o of out) assert.ok(Number.isFinite(o.rmse) && o.compute.flops > 0);
});

test('krr run reads a PeMS-style CSV', () => {
  const r = orchard(
    'krr',
    'run',
    '--data',
    pemsFile(200),
    '--method',
    'fixed',
    '--window',
    '24',
    '--horizon',
    '1',
  );
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /pems-400001-flow/);
  assert.match(r.stdout, /^fixed\s+RMSE/m);
  const recent = orchard(
    'krr',
    'run',
    '--data',
    pemsFile(200),
    '--window',
    '24',
    '--horizon',
    '1',
    '--signal',
    'recent',
    '--every',
    '12',
    '--json',
  );
  assert.equal(recent.code, 0, recent.stderr);
  const [online] = JSON.parse(recent.stdout) as Array<{ method: string; compute: { hyperSteps: number } }>;
  assert.equal(online?.method, 'online');
  // ≈ 170 points after the window fills: one step every 12 (the default 96 would give 1)
  assert.ok((online?.compute.hyperSteps ?? 0) >= 12, `${online?.compute.hyperSteps} steps with --every 12`);
});

test('a bad CSV cell exits 2 naming its line and column', () => {
  const bad = orchard('krr', 'run', '--data', pemsFile(50, 7));
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /line 7, column 'flow': not a number/);
  assert.equal(bad.stdout, '');
});

test('bad flags are ConfigErrors thrown before anything runs', () => {
  const base = { method: 'online', kernel: 'rbf' };
  const fails = (flags: Partial<KrrRunFlags>, path: string, pattern: RegExp) =>
    assert.throws(
      () => krrRunCommand({ ...base, ...flags }),
      (e) => e instanceof ConfigError && e.issues.some((i) => i.path === path) && pattern.test(e.message),
    );
  fails({ synthetic: true, data: 'x.csv' }, '', /exactly one of --data/);
  fails({}, '', /exactly one of --data/);
  fails({ synthetic: true, days: 1, window: 400 }, '--window', /need at least/);
  fails({ synthetic: true, method: 'nope' }, '--method', /online, fixed, grid, random or all/);
  fails({ synthetic: true, lambda: -1 }, 'lambda', /must be finite and > 0/);
  fails({ synthetic: true, kernel: 'cosine' }, 'kernel.type', /one of rbf/);
  fails({ data: '/nonexistent/file.csv' }, 'data', /cannot read/);
  fails({ data: 'x.csv', column: 'volume' }, '--column', /flow, speed or occupancy/);
  fails({ data: 'x.csv', missing: 'guess' }, '--missing', /error, interpolate or drop/);
  fails({ synthetic: true, signal: 'vibes' }, 'online.signal', /'loo', 'recent' or 'both'/);
  fails({ synthetic: true, signal: 'recent', window: 40, horizon: 30 }, 'online.recent', /leave too little/);
  fails({ synthetic: true, every: 0 }, 'online.every', /integer >= 1/);
  fails({ synthetic: true, probeEvery: -1 }, 'online.probeEvery', /integer >= 0/);
});

test('repro --windows takes a comma-separated list of window sizes; anything else exits 2 before running', () => {
  assert.deepEqual(parseWindowList('144, 288,576'), [144, 288, 576]);
  for (const bad of ['', '144,,288', '144,2', 'big', '14.5'])
    assert.throws(
      () => parseWindowList(bad),
      (e) => e instanceof ConfigError && e.issues.some((i) => i.path === '--windows'),
    );
  const r = orchard(
    'krr',
    'repro',
    '--quick',
    '--windows',
    '72,x',
    '--out',
    mkdtempSync(join(tmpdir(), 'krr-')),
  );
  assert.equal(r.code, 2);
  assert.match(r.stderr, /--windows/);
});

test('krr repro --series picks named series in the set order; an unknown name is a usage error', () => {
  const specs = heldOutSpecs();
  const picked = selectSeries(specs, 'sensor-mote2-humidity, sensor-mote4-temperature');
  assert.deepEqual(
    picked.map((s) => s.series.name),
    ['sensor-mote4-temperature', 'sensor-mote2-humidity'],
  );
  assert.throws(
    () => selectSeries(specs, 'sensor-mote4-temperature,nope'),
    (e: unknown) =>
      e instanceof ConfigError && /nope/.test(e.message) && /sensor-mote2-humidity/.test(e.message),
  );
  assert.throws(() => selectSeries(specs, ''), ConfigError);
});
