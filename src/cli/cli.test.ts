import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

const BIN = join(import.meta.dirname, '..', '..', 'bin', 'orchard.js');

function orchard(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function tmp(): string {
  return mkdtempSync(join(tmpdir(), 'orchard-cli-'));
}

function smallConfig(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    name: 'cli-small',
    dataset: { kind: 'synthetic', numClients: 30, dim: 10, numClasses: 3, testSize: 200 },
    model: { kind: 'softmax' },
    sim: { concurrency: 5, maxTrips: 60 },
    runs: [
      { label: 'ok', strategy: { kind: 'fedbuff', bufferSize: 3 } },
      { label: 'async', strategy: { kind: 'fedasync' } },
    ],
    ...extra,
  };
}

test('--version and --help exit 0', () => {
  const pkg = JSON.parse(readFileSync(join(import.meta.dirname, '..', '..', 'package.json'), 'utf8')) as {
    version: string;
  };
  const v = orchard('--version');
  assert.equal(v.code, 0);
  assert.equal(v.stdout.trim(), pkg.version);
  const h = orchard('--help');
  assert.equal(h.code, 0);
  assert.match(h.stdout, /simulate/);
  assert.match(h.stdout, /presets/);
});

test('presets lists the built-in experiments', () => {
  const r = orchard('presets');
  assert.equal(r.code, 0);
  for (const name of ['default', 'headline-100', 'headline-1000', 'quick'])
    assert.match(r.stdout, new RegExp(`^${name} `, 'm'));
});

test('a config with several wrong fields exits 2, lists them all, writes nothing', () => {
  const dir = tmp();
  const file = join(dir, 'bad.json');
  writeFileSync(
    file,
    JSON.stringify(smallConfig({ seed: 1.5, sim: { concurrency: 0, maxTrips: 60 }, extra: true })),
  );
  const out = join(dir, 'out');
  const r = orchard('simulate', '--config', file, '--out', out, '--quiet');
  assert.equal(r.code, 2);
  for (const path of ['seed', 'sim.concurrency', 'extra'])
    assert.match(r.stderr, new RegExp(`- ${path.replace('.', '\\.')}:`));
  assert.equal(existsSync(out), false);
});

test('a JSON syntax error exits 2 naming file, line and column', () => {
  const dir = tmp();
  const file = join(dir, 'broken.json');
  writeFileSync(file, '{\n  "name": "x",\n  "seed": 1,,\n}');
  const r = orchard('simulate', '--config', file, '--out', join(dir, 'out'));
  assert.equal(r.code, 2);
  assert.ok(r.stderr.includes(`${file}:3:13: JSON syntax error`), r.stderr);
  assert.equal(existsSync(join(dir, 'out')), false);
});

test('usage errors exit 2: unknown option, unknown preset, bad seed, both config and preset', () => {
  assert.equal(orchard('simulate', '--bogus').code, 2);
  assert.equal(orchard('frobnicate').code, 2);
  const unknown = orchard('simulate', '--preset', 'nope', '--out', join(tmp(), 'o'));
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /unknown preset 'nope'/);
  assert.equal(orchard('simulate', '--preset', 'quick', '--seed', 'abc').code, 2);
  assert.equal(orchard('simulate', '--preset', 'quick', '--config', 'x.json').code, 2);
});

test('a run that diverges is reported, the others still run, exit 0', () => {
  const dir = tmp();
  const file = join(dir, 'div.json');
  writeFileSync(
    file,
    JSON.stringify(
      smallConfig({
        runs: [
          { label: 'ok', strategy: { kind: 'fedbuff', bufferSize: 3 } },
          {
            label: 'boom',
            strategy: { kind: 'fedbuff', bufferSize: 3, serverOptimizer: { kind: 'sgd', lr: 1e30 } },
            local: { lr: 1e30 },
          },
          { label: 'async', strategy: { kind: 'fedasync' } },
        ],
      }),
    ),
  );
  const out = join(dir, 'out');
  const r = orchard('simulate', '--config', file, '--out', out, '--quiet', '--seed', '4');
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /boom \(seed 4\) diverged/);
  const results = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8')) as {
    runs: Array<{ label: string; seed: number; stopReason: string }>;
  };
  assert.deepEqual(
    results.runs.map((x) => [x.label, x.seed, x.stopReason === 'diverged']),
    [
      ['ok', 4, false],
      ['boom', 4, true],
      ['async', 4, false],
    ],
  );
  assert.ok(readFileSync(join(out, 'report.html'), 'utf8').includes('diverged'));
});

test('the quick preset writes all three outputs and prints their paths', () => {
  const out = join(tmp(), 'quick');
  const r = orchard('simulate', '--preset', 'quick', '--out', out, '--quiet');
  assert.equal(r.code, 0, r.stderr);
  for (const f of ['results.json', 'curves.csv', 'report.html']) {
    assert.ok(existsSync(join(out, f)), f);
    assert.ok(r.stdout.includes(join(out, f)), `path of ${f} printed`);
  }
});

test('failures other than bad config exit 1', () => {
  const dir = tmp();
  const blocker = join(dir, 'file');
  writeFileSync(blocker, 'not a directory');
  const r = orchard('simulate', '--preset', 'quick', '--out', join(blocker, 'sub'), '--quiet');
  assert.equal(r.code, 1);
  assert.match(r.stderr, /orchard: error/);
});
