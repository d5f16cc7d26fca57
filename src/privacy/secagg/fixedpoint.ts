/**
 * Fixed-point encoding of float updates for secure aggregation over Z_{2^m}.
 *
 * Each coordinate is clipped to [−clip, clip] and mapped affinely onto the integers 0..L with
 * L = 2^valueBits − 1, rounding to nearest (error at most clip/L per coordinate and client). The server
 * learns Σ q_u mod 2^m; to read the true sum the modular sum must not wrap, so
 *
 *   maxClients · L ≤ 2^m − 1                                   (overflow bound)
 *
 * is required of every configuration (fixedPointConfig rejects the rest with OVERFLOW), and decodeSum
 * refuses counts above maxClients. The decoded sum is S · 2·clip/L − count · clip, with absolute error
 * at most count · clip / L per coordinate.
 */
import { NonFiniteError } from '../../core/errors.ts';
import { secaggError } from './errors.ts';

export interface FixedPointConfig {
  /** Clipping range: every coordinate is clamped to [−clip, clip]. */
  readonly clip: number;
  /** m: arithmetic is modulo 2^m, 2 ≤ m ≤ 32. */
  readonly modulusBits: number;
  /** Quantization: L = 2^valueBits − 1 levels above zero. */
  readonly valueBits: number;
  /** Largest number of encoded values that may be summed. */
  readonly maxClients: number;
}

/** Validates a configuration against the overflow bound; throws SecAggError('OVERFLOW') if it can wrap. */
export function fixedPointConfig(config: FixedPointConfig): FixedPointConfig {
  const { clip, modulusBits, valueBits, maxClients } = config;
  if (!(Number.isFinite(clip) && clip > 0))
    throw secaggError('OVERFLOW', `clip must be a positive finite number, got ${clip}`);
  if (!Number.isInteger(modulusBits) || modulusBits < 2 || modulusBits > 32)
    throw secaggError('OVERFLOW', `modulusBits must be an integer in [2, 32], got ${modulusBits}`);
  if (!Number.isInteger(valueBits) || valueBits < 1 || valueBits > modulusBits)
    throw secaggError('OVERFLOW', `valueBits must be an integer in [1, modulusBits], got ${valueBits}`);
  if (!Number.isInteger(maxClients) || maxClients < 1)
    throw secaggError('OVERFLOW', `maxClients must be a positive integer, got ${maxClients}`);
  const levels = 2 ** valueBits - 1;
  if (maxClients * levels > 2 ** modulusBits - 1)
    throw secaggError(
      'OVERFLOW',
      `${maxClients} values of up to ${levels} sum to ${maxClients * levels}, beyond 2^${modulusBits} − 1: lower valueBits or raise modulusBits`,
    );
  return { clip, modulusBits, valueBits, maxClients };
}

/** The finest valid configuration for a clip range, group size and modulus. */
export function fixedPointFor(clip: number, maxClients: number, modulusBits = 32): FixedPointConfig {
  if (!Number.isInteger(maxClients) || maxClients < 1)
    throw secaggError('OVERFLOW', `maxClients must be a positive integer, got ${maxClients}`);
  // Largest valueBits with maxClients · (2^valueBits − 1) ≤ 2^m − 1.
  const valueBits = Math.floor(Math.log2(Math.floor((2 ** modulusBits - 1) / maxClients) + 1));
  if (valueBits < 1)
    throw secaggError('OVERFLOW', `2^${modulusBits} cannot hold the sum of ${maxClients} values`);
  return fixedPointConfig({ clip, modulusBits, valueBits, maxClients });
}

/** Per-coordinate resolution of one encoded value. */
export function quantizationStep(config: FixedPointConfig): number {
  return (2 * config.clip) / (2 ** config.valueBits - 1);
}

/**
 * Clips and encodes x; rejects NaN and ±Infinity (fail closed). A caller-supplied `out` is left
 * untouched on rejection (checked in a first pass); the default fresh array is encoded in one pass
 * that checks as it goes, since a rejected array never escapes.
 */
export function encodeFixedPoint(
  x: ArrayLike<number>,
  config: FixedPointConfig,
  out?: Uint32Array,
): Uint32Array {
  if (out !== undefined && out.length !== x.length)
    throw secaggError('INVALID_MESSAGE', `output has ${out.length} words for ${x.length} values`);
  if (out !== undefined)
    for (let i = 0; i < x.length; i++) {
      const v = x[i] as number;
      if (v - v !== 0) throw new NonFiniteError(`update coordinate ${i} is ${v}`);
    }
  const target = out ?? new Uint32Array(x.length);
  const { clip } = config;
  const levels = 2 ** config.valueBits - 1;
  const scale = levels / (2 * clip);
  for (let i = 0; i < x.length; i++) {
    let c = x[i] as number;
    // NaN fails both comparisons below and ±Infinity would be clipped: reject them here.
    if (c - c !== 0) throw new NonFiniteError(`update coordinate ${i} is ${c}`);
    if (c > clip) c = clip;
    else if (c < -clip) c = -clip;
    // (c + clip)·scale ≥ 0, so adding 0.5 and truncating with >>> 0 is Math.round, twice as fast.
    target[i] = ((c + clip) * scale + 0.5) >>> 0;
  }
  return target;
}

/** Decodes Σ q_u (mod 2^m) over `count` clients into the float sum of their clipped values. */
export function decodeSum(
  sum: Uint32Array,
  count: number,
  config: FixedPointConfig,
  out = new Float32Array(sum.length),
): Float32Array {
  if (!Number.isInteger(count) || count < 0 || count > config.maxClients)
    throw secaggError(
      'OVERFLOW',
      `a sum over ${count} clients may have wrapped (maxClients ${config.maxClients})`,
    );
  const step = quantizationStep(config);
  const offset = count * config.clip;
  const modMask = config.modulusBits === 32 ? 0xffffffff : 2 ** config.modulusBits - 1;
  for (let i = 0; i < sum.length; i++) out[i] = (((sum[i] as number) & modMask) >>> 0) * step - offset;
  return out;
}

/** Reduces words modulo 2^bits in place (no-op at 32 bits). */
export function reduceModulus(words: Uint32Array, bits: number): Uint32Array {
  if (bits >= 32) return words;
  const m = 2 ** bits - 1;
  for (let i = 0; i < words.length; i++) words[i] = (words[i] as number) & m;
  return words;
}
