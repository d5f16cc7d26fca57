/**
 * Pruning masks as first-class objects over a model's flat parameter vector, and a Model wrapper that
 * trains only the kept entries.
 *
 * A Mask is one byte per parameter (1 = kept, 0 = pruned) plus the model's parameter segments (which
 * layer, weights or bias), so sparsity can be read globally or per layer and pruning can be scoped.
 * Masks are immutable by convention: pruning returns a new Mask.
 *
 * `maskedModel(model, mask)` computes the network at params ⊙ mask, so its gradient w.r.t. params is
 * mask ⊙ ∇L(params ⊙ mask): masked entries get exactly zero gradient, and an optimizer whose update is
 * zero for a zero gradient history (SGD, momentum, Adam) leaves masked weights where they are, exactly 0
 * once the mask has been applied to them.
 */
import { OrchardError, ShapeError } from '../../core/errors.ts';
import type { Rng } from '../../core/rng.ts';
import type { Examples } from '../../data/types.ts';
import { Conv2d, Dense } from '../../nn/layers.ts';
import type { Model } from '../../nn/model.ts';
import { SequentialModel } from '../../nn/models.ts';

export type SegmentRole = 'weight' | 'bias' | 'embedding';

/** A contiguous run of parameters belonging to one layer. */
export interface ParamSegment {
  /** Layer name plus role, e.g. `dense(784→100).weight`. */
  readonly name: string;
  /** Index of the parameterized layer (0 = first layer that owns parameters). */
  readonly layer: number;
  readonly role: SegmentRole;
  readonly offset: number;
  readonly length: number;
}

/**
 * The model's parameter segments in flat-vector order. SequentialModel stacks are split into weight and
 * bias segments per layer (dense and conv layers store weights first, then one bias per output); any
 * other Model is one weight segment.
 */
export function paramSegments(model: Model): ParamSegment[] {
  if (!(model instanceof SequentialModel))
    return [{ name: `${model.name}.weight`, layer: 0, role: 'weight', offset: 0, length: model.numParams }];
  const segments: ParamSegment[] = [];
  let offset = 0;
  let layerIndex = 0;
  const layerParams = model.layers.reduce((s, l) => s + l.numParams, 0);
  const bagParams = model.numParams - layerParams;
  if (bagParams > 0) {
    segments.push({ name: 'embedding.weight', layer: 0, role: 'embedding', offset: 0, length: bagParams });
    offset = bagParams;
    layerIndex = 1;
  }
  for (const layer of model.layers) {
    if (layer.numParams === 0) continue;
    let biasCount = 0;
    if (layer instanceof Dense) biasCount = layer.outSize;
    else if (layer instanceof Conv2d) biasCount = layer.outChannels;
    const weightCount = layer.numParams - biasCount;
    segments.push({
      name: `${layer.name}.weight`,
      layer: layerIndex,
      role: 'weight',
      offset,
      length: weightCount,
    });
    if (biasCount > 0)
      segments.push({
        name: `${layer.name}.bias`,
        layer: layerIndex,
        role: 'bias',
        offset: offset + weightCount,
        length: biasCount,
      });
    offset += layer.numParams;
    layerIndex++;
  }
  if (offset !== model.numParams)
    throw new OrchardError(
      'INVALID_STATE',
      `segments of ${model.name} cover ${offset} of ${model.numParams} parameters`,
    );
  return segments;
}

export interface SegmentSparsity {
  readonly name: string;
  readonly role: SegmentRole;
  readonly total: number;
  readonly kept: number;
  /** Fraction pruned: 1 − kept/total. */
  readonly sparsity: number;
}

export interface MaskJson {
  readonly numParams: number;
  readonly segments: readonly ParamSegment[];
  /** The mask bits packed 8 per byte (little-endian bit order), base64. */
  readonly bits: string;
}

function checkSegments(segments: readonly ParamSegment[], numParams: number): void {
  let expected = 0;
  for (const s of segments) {
    if (s.offset !== expected || !(Number.isInteger(s.length) && s.length >= 0))
      throw new ShapeError(
        `segment ${s.name} at ${s.offset} (+${s.length}) does not follow on from ${expected}`,
      );
    expected += s.length;
  }
  if (expected !== numParams)
    throw new ShapeError(`segments cover ${expected} parameters, the mask has ${numParams}`);
}

export class Mask {
  private constructor(
    /** One byte per parameter, 0 or 1. Do not mutate: masks are shared between models and rounds. */
    readonly bits: Uint8Array,
    readonly segments: readonly ParamSegment[],
  ) {}

  /** A mask that keeps everything. */
  static dense(model: Model): Mask {
    return new Mask(new Uint8Array(model.numParams).fill(1), paramSegments(model));
  }

  /** Wraps given bits (copied); throws when the length or the values are wrong. */
  static fromBits(bits: ArrayLike<number>, segments: readonly ParamSegment[]): Mask {
    const total = segments.reduce((s, seg) => s + seg.length, 0);
    if (bits.length !== total)
      throw new ShapeError(`mask has ${bits.length} entries, the segments cover ${total} parameters`);
    checkSegments(segments, total);
    const copy = new Uint8Array(bits.length);
    for (let i = 0; i < bits.length; i++) {
      const b = bits[i];
      if (b !== 0 && b !== 1)
        throw new OrchardError('INVALID_ARGUMENT', `mask entry ${i} is ${b}, not 0 or 1`);
      copy[i] = b;
    }
    return new Mask(
      copy,
      segments.map((s) => ({ ...s })),
    );
  }

  static fromJSON(json: MaskJson): Mask {
    if (
      typeof json !== 'object' ||
      json === null ||
      !Array.isArray(json.segments) ||
      typeof json.bits !== 'string'
    )
      throw new OrchardError(
        'INVALID_ARGUMENT',
        'a serialized mask needs numParams, segments[] and bits (base64)',
      );
    if (!(Number.isInteger(json.numParams) && json.numParams >= 0))
      throw new OrchardError(
        'INVALID_ARGUMENT',
        `numParams must be a non-negative integer, got ${json.numParams}`,
      );
    const packed = Buffer.from(json.bits, 'base64');
    if (packed.length !== Math.ceil(json.numParams / 8))
      throw new ShapeError(
        `packed mask has ${packed.length} bytes, ${json.numParams} bits need ${Math.ceil(json.numParams / 8)}`,
      );
    const bits = new Uint8Array(json.numParams);
    for (let i = 0; i < json.numParams; i++) bits[i] = ((packed[i >> 3] as number) >> (i & 7)) & 1;
    return Mask.fromBits(bits, json.segments);
  }

  toJSON(): MaskJson {
    const n = this.bits.length;
    const packed = new Uint8Array(Math.ceil(n / 8));
    for (let i = 0; i < n; i++)
      if (this.bits[i] === 1) packed[i >> 3] = (packed[i >> 3] as number) | (1 << (i & 7));
    return {
      numParams: n,
      segments: this.segments.map((s) => ({ ...s })),
      bits: Buffer.from(packed).toString('base64'),
    };
  }

  get numParams(): number {
    return this.bits.length;
  }

  /** Number of kept entries, over all parameters or those of the given roles. */
  kept(roles?: readonly SegmentRole[]): number {
    let count = 0;
    for (const s of this.segments) {
      if (roles !== undefined && !roles.includes(s.role)) continue;
      for (let i = s.offset; i < s.offset + s.length; i++) count += this.bits[i] as number;
    }
    return count;
  }

  /** Number of parameters in segments of the given roles (all when omitted). */
  total(roles?: readonly SegmentRole[]): number {
    let count = 0;
    for (const s of this.segments) if (roles === undefined || roles.includes(s.role)) count += s.length;
    return count;
  }

  /** Fraction pruned among the given roles (default: weights and embeddings, the prunable kinds). */
  sparsity(roles: readonly SegmentRole[] = ['weight', 'embedding']): number {
    const total = this.total(roles);
    return total === 0 ? 0 : (total - this.kept(roles)) / total;
  }

  /** Per-segment view of the bits (aliases this mask: read only). */
  view(segment: ParamSegment): Uint8Array {
    return this.bits.subarray(segment.offset, segment.offset + segment.length);
  }

  segmentSparsity(): SegmentSparsity[] {
    return this.segments.map((s) => {
      const v = this.view(s);
      let kept = 0;
      for (let i = 0; i < v.length; i++) kept += v[i] as number;
      return {
        name: s.name,
        role: s.role,
        total: s.length,
        kept,
        sparsity: s.length === 0 ? 0 : (s.length - kept) / s.length,
      };
    });
  }

  /** Throws unless the mask fits `model`'s parameter vector. */
  assertFits(model: Model): void {
    if (model.numParams !== this.bits.length)
      throw new ShapeError(
        `mask has ${this.bits.length} entries, model ${model.name} has ${model.numParams} parameters`,
      );
  }

  /** Zeroes the pruned entries of `params` in place and returns it. */
  apply(params: Float32Array): Float32Array {
    if (params.length !== this.bits.length)
      throw new ShapeError(`mask has ${this.bits.length} entries, params have ${params.length}`);
    const bits = this.bits;
    for (let i = 0; i < params.length; i++) if (bits[i] === 0) params[i] = 0;
    return params;
  }

  /** params ⊙ mask as a new vector. */
  applied(params: Float32Array): Float32Array {
    return this.apply(Float32Array.from(params));
  }

  /** True when every pruned entry of `params` is exactly zero. */
  zeroOutside(params: Float32Array): boolean {
    if (params.length !== this.bits.length)
      throw new ShapeError(`mask has ${this.bits.length} entries, params have ${params.length}`);
    for (let i = 0; i < params.length; i++) if (this.bits[i] === 0 && params[i] !== 0) return false;
    return true;
  }

  equals(other: Mask): boolean {
    if (other.bits.length !== this.bits.length) return false;
    for (let i = 0; i < this.bits.length; i++) if (other.bits[i] !== this.bits[i]) return false;
    return true;
  }

  /** Fraction of this mask's kept entries that `other` keeps too (overlap of two tickets). */
  overlap(other: Mask): number {
    if (other.bits.length !== this.bits.length)
      throw new ShapeError(`masks have ${this.bits.length} and ${other.bits.length} entries`);
    let both = 0;
    let mine = 0;
    for (let i = 0; i < this.bits.length; i++) {
      mine += this.bits[i] as number;
      both += (this.bits[i] as number) & (other.bits[i] as number);
    }
    return mine === 0 ? 0 : both / mine;
  }
}

/** A model restricted to a mask; see the module comment. */
export interface MaskedModel extends Model {
  readonly inner: Model;
  readonly mask: Mask;
}

/** Wraps `model` so that it computes at params ⊙ mask and reports gradients only at kept entries. */
export function maskedModel(model: Model, mask: Mask): MaskedModel {
  mask.assertFits(model);
  const bits = mask.bits;
  const n = model.numParams;
  const effective = new Float32Array(n);
  const innerGrad = new Float32Array(n);
  const effectiveParams = (params: Float32Array): Float32Array => {
    if (params.length !== n)
      throw new ShapeError(`params have ${params.length} entries, model ${model.name} has ${n}`);
    for (let i = 0; i < n; i++) effective[i] = bits[i] === 1 ? (params[i] as number) : 0;
    return effective;
  };
  return {
    inner: model,
    mask,
    name: `${model.name}[masked ${(100 * mask.sparsity()).toFixed(1)}%]`,
    numParams: n,
    numOutputs: model.numOutputs,
    inputKind: model.inputKind,
    inputDim: model.inputDim,
    init(rng: Rng): Float32Array {
      return mask.apply(model.init(rng));
    },
    forward(params: Float32Array, data: Examples): Float32Array {
      return model.forward(effectiveParams(params), data);
    },
    lossAndGrad(params: Float32Array, batch: Examples, grad: Float32Array, inputGrad?: Float32Array): number {
      if (grad.length !== n)
        throw new ShapeError(`grad has ${grad.length} entries, model ${model.name} has ${n}`);
      const eff = effectiveParams(params);
      innerGrad.fill(0);
      const loss =
        inputGrad === undefined
          ? model.lossAndGrad(eff, batch, innerGrad)
          : model.lossAndGrad(eff, batch, innerGrad, inputGrad);
      // Chain rule through params ⊙ mask: the inner gradient times the mask, added as the contract says.
      for (let i = 0; i < n; i++) if (bits[i] === 1) grad[i] = (grad[i] as number) + (innerGrad[i] as number);
      return loss;
    },
  };
}
