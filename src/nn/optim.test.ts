import assert from 'node:assert/strict';
import { test } from 'node:test';
import { OrchardError } from '../core/errors.ts';
import { createOptimizer } from './optim.ts';

function close(actual: ArrayLike<number>, expected: number[], tol = 1e-6): void {
  assert.equal(actual.length, expected.length);
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i] as number;
    const e = expected[i] as number;
    assert.ok(Math.abs(a - e) <= tol * Math.max(1, Math.abs(e)), `index ${i}: ${a} vs ${e}`);
  }
}

test('sgd: params -= lr * grad', () => {
  const opt = createOptimizer({ kind: 'sgd', lr: 0.1 }, 2);
  const p = new Float32Array([1, 2]);
  opt.step(p, new Float32Array([0.5, -1]));
  close(p, [0.95, 2.1]);
  assert.equal(opt.steps, 1);
});

test('momentum: two steps with constant gradient (v = 1, then 1.9)', () => {
  const opt = createOptimizer({ kind: 'momentum', lr: 0.1, momentum: 0.9, nesterov: false }, 1);
  const p = new Float32Array([0]);
  const g = new Float32Array([1]);
  opt.step(p, g);
  close(p, [-0.1]);
  opt.step(p, g);
  close(p, [-0.29]);
  opt.reset();
  opt.step(p, g);
  close(p, [-0.39]); // velocity forgotten: back to a plain step of 0.1
});

test('nesterov momentum: direction g + mu * v_new (1.9, then 2.71)', () => {
  const opt = createOptimizer({ kind: 'momentum', lr: 0.1, momentum: 0.9, nesterov: true }, 1);
  const p = new Float32Array([0]);
  const g = new Float32Array([1]);
  opt.step(p, g);
  close(p, [-0.19]);
  opt.step(p, g);
  close(p, [-0.461]);
});

test('adam: bias-corrected steps match a float64 reference computed by hand', () => {
  // Reference worked out step by step: t=1, g=2: m̂=2, v̂=4 → Δ = 0.1·2/(2+1e-3);
  // t=2, g=-1: m=0.08, v=0.0496, m̂=0.08/0.19, v̂=0.0496/0.0199.
  const opt = createOptimizer({ kind: 'adam', lr: 0.1, beta1: 0.9, beta2: 0.99, eps: 1e-3 }, 2);
  const p = new Float32Array([0, 5]);
  opt.step(p, new Float32Array([2, 0]));
  close(p, [-0.09995002498750626, 5]);
  opt.step(p, new Float32Array([-1, 0]));
  close(p, [-0.1266030855497109, 5]);
  assert.equal(opt.steps, 2);
});

test('adam: first step has magnitude ≈ lr regardless of gradient scale', () => {
  const opt = createOptimizer({ kind: 'adam', lr: 0.01, beta1: 0.9, beta2: 0.999, eps: 1e-8 }, 3);
  const p = new Float32Array(3);
  opt.step(p, new Float32Array([1e-4, -50, 3]));
  close(p, [-0.01, 0.01, -0.01], 1e-4);
});

test('length mismatch throws ShapeError and leaves params untouched', () => {
  const opt = createOptimizer({ kind: 'momentum', lr: 0.1, momentum: 0.5, nesterov: false }, 3);
  const p = new Float32Array([1, 2, 3]);
  assert.throws(
    () => opt.step(p, new Float32Array(2)),
    (e: unknown) => e instanceof OrchardError && e.code === 'SHAPE_MISMATCH',
  );
  close(p, [1, 2, 3]);
  assert.equal(opt.steps, 0);
});

test('invalid hyperparameters throw ConfigError', () => {
  const bad = (f: () => unknown) =>
    assert.throws(f, (e: unknown) => e instanceof OrchardError && e.code === 'CONFIG_INVALID');
  bad(() => createOptimizer({ kind: 'sgd', lr: -1 }, 3));
  bad(() => createOptimizer({ kind: 'sgd', lr: Number.NaN }, 3));
  bad(() => createOptimizer({ kind: 'momentum', lr: 1, momentum: 1, nesterov: false }, 3));
  bad(() => createOptimizer({ kind: 'adam', lr: 1, beta1: 0.9, beta2: 0.99, eps: 0 }, 3));
  bad(() => createOptimizer({ kind: 'sgd', lr: 1 }, 1.5));
});

test('sgd on a long vector (SIMD path) matches the scalar rule', () => {
  const n = 10007;
  const opt = createOptimizer({ kind: 'sgd', lr: 0.3 }, n);
  const p = Float32Array.from({ length: n }, (_, i) => Math.sin(i));
  const g = Float32Array.from({ length: n }, (_, i) => Math.cos(i));
  const expected = Array.from(p, (v, i) => v - 0.3 * (g[i] as number));
  opt.step(p, g);
  close(p, expected, 1e-6);
});
