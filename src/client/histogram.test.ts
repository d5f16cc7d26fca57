import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Rng } from '../core/rng.ts';
import { LatencyHistogram } from './histogram.ts';

test('quantiles are within 5% of the exact order statistics', () => {
  const rng = new Rng(2);
  const h = new LatencyHistogram();
  const xs: number[] = [];
  for (let i = 0; i < 20_000; i++) {
    const x = Math.exp(rng.normal() * 1.5 + 2);
    xs.push(x);
    h.record(x);
  }
  xs.sort((a, b) => a - b);
  for (const q of [0.5, 0.9, 0.99]) {
    const exact = xs[Math.ceil(q * xs.length) - 1] as number;
    const got = h.quantile(q);
    assert.ok(got >= exact && got <= exact * 1.05, `q=${q}: ${got} vs ${exact}`);
  }
  assert.equal(h.count, 20_000);
  assert.ok(Math.abs(h.mean() - xs.reduce((a, b) => a + b, 0) / xs.length) < 1e-6 * h.mean());
  assert.equal(h.quantile(1), xs[xs.length - 1]);
});

test('empty histograms answer NaN; merge adds counts', () => {
  const a = new LatencyHistogram();
  assert.ok(Number.isNaN(a.quantile(0.5)));
  const b = new LatencyHistogram();
  a.record(1);
  b.record(100);
  b.record(100);
  a.merge(b);
  assert.equal(a.count, 3);
  assert.ok(a.quantile(0.5) >= 100 && a.quantile(0.5) <= 105);
  a.record(Number.NaN);
  assert.equal(a.count, 3);
});
