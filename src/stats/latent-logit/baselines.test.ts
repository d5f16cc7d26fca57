import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Rng } from '../../core/rng.ts';
import {
  fitMixedLogit,
  fitPerIndividualLogit,
  fitPooledLogit,
  mixedLogitHeldOutLogLik,
  mixedLogitObjective,
} from './baselines.ts';
import { compilePanel, selectSituations } from './data.ts';
import { meanLogLik, meanNll } from './model.ts';
import { simulatePanel } from './simulate.ts';

const sim = simulatePanel({ kind: 'choice', n: 8, T: 12, d: 3, r: 1, seed: 9 });
const panel = compilePanel(sim.panel);

/** Sum-scale gradient of Σ_{i ∈ members} NLL_i at a shared β, via the (finite-difference-checked) NLL gradient. */
function sharedGradient(beta: Float64Array, members: number[]): Float64Array {
  const B = new Float64Array(panel.n * panel.d);
  for (let i = 0; i < panel.n; i++) B.set(beta, i * panel.d);
  const g = new Float64Array(B.length);
  meanNll(panel, B, g);
  const out = new Float64Array(panel.d);
  for (const i of members)
    for (let k = 0; k < panel.d; k++)
      out[k] = (out[k] as number) + (g[i * panel.d + k] as number) * panel.situations;
  return out;
}

test('pooled and per-individual ridge logits are stationary points of their penalized likelihoods', () => {
  const pooled = fitPooledLogit(panel, { ridge: 0.5 });
  const all = Array.from({ length: panel.n }, (_, i) => i);
  const g = sharedGradient(pooled.beta, all);
  for (let k = 0; k < panel.d; k++)
    assert.ok(Math.abs((g[k] as number) + 0.5 * (pooled.beta[k] as number)) < 1e-7);
  const per = fitPerIndividualLogit(panel, { ridge: 2 });
  for (let i = 0; i < panel.n; i++) {
    const beta = per.B.slice(i * panel.d, (i + 1) * panel.d);
    const gi = sharedGradient(beta, [i]);
    for (let k = 0; k < panel.d; k++)
      assert.ok(
        Math.abs((gi[k] as number) + 2 * (beta[k] as number)) < 1e-7,
        `individual ${i}: ${gi[k]} ${beta[k]}`,
      );
  }
  // Strict convexity: a random start lands on the same answer.
  const rng = new Rng(1);
  const again = fitPooledLogit(panel, {
    ridge: 0.5,
    init: Array.from({ length: panel.d }, () => 3 * rng.normal()),
  });
  for (let k = 0; k < panel.d; k++)
    assert.ok(Math.abs((again.beta[k] as number) - (pooled.beta[k] as number)) < 1e-8);
});

test('the simulated mixed-logit gradient matches finite differences', () => {
  const rng = new Rng(4);
  const theta = Float64Array.from({ length: 2 * panel.d }, () => 0.3 * rng.normal());
  const grad = new Float64Array(theta.length);
  mixedLogitObjective(panel, 20, theta, grad);
  const h = 1e-6;
  for (let k = 0; k < theta.length; k++) {
    const plus = Float64Array.from(theta);
    const minus = Float64Array.from(theta);
    plus[k] = (plus[k] as number) + h;
    minus[k] = (minus[k] as number) - h;
    const fd = (mixedLogitObjective(panel, 20, plus) - mixedLogitObjective(panel, 20, minus)) / (2 * h);
    assert.ok(Math.abs(fd - (grad[k] as number)) < 1e-7, `θ[${k}]: fd ${fd} vs ${grad[k]}`);
  }
});

test('mixed logit keeps the best of its random starts and reports posterior weights', () => {
  const fit = fitMixedLogit(panel, { draws: 20, restarts: 3, seed: 2, maxIter: 60 });
  assert.equal(fit.starts.length, 3);
  assert.equal(fit.nll, Math.min(...fit.starts.map((s) => s.nll)));
  assert.ok(fit.sd.every((s) => s > 0));
  for (let i = 0; i < panel.n; i++) {
    let s = 0;
    for (let r = 0; r < fit.draws; r++) s += fit.weights[i * fit.draws + r] as number;
    assert.ok(Math.abs(s - 1) < 1e-12);
  }
  // With every σ forced to ~0 the predictive likelihood is the plain logit likelihood at μ.
  const degenerate = { ...fit, sd: new Float64Array(panel.d).fill(1e-12) };
  const test1 = selectSituations(panel, (_i, s) => s < 3);
  const B = new Float64Array(panel.n * panel.d);
  for (let i = 0; i < panel.n; i++) B.set(fit.mean, i * panel.d);
  assert.ok(Math.abs(mixedLogitHeldOutLogLik(degenerate, test1) - meanLogLik(test1, B)) < 1e-9);
  assert.throws(() => fitMixedLogit(panel, { draws: 0 }), { code: 'INVALID_ARGUMENT' });
});

test('mixed logit is not convex: converged random starts can end at different optima', () => {
  const p = compilePanel(simulatePanel({ kind: 'binary', n: 15, T: 30, d: 4, r: 2, seed: 1 }).panel);
  const fit = fitMixedLogit(p, { draws: 20, restarts: 4, seed: 1 });
  const converged = fit.starts.filter((s) => s.converged);
  assert.ok(converged.length >= 2, 'at least two starts meet the gradient tolerance');
  const values = converged.map((s) => s.nll);
  // Both ends are stationary (gradient below tolerance) yet their likelihoods differ: distinct local optima.
  assert.ok(Math.max(...values) - Math.min(...values) > 1e-5, `start NLLs ${values.join(', ')}`);
});
