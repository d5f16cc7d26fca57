import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Rng } from '../../core/rng.ts';
import { SecAggError } from './errors.ts';
import {
  completeGraph,
  hararyGraph,
  majorityThreshold,
  type NeighbourGraph,
  secAggPlusDegree,
} from './graph.ts';

function checkRegularSimple(g: NeighbourGraph, k: number): void {
  for (let u = 0; u < g.size; u++) {
    const nb = g.neighbours(u);
    assert.equal(nb.length, k, `degree of ${u}`);
    assert.equal(new Set(nb).size, k, `no repeated neighbours of ${u}`);
    assert.ok(!nb.includes(u), `no self loop at ${u}`);
    for (const v of nb) assert.ok(g.neighbours(v).includes(u), `edge ${u}-${v} is symmetric`);
  }
}

/** Connected after deleting `removed` (breadth-first search). */
function connectedWithout(g: NeighbourGraph, removed: ReadonlySet<number>): boolean {
  const start = [...Array(g.size).keys()].find((u) => !removed.has(u));
  if (start === undefined) return true;
  const seen = new Set([start]);
  const queue = [start];
  while (queue.length > 0) {
    const u = queue.shift() as number;
    for (const v of g.neighbours(u))
      if (!removed.has(v) && !seen.has(v)) {
        seen.add(v);
        queue.push(v);
      }
  }
  return seen.size === g.size - removed.size;
}

test('Harary graphs are k-regular, simple and symmetric, for even and odd k', () => {
  checkRegularSimple(hararyGraph(40, 6, new Rng(1)), 6);
  checkRegularSimple(hararyGraph(40, 7, new Rng(2)), 7);
  checkRegularSimple(hararyGraph(101, 20, new Rng(3)), 20);
});

test('Harary graphs stay connected after removing any k − 1 random nodes (k-connectivity)', () => {
  const k = 6;
  const g = hararyGraph(30, k, new Rng(4));
  const rng = new Rng(5);
  for (let trial = 0; trial < 200; trial++) {
    const removed = new Set(Array.from(rng.permutation(30).subarray(0, k - 1)));
    assert.ok(connectedWithout(g, removed));
  }
  // The bound is tight: a node's k neighbours do cut it off.
  assert.ok(!connectedWithout(g, new Set(g.neighbours(0))));
});

test('the relabelling is random: different seeds give different graphs, the same seed the same', () => {
  const a = hararyGraph(50, 8, new Rng(7));
  const b = hararyGraph(50, 8, new Rng(8));
  const c = hararyGraph(50, 8, new Rng(7));
  const edges = (g: NeighbourGraph) => JSON.stringify(Array.from({ length: 50 }, (_, u) => g.neighbours(u)));
  assert.notEqual(edges(a), edges(b));
  assert.equal(edges(a), edges(c));
});

test('complete graphs, degree and threshold defaults', () => {
  const g = completeGraph(5);
  checkRegularSimple(g, 4);
  assert.ok(g.complete);
  assert.ok(hararyGraph(5, 4, new Rng(1)).complete);
  assert.equal(secAggPlusDegree(100), 20);
  assert.equal(secAggPlusDegree(4), 3);
  assert.ok(secAggPlusDegree(10000) < 50);
  assert.equal(majorityThreshold(21), 11);
  assert.equal(majorityThreshold(20), 11);
});

test('impossible graphs are rejected', () => {
  const bad = (e: unknown) => e instanceof SecAggError;
  assert.throws(() => hararyGraph(41, 7, new Rng(1)), bad);
  assert.throws(() => hararyGraph(10, 1, new Rng(1)), bad);
  assert.throws(() => completeGraph(1), bad);
  assert.throws(() => completeGraph(3).neighbours(3), bad);
});
