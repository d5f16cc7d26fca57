/**
 * Magnitude pruning of a Mask and the random-mask control.
 *
 * One pruning round removes round(rate · kept) of the still-kept prunable entries with the smallest
 * |weight|: over all prunable entries at once ('global') or separately inside each layer ('layer').
 * Ties in magnitude break by parameter index so results are deterministic. Biases are left alone unless
 * `includeBiases` is set.
 */
import { NonFiniteError, OrchardError, ShapeError } from '../../core/errors.ts';
import type { Rng } from '../../core/rng.ts';
import { Mask, type ParamSegment, type SegmentRole } from './mask.ts';

export type PruneScope = 'global' | 'layer';

export interface PruneOptions {
  /** Fraction of the remaining prunable weights removed this round, in (0, 1). */
  readonly rate: number;
  readonly scope: PruneScope;
  /** Prune biases too (default false: biases are a tiny share and pruning them hurts more). */
  readonly includeBiases?: boolean;
}

export function checkRate(rate: number, what = 'rate'): void {
  if (!(Number.isFinite(rate) && rate > 0 && rate < 1))
    throw new OrchardError('INVALID_ARGUMENT', `${what} must be in (0, 1), got ${rate}`);
}

export function prunableRoles(includeBiases: boolean): SegmentRole[] {
  return includeBiases ? ['weight', 'embedding', 'bias'] : ['weight', 'embedding'];
}

/** Kept indices of `group` sorted by |params| ascending (index breaks ties). */
function keptByMagnitude(bits: Uint8Array, params: Float32Array, group: readonly ParamSegment[]): Int32Array {
  let count = 0;
  for (const s of group) for (let i = s.offset; i < s.offset + s.length; i++) count += bits[i] as number;
  const idx = new Int32Array(count);
  let t = 0;
  for (const s of group) for (let i = s.offset; i < s.offset + s.length; i++) if (bits[i] === 1) idx[t++] = i;
  const mag = new Float64Array(count);
  for (let k = 0; k < count; k++) mag[k] = Math.abs(params[idx[k] as number] as number);
  const order = Array.from({ length: count }, (_, k) => k);
  order.sort((a, b) => (mag[a] as number) - (mag[b] as number) || (idx[a] as number) - (idx[b] as number));
  return Int32Array.from(order, (k) => idx[k] as number);
}

/** A new mask with the smallest-magnitude kept weights of `params` removed; see the module comment. */
export function magnitudePrune(mask: Mask, params: Float32Array, options: PruneOptions): Mask {
  checkRate(options.rate);
  if (options.scope !== 'global' && options.scope !== 'layer')
    throw new OrchardError(
      'INVALID_ARGUMENT',
      `scope must be 'global' or 'layer', got ${String(options.scope)}`,
    );
  if (params.length !== mask.numParams)
    throw new ShapeError(`params have ${params.length} entries, the mask has ${mask.numParams}`);
  const roles = prunableRoles(options.includeBiases === true);
  const prunable = mask.segments.filter((s) => roles.includes(s.role));
  for (const s of prunable)
    for (let i = s.offset; i < s.offset + s.length; i++)
      if (mask.bits[i] === 1 && !Number.isFinite(params[i] as number))
        throw new NonFiniteError(`parameter ${i} (${s.name}) is ${params[i]}; cannot rank by magnitude`);
  const groups: ParamSegment[][] = [];
  if (options.scope === 'global') groups.push(prunable);
  else {
    const byLayer = new Map<number, ParamSegment[]>();
    for (const s of prunable) {
      const list = byLayer.get(s.layer) ?? [];
      list.push(s);
      byLayer.set(s.layer, list);
    }
    groups.push(...byLayer.values());
  }
  const bits = Uint8Array.from(mask.bits);
  for (const group of groups) {
    const order = keptByMagnitude(mask.bits, params, group);
    const remove = Math.round(options.rate * order.length);
    for (let k = 0; k < remove; k++) bits[order[k] as number] = 0;
  }
  return Mask.fromBits(bits, mask.segments);
}

/**
 * The random-mask control: in every segment, keeps as many entries as `like` does, at uniformly random
 * positions (so layer-wise sparsity matches exactly).
 */
export function randomMaskLike(like: Mask, rng: Rng): Mask {
  const bits = new Uint8Array(like.numParams);
  for (const s of like.segments) {
    const view = like.view(s);
    let kept = 0;
    for (let i = 0; i < view.length; i++) kept += view[i] as number;
    const perm = rng.permutation(s.length);
    for (let k = 0; k < kept; k++) bits[s.offset + (perm[k] as number)] = 1;
  }
  return Mask.fromBits(bits, like.segments);
}
