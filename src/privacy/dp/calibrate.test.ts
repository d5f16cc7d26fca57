import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError } from '../../core/errors.ts';
import { epsilonFor, noiseMultiplierFor } from './calibrate.ts';

test('RDP calibration inverts the Opacus reference: ε = 7.32911117143 → σ = 1.5', () => {
  // Opacus test suite: σ = 1.5, q = 0.04, 2250 steps, δ = 1e-5 ⇒ ε = 7.32911117143.
  const sigma = noiseMultiplierFor({ epsilon: 7.32911117143, delta: 1e-5, samplingRate: 0.04, steps: 2250 });
  assert.ok(Math.abs(sigma - 1.5) < 1e-5, `σ = ${sigma}`);
});

test('RDP calibration agrees with Opacus get_noise_multiplier (ε=8, δ=1e-5, q=0.04, 2000 steps → 1.3562)', () => {
  // opacus/tests/accountants_test.py, test_get_noise_multiplier_rdp_steps. Opacus bisects until ε is
  // within 0.01 below the target and returns the upper end, so its σ is at or just above ours.
  const plan = { epsilon: 8, delta: 1e-5, samplingRate: 0.04, steps: 2000 };
  const sigma = noiseMultiplierFor(plan);
  assert.ok(sigma <= 1.3562 && sigma > 1.355, `σ = ${sigma}`);
  const atOpacus = epsilonFor({ ...plan, noiseMultiplier: 1.3562 });
  assert.ok(atOpacus <= 8 && atOpacus > 7.99, `ε(1.3562) = ${atOpacus}`);
});

test('RDP calibration inverts the dp_accounting reference: (1, 1e-6), q = 1 → σ = 4.530877117', () => {
  const sigma = noiseMultiplierFor({ epsilon: 1, delta: 1e-6, samplingRate: 1, steps: 1 });
  assert.ok(Math.abs(sigma - 4.530877117) < 1e-4, `σ = ${sigma}`);
});

test('the calibrated σ meets the target and is minimal up to the tolerance', () => {
  const target = { epsilon: 2, delta: 1e-6, samplingRate: 0.01, steps: 500 };
  const sigma = noiseMultiplierFor(target);
  const at = (s: number): number => epsilonFor({ ...target, noiseMultiplier: s });
  assert.ok(at(sigma) <= 2, `ε(σ) = ${at(sigma)}`);
  assert.ok(at(sigma * (1 - 1e-5)) > 2, 'a slightly smaller σ still meets the target: not minimal');
});

test('PLD calibration lands on the exact Gaussian σ and needs no more noise than RDP', () => {
  // Exact ε of σ = 4.530877117 at δ = 1e-6 is 0.927392337997443 (mpmath); PLD rounds pessimistically,
  // so its σ is at or slightly above 4.530877117.
  const sigma = noiseMultiplierFor({
    epsilon: 0.927392337997443,
    delta: 1e-6,
    samplingRate: 1,
    steps: 1,
    accountant: 'pld',
  });
  assert.ok(sigma >= 4.530877117 * (1 - 1e-6) && sigma < 4.530877117 * 1.004, `σ = ${sigma}`);
  const plan = { epsilon: 1, delta: 1e-5, samplingRate: 0.05, steps: 10 };
  // A coarser grid keeps the test fast; 10 steps × Δ = 0.01 of pessimism at most.
  const pld = noiseMultiplierFor({ ...plan, accountant: 'pld', valueDiscretization: 1e-3 });
  const rdp = noiseMultiplierFor({ ...plan, accountant: 'rdp' });
  assert.ok(pld < rdp, `PLD σ ${pld} vs RDP σ ${rdp}`);
  assert.ok(epsilonFor({ ...plan, noiseMultiplier: pld, accountant: 'pld', valueDiscretization: 1e-3 }) <= 1);
});

test('invalid inputs and unreachable targets are ConfigErrors', () => {
  const ok = { epsilon: 1, delta: 1e-5, samplingRate: 0.01, steps: 100 };
  const isConfig = (path: string) => (e: unknown) =>
    e instanceof ConfigError && e.issues.some((i) => i.path === path);
  assert.throws(() => noiseMultiplierFor({ ...ok, delta: 0 }), isConfig('delta'));
  assert.throws(() => noiseMultiplierFor({ ...ok, delta: 1 }), isConfig('delta'));
  assert.throws(() => noiseMultiplierFor({ ...ok, samplingRate: 0 }), isConfig('samplingRate'));
  assert.throws(() => noiseMultiplierFor({ ...ok, samplingRate: 1.01 }), isConfig('samplingRate'));
  assert.throws(() => noiseMultiplierFor({ ...ok, steps: 10.5 }), isConfig('steps'));
  assert.throws(() => noiseMultiplierFor({ ...ok, steps: 0 }), isConfig('steps'));
  assert.throws(() => noiseMultiplierFor({ ...ok, epsilon: -1 }), isConfig('epsilon'));
  assert.throws(
    () => epsilonFor({ noiseMultiplier: 0, delta: 1e-5, samplingRate: 0.1, steps: 1 }),
    isConfig('noiseMultiplier'),
  );
  assert.throws(
    () => epsilonFor({ noiseMultiplier: -2, delta: 1e-5, samplingRate: 0.1, steps: 1 }),
    isConfig('noiseMultiplier'),
  );
  // With orders ≤ 63, the RDP conversion cannot go below ~0.1 at δ = 1e-5 however large σ is.
  assert.throws(() => noiseMultiplierFor({ ...ok, epsilon: 0.01 }), /unreachable/);
  assert.throws(
    () => noiseMultiplierFor({ ...ok, accountant: 'prv' as unknown as 'rdp' }),
    isConfig('accountant'),
  );
});
