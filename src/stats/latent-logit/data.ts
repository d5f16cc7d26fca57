/**
 * Panel data for the latent-effect logit: individuals, each with several choice situations.
 * Binary panels (y ∈ {0,1} with features x) are the two-alternative case with utilities x·β and 0,
 * so every estimator here works on one compiled form: per individual, the attribute rows of all
 * alternatives of all its situations plus which row was chosen.
 */
import { NonFiniteError, OrchardError, ShapeError } from '../../core/errors.ts';
import { Rng } from '../../core/rng.ts';

export interface BinaryIndividual {
  readonly id: string;
  /** T × d features, row-major. */
  readonly x: Float64Array;
  /** T labels in {0, 1}. */
  readonly y: Uint8Array;
}

export interface BinaryPanel {
  readonly kind: 'binary';
  /** Number of features. */
  readonly d: number;
  readonly individuals: readonly BinaryIndividual[];
}

export interface ChoiceSituation {
  /** J × d attributes of the J alternatives, row-major (J ≥ 2). */
  readonly x: Float64Array;
  /** Index in 0..J-1 of the chosen alternative. */
  readonly chosen: number;
}

export interface ChoiceIndividual {
  readonly id: string;
  readonly situations: readonly ChoiceSituation[];
}

export interface ChoicePanel {
  readonly kind: 'choice';
  readonly d: number;
  /** Names of the d attributes (from the CSV header), if known. */
  readonly attributes?: readonly string[];
  readonly individuals: readonly ChoiceIndividual[];
}

export type Panel = BinaryPanel | ChoicePanel;

/** The single internal form every estimator consumes; build it with `compilePanel`. */
export interface CompiledPanel {
  readonly d: number;
  readonly n: number;
  readonly ids: readonly string[];
  /** Per individual: attribute rows of every alternative of every situation (row-major, d columns). */
  readonly x: readonly Float64Array[];
  /** Per individual: situation s owns rows altStart[s] .. altStart[s+1]-1. */
  readonly altStart: readonly Int32Array[];
  /** Per individual: the chosen row (index into that individual's rows) of each situation. */
  readonly chosen: readonly Int32Array[];
  /** Total number of situations over all individuals. */
  readonly situations: number;
}

function dataInvalid(message: string, path = ''): OrchardError {
  return new OrchardError('DATA_INVALID', message, [{ path, message }]);
}

function checkFinite(values: Float64Array, what: string): void {
  for (let k = 0; k < values.length; k++) {
    if (!Number.isFinite(values[k] as number))
      throw new NonFiniteError(`${what}: entry ${k} is ${values[k]}`);
  }
}

/** Validates a panel and converts it to the compiled form; throws a typed error on bad input. */
export function compilePanel(panel: Panel): CompiledPanel {
  const d = panel.d;
  if (!Number.isInteger(d) || d < 1) throw new ShapeError(`panel.d must be a positive integer, got ${d}`);
  if (panel.individuals.length === 0) throw dataInvalid('panel has no individuals', 'individuals');
  const ids: string[] = [];
  const xs: Float64Array[] = [];
  const starts: Int32Array[] = [];
  const chosens: Int32Array[] = [];
  const seen = new Set<string>();
  let situations = 0;
  let positives = 0;
  for (const [i, ind] of panel.individuals.entries()) {
    const where = `individuals[${i}] (${ind.id})`;
    if (seen.has(ind.id)) throw dataInvalid(`duplicate individual id '${ind.id}'`, `individuals[${i}].id`);
    seen.add(ind.id);
    if (panel.kind === 'binary') {
      const bin = ind as BinaryIndividual;
      const t = bin.y.length;
      if (t === 0) throw dataInvalid(`${where} has no observations`, `individuals[${i}]`);
      if (bin.x.length !== t * d) {
        throw new ShapeError(`${where}: x has ${bin.x.length} entries, expected ${t} × ${d} = ${t * d}`);
      }
      checkFinite(bin.x, `${where}.x`);
      const x = new Float64Array(2 * t * d);
      const altStart = new Int32Array(t + 1);
      const chosen = new Int32Array(t);
      for (let s = 0; s < t; s++) {
        const label = bin.y[s] as number;
        if (label !== 0 && label !== 1) throw dataInvalid(`${where}: y[${s}] = ${label}, expected 0 or 1`);
        positives += label;
        // Row 2s carries the features (utility x·β), row 2s+1 is the zero-utility reference.
        x.set(bin.x.subarray(s * d, (s + 1) * d), 2 * s * d);
        altStart[s + 1] = 2 * (s + 1);
        chosen[s] = label === 1 ? 2 * s : 2 * s + 1;
      }
      xs.push(x);
      starts.push(altStart);
      chosens.push(chosen);
      situations += t;
    } else {
      const choice = ind as ChoiceIndividual;
      const t = choice.situations.length;
      if (t === 0) throw dataInvalid(`${where} has no choice situations`, `individuals[${i}]`);
      let rows = 0;
      for (const [s, sit] of choice.situations.entries()) {
        const j = sit.x.length / d;
        if (!Number.isInteger(j)) {
          throw new ShapeError(
            `${where}.situations[${s}]: x has ${sit.x.length} entries, not a multiple of d = ${d}`,
          );
        }
        if (j < 2) throw dataInvalid(`${where}.situations[${s}] has ${j} alternative(s); need at least 2`);
        if (!Number.isInteger(sit.chosen) || sit.chosen < 0 || sit.chosen >= j) {
          throw dataInvalid(
            `${where}.situations[${s}]: chosen = ${sit.chosen}, expected an index in 0..${j - 1}`,
          );
        }
        checkFinite(sit.x, `${where}.situations[${s}].x`);
        rows += j;
      }
      const x = new Float64Array(rows * d);
      const altStart = new Int32Array(t + 1);
      const chosen = new Int32Array(t);
      let row = 0;
      for (const [s, sit] of choice.situations.entries()) {
        x.set(sit.x, row * d);
        chosen[s] = row + sit.chosen;
        row += sit.x.length / d;
        altStart[s + 1] = row;
      }
      xs.push(x);
      starts.push(altStart);
      chosens.push(chosen);
      situations += t;
    }
    ids.push(ind.id);
  }
  if (panel.kind === 'binary' && (positives === 0 || positives === situations)) {
    throw dataInvalid(
      `all ${situations} labels are ${positives === 0 ? 0 : 1}: a logit cannot be fitted to one class`,
      'y',
    );
  }
  return { d, n: ids.length, ids, x: xs, altStart: starts, chosen: chosens, situations };
}

/** Situations of individual i in the compiled panel. */
export function situationCount(panel: CompiledPanel, i: number): number {
  return (panel.chosen[i] as Int32Array).length;
}

/** A sub-panel keeping, for each individual, the situations for which `keep(i, s)` is true. */
export function selectSituations(
  panel: CompiledPanel,
  keep: (i: number, s: number) => boolean,
): CompiledPanel {
  const d = panel.d;
  const xs: Float64Array[] = [];
  const starts: Int32Array[] = [];
  const chosens: Int32Array[] = [];
  let situations = 0;
  for (let i = 0; i < panel.n; i++) {
    const x = panel.x[i] as Float64Array;
    const altStart = panel.altStart[i] as Int32Array;
    const chosen = panel.chosen[i] as Int32Array;
    const kept: number[] = [];
    let rows = 0;
    for (let s = 0; s < chosen.length; s++) {
      if (keep(i, s)) {
        kept.push(s);
        rows += (altStart[s + 1] as number) - (altStart[s] as number);
      }
    }
    if (kept.length === 0)
      throw dataInvalid(`selection leaves individual '${panel.ids[i]}' with no situations`);
    const nx = new Float64Array(rows * d);
    const ns = new Int32Array(kept.length + 1);
    const nc = new Int32Array(kept.length);
    let row = 0;
    for (const [k, s] of kept.entries()) {
      const a = altStart[s] as number;
      const b = altStart[s + 1] as number;
      nx.set(x.subarray(a * d, b * d), row * d);
      nc[k] = row + (chosen[s] as number) - a;
      row += b - a;
      ns[k + 1] = row;
    }
    xs.push(nx);
    starts.push(ns);
    chosens.push(nc);
    situations += kept.length;
  }
  return { d, n: panel.n, ids: panel.ids, x: xs, altStart: starts, chosen: chosens, situations };
}

/**
 * Per-individual holdout: each individual with at least two situations gives round(fraction · T_i)
 * of them (at least one, never all) to the held-out part, chosen at random with `seed`.
 */
export function splitHoldout(
  panel: CompiledPanel,
  fraction: number,
  seed: number,
): { train: CompiledPanel; holdout: CompiledPanel } {
  if (!(fraction > 0 && fraction < 1))
    throw new OrchardError('INVALID_ARGUMENT', `holdout fraction must be in (0, 1), got ${fraction}`);
  const held: Uint8Array[] = [];
  for (let i = 0; i < panel.n; i++) {
    const t = situationCount(panel, i);
    if (t < 2)
      throw dataInvalid(`individual '${panel.ids[i]}' has ${t} situation; a holdout needs at least 2 each`);
    const k = Math.min(t - 1, Math.max(1, Math.round(fraction * t)));
    const perm = Rng.derive(seed, i).permutation(t);
    const mask = new Uint8Array(t);
    for (let j = 0; j < k; j++) mask[perm[j] as number] = 1;
    held.push(mask);
  }
  return {
    train: selectSituations(panel, (i, s) => (held[i] as Uint8Array)[s] === 0),
    holdout: selectSituations(panel, (i, s) => (held[i] as Uint8Array)[s] === 1),
  };
}
