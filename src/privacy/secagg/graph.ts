/**
 * Neighbour graphs. SecAgg (Bonawitz et al. 2017) masks every pair of clients: the complete graph.
 * SecAgg+ (Bell et al. 2020) masks only along a sparse random k-regular graph with k = O(log n), which
 * cuts client work from O(n) to O(log n) masks and shares. Here the graph is a Harary graph H(k, n)
 * (the circulant that joins each node to its k/2 nearest ring positions on each side, plus the
 * opposite node when k is odd) under a random relabelling of the clients: k-regular and k-connected.
 *
 * The relabelling comes from a seeded Rng so simulations replay exactly; in a deployment the seed must
 * be drawn by the server after the clients have committed to their keys, so no coalition chooses
 * its neighbours.
 */
import type { Rng } from '../../core/rng.ts';
import { secaggError } from './errors.ts';

export interface NeighbourGraph {
  readonly size: number;
  /** Every node has exactly this many neighbours. */
  readonly degree: number;
  readonly complete: boolean;
  /** Sorted neighbour ids of `node`, excluding `node` itself. */
  neighbours(node: number): readonly number[];
  hasEdge(a: number, b: number): boolean;
}

class AdjacencyGraph implements NeighbourGraph {
  readonly size: number;
  readonly degree: number;
  readonly complete: boolean;
  private readonly adjacency: readonly (readonly number[])[];
  private readonly edges: readonly Set<number>[];

  constructor(adjacency: number[][], complete: boolean) {
    this.size = adjacency.length;
    this.complete = complete;
    this.adjacency = adjacency.map((a) => [...a].sort((x, y) => x - y));
    this.edges = adjacency.map((a) => new Set(a));
    this.degree = adjacency[0]?.length ?? 0;
  }

  neighbours(node: number): readonly number[] {
    const a = this.adjacency[node];
    if (a === undefined) throw secaggError('INVALID_MESSAGE', `node ${node} is not in the graph`);
    return a;
  }

  hasEdge(a: number, b: number): boolean {
    return this.edges[a]?.has(b) ?? false;
  }
}

function checkSize(n: number): void {
  if (!Number.isInteger(n) || n < 2)
    throw secaggError('INVALID_MESSAGE', `a group needs at least 2 clients, got ${n}`);
}

export function completeGraph(n: number): NeighbourGraph {
  checkSize(n);
  const adjacency: number[][] = [];
  for (let u = 0; u < n; u++) {
    const a: number[] = [];
    for (let v = 0; v < n; v++) if (v !== u) a.push(v);
    adjacency.push(a);
  }
  return new AdjacencyGraph(adjacency, true);
}

/**
 * A random k-regular Harary graph on n nodes. k ≥ n − 1 gives the complete graph; otherwise k must be
 * at least 2, and n·k even (a k-regular graph exists only then).
 */
export function hararyGraph(n: number, k: number, rng: Rng): NeighbourGraph {
  checkSize(n);
  if (!Number.isInteger(k) || k < 2)
    throw secaggError('INVALID_MESSAGE', `degree must be an integer ≥ 2, got ${k}`);
  if (k >= n - 1) return completeGraph(n);
  if ((n * k) % 2 !== 0)
    throw secaggError('INVALID_MESSAGE', `no ${k}-regular graph on ${n} nodes (n·k is odd)`);
  const label = rng.permutation(n);
  const sets: Set<number>[] = Array.from({ length: n }, () => new Set<number>());
  const join = (i: number, j: number) => {
    const a = label[i] as number;
    const b = label[((j % n) + n) % n] as number;
    (sets[a] as Set<number>).add(b);
    (sets[b] as Set<number>).add(a);
  };
  for (let i = 0; i < n; i++) {
    for (let d = 1; d <= Math.floor(k / 2); d++) join(i, i + d);
    if (k % 2 === 1) join(i, i + n / 2);
  }
  return new AdjacencyGraph(
    sets.map((s) => [...s]),
    false,
  );
}

/** SecAgg+ degree: about 3·log2(n), rounded up to even, capped at n − 1 (20 for n = 100). */
export function secAggPlusDegree(n: number): number {
  checkSize(n);
  const k = 2 * Math.ceil(1.5 * Math.log2(n));
  return Math.min(n - 1, Math.max(2, k));
}

/**
 * Default Shamir threshold for a client whose secrets go to `holders` clients (its neighbours and
 * itself): a strict majority, so the server can never collect t self-mask shares and t key shares of
 * one client from disjoint sets of honest holders.
 */
export function majorityThreshold(holders: number): number {
  return Math.floor(holders / 2) + 1;
}
