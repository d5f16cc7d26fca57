/**
 * P(unsafe) from the verdict position. Llama Guard answers with a first token `safe` or `unsafe`;
 * we renormalise over just those two tokens: p = e^u / (e^u + e^s) = 1 / (1 + e^(s − u)).
 * Mass on other tokens (whitespace, junk) is ignored, so the score is the model's preference between
 * the two verdicts, comparable across backends that expose full logits (llama.cpp) or only top
 * logprobs (OpenAI-compatible servers): log-softmax shifts both by the same constant, which cancels.
 */
import { GuardError } from './types.ts';

/** Two-way softmax of the `unsafe` vs `safe` logits (or logprobs). Stable for large magnitudes. */
export function pUnsafeFromLogits(safe: number, unsafe: number): number {
  if (Number.isNaN(safe) || Number.isNaN(unsafe)) {
    throw new GuardError('BAD_RESPONSE', `verdict logits are not numbers (safe=${safe}, unsafe=${unsafe})`);
  }
  if (safe === unsafe) return 0.5; // also covers (−∞, −∞) and (+∞, +∞)
  const d = safe - unsafe;
  if (d === Number.POSITIVE_INFINITY) return 0;
  if (d === Number.NEGATIVE_INFINITY) return 1;
  return d >= 0 ? Math.exp(-d) / (1 + Math.exp(-d)) : 1 / (1 + Math.exp(d));
}

export const DEFAULT_THRESHOLD = 0.5;

/** Throws INVALID_OPTION unless 0 ≤ t ≤ 1. */
export function checkThreshold(t: number): number {
  if (!Number.isFinite(t) || t < 0 || t > 1) {
    throw new GuardError('INVALID_OPTION', `threshold must be a number in [0, 1], got ${t}`);
  }
  return t;
}

/** The decision rule every backend and the Guard share: unsafe iff score ≥ threshold. */
export function isUnsafe(score: number, threshold: number): boolean {
  return score >= threshold;
}
