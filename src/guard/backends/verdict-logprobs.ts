/**
 * P(unsafe) from the top logprobs an HTTP server returns for the generated tokens.
 *
 * The verdict position is the first generated token that is not blank (the 1B model often writes
 * `\n\n` before `safe`/`unsafe`); byte-level BPE spellings (`ĊĊ`, `Ġsafe`) count as their text.
 * At that position the alternatives are the chosen token plus its top-N list; entries whose text trims to `safe` (or `unsafe`) are pooled with log-sum-exp (a server
 * may list both `safe` and ` safe`), then renormalised over the two verdicts exactly as the local
 * backend does with logits (`pUnsafeFromLogits`).
 *
 * When one verdict token is missing from the top N, its probability is at most that of the least
 * likely listed token, so it is given that logprob: the score is then the least extreme value the
 * data allows (`bounded: true`; raise N to tighten it). When neither verdict is listed, or no
 * non-blank token was generated, the answer cannot be scored and we throw BAD_RESPONSE rather than
 * invent a number.
 */
import { pUnsafeFromLogits } from '../score.ts';
import { GuardError } from '../types.ts';
import { logSumExp } from './http.ts';
import type { HttpBackendScore } from './openai.ts';

export interface TokenLogprob {
  readonly token: string;
  readonly logprob: number;
}

/** One generated position: the chosen token and the server's top alternatives there. */
export interface GeneratedPosition extends TokenLogprob {
  readonly top: readonly TokenLogprob[];
}

export interface VerdictLogprobs {
  readonly pUnsafe: number;
  /** Pooled logprobs of the two verdict tokens (one may be the bound, see `bounded`). */
  readonly safe: number;
  readonly unsafe: number;
  /** True when one verdict token was absent from the top N and was bounded from above. */
  readonly bounded: boolean;
  /** Index of the verdict position among the generated tokens. */
  readonly position: number;
}

/**
 * Token text as plain text: some servers report byte-level BPE strings (`Ġsafe`, `ĊĊ`), where `Ġ`
 * stands for a space and `Ċ` for a newline, instead of decoded text.
 */
function plain(token: string): string {
  return token.replace(/\u0120/g, ' ').replace(/\u010a/g, '\n');
}

function describe(alts: readonly TokenLogprob[]): string {
  return alts
    .slice(0, 8)
    .map((a) => `${JSON.stringify(a.token)}:${a.logprob.toFixed(3)}`)
    .join(', ');
}

export function verdictFromLogprobs(positions: readonly GeneratedPosition[]): VerdictLogprobs {
  const position = positions.findIndex((p) => plain(p.token).trim() !== '');
  if (position < 0)
    throw new GuardError(
      'BAD_RESPONSE',
      `the server generated no verdict token (${positions.length} blank token(s)); cannot score`,
    );
  const at = positions[position] as GeneratedPosition;
  // The chosen token usually repeats in the top list; count each distinct token text once.
  const byToken = new Map<string, number>();
  for (const alt of [at, ...at.top]) {
    if (!Number.isFinite(alt.logprob) && alt.logprob !== Number.NEGATIVE_INFINITY)
      throw new GuardError('BAD_RESPONSE', `logprob of ${JSON.stringify(alt.token)} is not a number`);
    if (!byToken.has(alt.token)) byToken.set(alt.token, alt.logprob);
  }
  const safeLps: number[] = [];
  const unsafeLps: number[] = [];
  for (const [token, lp] of byToken) {
    const t = plain(token).trim();
    if (t === 'safe') safeLps.push(lp);
    else if (t === 'unsafe') unsafeLps.push(lp);
  }
  if (safeLps.length === 0 && unsafeLps.length === 0)
    throw new GuardError(
      'BAD_RESPONSE',
      `neither 'safe' nor 'unsafe' is among the top logprobs at the verdict position ` +
        `(chosen ${JSON.stringify(at.token)}; top: ${describe(at.top)}); is this a Llama Guard model with its template?`,
    );
  const floor = Math.min(...byToken.values());
  const bounded = safeLps.length === 0 || unsafeLps.length === 0;
  const safe = safeLps.length === 0 ? floor : logSumExp(safeLps);
  const unsafe = unsafeLps.length === 0 ? floor : logSumExp(unsafeLps);
  return { pUnsafe: pUnsafeFromLogits(safe, unsafe), safe, unsafe, bounded, position };
}

/** The HTTP backends' answer for generated tokens that carry logprobs. */
export function logprobScore(positions: readonly GeneratedPosition[], generated: string): HttpBackendScore {
  const verdict = verdictFromLogprobs(positions);
  return {
    pUnsafe: verdict.pUnsafe,
    generated,
    logits: { safe: verdict.safe, unsafe: verdict.unsafe },
    scoreSource: verdict.bounded ? 'logprobs-bounded' : 'logprobs',
  };
}
