/**
 * `Guard`: validate → render → score → (only when unsafe) parse the categories.
 *
 *   const guard = new Guard({ backend, variant: '1b' });
 *   const r = await guard.check('How do I pick a lock?');               // prompt classification
 *   const r2 = await guard.check('How do I pick a lock?', { response: 'First, ...' }); // response
 *
 * The decision is `score >= threshold` on P(unsafe) from the verdict logits (score.ts), so the
 * threshold trades recall for false positives without re-running the model. Categories come from
 * the backend's short generation, which it runs only when the score reaches the threshold.
 */
import {
  type ConversationOptions,
  prepareConversation,
  type SpecialTokenPolicy,
  toConversation,
} from './conversation.ts';
import { DEFAULT_MAX_IMAGE_BYTES } from './image.ts';
import { parseGuardOutput } from './parse.ts';
import { checkConcurrency, mapPool } from './pool.ts';
import { checkThreshold, DEFAULT_THRESHOLD, isUnsafe } from './score.ts';
import { type Policy, resolvePolicy } from './taxonomy.ts';
import { renderPrompt } from './template.ts';
import {
  type BackendScore,
  type Category,
  type Conversation,
  GUARD_VARIANTS,
  type GuardBackend,
  GuardError,
  type GuardModelVariant,
  type GuardResult,
  type RenderedPrompt,
  type ScoreOptions,
} from './types.ts';

export interface PromptOptions {
  readonly variant?: GuardModelVariant;
  /** Replaces the variant's default list (S1–S13 for 1B/Vision, S1–S14 for 8B). */
  readonly categories?: readonly Category[];
  /** Codes left out of the prompt; each must be in the list. */
  readonly excluded?: readonly string[];
  readonly maxImageBytes?: number;
  /**
   * Message text containing Llama 3 control tokens (`<|eot_id|>`, …): 'reject' (default, error
   * SPECIAL_TOKEN) or 'allow' (rendered verbatim, as the HF templates do; only for trusted text).
   */
  readonly specialTokens?: SpecialTokenPolicy;
}

export interface GuardOptions extends PromptOptions {
  readonly backend: GuardBackend;
  /** Decision threshold on P(unsafe), default 0.5. */
  readonly threshold?: number;
  /** Per-request deadline passed to the backend. */
  readonly timeoutMs?: number;
  /** Cap on generated tokens for the category list. */
  readonly maxTokens?: number;
}

export interface CheckOptions extends ConversationOptions {
  readonly signal?: AbortSignal;
}

export type CheckInput = string | Conversation;
export interface CheckRequest extends CheckOptions {
  readonly input: CheckInput;
}

function checkVariant(v: unknown): GuardModelVariant {
  if (!(GUARD_VARIANTS as readonly unknown[]).includes(v)) {
    throw new GuardError(
      'INVALID_OPTION',
      `variant must be one of ${GUARD_VARIANTS.join(', ')}, got ${JSON.stringify(v)}`,
    );
  }
  return v as GuardModelVariant;
}

/**
 * The options every request uses, checked up front (not only when a request happens to carry an
 * image): a bad limit is the caller's configuration error, never a client's 400 later.
 */
function checkPromptLimits(options: PromptOptions): void {
  if (
    options.specialTokens !== undefined &&
    options.specialTokens !== 'reject' &&
    options.specialTokens !== 'allow'
  ) {
    throw new GuardError(
      'INVALID_OPTION',
      `specialTokens must be 'reject' or 'allow', got ${JSON.stringify(options.specialTokens)}`,
    );
  }
  const max = options.maxImageBytes;
  if (max !== undefined && !(Number.isSafeInteger(max) && max > 0)) {
    throw new GuardError('INVALID_OPTION', `maxImageBytes must be a positive integer, got ${String(max)}`);
  }
}

/** The prompt a request renders to, without a backend (what `orchard guard render` prints). */
export async function preparePrompt(
  input: CheckInput,
  options: PromptOptions & ConversationOptions = {},
  policy?: Policy,
): Promise<RenderedPrompt> {
  const variant = checkVariant(options.variant ?? '1b');
  checkPromptLimits(options);
  const pol = policy ?? resolvePolicy(variant, options.categories, options.excluded);
  const conversation = toConversation(input, options.response);
  const prepared = await prepareConversation(conversation, variant, {
    ...(options.image !== undefined ? { image: options.image } : {}),
    maxBytes: options.maxImageBytes ?? DEFAULT_MAX_IMAGE_BYTES,
    ...(options.specialTokens !== undefined ? { specialTokens: options.specialTokens } : {}),
  });
  const r = renderPrompt({ variant, messages: prepared.messages, policy: pol });
  return {
    variant,
    text: r.text,
    prefix: r.prefix,
    classifiedRole: r.classifiedRole,
    messages: prepared.messages,
    categories: pol.categories,
    excluded: pol.excluded,
    ...(prepared.image !== undefined ? { image: prepared.image } : {}),
  };
}

export class Guard {
  readonly backend: GuardBackend;
  readonly variant: GuardModelVariant;
  readonly threshold: number;
  readonly policy: Policy;
  private readonly options: GuardOptions;
  private readonly knownCodes: ReadonlySet<string>;

  constructor(options: GuardOptions) {
    if (typeof options?.backend?.scoreAndClassify !== 'function') {
      throw new GuardError('INVALID_OPTION', 'Guard needs a backend (a GuardBackend)');
    }
    this.backend = options.backend;
    this.variant = checkVariant(options.variant ?? '1b');
    checkPromptLimits(options);
    this.threshold = checkThreshold(options.threshold ?? DEFAULT_THRESHOLD);
    this.policy = resolvePolicy(this.variant, options.categories, options.excluded);
    this.knownCodes = new Set(this.policy.active.map((c) => c.code));
    if (options.timeoutMs !== undefined && !(Number.isFinite(options.timeoutMs) && options.timeoutMs > 0)) {
      throw new GuardError('INVALID_OPTION', `timeoutMs must be a positive number, got ${options.timeoutMs}`);
    }
    if (
      options.maxTokens !== undefined &&
      !(Number.isSafeInteger(options.maxTokens) && options.maxTokens > 0)
    ) {
      throw new GuardError(
        'INVALID_OPTION',
        `maxTokens must be a positive integer, got ${options.maxTokens}`,
      );
    }
    this.options = options;
  }

  /** The exact prompt this guard would send for the input. */
  render(input: CheckInput, options: ConversationOptions = {}): Promise<RenderedPrompt> {
    return preparePrompt(input, { ...this.promptOptions(), ...options }, this.policy);
  }

  async check(input: CheckInput, options: CheckOptions = {}): Promise<GuardResult> {
    const prompt = await this.render(input, options);
    this.checkCapabilities(prompt);
    const score = await this.backend.scoreAndClassify(prompt, this.scoreOptions(options.signal));
    return this.toResult(score);
  }

  /**
   * Many requests: uses the backend's batch path when it has one, otherwise runs single checks with
   * at most `concurrency` [4] in flight (mapPool, pool.ts). Results are in input order. Every input is
   * validated and rendered before any model work, so one bad input fails the batch with its error.
   * Past that the batch is fail-fast: the first backend failure rejects, no further request is sent
   * and the ones in flight are aborted (a moderation request is answered whole or not at all).
   */
  async checkMany(
    requests: readonly (CheckInput | CheckRequest)[],
    options: { concurrency?: number; signal?: AbortSignal } = {},
  ): Promise<GuardResult[]> {
    const concurrency = checkConcurrency(options.concurrency ?? 4);
    if (!Array.isArray(requests)) {
      throw new GuardError('INVALID_OPTION', 'checkMany needs an array of requests');
    }
    const reqs = requests.map(
      (r): CheckRequest => (typeof r === 'string' || Array.isArray(r) ? { input: r } : (r as CheckRequest)),
    );
    // Validate and render everything first: one bad input fails the batch before any model work.
    const prompts = await Promise.all(reqs.map((r) => this.render(r?.input, r ?? {})));
    for (const p of prompts) this.checkCapabilities(p);
    if (this.backend.scoreMany) {
      const scores = await this.backend.scoreMany(prompts, this.scoreOptions(options.signal));
      if (!Array.isArray(scores) || scores.length !== prompts.length) {
        throw new GuardError(
          'BAD_RESPONSE',
          `backend returned ${scores?.length} results for ${prompts.length} prompts`,
        );
      }
      return scores.map((s) => this.toResult(s));
    }
    return mapPool(
      prompts,
      concurrency,
      async (prompt, _i, signal) =>
        this.toResult(await this.backend.scoreAndClassify(prompt, this.scoreOptions(signal))),
      options.signal === undefined ? {} : { signal: options.signal },
    );
  }

  private promptOptions(): PromptOptions {
    return {
      variant: this.variant,
      ...(this.options.maxImageBytes !== undefined ? { maxImageBytes: this.options.maxImageBytes } : {}),
      ...(this.options.specialTokens !== undefined ? { specialTokens: this.options.specialTokens } : {}),
    };
  }

  private checkCapabilities(prompt: RenderedPrompt): void {
    if (prompt.image !== undefined && !this.backend.capabilities.vision) {
      throw new GuardError('IMAGE_UNSUPPORTED', `backend ${this.backend.name} does not accept images`);
    }
  }

  private scoreOptions(signal?: AbortSignal): ScoreOptions {
    return {
      threshold: this.threshold,
      ...(this.options.maxTokens !== undefined ? { maxTokens: this.options.maxTokens } : {}),
      ...(this.options.timeoutMs !== undefined ? { timeoutMs: this.options.timeoutMs } : {}),
      ...(signal !== undefined ? { signal } : {}),
    };
  }

  private toResult(s: BackendScore): GuardResult {
    const score = s?.pUnsafe;
    if (typeof score !== 'number' || !(score >= 0 && score <= 1)) {
      throw new GuardError(
        'BAD_RESPONSE',
        `backend returned P(unsafe) = ${String(score)}, expected a number in [0, 1]`,
      );
    }
    const raw = s.generated;
    const source = s.scoreSource !== undefined ? { scoreSource: s.scoreSource } : {};
    if (!isUnsafe(score, this.threshold)) {
      return { safe: true, categories: [], score, ...(raw !== undefined ? { raw } : {}), ...source };
    }
    if (raw === undefined) {
      throw new GuardError(
        'BAD_RESPONSE',
        'the backend scored the request unsafe but generated no category line',
      );
    }
    // If the sampled text says "safe" while the score is past a low threshold, there are no codes.
    const parsed = parseGuardOutput(raw, this.knownCodes);
    return {
      safe: false,
      categories: parsed.categories,
      ...(parsed.unknownCategories.length > 0 ? { unknownCategories: parsed.unknownCategories } : {}),
      score,
      raw,
      ...source,
    };
  }
}
