/**
 * One FedBuff buffer as one secure-aggregation group (see README, "Secure aggregation under
 * FedBuff"). The server must learn only Σ w_u·Δ_u and Σ w_u over the buffer, so each client weights
 * its own update before masking and appends its weight as one extra coordinate:
 *
 *   client u sends  [ clip_c(w_u · Δ_u) , w_u / maxWeight · c ]    (masked, fixed point)
 *
 * and the unmasked sum yields both the weighted sum and the total weight for normalization.
 */
import { Rng } from '../../core/rng.ts';
import type { CryptoProvider } from './crypto.ts';
import { secaggError } from './errors.ts';
import { fixedPointFor } from './fixedpoint.ts';
import { completeGraph, hararyGraph, majorityThreshold, secAggPlusDegree } from './graph.ts';
import type { SecAggParams } from './messages.ts';
import { type DropoutPlan, runSecAgg } from './run.ts';

export interface BufferContribution {
  readonly clientId: number;
  readonly delta: Float32Array;
  /** Aggregation weight (example weight × staleness weight), in [0, maxWeight]. */
  readonly weight: number;
}

export interface SecureBufferOptions {
  readonly crypto: CryptoProvider;
  /** Coordinate clipping range c applied to w·Δ: pick it above the largest weighted coordinate for exact sums. */
  readonly clip: number;
  /** Public bound on any client's weight (encodes the weight coordinate). */
  readonly maxWeight: number;
  /** 'secagg': all pairs; 'secagg+': random Harary graph of degree secAggPlusDegree(K). */
  readonly mode: 'secagg' | 'secagg+';
  /** Seed of the SecAgg+ graph relabelling. */
  readonly graphSeed?: number;
  /** SecAgg+ degree (default: groupShape's). */
  readonly degree?: number;
  /** Shamir threshold over holders (default: the smallest majority). */
  readonly threshold?: number;
  readonly modulusBits?: number;
  /** Dropouts by position in `contributions` (simulated stragglers). */
  readonly dropouts?: DropoutPlan;
}

export interface SecureBufferResult {
  /** Σ over included clients of clip(w·Δ). */
  readonly weightedSum: Float32Array;
  /** Σ over included clients of w. */
  readonly totalWeight: number;
  /** clientIds whose masked input made it into the sum. */
  readonly included: readonly number[];
  /** clientIds that shared keys but whose input never arrived. */
  readonly dropped: readonly number[];
}

export async function secureBufferSum(
  contributions: readonly BufferContribution[],
  options: SecureBufferOptions,
): Promise<SecureBufferResult> {
  const k = contributions.length;
  const first = contributions[0];
  if (first === undefined || k < 3)
    throw secaggError('BELOW_THRESHOLD', `a secure buffer needs at least 3 clients, got ${k}`);
  const dim = first.delta.length;
  const { clip, maxWeight } = options;
  if (!(Number.isFinite(maxWeight) && maxWeight > 0))
    throw secaggError('INVALID_MESSAGE', `maxWeight must be positive, got ${maxWeight}`);
  for (const c of contributions) {
    if (c.delta.length !== dim)
      throw secaggError(
        'INVALID_MESSAGE',
        `client ${c.clientId} sent ${c.delta.length} values, expected ${dim}`,
      );
    if (!(c.weight >= 0 && c.weight <= maxWeight))
      throw secaggError(
        'INVALID_MESSAGE',
        `client ${c.clientId} has weight ${c.weight} outside [0, ${maxWeight}]`,
      );
  }
  const graph =
    options.mode === 'secagg'
      ? completeGraph(k)
      : hararyGraph(k, options.degree ?? defaultDegree(k), new Rng(options.graphSeed ?? 0));
  const params: SecAggParams = {
    sessionId: options.crypto.randomBytes(16),
    graph,
    threshold: options.threshold ?? majorityThreshold(graph.degree + 1),
    dimension: dim + 1,
    encoding: fixedPointFor(clip, k, options.modulusBits ?? 32),
  };
  // What each client computes locally before masking.
  const inputs = contributions.map((c) => {
    const v = new Float32Array(dim + 1);
    for (let i = 0; i < dim; i++) v[i] = c.weight * (c.delta[i] as number);
    v[dim] = (c.weight / maxWeight) * clip;
    return v;
  });
  const result = await runSecAgg(params, inputs, options.crypto, options.dropouts ?? {});
  const id = (i: number) => (contributions[i] as BufferContribution).clientId;
  return {
    weightedSum: result.sum.slice(0, dim),
    totalWeight: ((result.sum[dim] as number) / clip) * maxWeight,
    included: result.survivors.map(id),
    dropped: result.dropped.map(id),
  };
}

/** SecAgg+ degree for K clients, made even when K is odd (a k-regular graph needs K·k even). */
export function defaultDegree(k: number): number {
  const d = secAggPlusDegree(k);
  return d >= k - 1 || (k * d) % 2 === 0 ? d : d - 1;
}

/** The graph and threshold a group of `size` clients will use. */
export interface GroupShape {
  readonly size: number;
  /** Neighbours per client (size − 1 for SecAgg). */
  readonly degree: number;
  readonly threshold: number;
}

/**
 * Checks a group configuration before any protocol runs, so a bad one is a config error rather than
 * a failure at the first buffer. `reporters` is how many masked inputs close a group (K): a
 * threshold above it could never be met. Returns the shape or the problems, each under `field`.
 */
export function groupShape(o: {
  readonly size: number;
  readonly mode: 'secagg' | 'secagg+';
  readonly reporters: number;
  readonly neighbours?: number | undefined;
  readonly threshold?: number | undefined;
}): GroupShape | { readonly issues: readonly { readonly field: string; readonly message: string }[] } {
  const issues: { field: string; message: string }[] = [];
  const { size, reporters } = o;
  if (!(Number.isInteger(size) && size >= 3))
    return {
      issues: [
        { field: 'size', message: `a secure-aggregation group needs at least 3 clients, got ${size}` },
      ],
    };
  let degree = size - 1;
  if (o.mode === 'secagg+') {
    degree = o.neighbours ?? defaultDegree(size);
    if (!(Number.isInteger(degree) && degree >= 2 && degree <= size - 1))
      issues.push({
        field: 'neighbours',
        message: `must be an integer in [2, ${size - 1}] for a group of ${size}, got ${degree}`,
      });
    else if (degree < size - 1 && (size * degree) % 2 !== 0)
      issues.push({
        field: 'neighbours',
        message: `no ${degree}-regular graph on ${size} clients (size × neighbours must be even)`,
      });
  }
  const holders = degree + 1;
  const threshold = o.threshold ?? majorityThreshold(holders);
  if (!(Number.isInteger(threshold) && 2 * threshold > holders && threshold <= holders))
    issues.push({
      field: 'threshold',
      message: `must be an integer above half of the ${holders} holders and at most ${holders}, got ${threshold}`,
    });
  else if (threshold > reporters)
    issues.push({
      field: 'threshold',
      message: `${threshold} exceeds the ${reporters} reports that close a group: every group would abort`,
    });
  return issues.length > 0 ? { issues } : { size, degree, threshold };
}
