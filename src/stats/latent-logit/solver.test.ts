import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Matrix, SVD } from 'ml-matrix';
import { Rng } from '../../core/rng.ts';
import { type CompiledPanel, compilePanel, splitHoldout } from './data.ts';
import { meanNll, relativeError } from './model.ts';
import { simulatePanel } from './simulate.ts';
import { fitLatentLogit, fitLatentLogitPath, geometricGrid, lambdaMax, truncateFit } from './solver.ts';

function smallPanel(
  kind: 'binary' | 'choice',
  seed: number,
  T = 15,
): { panel: CompiledPanel; truthB: Float64Array } {
  const sim = simulatePanel({ kind, n: 12, T, d: 4, r: 2, seed });
  return { panel: compilePanel(sim.panel), truthB: sim.truth.B };
}

test('the NLL gradient matches central finite differences (binary and choice)', () => {
  for (const kind of ['binary', 'choice'] as const) {
    const { panel } = smallPanel(kind, 11, 5);
    const rng = new Rng(2);
    const B = Float64Array.from({ length: panel.n * panel.d }, () => 0.5 * rng.normal());
    const grad = new Float64Array(B.length);
    meanNll(panel, B, grad);
    const h = 1e-6;
    for (let k = 0; k < B.length; k += 3) {
      const plus = Float64Array.from(B);
      const minus = Float64Array.from(B);
      plus[k] = (plus[k] as number) + h;
      minus[k] = (minus[k] as number) - h;
      const fd = (meanNll(panel, plus) - meanNll(panel, minus)) / (2 * h);
      assert.ok(Math.abs(fd - (grad[k] as number)) < 1e-7, `${kind} entry ${k}: fd ${fd} vs ${grad[k]}`);
    }
  }
});

/** ∂/∂w and ∂/∂U of the mean NLL at (w, U), from the per-individual gradient. */
function gradients(panel: CompiledPanel, B: Float64Array): { gw: Float64Array; gU: Float64Array } {
  const gU = new Float64Array(B.length);
  meanNll(panel, B, gU);
  const gw = new Float64Array(panel.d);
  for (let i = 0; i < panel.n; i++)
    for (let k = 0; k < panel.d; k++) gw[k] = (gw[k] as number) + (gU[i * panel.d + k] as number);
  return { gw, gU };
}

function toMatrix(v: Float64Array, rows: number, cols: number): Matrix {
  return new Matrix(Array.from({ length: rows }, (_, i) => Array.from(v.subarray(i * cols, (i + 1) * cols))));
}

/**
 * Checks 0 ∈ ∇f + λ1 ∂‖w‖₁ × λ2 ∂‖U‖_* directly: for w coordinatewise; for U = P Σ Qᵀ, the matrix
 * G = −∇_U f / λ2 must equal P Qᵀ + Z with Z orthogonal to P and Q and ‖Z‖₂ ≤ 1.
 */
function assertKkt(
  panel: CompiledPanel,
  w: Float64Array,
  U: Float64Array,
  l1: number,
  l2: number,
  tol: number,
): void {
  const n = panel.n;
  const d = panel.d;
  const B = new Float64Array(n * d);
  for (let i = 0; i < n; i++)
    for (let k = 0; k < d; k++) B[i * d + k] = (w[k] as number) + (U[i * d + k] as number);
  const { gw, gU } = gradients(panel, B);
  for (let k = 0; k < d; k++) {
    const wk = w[k] as number;
    const g = gw[k] as number;
    if (wk === 0) assert.ok(Math.abs(g) <= l1 + tol, `w[${k}] = 0 but |∇| = ${Math.abs(g)} > λ1 = ${l1}`);
    else
      assert.ok(
        Math.abs(g + l1 * Math.sign(wk)) <= tol,
        `w[${k}] = ${wk}: ∇ + λ1 sign = ${g + l1 * Math.sign(wk)}`,
      );
  }
  const svd = new SVD(toMatrix(U, n, d), { autoTranspose: true });
  const sigma = svd.diagonal;
  const keep = sigma.map((s, q) => ({ s, q })).filter(({ s }) => s > 1e-9 * Math.max(1, sigma[0] ?? 0));
  const P = new Matrix(n, keep.length);
  const Q = new Matrix(d, keep.length);
  keep.forEach(({ q }, c) => {
    for (let i = 0; i < n; i++) P.set(i, c, svd.leftSingularVectors.get(i, q));
    for (let k = 0; k < d; k++) Q.set(k, c, svd.rightSingularVectors.get(k, q));
  });
  const G = toMatrix(gU, n, d).mul(-1 / l2);
  const projL = Matrix.eye(n).sub(P.mmul(P.transpose()));
  const projR = Matrix.eye(d).sub(Q.mmul(Q.transpose()));
  const Z = projL.mmul(G).mmul(projR);
  const inSpan = G.clone().sub(P.mmul(Q.transpose())).sub(Z);
  assert.ok(
    inSpan.norm('frobenius') * l2 <= tol,
    `nuclear-norm subgradient: span residual ${inSpan.norm('frobenius') * l2}`,
  );
  const zNorm = new SVD(Z, { autoTranspose: true }).diagonal[0] ?? 0;
  assert.ok(zNorm <= 1 + tol / l2, `‖Z‖₂ = ${zNorm} > 1`);
}

test('the solution satisfies the KKT conditions for w (ℓ1) and U (nuclear norm)', () => {
  for (const kind of ['binary', 'choice'] as const) {
    const { panel } = smallPanel(kind, 21);
    const lm = lambdaMax(panel);
    const l1 = 0.1 * lm.lambda1;
    const l2 = 0.3 * lm.lambda2;
    const fit = fitLatentLogit(panel, { lambda1: l1, lambda2: l2, tol: 1e-14, optTol: 1e-7, maxIter: 20000 });
    assert.ok(fit.certificate.converged, JSON.stringify(fit.certificate));
    assert.ok(fit.rank > 0 && fit.rank < panel.d, `rank ${fit.rank} should be strictly between 0 and d`);
    assert.ok(fit.nonzeros > 0, 'some shared effects survive');
    assertKkt(panel, fit.w, fit.U, l1, l2, 1e-6);
  }
});

test('λ at λ_max gives the zero solution, and just below it does not', () => {
  const { panel } = smallPanel('binary', 31);
  const lm = lambdaMax(panel);
  const atMax = fitLatentLogit(panel, { lambda1: lm.lambda1 * 1.0001, lambda2: lm.lambda2 * 1.0001 });
  assert.equal(atMax.nonzeros, 0);
  assert.equal(atMax.rank, 0);
  assert.ok(atMax.B.every((v) => v === 0));
  const belowW = fitLatentLogit(panel, { lambda1: lm.lambda1 * 0.9, lambda2: lm.lambda2 * 1.0001 });
  assert.ok(belowW.nonzeros > 0);
  const belowU = fitLatentLogit(panel, { lambda1: lm.lambda1 * 1.0001, lambda2: lm.lambda2 * 0.9 });
  assert.ok(belowU.rank > 0);
});

test('the convex fit is the same from different random starts', () => {
  const { panel } = smallPanel('choice', 41);
  const lm = lambdaMax(panel);
  const rng = new Rng(7);
  const fits = [0, 1, 2].map((s) =>
    fitLatentLogit(panel, {
      lambda1: 0.05 * lm.lambda1,
      lambda2: 0.2 * lm.lambda2,
      tol: 1e-13,
      optTol: 1e-8,
      maxIter: 20000,
      ...(s === 0
        ? {}
        : {
            init: {
              w: Array.from({ length: panel.d }, () => 3 * rng.normal()),
              U: Array.from({ length: panel.n * panel.d }, () => 3 * rng.normal()),
            },
          }),
    }),
  );
  for (const f of fits.slice(1)) {
    assert.ok(relativeError(f.B, (fits[0] as (typeof fits)[0]).B) < 1e-4, 'same coefficients');
    assert.ok(Math.abs(f.objective - (fits[0] as (typeof fits)[0]).objective) < 1e-9, 'same objective');
  }
});

test('coefficient recovery improves with more observations per individual', () => {
  const errors = [10, 80].map((T) => {
    const sim = simulatePanel({ kind: 'binary', n: 30, T, d: 4, r: 1, seed: 5 });
    const path = fitLatentLogitPath(sim.panel, {
      lambda1Ratios: geometricGrid(3, 0.05),
      lambda2Ratios: geometricGrid(4, 0.05),
      seed: 1,
    });
    return relativeError(path.fit.B, sim.truth.B);
  });
  assert.ok((errors[1] as number) < 0.75 * (errors[0] as number), `errors ${errors.join(' → ')}`);
});

test('the λ path starts at zero, picks the lowest held-out NLL and warm starts cheaply', () => {
  const { panel } = smallPanel('binary', 51, 20);
  const path = fitLatentLogitPath(panel, {
    lambda1Ratios: [1, 0.2, 0.04],
    lambda2Ratios: [1, 0.3, 0.1],
    refit: false,
  });
  assert.equal(path.points.length, 9);
  const first = path.points[0];
  assert.ok(first !== undefined && first.rank === 0 && first.nonzeros === 0);
  const minHeld = Math.min(...path.points.map((p) => p.heldOutNll));
  assert.equal(path.best.heldOutNll, minHeld);
  assert.ok(path.points.every((p) => p.converged));
  // Warm starts: the same λs fitted from zero on the same training split need more iterations in total.
  const { train } = splitHoldout(panel, 0.25, 0);
  const cold = path.points.reduce(
    (sum, p) =>
      sum + fitLatentLogit(train, { lambda1: p.lambda1, lambda2: p.lambda2 }).certificate.iterations,
    0,
  );
  const warm = path.points.reduce((sum, p) => sum + p.iterations, 0);
  assert.ok(warm < cold, `warm-started path ${warm} iterations vs ${cold} from zero`);
});

test('bad solver arguments are typed errors', () => {
  const { panel } = smallPanel('binary', 61, 4);
  assert.throws(() => fitLatentLogit(panel, { lambda1: -1, lambda2: 0 }), { code: 'INVALID_ARGUMENT' });
  assert.throws(() => fitLatentLogit(panel, { lambda1: Number.NaN, lambda2: 0 }), {
    code: 'INVALID_ARGUMENT',
  });
  assert.throws(() => fitLatentLogit(panel, { lambda1: 0.1, lambda2: 0.1, init: { w: [1], U: [] } }), {
    code: 'SHAPE_MISMATCH',
  });
  const w = new Float64Array(panel.d);
  const U = new Float64Array(panel.n * panel.d);
  U[3] = Number.NaN;
  assert.throws(() => fitLatentLogit(panel, { lambda1: 0.1, lambda2: 0.1, init: { w, U } }), {
    code: 'NON_FINITE',
  });
  assert.throws(() => geometricGrid(0, 0.1), { code: 'INVALID_ARGUMENT' });
});

test('rank truncation: held-out rank choice recovers a rank-1 truth that the λ-path fit overshoots', () => {
  // Strong signal (T = 80, latent scale 2) so that the true rank is identifiable from the data.
  const sim = simulatePanel({ kind: 'binary', n: 30, T: 80, d: 5, r: 1, latentScale: 2, seed: 9 });
  const path = fitLatentLogitPath(sim.panel, {
    lambda1Ratios: geometricGrid(3, 0.01),
    lambda2Ratios: geometricGrid(5, 0.02),
    seed: 2,
  });
  const sel = path.rankSelection;
  assert.ok(sel !== undefined);
  assert.equal(sel.heldOutNll.length, path.best.rank + 1);
  assert.equal(sel.rank, 1, `held-out NLL by rank: ${sel.heldOutNll.join(' ')}`);
  assert.ok(path.fit.rank > 1, `the λ-path fit alone has rank ${path.fit.rank}`);
  // The truncation is the best rank-1 approximation: an independent SVD of U gives the same matrix.
  const svd = new SVD(toMatrix(path.fit.U, 30, 5), { autoTranspose: true });
  const top = svd.leftSingularVectors
    .getColumnVector(0)
    .mmul(svd.rightSingularVectors.getColumnVector(0).transpose())
    .mul(svd.diagonal[0] as number);
  assert.ok(relativeError(sel.U, Float64Array.from(top.to1DArray())) < 1e-9);
  assert.ok(relativeError(sel.B, sim.truth.B) < relativeError(path.fit.B, sim.truth.B));
  assert.throws(() => truncateFit(path.fit, -1), { code: 'INVALID_ARGUMENT' });
});
