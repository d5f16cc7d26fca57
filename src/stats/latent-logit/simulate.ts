/**
 * Simulated panels with known truth: β_i = w + u_i, w sparse, U = A Cᵀ of rank r. Features are i.i.d.
 * standard normal; a choice panel draws J alternatives per situation, a binary panel one feature row.
 */
import { OrchardError } from '../../core/errors.ts';
import { Rng } from '../../core/rng.ts';
import type { BinaryIndividual, ChoiceIndividual, Panel } from './data.ts';
import { composeCoefficients } from './model.ts';

export interface SimulationConfig {
  readonly kind: 'binary' | 'choice';
  /** Individuals. */
  readonly n: number;
  /** Situations (observations) per individual. */
  readonly T: number;
  /** Features. */
  readonly d: number;
  /** Rank of U. */
  readonly r: number;
  /** Nonzeros in w (default ⌈d / 3⌉). */
  readonly sparsity?: number;
  /** Alternatives per situation for choice panels (default 3). */
  readonly alternatives?: number;
  /** Magnitude of the nonzero entries of w (default 1). */
  readonly sharedScale?: number;
  /** Root-mean-square norm of the rows u_i (default 1). */
  readonly latentScale?: number;
  readonly seed: number;
}

export interface SimulatedPanel {
  readonly panel: Panel;
  readonly truth: {
    readonly w: Float64Array;
    /** n × d, rank r. */
    readonly U: Float64Array;
    /** n × d, rows β_i = w + u_i. */
    readonly B: Float64Array;
  };
}

function positiveInt(name: string, v: number, min = 1): void {
  if (!Number.isInteger(v) || v < min)
    throw new OrchardError('INVALID_ARGUMENT', `${name} must be an integer ≥ ${min}, got ${v}`);
}

/** Draws the truth (w, U) for a configuration; the features depend on `stream` so test sets can share it. */
function drawTruth(config: SimulationConfig): { w: Float64Array; U: Float64Array } {
  const { n, d, r } = config;
  const rng = Rng.derive(config.seed, 1);
  const s = config.sparsity ?? Math.ceil(d / 3);
  const w = new Float64Array(d);
  const support = rng.permutation(d);
  for (let j = 0; j < s; j++) {
    const sign = rng.next() < 0.5 ? -1 : 1;
    w[support[j] as number] = sign * (config.sharedScale ?? 1) * (0.75 + 0.5 * rng.next());
  }
  const U = new Float64Array(n * d);
  if (r > 0) {
    const A = Array.from({ length: n * r }, () => rng.normal());
    const C = Array.from({ length: d * r }, () => rng.normal());
    for (let i = 0; i < n; i++) {
      for (let k = 0; k < d; k++) {
        let v = 0;
        for (let q = 0; q < r; q++) v += (A[i * r + q] as number) * (C[k * r + q] as number);
        U[i * d + k] = v;
      }
    }
    let sq = 0;
    for (const v of U) sq += v * v;
    const target = (config.latentScale ?? 1) * Math.sqrt(n);
    const factor = sq > 0 ? target / Math.sqrt(sq) : 0;
    for (let k = 0; k < U.length; k++) U[k] = (U[k] as number) * factor;
  }
  return { w, U };
}

/**
 * A simulated panel. `featureStream` picks the feature/outcome draws for the same truth: use a second
 * stream for an independent test set from the same individuals.
 */
export function simulatePanel(config: SimulationConfig, featureStream = 0): SimulatedPanel {
  const { n, T, d, r } = config;
  positiveInt('n', n);
  positiveInt('T', T);
  positiveInt('d', d);
  positiveInt('r', r, 0);
  if (r > Math.min(n, d))
    throw new OrchardError('INVALID_ARGUMENT', `rank r = ${r} exceeds min(n, d) = ${Math.min(n, d)}`);
  const s = config.sparsity ?? Math.ceil(d / 3);
  if (!Number.isInteger(s) || s < 0 || s > d)
    throw new OrchardError('INVALID_ARGUMENT', `sparsity must be in 0..${d}, got ${s}`);
  const J = config.alternatives ?? 3;
  if (config.kind === 'choice') positiveInt('alternatives', J, 2);
  const { w, U } = drawTruth(config);
  const B = composeCoefficients(w, U, n);
  const rng = Rng.derive(config.seed, 2, featureStream);
  if (config.kind === 'binary') {
    const individuals: BinaryIndividual[] = [];
    for (let i = 0; i < n; i++) {
      const x = new Float64Array(T * d);
      const y = new Uint8Array(T);
      for (let t = 0; t < T; t++) {
        let u = 0;
        for (let k = 0; k < d; k++) {
          const v = rng.normal();
          x[t * d + k] = v;
          u += v * (B[i * d + k] as number);
        }
        y[t] = rng.next() < 1 / (1 + Math.exp(-u)) ? 1 : 0;
      }
      individuals.push({ id: `i${i}`, x, y });
    }
    return { panel: { kind: 'binary', d, individuals }, truth: { w, U, B } };
  }
  const individuals: ChoiceIndividual[] = [];
  const util = new Float64Array(J);
  for (let i = 0; i < n; i++) {
    const situations = [];
    for (let t = 0; t < T; t++) {
      const x = new Float64Array(J * d);
      let max = -Infinity;
      for (let j = 0; j < J; j++) {
        let u = 0;
        for (let k = 0; k < d; k++) {
          const v = rng.normal();
          x[j * d + k] = v;
          u += v * (B[i * d + k] as number);
        }
        util[j] = u;
        max = Math.max(max, u);
      }
      let sum = 0;
      for (let j = 0; j < J; j++) sum += Math.exp((util[j] as number) - max);
      let draw = rng.next() * sum;
      let chosen = J - 1;
      for (let j = 0; j < J; j++) {
        draw -= Math.exp((util[j] as number) - max);
        if (draw < 0) {
          chosen = j;
          break;
        }
      }
      situations.push({ x, chosen });
    }
    individuals.push({ id: `i${i}`, situations });
  }
  return { panel: { kind: 'choice', d, individuals }, truth: { w, U, B } };
}
