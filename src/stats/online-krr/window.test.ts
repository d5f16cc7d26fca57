import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { EigenvalueDecomposition, inverse, Matrix, solve } from 'ml-matrix';
import { OrchardError } from '../../core/errors.ts';
import { Rng } from '../../core/rng.ts';
import { type KernelType, makeKernel } from './kernels.ts';
import {
  looGradient,
  looResiduals,
  recentErrorAt,
  recentGradient,
  recentResiduals,
  significantlyBetter,
} from './loo.ts';
import { ComputeMeter } from './meter.ts';
import { KrrWindow } from './window.ts';

/** Direct kernel value from the textbook formulas (independent of the stat/transform split). */
function directKernel(type: KernelType, a: Float64Array, b: Float64Array, gamma: number): number {
  let sq = 0;
  let l1 = 0;
  let dot = 0;
  for (let i = 0; i < a.length; i++) {
    const d = (a[i] as number) - (b[i] as number);
    sq += d * d;
    l1 += Math.abs(d);
    dot += (a[i] as number) * (b[i] as number);
  }
  if (type === 'rbf') return Math.exp(-gamma * sq);
  if (type === 'laplacian') return Math.exp(-gamma * l1);
  if (type === 'linear') return gamma * dot;
  return (gamma * dot + 1) ** 2;
}

function directA(type: KernelType, xs: Float64Array[], lambda: number, gamma: number): Matrix {
  const n = xs.length;
  const a = new Matrix(n, n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      a.set(
        i,
        j,
        directKernel(type, xs[i] as Float64Array, xs[j] as Float64Array, gamma) + (i === j ? lambda : 0),
      );
    }
  }
  return a;
}

function maxAbsDiffToInverse(w: KrrWindow, type: KernelType, xs: Float64Array[]): number {
  const ref = inverse(directA(type, xs, w.lambda, w.gamma));
  let worst = 0;
  for (let i = 0; i < xs.length; i++) {
    for (let j = 0; j < xs.length; j++) worst = Math.max(worst, Math.abs(w.inverseAt(i, j) - ref.get(i, j)));
  }
  return worst;
}

function randomPoint(rng: Rng, d: number): Float64Array {
  return Float64Array.from({ length: d }, () => rng.normal());
}

/**
 * Naive leave-block-out MSE: for each contiguous block (size b, remainder joins the last block), refit
 * without it by a direct solve and predict its points. b = 1 is plain LOO.
 */
function naiveLoo(
  type: KernelType,
  xs: Float64Array[],
  ys: number[],
  lambda: number,
  gamma: number,
  b = 1,
): number {
  let sum = 0;
  const n = xs.length;
  const count = Math.floor(n / b);
  for (let k = 0; k < count; k++) {
    const start = k * b;
    const end = k === count - 1 ? n : start + b;
    const out = (j: number) => j >= start && j < end;
    const keepX = xs.filter((_, j) => !out(j));
    const keepY = ys.filter((_, j) => !out(j));
    const alpha = solve(directA(type, keepX, lambda, gamma), Matrix.columnVector(keepY));
    for (let i = start; i < end; i++) {
      let pred = 0;
      for (let j = 0; j < keepX.length; j++) {
        pred += directKernel(type, keepX[j] as Float64Array, xs[i] as Float64Array, gamma) * alpha.get(j, 0);
      }
      sum += ((ys[i] as number) - pred) ** 2;
    }
  }
  return sum / n;
}

/**
 * Naive buffered leave-block-out MSE: each block refitted without itself and `buffer` neighbours on each
 * side (clipped to the window) by a direct solve; only the block's points are scored.
 */
function naiveBufferedLoo(
  type: KernelType,
  xs: Float64Array[],
  ys: number[],
  lambda: number,
  gamma: number,
  b: number,
  buffer: number,
): number {
  let sum = 0;
  const n = xs.length;
  const count = Math.floor(n / b);
  for (let k = 0; k < count; k++) {
    const start = k * b;
    const end = k === count - 1 ? n : start + b;
    const out = (j: number) => j >= start - buffer && j < end + buffer;
    const keepX = xs.filter((_, j) => !out(j));
    const keepY = ys.filter((_, j) => !out(j));
    const alpha = solve(directA(type, keepX, lambda, gamma), Matrix.columnVector(keepY));
    for (let i = start; i < end; i++) {
      let pred = 0;
      for (let j = 0; j < keepX.length; j++) {
        pred += directKernel(type, keepX[j] as Float64Array, xs[i] as Float64Array, gamma) * alpha.get(j, 0);
      }
      sum += ((ys[i] as number) - pred) ** 2;
    }
  }
  return sum / n;
}

describe('KrrWindow incremental inverse', () => {
  it('conditionBound is an upper bound on cond₂(K + λI) from an eigendecomposition, tight for a near-constant kernel', () => {
    const rng = new Rng(5);
    for (const [lambda, gamma] of [
      [0.5, 0.3],
      [1e-3, 1e-3],
      [1e-4, 5],
    ] as const) {
      const w = new KrrWindow(makeKernel({ type: 'rbf' }), 30, 3, lambda, gamma, new ComputeMeter());
      for (let i = 0; i < 30; i++) w.add(randomPoint(rng, 3), rng.normal());
      const a = new Matrix(30, 30);
      for (let i = 0; i < 30; i++)
        for (let j = 0; j < 30; j++) a.set(i, j, w.kernelAt(i, j) + (i === j ? lambda : 0));
      const ev = new EigenvalueDecomposition(a, { assumeSymmetric: true }).realEigenvalues;
      const cond = Math.max(...ev) / Math.min(...ev);
      const bound = w.conditionBound();
      assert.ok(bound >= cond * (1 - 1e-9), `bound ${bound} < cond ${cond}`);
      // γ → 0: K → 11ᵀ, whose one eigenvalue n is its row sum, so the bound is near exact.
      if (gamma === 1e-3) assert.ok(bound < cond * 1.05, `bound ${bound} vs cond ${cond}`);
    }
  });

  for (const type of ['rbf', 'laplacian', 'polynomial'] as const) {
    it(`matches a direct inverse after 400 insert/delete cycles (${type}, no refreshes)`, () => {
      const rng = new Rng(11);
      const d = 3;
      const meter = new ComputeMeter();
      const w = new KrrWindow(makeKernel({ type }), 25, d, 0.05, 0.4, meter, {
        driftTolerance: Number.POSITIVE_INFINITY,
        driftCheckEvery: 1e9, // no checks: α is carried by its O(n) updates the whole way
      });
      const xs: Float64Array[] = [];
      const ys: number[] = [];
      for (let t = 0; t < 425; t++) {
        if (w.full) {
          w.removeOldest();
          xs.shift();
          ys.shift();
        }
        const x = randomPoint(rng, d);
        const y = rng.normal();
        xs.push(x);
        ys.push(y);
        w.add(x, y);
        if (t === 1) w.alpha(); // start the incremental α chain
      }
      assert.equal(meter.refreshes, 0, 'pure updates, never refactorized');
      const diff = maxAbsDiffToInverse(w, type, xs);
      assert.ok(diff < 1e-7, `max |M − A⁻¹| = ${diff}`);
      const flopsBefore = meter.flops;
      const alpha = w.alpha();
      assert.equal(meter.flops, flopsBefore, 'α came from the incremental updates, not a fresh My');
      const direct = solve(directA(type, xs, 0.05, 0.4), Matrix.columnVector(ys));
      for (let i = 0; i < 25; i++) assert.ok(Math.abs((alpha[i] as number) - direct.get(i, 0)) < 1e-7);
    });
  }

  it('linear kernel (rank-deficient K) with a small λ stays accurate with drift refreshes', () => {
    const rng = new Rng(5);
    const w = new KrrWindow(makeKernel({ type: 'linear' }), 30, 2, 1e-3, 1, new ComputeMeter());
    const xs: Float64Array[] = [];
    for (let t = 0; t < 300; t++) {
      if (w.full) {
        w.removeOldest();
        xs.shift();
      }
      const x = randomPoint(rng, 2);
      xs.push(x);
      w.add(x, rng.normal());
    }
    // ‖M‖ ~ 1/λ = 1000 here, so compare relative to that scale.
    assert.ok(maxAbsDiffToInverse(w, 'linear', xs) < 1e-6 * 1000);
  });

  it('removing a middle point matches the direct inverse of the reduced matrix', () => {
    const rng = new Rng(3);
    const w = new KrrWindow(makeKernel({ type: 'rbf' }), 10, 2, 0.1, 0.7);
    const xs: Float64Array[] = [];
    for (let t = 0; t < 10; t++) {
      const x = randomPoint(rng, 2);
      xs.push(x);
      w.add(x, t);
    }
    w.remove(4);
    xs.splice(4, 1);
    assert.ok(maxAbsDiffToInverse(w, 'rbf', xs) < 1e-10);
    assert.deepEqual(Array.from(w.targets()), [0, 1, 2, 3, 5, 6, 7, 8, 9]);
  });

  it('a drift tolerance of 0 forces a refresh at every check, and the drift measure is small', () => {
    const rng = new Rng(9);
    const meter = new ComputeMeter();
    const w = new KrrWindow(makeKernel({ type: 'rbf' }), 8, 2, 0.1, 1, meter, {
      driftTolerance: 0,
      driftGrowth: 0,
      driftCheckEvery: 4,
    });
    for (let t = 0; t < 16; t++) {
      if (w.full) w.removeOldest();
      w.add(randomPoint(rng, 2), 0);
    }
    // 16 adds + 8 removes = 24 updates. Every check refreshes, and each refresh halves the interval:
    // checks after updates 4, 6 (interval 2), then every update 7…24 → 2 + 18 = 20 refreshes.
    assert.equal(w.stabilityRefreshes, 20);
    assert.equal(meter.refreshes, 20);
    assert.ok(w.maxDrift < 1e-10);
  });

  it('an ill-conditioned window (λ = 1e-6, wide RBF) stays accurate only because drift forces refreshes', () => {
    const run = (driftTolerance: number) => {
      const rng = new Rng(1);
      const w = new KrrWindow(makeKernel({ type: 'rbf' }), 30, 2, 1e-6, 0.05, new ComputeMeter(), {
        driftTolerance,
      });
      for (let t = 0; t < 300; t++) {
        if (w.full) w.removeOldest();
        w.add([rng.normal(), rng.normal()], rng.normal());
      }
      return { drift: w.drift(), refreshes: w.stabilityRefreshes };
    };
    const guarded = run(1e-8);
    const unguarded = run(Number.POSITIVE_INFINITY);
    // Pure updates lose ~6 digits here (cond ≈ 1e6); a fresh factorization keeps the residual near 1e-9.
    assert.ok(unguarded.drift > 1e-5, `unguarded drift ${unguarded.drift}`);
    assert.ok(guarded.drift < 1e-6, `guarded drift ${guarded.drift}`);
    assert.ok(guarded.refreshes > 0 && unguarded.refreshes === 0);
  });

  it('a predicted point inserted h steps later reuses its kernel row: same window bit for bit, fewer flops', () => {
    // h-step forecasting order: predict x_t, later insert x_t (after h − 1 other inserts and deletes),
    // with a γ change in between for some rows (their stored statistics are re-transformed).
    const run = (reuseKernelRows: boolean) => {
      const rng = new Rng(21);
      const meter = new ComputeMeter();
      const w = new KrrWindow(makeKernel({ type: 'rbf' }), 20, 3, 0.05, 0.4, meter, { reuseKernelRows });
      const h = 3;
      const xs: Float64Array[] = [];
      const preds: number[] = [];
      for (let t = 0; t < 120; t++) xs.push(randomPoint(rng, 3));
      for (let t = 0; t < 120; t++) {
        if (t >= h) {
          if (w.full) w.removeOldest();
          w.add(xs[t - h] as Float64Array, Math.sin(t));
        }
        if (t === 60) w.setHyper(0.05, 0.9);
        if (w.size > 0) preds.push(w.predict(xs[t] as Float64Array, w.alpha()));
      }
      const cells: number[] = [];
      for (let i = 0; i < w.size; i++)
        for (let j = 0; j < w.size; j++) cells.push(w.statAt(i, j), w.kernelAt(i, j), w.inverseAt(i, j));
      return { meter, cells, preds, w };
    };
    const plain = run(false);
    const reused = run(true);
    assert.deepEqual(reused.cells, plain.cells);
    assert.deepEqual(reused.preds, plain.preds);
    // Once full, each insert computes only the h − 1 = 2 statistics its prediction did not (plus k(x, x));
    // the predictions' own n statistics per step are still computed.
    assert.ok(reused.meter.kernelEvals < 0.6 * plain.meter.kernelEvals);
    const savedEvals = plain.meter.kernelEvals - reused.meter.kernelEvals;
    const savedTransforms = plain.meter.kernelTransforms - reused.meter.kernelTransforms;
    assert.ok(savedTransforms > 0 && savedTransforms < savedEvals, 'rows predicted before the γ change');
    // The meter is charged exactly for the statistics (3d each) and transforms (10 each) not recomputed.
    assert.equal(plain.meter.flops - reused.meter.flops, savedEvals * 3 * 3 + savedTransforms * 10);
  });

  it('drift checks thin out while drift stays far below the tolerance, and the inverse stays exact', () => {
    const run = (driftCheckMax: number) => {
      const rng = new Rng(4);
      const meter = new ComputeMeter();
      const w = new KrrWindow(makeKernel({ type: 'rbf' }), 30, 2, 0.1, 0.5, meter, { driftCheckMax });
      const xs: Float64Array[] = [];
      for (let t = 0; t < 1200; t++) {
        if (w.full) {
          w.removeOldest();
          xs.shift();
        }
        const x = randomPoint(rng, 2);
        xs.push(x);
        w.add(x, rng.normal());
      }
      return { w, xs, meter };
    };
    const every = run(32);
    const sparse = run(256);
    assert.ok(
      sparse.w.driftChecks < every.w.driftChecks / 3,
      `${sparse.w.driftChecks} vs ${every.w.driftChecks}`,
    );
    assert.ok(sparse.meter.flops < every.meter.flops);
    assert.equal(sparse.w.stabilityRefreshes, 0);
    assert.ok(maxAbsDiffToInverse(sparse.w, 'rbf', sparse.xs) < 1e-10);
    // New hyperparameters restart the schedule: the next check comes within driftCheckEvery updates.
    const checks = sparse.w.driftChecks;
    sparse.w.setHyper(0.02, 0.7);
    for (let t = 0; t < 16; t++) {
      sparse.w.removeOldest();
      sparse.w.add(randomPoint(new Rng(t), 2), 0);
    }
    assert.equal(sparse.w.driftChecks, checks + 1);
  });

  it('setHyper rebuilds K and M for new λ, γ', () => {
    const rng = new Rng(2);
    const w = new KrrWindow(makeKernel({ type: 'laplacian' }), 12, 3, 0.1, 0.5);
    const xs: Float64Array[] = [];
    for (let t = 0; t < 12; t++) {
      const x = randomPoint(rng, 3);
      xs.push(x);
      w.add(x, 1);
    }
    w.setHyper(0.02, 1.7);
    assert.ok(maxAbsDiffToInverse(w, 'laplacian', xs) < 1e-9);
  });

  it('rejects bad input and leaves the window unchanged', () => {
    const w = new KrrWindow(makeKernel({ type: 'rbf' }), 3, 2, 0.1, 1);
    w.add([0, 1], 1);
    const code = (e: unknown) => (e as OrchardError).code;
    assert.throws(
      () => w.add([0, 1, 2], 1),
      (e) => e instanceof OrchardError && code(e) === 'SHAPE_MISMATCH',
    );
    assert.throws(
      () => w.add([Number.NaN, 1], 1),
      (e) => code(e) === 'NON_FINITE',
    );
    assert.throws(
      () => w.add([0, 1], Number.POSITIVE_INFINITY),
      (e) => code(e) === 'NON_FINITE',
    );
    assert.throws(
      () => w.setHyper(-1, 1),
      (e) => code(e) === 'INVALID_ARGUMENT',
    );
    assert.throws(
      () => w.setHyper(0.1, 0),
      (e) => code(e) === 'INVALID_ARGUMENT',
    );
    assert.throws(
      () => w.remove(5),
      (e) => code(e) === 'INVALID_ARGUMENT',
    );
    assert.throws(() => new KrrWindow(makeKernel({ type: 'rbf' }), 1, 2, 0.1, 1), /window/);
    assert.throws(() => makeKernel({ type: 'sigmoid' as KernelType }), /unknown kernel/);
    assert.equal(w.size, 1);
    assert.equal(w.lambda, 0.1);
    assert.equal(w.gamma, 1);
    w.add([1, 1], 2);
    w.add([2, 1], 3);
    assert.throws(
      () => w.add([3, 1], 4),
      (e) => code(e) === 'INVALID_STATE',
    );
  });
});

describe('closed-form leave-one-out and its gradient', () => {
  function filled(type: KernelType, lambda: number, gamma: number, seed: number) {
    const rng = new Rng(seed);
    const w = new KrrWindow(makeKernel({ type }), 14, 2, lambda, gamma);
    const xs: Float64Array[] = [];
    const ys: number[] = [];
    for (let t = 0; t < 14; t++) {
      const x = randomPoint(rng, 2);
      const y = Math.sin(2 * (x[0] as number)) + 0.3 * (x[1] as number) + 0.1 * rng.normal();
      xs.push(x);
      ys.push(y);
      w.add(x, y);
    }
    return { w, xs, ys };
  }

  /** g against central differences (step 1e-4 in log space) of f(log λ, log γ), to 1e-5 relative. */
  function assertMatchesFiniteDifferences(
    g: { dLogLambda: number; dLogGamma: number },
    f: (logLambda: number, logGamma: number) => number,
    lambda: number,
    gamma: number,
  ): void {
    const h = 1e-4;
    const fdLambda =
      (f(Math.log(lambda) + h, Math.log(gamma)) - f(Math.log(lambda) - h, Math.log(gamma))) / (2 * h);
    const fdGamma =
      (f(Math.log(lambda), Math.log(gamma) + h) - f(Math.log(lambda), Math.log(gamma) - h)) / (2 * h);
    assert.ok(
      Math.abs(g.dLogLambda - fdLambda) < 1e-5 * (1 + Math.abs(fdLambda)),
      `${g.dLogLambda} vs ${fdLambda}`,
    );
    assert.ok(
      Math.abs(g.dLogGamma - fdGamma) < 1e-5 * (1 + Math.abs(fdGamma)),
      `${g.dLogGamma} vs ${fdGamma}`,
    );
  }

  for (const b of [1, 3, 4]) {
    it(`equals the naive refit-without-each-block error (block size ${b})`, () => {
      const { w, xs, ys } = filled('rbf', 0.05, 0.8, 1);
      const closed = looResiduals(w, b).mse;
      const naive = naiveLoo('rbf', xs, ys, 0.05, 0.8, b);
      assert.ok(Math.abs(closed - naive) < 1e-9 * naive, `${closed} vs ${naive}`);
    });
  }

  for (const [type, b] of [
    ['rbf', 1],
    ['laplacian', 1],
    ['linear', 1],
    ['polynomial', 1],
    ['rbf', 3],
    ['laplacian', 4],
  ] as const) {
    it(`gradient of log leave-${b}-out matches central finite differences (${type})`, () => {
      const lambda = 0.07;
      const gamma = type === 'polynomial' ? 0.3 : 0.6;
      const { w, xs, ys } = filled(type, lambda, gamma, 4);
      const g = looGradient(w, { blockSize: b });
      const f = (ll: number, lg: number) => Math.log(naiveLoo(type, xs, ys, Math.exp(ll), Math.exp(lg), b));
      assertMatchesFiniteDifferences(g, f, lambda, gamma);
    });
  }

  it('the block-subset γ estimate with every block equals the full gradient, and is unbiased over a partition', () => {
    const { w } = filled('rbf', 0.1, 0.5, 8);
    const full = looGradient(w, { blockSize: 2 });
    const all = looGradient(w, { blockSize: 2, blocks: [0, 1, 2, 3, 4, 5, 6] });
    assert.ok(Math.abs(all.dLogGamma - full.dLogGamma) < 1e-12);
    const one = looGradient(w, { blockSize: 2, blocks: [0] });
    assert.ok(Math.abs(one.dLogGamma - full.dLogGamma) > 1e-9, 'a single block is only an estimate');
    // Averaging the estimates over a partition of the blocks into equal parts recovers the exact value.
    const half = (p: number) => Array.from({ length: 7 }, (_, i) => 2 * i + p);
    const parts = [0, 1].map((p) => looGradient(w, { blockSize: 1, blocks: half(p) }).dLogGamma);
    const mean = ((parts[0] as number) + (parts[1] as number)) / 2;
    const exact = looGradient(w).dLogGamma;
    assert.ok(Math.abs(mean - exact) < 1e-9 * (1 + Math.abs(exact)));
    assert.throws(() => looGradient(w, { blockSize: 2, blocks: [] }), /empty block subset/);
    assert.throws(() => looGradient(w, { blockSize: 2, blocks: [9] }), /no block 9/);
    assert.throws(() => looResiduals(w, 8), /needs at least 16 points/);
  });

  for (const [type, b, buffer] of [
    ['rbf', 3, 1],
    ['rbf', 4, 2],
    ['laplacian', 1, 2],
  ] as const) {
    it(`buffered leave-${b}-out (buffer ${buffer}, ${type}) equals naive refits; its gradient matches finite differences`, () => {
      const lambda = 0.07;
      const gamma = 0.6;
      const { w, xs, ys } = filled(type, lambda, gamma, 6);
      const closed = looResiduals(w, b, buffer).mse;
      const naive = naiveBufferedLoo(type, xs, ys, lambda, gamma, b, buffer);
      assert.ok(Math.abs(closed - naive) < 1e-9 * naive, `${closed} vs ${naive}`);
      // leaving the neighbours out changes the value (it is not plain leave-block-out)
      const plain = looResiduals(w, b).mse;
      assert.ok(Math.abs(plain - naive) > 1e-6 * naive, `${plain} vs ${naive}`);
      const g = looGradient(w, { blockSize: b, buffer });
      const f = (ll: number, lg: number) =>
        Math.log(naiveBufferedLoo(type, xs, ys, Math.exp(ll), Math.exp(lg), b, buffer));
      assertMatchesFiniteDifferences(g, f, lambda, gamma);
    });
  }

  it('buffered γ estimate: all blocks equal the exact gradient, a partition averages to it; bad input', () => {
    const { w } = filled('rbf', 0.1, 0.5, 9);
    const exact = looGradient(w, { blockSize: 2, buffer: 1 });
    const all = looGradient(w, { blockSize: 2, buffer: 1, blocks: [0, 1, 2, 3, 4, 5, 6] });
    assert.ok(Math.abs(all.dLogGamma - exact.dLogGamma) < 1e-12 * (1 + Math.abs(exact.dLogGamma)));
    const parts = [0, 1].map(
      (p) =>
        looGradient(w, { blockSize: 1, buffer: 1, blocks: Array.from({ length: 7 }, (_, i) => 2 * i + p) })
          .dLogGamma,
    );
    const exact1 = looGradient(w, { blockSize: 1, buffer: 1 }).dLogGamma;
    const mean = ((parts[0] as number) + (parts[1] as number)) / 2;
    assert.ok(Math.abs(mean - exact1) < 1e-9 * (1 + Math.abs(exact1)), `${mean} vs ${exact1}`);
    assert.throws(() => looResiduals(w, 2, -1), /buffer must be an integer/);
    assert.throws(() => looGradient(w, { blockSize: 2, buffer: 1, blocks: [9] }), /no block 9/);
    assert.throws(() => looResiduals(w, 6, 3), /with a buffer of 3 needs at least 15 points/);
  });

  /** Direct refit on the oldest n − m − gap points, then forecast the newest m: the reference signal. */
  function naiveRecent(
    type: KernelType,
    xs: Float64Array[],
    ys: number[],
    lambda: number,
    gamma: number,
    m: number,
    gap: number,
  ): number[] {
    const train = xs.length - m - gap;
    const alpha = solve(
      directA(type, xs.slice(0, train), lambda, gamma),
      Matrix.columnVector(ys.slice(0, train)),
    );
    return xs.slice(xs.length - m).map((x, k) => {
      let pred = 0;
      for (let i = 0; i < train; i++)
        pred += directKernel(type, xs[i] as Float64Array, x, gamma) * alpha.get(i, 0);
      return (ys[xs.length - m + k] as number) - pred;
    });
  }

  it('recent forecast errors equal a direct refit on the older points; their gradient matches finite differences', () => {
    const lambda = 0.07;
    const gamma = 0.6;
    const { w, xs, ys } = filled('rbf', lambda, gamma, 5);
    for (const [m, gap] of [
      [4, 0],
      [3, 2],
    ] as const) {
      const closed = recentResiduals(w, m, gap).residuals;
      const naive = naiveRecent('rbf', xs, ys, lambda, gamma, m, gap);
      assert.equal(closed.length, m);
      naive.forEach((v, k) => {
        assert.ok(Math.abs((closed[k] as number) - v) < 1e-9 * (1 + Math.abs(v)), `${closed[k]} vs ${v}`);
      });
      const g = recentGradient(w, m, gap);
      const f = (ll: number, lg: number) => {
        const r = naiveRecent('rbf', xs, ys, Math.exp(ll), Math.exp(lg), m, gap);
        return Math.log(r.reduce((a, v) => a + v * v, 0) / m);
      };
      assertMatchesFiniteDifferences(g, f, lambda, gamma);
    }
    assert.throws(() => recentResiduals(w, 12, 1), /cannot hold out/);
    assert.throws(() => recentGradient(w, 0), /integer >= 1/);
  });

  it('the coarse probe: recent errors at other (λ, γ) equal a direct refit, the window is untouched, the work is counted', () => {
    const { w, xs, ys } = filled('rbf', 0.07, 0.6, 5);
    const before = w.saveState();
    for (const [lambda, gamma, m, gap] of [
      [0.07, 0.6, 4, 0],
      [3, 0.01, 3, 2],
      [1e-3, 4, 4, 1],
    ] as const) {
      const flops = w.meter.flops;
      const probe = recentErrorAt(w, m, gap, lambda, gamma);
      const naive = naiveRecent('rbf', xs, ys, lambda, gamma, m, gap);
      assert.ok(probe !== null);
      naive.forEach((v, k) => {
        const got = probe.residuals[k] as number;
        assert.ok(Math.abs(got - v) < 1e-9 * (1 + Math.abs(v)), `λ ${lambda} γ ${gamma}: ${got} vs ${v}`);
      });
      assert.ok(Math.abs(probe.mse - naive.reduce((a, v) => a + v * v, 0) / m) < 1e-12);
      // At least the Cholesky of the older points' (K + λI) is charged.
      const o = w.size - m - gap;
      assert.ok(w.meter.flops - flops >= (o * o * o) / 3, `${w.meter.flops - flops} flops for o = ${o}`);
    }
    const after = w.saveState();
    assert.deepEqual([after.lambda, after.gamma], [before.lambda, before.gamma]);
    assert.deepEqual(after.minv, before.minv);
    assert.throws(() => recentErrorAt(w, 12, 1, 0.1, 0.1), /cannot hold out/);
  });

  it('significantlyBetter: a paired test on block means of squared-error differences', () => {
    const rng = new Rng(11);
    const noise = Float64Array.from({ length: 96 }, () => rng.normal());
    const halved = noise.map((v) => v / 2);
    const jitter = noise.map((v) => v * (1 + 0.01 * rng.normal()));
    // Halving every error is a clear win; a 1% random jitter is not; nothing beats itself.
    assert.equal(significantlyBetter(noise, halved, 3, 2), true);
    assert.equal(significantlyBetter(halved, noise, 3, 2), false);
    assert.equal(significantlyBetter(noise, jitter, 3, 2), false);
    assert.equal(significantlyBetter(noise, noise, 3, 2), false);
    // One block that is much better, the rest slightly worse: lower mean error, but not consistently.
    const mixed = noise.map((v, i) => (i < 12 ? v / 10 : v * 1.02));
    let a = 0;
    let b = 0;
    for (let i = 0; i < 96; i++) {
      a += (noise[i] as number) ** 2;
      b += (mixed[i] as number) ** 2;
    }
    assert.ok(b < a, 'the mixed errors are lower on average');
    assert.equal(significantlyBetter(noise, mixed, 12, 2), false);
  });
});
