import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkThreshold, isUnsafe, pUnsafeFromLogits } from './score.ts';
import { GuardError } from './types.ts';

describe('pUnsafeFromLogits (two-way softmax)', () => {
  it('matches hand-computed values', () => {
    assert.equal(pUnsafeFromLogits(0, 0), 0.5);
    // e^ln3 / (e^ln3 + e^0) = 3/4
    assert.ok(Math.abs(pUnsafeFromLogits(0, Math.log(3)) - 0.75) < 1e-15);
    assert.ok(Math.abs(pUnsafeFromLogits(Math.log(3), 0) - 0.25) < 1e-15);
    // Only the difference matters: 1/(1+e^-1) = 0.7310585786300049
    assert.ok(Math.abs(pUnsafeFromLogits(1000, 1001) - 0.7310585786300049) < 1e-15);
    assert.ok(Math.abs(pUnsafeFromLogits(-5000, -4999) - 0.7310585786300049) < 1e-15);
  });

  it('stays finite at extremes (log-probabilities may be -Infinity)', () => {
    assert.equal(pUnsafeFromLogits(Number.NEGATIVE_INFINITY, 0), 1);
    assert.equal(pUnsafeFromLogits(0, Number.NEGATIVE_INFINITY), 0);
    assert.equal(pUnsafeFromLogits(Number.NEGATIVE_INFINITY, Number.NEGATIVE_INFINITY), 0.5);
    assert.equal(pUnsafeFromLogits(0, 800), 1);
    assert.ok(pUnsafeFromLogits(800, 0) >= 0);
  });

  it('NaN is a BAD_RESPONSE', () => {
    assert.throws(
      () => pUnsafeFromLogits(Number.NaN, 0),
      (e) => e instanceof GuardError && e.code === 'BAD_RESPONSE',
    );
  });
});

describe('threshold', () => {
  it('validates and decides with >=', () => {
    assert.equal(checkThreshold(0), 0);
    assert.equal(checkThreshold(1), 1);
    for (const t of [-0.1, 1.01, Number.NaN, Number.POSITIVE_INFINITY]) {
      assert.throws(
        () => checkThreshold(t),
        (e) => e instanceof GuardError && e.code === 'INVALID_OPTION',
      );
    }
    assert.equal(isUnsafe(0.5, 0.5), true);
    assert.equal(isUnsafe(0.4999, 0.5), false);
  });
});
