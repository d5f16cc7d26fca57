/**
 * A guard step other parts of Orchard put in front of text they are about to use (synthetic
 * training text, prompts sent to a model, user uploads):
 *
 *   const guardText = createGuardMiddleware(guard);
 *   const prompt = await guardText(userPrompt);            // returns it, or throws ContentBlockedError
 *   const { kept, blocked } = await guardText.filter(samples, (s) => s.text);   // batch: drop unsafe
 *   const result = await guardText.check(reply, { response: true, context: prompt });  // just look
 *
 * The guard's own failures (unreachable endpoint, bad input) propagate as GuardError: a failed check
 * is never taken as "safe" (fail closed) unless `onError: 'allow'` is chosen explicitly.
 */
import type { Guard } from '../guard.ts';
import { checkConcurrency, mapPool } from '../pool.ts';
import { type Conversation, GuardError, type GuardResult } from '../types.ts';

/** Thrown by the middleware call when the guard flags the text. */
export class ContentBlockedError extends Error {
  readonly code = 'CONTENT_BLOCKED';
  readonly result: GuardResult;
  constructor(result: GuardResult) {
    const cats = result.categories.length > 0 ? ` (${result.categories.join(', ')})` : '';
    super(`content blocked by the safety guard${cats}, P(unsafe) = ${result.score.toFixed(3)}`);
    this.name = 'ContentBlockedError';
    this.result = result;
  }
}

export interface MiddlewareCheckOptions {
  /** Judge `text` as an assistant reply to `context` (response classification). */
  readonly response?: boolean;
  /** The user turn the reply answers (required with `response: true`). */
  readonly context?: string;
  readonly signal?: AbortSignal;
}

export interface GuardMiddlewareOptions {
  /** Called with every verdict (auditing, counters). */
  readonly onResult?: (input: string | Conversation, result: GuardResult) => void;
  /**
   * What a *failed* check means: 'block' (default) rethrows the guard's error; 'allow' lets the
   * text through and reports the error to `onError`. Only for callers that prefer availability.
   */
  readonly onError?: 'block' | 'allow';
  readonly reportError?: (input: string | Conversation, error: unknown) => void;
  /** Concurrent checks in `filter` [4]. */
  readonly concurrency?: number;
}

export interface GuardMiddleware {
  /** Resolves to the input when it is safe; rejects with ContentBlockedError when it is not. */
  <T extends string | Conversation>(input: T, options?: MiddlewareCheckOptions): Promise<T>;
  /** The verdict, without throwing for unsafe content. */
  check(input: string | Conversation, options?: MiddlewareCheckOptions): Promise<GuardResult>;
  /** Splits items into safe ones (kept, in order) and flagged ones with their verdicts. */
  filter<T>(
    items: readonly T[],
    toInput: (item: T) => string | Conversation,
  ): Promise<{ kept: T[]; blocked: Array<{ item: T; result: GuardResult }> }>;
}

function toCheck(
  input: string | Conversation,
  options: MiddlewareCheckOptions,
): [string | Conversation, { response?: string }] {
  if (options.response !== true) return [input, {}];
  if (typeof input !== 'string' || typeof options.context !== 'string')
    throw new GuardError(
      'INVALID_OPTION',
      'response: true needs the reply as a string and the user turn as `context`',
    );
  return [options.context, { response: input }];
}

export function createGuardMiddleware(guard: Guard, options: GuardMiddlewareOptions = {}): GuardMiddleware {
  const concurrency = checkConcurrency(options.concurrency ?? 4);
  if (options.onError !== undefined && options.onError !== 'block' && options.onError !== 'allow')
    throw new GuardError(
      'INVALID_OPTION',
      `onError must be 'block' or 'allow', got ${JSON.stringify(options.onError)}`,
    );

  const check = async (
    input: string | Conversation,
    opts: MiddlewareCheckOptions = {},
  ): Promise<GuardResult> => {
    const [what, extra] = toCheck(input, opts);
    const result = await guard.check(what, {
      ...extra,
      ...(opts.signal === undefined ? {} : { signal: opts.signal }),
    });
    options.onResult?.(input, result);
    return result;
  };

  /** The verdict, or null when the check failed and failures are allowed through. */
  const guarded = async (
    input: string | Conversation,
    opts: MiddlewareCheckOptions = {},
  ): Promise<GuardResult | null> => {
    try {
      return await check(input, opts);
    } catch (e) {
      if (options.onError !== 'allow') throw e;
      options.reportError?.(input, e);
      return null;
    }
  };

  const middleware = async <T extends string | Conversation>(
    input: T,
    opts: MiddlewareCheckOptions = {},
  ): Promise<T> => {
    const result = await guarded(input, opts);
    if (result !== null && !result.safe) throw new ContentBlockedError(result);
    return input;
  };

  // Per-item outcomes come from `guarded` (null for an allowed failure); what reaches the pool is a
  // failure under onError 'block', which ends the whole filter fail-fast (pool.ts): no further item
  // is checked and the checks in flight are aborted, since the batch is refused anyway.
  const filter = async <T>(items: readonly T[], toInput: (item: T) => string | Conversation) => {
    const verdicts = await mapPool(items, concurrency, (item, _i, signal) =>
      guarded(toInput(item), { signal }),
    );
    const kept: T[] = [];
    const blocked: Array<{ item: T; result: GuardResult }> = [];
    items.forEach((item, i) => {
      const v = verdicts[i];
      if (v === null || v === undefined || v.safe) kept.push(item);
      else blocked.push({ item, result: v });
    });
    return { kept, blocked };
  };

  return Object.assign(middleware, { check, filter }) as GuardMiddleware;
}
