import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError } from '../../core/errors.ts';
import { pldDelta, pldEpsilon, subsampledGaussianPld } from './pld.ts';
import { rdpEpsilon } from './rdp.ts';
import { normalCdf } from './special.ts';

/** Exact δ(ε) of the Gaussian mechanism with sensitivity 1 (Balle & Wang 2018, Theorem 8). */
function gaussianDelta(sigma: number, epsilon: number): number {
  return (
    normalCdf(-epsilon * sigma + 1 / (2 * sigma)) -
    Math.exp(epsilon) * normalCdf(-epsilon * sigma - 1 / (2 * sigma))
  );
}

const STEP = 1e-4;

test('q = 1, σ = 4.530877117, δ = 1e-6: PLD ε is the exact Gaussian-mechanism ε (0.92739…), pessimistic by < Δ', () => {
  // The issue quotes ε = 1 for these parameters from Google's dp_accounting tests; that figure is the
  // RDP accountant's (see rdp.test.ts). The exact ε from δ(ε) = Φ(−εσ + 1/(2σ)) − e^ε Φ(−εσ − 1/(2σ)),
  // solved with mpmath at 30 digits, is 0.927392337997443; a tighter accountant must land there.
  const sigma = 4.530877117;
  const eps = pldEpsilon({ noiseMultiplier: sigma, samplingRate: 1, steps: 1, delta: 1e-6 });
  const exact = 0.927392337997443;
  assert.ok(eps >= exact - 1e-9, `PLD ε ${eps} is below the exact ${exact}: not pessimistic`);
  assert.ok(eps <= exact + STEP, `PLD ε ${eps} is more than Δ above the exact ${exact}`);
  // And it is below the RDP figure for the same parameters (1.0000003).
  assert.ok(eps < rdpEpsilon({ noiseMultiplier: sigma, samplingRate: 1, steps: 1, delta: 1e-6 }).epsilon);
  for (const e of [0.25, 0.5, 1, 1.5]) {
    const got = pldDelta({ noiseMultiplier: sigma, samplingRate: 1, steps: 1, epsilon: e });
    const want = gaussianDelta(sigma, e);
    assert.ok(got >= want * (1 - 1e-9), `δ(${e}) = ${got} < exact ${want}`);
    // Rounding losses up by ≤ Δ moves δ(ε) to at most δ(ε − Δ); plus the truncated tail.
    assert.ok(got <= gaussianDelta(sigma, e - STEP) + 1e-14, `δ(${e}) = ${got} too far above exact ${want}`);
  }
});

test('composition: 64 Gaussian steps with σ = 8 equal one Gaussian step with σ = 1', () => {
  // Σ of T privacy losses N(1/(2σ²), 1/σ²) is N(T/(2σ²), T/σ²): the loss of σ/√T. Each step rounds
  // up by < Δ, so the composed ε may exceed the exact one by at most T·Δ.
  const steps = 64;
  const eps = pldEpsilon({ noiseMultiplier: 8, samplingRate: 1, steps, delta: 1e-5 });
  // Exact ε of the σ=1 Gaussian mechanism at δ = 1e-5 (mpmath findroot on δ(ε)): 4.3771780956812.
  const exact = 4.3771780956812;
  assert.ok(eps >= exact - 1e-9 && eps <= exact + steps * STEP, `ε = ${eps}, exact ${exact}`);
});

test('one subsampled step matches numerical integration of the hockey-stick divergence, both directions', () => {
  // q = 0.04, σ = 1.5. δ(ε) = ∫(P − e^ε Q)₊ ("remove") and ∫(Q − e^ε P)₊ ("add"), mpmath quad at 30 digits.
  const cases: ReadonlyArray<readonly [number, number, number, number, number]> = [
    // ε, remove δ(ε), remove δ(ε−Δ), add δ(ε), add δ(ε−Δ)
    [0.01, 0.00736275064825012, 0.00738820815607824, 0.0050124506143543, 0.0050582330576024],
    [0.05, 0.00201431486149757, 0.00202043495771812, 0, 0],
    [0.2, 4.69219017738375e-5, 4.70220312719136e-5, 0, 0],
  ];
  const remove = subsampledGaussianPld(0.04, 1.5, 'remove');
  const add = subsampledGaussianPld(0.04, 1.5, 'add');
  for (const [e, rem, remLo, ad, adLo] of cases) {
    const r = remove.deltaForEpsilon(e);
    assert.ok(r >= rem * (1 - 1e-9) && r <= remLo + 1e-14, `remove δ(${e}) = ${r}, exact ${rem}`);
    const a = add.deltaForEpsilon(e);
    assert.ok(a >= ad * (1 - 1e-9) && a <= adLo + 1e-14, `add δ(${e}) = ${a}, exact ${ad}`);
  }
  // The add direction's loss is bounded by −log(1 − q); the remove direction's total mass is 1.
  assert.equal(add.infinityMass, 0);
  assert.ok(add.lossAt(add.probs.length - 1) < -Math.log1p(-0.04) + STEP);
  const total = remove.probs.reduce((s, p) => s + p, remove.infinityMass);
  assert.ok(Math.abs(total - 1) < 1e-12);
});

test('Opacus case (σ=1.5, q=0.04, 2250 steps, δ=1e-5): PLD ε is below the RDP ε', () => {
  const pld = pldEpsilon({ noiseMultiplier: 1.5, samplingRate: 0.04, steps: 2250, delta: 1e-5 });
  const rdp = rdpEpsilon({ noiseMultiplier: 1.5, samplingRate: 0.04, steps: 2250, delta: 1e-5 }).epsilon;
  assert.ok(pld < rdp, `PLD ${pld} vs RDP ${rdp}`);
  // Opacus's PRV accountant (an independent numerical method, eps_error 0.01) reports
  // 6.777395712150674 for this case (opacus/tests/accountants_test.py, test_prv_accountant), so the
  // true ε is in [6.767, 6.778]. Our pessimistic grid may add at most T·Δ = 0.225 on top.
  assert.ok(pld >= 6.777395712150674 - 0.01 && pld <= 6.777395712150674 + 2250 * STEP, `PLD ${pld}`);
});

test('a finer grid only tightens, by at most the rounding it removes', () => {
  // Both are upper bounds; halving Δ rounds each step up by less, so ε may only drop, and by no
  // more than the T·Δ/2 of pessimism the coarse grid can add.
  const plan = { noiseMultiplier: 1.5, samplingRate: 0.04, steps: 200, delta: 1e-5 };
  const coarse = pldEpsilon(plan);
  const finer = pldEpsilon({ ...plan, valueDiscretization: STEP / 2 });
  assert.ok(
    finer <= coarse + 1e-9 && coarse - finer < 0.5 * plan.steps * STEP,
    `Δ/2: ${finer} vs Δ: ${coarse}`,
  );
  assert.ok(finer < rdpEpsilon(plan).epsilon);
});

test('invalid PLD inputs are ConfigErrors', () => {
  assert.throws(
    () => pldEpsilon({ noiseMultiplier: 1, samplingRate: 0, steps: 1, delta: 1e-5 }),
    ConfigError,
  );
  assert.throws(
    () => pldEpsilon({ noiseMultiplier: 1, samplingRate: 0.1, steps: 0, delta: 1e-5 }),
    ConfigError,
  );
  assert.throws(() => pldEpsilon({ noiseMultiplier: 1, samplingRate: 0.1, steps: 1, delta: 0 }), ConfigError);
  assert.throws(() => subsampledGaussianPld(0.1, 1, 'remove', { valueDiscretization: 0 }), ConfigError);
  assert.throws(
    () => pldDelta({ noiseMultiplier: 1, samplingRate: 0.1, steps: 1, epsilon: -1 }),
    ConfigError,
  );
});

test('epsilonForDelta inverts deltaForEpsilon', () => {
  const pld = subsampledGaussianPld(0.1, 1.2, 'remove').selfCompose(20);
  for (const delta of [1e-3, 1e-5, 1e-7]) {
    const eps = pld.epsilonForDelta(delta);
    assert.ok(eps > 0);
    assert.ok(Math.abs(pld.deltaForEpsilon(eps) - delta) < 1e-9 * delta + 1e-15, `δ(ε(${delta}))`);
    // Slightly smaller ε must cost more than δ (ε is the smallest).
    assert.ok(pld.deltaForEpsilon(eps - 1e-6) > delta);
  }
  assert.equal(pld.epsilonForDelta(0.999), 0);
});
