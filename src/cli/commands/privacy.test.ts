import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import { parseNumberOption } from '../options.ts';

const BIN = join(import.meta.dirname, '..', '..', '..', 'bin', 'orchard.js');

function orchard(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('privacy epsilon --json reproduces the Opacus reference (ε = 7.32911117143)', () => {
  const r = orchard(
    'privacy',
    'epsilon',
    '--noise-multiplier',
    '1.5',
    '--sampling-rate',
    '0.04',
    '--steps',
    '2250',
    '--delta',
    '1e-5',
    '--json',
  );
  assert.equal(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout) as { epsilon: number };
  assert.deepEqual(Object.keys(out), ['epsilon']);
  assert.ok(Math.abs(out.epsilon - 7.32911117143) < 1e-9);
});

test('privacy noise --json inverts it, and the PLD accountant needs less noise (readable output too)', () => {
  const common = ['--epsilon', '1', '--delta', '1e-6', '--sampling-rate', '1', '--steps', '1'];
  const rdp = orchard('privacy', 'noise', ...common, '--json');
  assert.equal(rdp.code, 0, rdp.stderr);
  const { noiseMultiplier } = JSON.parse(rdp.stdout) as { noiseMultiplier: number };
  // dp_accounting: σ = 4.530877117 gives (1, 1e-6) by RDP for the Gaussian mechanism.
  assert.ok(Math.abs(noiseMultiplier - 4.530877117) < 1e-4, `σ = ${noiseMultiplier}`);
  const pld = orchard('privacy', 'noise', ...common, '--accountant', 'pld');
  assert.equal(pld.code, 0, pld.stderr);
  const m = /^noise multiplier ([\d.]+) gives ε ≤ 1 at δ = 0.000001 over 1 steps .*PLD accountant/.exec(
    pld.stdout,
  );
  assert.ok(m, pld.stdout);
  // Exact Gaussian σ for (1, 1e-6) is 4.2247 (mpmath); PLD lands just above it, well below RDP's.
  const sigma = Number(m[1]);
  assert.ok(sigma >= 4.2246 && sigma < 4.24, `PLD σ = ${sigma}`);
});

test('bad numbers exit 2 with every problem named, nothing on stdout', () => {
  const r = orchard(
    'privacy',
    'epsilon',
    '--noise-multiplier',
    'abc',
    '--sampling-rate',
    '0.1',
    '--steps',
    '1.5',
    '--delta',
    '1e-5',
  );
  assert.equal(r.code, 2);
  assert.equal(r.stdout, '');
  assert.match(r.stderr, /--noise-multiplier: expected a number, got 'abc'/);
  assert.match(r.stderr, /--steps: expected an integer/);
  const range = orchard(
    'privacy',
    'epsilon',
    '--noise-multiplier',
    '0',
    '--sampling-rate',
    '1.5',
    '--steps',
    '3',
    '--delta',
    '1',
  );
  assert.equal(range.code, 2);
  assert.match(range.stderr, /noiseMultiplier: must be a finite number > 0/);
  assert.match(range.stderr, /samplingRate: must be in \(0, 1\]/);
  assert.match(range.stderr, /delta: must be in \(0, 1\)/);
  const unreachable = orchard(
    'privacy',
    'noise',
    '--epsilon',
    '0.01',
    '--delta',
    '1e-5',
    '--sampling-rate',
    '0.01',
    '--steps',
    '100',
  );
  assert.equal(unreachable.code, 2);
  assert.match(unreachable.stderr, /unreachable/);
  const accountant = orchard(
    'privacy',
    'noise',
    '--epsilon',
    '1',
    '--delta',
    '1e-5',
    '--sampling-rate',
    '0.01',
    '--steps',
    '100',
    '--accountant',
    'prv',
  );
  assert.equal(accountant.code, 2);
  assert.match(accountant.stderr, /--accountant: expected one of rdp, pld/);
});

test('parseNumberOption accepts decimals and exponents only', () => {
  assert.equal(parseNumberOption('--x', '1e-5'), 1e-5);
  assert.equal(parseNumberOption('--x', ' .5 '), 0.5);
  assert.equal(parseNumberOption('--x', '-2.'), -2);
  for (const bad of ['', '0x10', 'Infinity', 'NaN', '1e400', '1,5', '1.5.2', '2abc']) {
    assert.throws(() => parseNumberOption('--x', bad), /expected a number/, bad);
  }
});
