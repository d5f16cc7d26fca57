/**
 * Local Llama Guard inference through node-llama-cpp (llama.cpp, CPU build).
 *
 * - Score: one prefill of the rendered prompt, then P(unsafe) is the two-way softmax of the `safe` and
 *   `unsafe` logits at the verdict position (blank tokens the model would write first are fed back and
 *   skipped, up to two). No sampling. The logits are read from a short candidate list rather than the
 *   whole 128k vocabulary (see `readVerdict`): node-llama-cpp can only hand logits to JS as a sorted
 *   probability list, and the full one costs ~50 ms of CPU per request (sort, 256k-element array,
 *   128k-entry Map), a tenth of a warm request on 2 threads.
 * - Prefix cache: every sequence keeps its KV cache after a request. A new request goes to the idle
 *   sequence whose cached tokens share the longest prefix with it; only the tokens after that common
 *   prefix are erased and evaluated. Requests with the same policy (variant, categories, judged role)
 *   share the task line and category list, so after the first request only the conversation and the
 *   closing instructions are evaluated. `warm()` fills every sequence with a policy prefix up front.
 * - Pool: `sequences` context sequences serve concurrent requests; llama.cpp batches their tokens into
 *   shared decode steps. Requests beyond that wait in FIFO order (with the request's deadline).
 * - Categories: only when P(unsafe) ≥ threshold, `unsafe` is forced and a short greedy generation
 *   constrained by a grammar to `\n` + comma-separated codes of the active policy follows.
 */
import { open, stat } from 'node:fs/promises';
import {
  type BatchItem,
  getLlama,
  type Llama,
  type LlamaContext,
  type LlamaContextSequence,
  type LlamaGrammar,
  LlamaGrammarEvaluationState,
  LlamaLogLevel,
  type LlamaModel,
  type PrioritizedBatchItem,
  type Token,
  TokenBias,
} from 'node-llama-cpp';
import type { BackendFactoryOptions } from '../backends/registry.ts';
import { pUnsafeFromLogits } from '../score.ts';
import {
  type BackendCapabilities,
  type BackendScore,
  type GuardBackend,
  GuardError,
  type RenderedPrompt,
  type ScoreOptions,
} from '../types.ts';

export interface LlamaBackendOptions {
  readonly modelPath: string;
  /** CPU threads for evaluation (default 2). */
  readonly threads?: number;
  /** Concurrent context sequences, each with its own KV cache (default 2). */
  readonly sequences?: number;
  /** Tokens per sequence (default 4096: a described 13-category policy plus a long conversation). */
  readonly contextSize?: number;
  /** Tokens per decode batch (default 512, at least `MIN_STEP_TOKENS` × 2 = 128). */
  readonly batchSize?: number;
  /** Default cap on generated category tokens (default 20). */
  readonly maxTokens?: number;
  /**
   * Logit bias that keeps `safe` and `unsafe` in the short candidate list the verdict is read from
   * (default 50; it cancels out of the score). When either still falls outside the list the position
   * is read again over the whole vocabulary (`stats.fullVocabularyReads`). 0 makes that fallback the
   * common case, which is what the tests use it for.
   */
  readonly verdictBias?: number;
  /**
   * llama.cpp's flash attention (default true). On the LG3-1B shape with 2 threads it makes a
   * 743-token prefill ~1.3× and a 134-token cached-prefix request ~1.1× faster. Its CPU kernel has
   * two algorithms chosen by the number of tokens in a decode step: f32 tiles from 64 tokens on, an
   * f16-accumulating loop below that (P(unsafe) moves by ~1e-3). The backend only issues steps of at
   * least `MIN_STEP_TOKENS` prompt tokens from one sequence each (see `oneSequencePerStep`), so a
   * score is the same cold, after a cache hit and next to concurrent requests. `false` uses llama.cpp's
   * plain attention (f16 Q·K and softmax·V products; P(unsafe) differs from flash attention's by ~1e-3
   * on the LG3-1B shape, as f16 and f32 KV caches differ from each other).
   */
  readonly flashAttention?: boolean;
}

const MAX_BLANK_TOKENS = 2;
/**
 * Fewest prompt tokens the backend evaluates in one decode step (unless the prompt is shorter).
 * llama.cpp's CPU kernels choose their algorithm by the number of tokens in a step: one token takes a
 * different Q4_0 matrix-vector kernel (on AMX builds the VNNI one instead of the AMX tiles), and flash
 * attention under 64 query rows (ggml's `GGML_FA_TILE_Q`) accumulates in f16 instead of f32. Either
 * changes that token's hidden states, and so the K/V every later token reads, by enough to move
 * P(unsafe) by ~1e-3 on the LG3-1B shape. From 64 tokens on, a token's result does not depend on how
 * the prompt was split, so a score read after a cache hit equals a cold one. A cache hit therefore
 * still evaluates at least this many tokens, and a prompt longer than a batch is cut into near-equal
 * steps rather than full batches plus a short rest.
 */
export const MIN_STEP_TOKENS = 64;

/**
 * node-llama-cpp's batch scheduling: each decode step takes the pending tokens of one sequence only
 * (the first queued item of the highest priority, up to the batch size). Its default fills a step
 * with several sequences' tokens, and llama.cpp then cuts them into equal per-sequence ubatches, so a
 * prompt would be evaluated in pieces that depend on what else is running (see `MIN_STEP_TOKENS`).
 * Concurrent prefills lose little (each step is compute-bound either way); concurrent category
 * generations take turns instead of sharing a step.
 */
function oneSequencePerStep({
  items,
  size,
}: {
  items: readonly BatchItem[];
  size: number;
}): PrioritizedBatchItem[] {
  let best: BatchItem | undefined;
  for (const item of items) if (!best || item.evaluationPriority > best.evaluationPriority) best = item;
  return best ? [{ item: best, processAmount: Math.min(best.tokens.length, size) }] : [];
}
/** Candidates kept when reading the verdict: both verdict tokens and at least the best other token. */
const VERDICT_TOP_K = 4;

/** The verdict position: the most likely next token and the two verdict logits relative to its logit. */
interface VerdictRead {
  readonly top: Token;
  readonly safe: number;
  readonly unsafe: number;
}

interface Slot {
  readonly seq: LlamaContextSequence;
  busy: boolean;
}

interface Waiter {
  readonly resolve: (slot: Slot) => void;
  readonly reject: (e: unknown) => void;
}

function intOption(name: string, v: number | undefined, dflt: number, min: number, max: number): number {
  const x = v ?? dflt;
  if (!Number.isInteger(x) || x < min || x > max) {
    throw new GuardError(
      'INVALID_OPTION',
      `${name} must be an integer in [${min}, ${max}], got ${String(v)}`,
    );
  }
  return x;
}

/** Checks the file before llama.cpp sees it: missing, unreadable or not GGUF → MODEL_FILE. */
async function checkModelFile(path: string): Promise<void> {
  if (typeof path !== 'string' || path === '') throw new GuardError('MODEL_FILE', 'no model file given');
  let size: number;
  try {
    const s = await stat(path);
    if (!s.isFile()) throw new GuardError('MODEL_FILE', `${path} is not a file`);
    size = s.size;
  } catch (e) {
    if (e instanceof GuardError) throw e;
    throw new GuardError('MODEL_FILE', `cannot read model file ${path}: ${(e as Error).message}`, {
      cause: e,
    });
  }
  const fh = await open(path, 'r');
  try {
    const head = Buffer.alloc(4);
    await fh.read(head, 0, 4, 0);
    if (size < 24 || head.toString('latin1') !== 'GGUF') {
      throw new GuardError('MODEL_FILE', `${path} is not a GGUF file (bad magic)`);
    }
  } finally {
    await fh.close();
  }
}

function isBlank(text: string): boolean {
  return text.length > 0 && text.trim() === '';
}

export class LlamaGuardBackend implements GuardBackend {
  readonly name: string;
  readonly capabilities: BackendCapabilities = { vision: false };
  readonly threads: number;
  private readonly slots: Slot[];
  private readonly waiters: Waiter[] = [];
  private readonly grammars = new Map<string, Promise<LlamaGrammar>>();
  private closed = false;
  /**
   * Prompt tokens requested and actually evaluated (the difference was served from the KV cache), and
   * verdict positions that had to be read over the whole vocabulary (see `readVerdict`).
   */
  readonly stats = { requests: 0, promptTokens: 0, evaluatedTokens: 0, fullVocabularyReads: 0 };
  /** Sampling options that make llama.cpp return only the top candidates after biasing the verdicts. */
  private readonly verdictSampling: {
    readonly temperature: number;
    readonly topK: number;
    readonly topP: number;
    readonly minP: number;
    readonly seed: number;
    readonly tokenBias: TokenBias;
  };
  private closing: Promise<void> | undefined;

  private constructor(
    private readonly llama: Llama,
    readonly model: LlamaModel,
    private readonly context: LlamaContext,
    private readonly verdict: { readonly safe: Token; readonly unsafe: Token },
    private readonly maxTokens: number,
    /** Tokens one request may use (the context is sized sequences × this). */
    readonly contextPerSequence: number,
    threads: number,
    modelPath: string,
    private readonly verdictBias: number,
    private readonly batchSize: number,
  ) {
    this.threads = threads;
    // temperature > 0 puts top-k in llama.cpp's sampler chain (greedy would keep all 128k candidates);
    // top-p 1 and min-p 0 keep all k. The sampled token itself is never used.
    this.verdictSampling = {
      temperature: 1,
      topK: VERDICT_TOP_K,
      topP: 1,
      minP: 0,
      seed: 0,
      tokenBias: new TokenBias(model.tokenizer)
        .set(verdict.safe, { logit: verdictBias })
        .set(verdict.unsafe, { logit: verdictBias }),
    };
    this.name = `llama.cpp:${modelPath.split(/[\\/]/).pop() ?? modelPath}`;
    this.slots = [];
    for (let i = 0; i < context.totalSequences; i++)
      this.slots.push({ seq: context.getSequence(), busy: false });
  }

  static async create(options: LlamaBackendOptions): Promise<LlamaGuardBackend> {
    const threads = intOption('threads', options.threads, 2, 1, 256);
    const sequences = intOption('sequences', options.sequences, 2, 1, 64);
    const contextSize = intOption('contextSize', options.contextSize, 4096, 256, 131072);
    const batchSize = intOption('batchSize', options.batchSize, 512, 2 * MIN_STEP_TOKENS, 8192);
    const maxTokens = intOption('maxTokens', options.maxTokens, 20, 1, 256);
    const verdictBias = intOption('verdictBias', options.verdictBias, 50, 0, 80);
    await checkModelFile(options.modelPath);
    const llama = await getLlama({ gpu: false, logLevel: LlamaLogLevel.error });
    let model: LlamaModel | undefined;
    try {
      try {
        model = await llama.loadModel({ modelPath: options.modelPath });
      } catch (e) {
        throw new GuardError(
          'MODEL_FILE',
          `llama.cpp cannot load ${options.modelPath}: ${(e as Error).message}`,
          {
            cause: e,
          },
        );
      }
      const safe = model.tokenize('safe', false);
      const unsafe = model.tokenize('unsafe', false);
      if (safe.length !== 1 || unsafe.length !== 1) {
        throw new GuardError(
          'MODEL_FILE',
          `${options.modelPath}: 'safe' and 'unsafe' must be single tokens (not a Llama Guard vocabulary)`,
        );
      }
      const context = await model.createContext({
        sequences,
        contextSize: contextSize * sequences,
        batchSize,
        threads: { ideal: threads, min: threads },
        flashAttention: options.flashAttention !== false,
        batching: { itemPrioritizationStrategy: oneSequencePerStep },
      });
      return new LlamaGuardBackend(
        llama,
        model,
        context,
        { safe: safe[0] as Token, unsafe: unsafe[0] as Token },
        maxTokens,
        contextSize,
        threads,
        options.modelPath,
        verdictBias,
        batchSize,
      );
    } catch (e) {
      await model?.dispose().catch(() => {});
      await llama.dispose().catch(() => {});
      throw e;
    }
  }

  /** Tokens of a prompt text (special tokens parsed, no BOS added: the text carries its own). */
  tokenize(text: string): Token[] {
    return this.model.tokenize(text, true);
  }

  /** Evaluates `prompt.prefix` into every idle sequence so the first requests already hit the cache. */
  async warm(prompt: Pick<RenderedPrompt, 'prefix'>): Promise<void> {
    this.ensureOpen();
    const tokens = this.tokenize(prompt.prefix);
    await Promise.all(
      this.slots.map(async () => {
        const slot = await this.acquire(tokens, Number.POSITIVE_INFINITY);
        try {
          // A sequence that already holds the whole prefix is left alone (no token is re-evaluated).
          if (slot.seq.compareContextTokens(tokens).firstDifferentIndex < tokens.length) {
            const keep = await this.alignTo(slot, tokens);
            await this.evaluateSteps(slot.seq, tokens.slice(keep));
          }
        } finally {
          this.release(slot);
        }
      }),
    );
  }

  /** Drops every sequence's cached tokens (the next request on each is evaluated from scratch). */
  async clearCache(): Promise<void> {
    this.ensureOpen();
    await Promise.all(
      this.slots.map(async () => {
        const slot = await this.acquire([], Number.POSITIVE_INFINITY);
        try {
          await slot.seq.clearHistory();
        } finally {
          this.release(slot);
        }
      }),
    );
  }

  async scoreAndClassify(prompt: RenderedPrompt, options: ScoreOptions): Promise<BackendScore> {
    this.ensureOpen();
    if (options.signal?.aborted) throw new GuardError('ABORTED', 'the request was aborted');
    if (prompt.image !== undefined) {
      throw new GuardError(
        'IMAGE_UNSUPPORTED',
        'the local llama.cpp backend runs text-only Llama Guard models',
      );
    }
    const maxTokens = intOption('maxTokens', options.maxTokens, this.maxTokens, 1, 256);
    const tokens = this.tokenize(prompt.text);
    const limit = this.contextPerSequence;
    if (tokens.length + MAX_BLANK_TOKENS + maxTokens + 1 > limit) {
      throw new GuardError(
        'CONTEXT_OVERFLOW',
        `the prompt is ${tokens.length} tokens; with ${maxTokens} generated it exceeds the ${limit}-token context`,
      );
    }
    const deadline =
      options.timeoutMs !== undefined ? Date.now() + options.timeoutMs : Number.POSITIVE_INFINITY;
    const work = (async () => {
      const slot = await this.acquire(tokens, deadline, options.signal);
      try {
        return await this.run(slot, prompt, tokens, options.threshold, maxTokens);
      } catch (e) {
        // close() during an evaluation disposes the context under it: report that, not the fallout.
        if (this.closed && !(e instanceof GuardError)) {
          throw new GuardError('BACKEND_CLOSED', 'the backend was closed during the request', { cause: e });
        }
        throw e;
      } finally {
        this.release(slot);
      }
    })();
    return this.withDeadline(work, deadline, options.signal);
  }

  async scoreMany(prompts: readonly RenderedPrompt[], options: ScoreOptions): Promise<BackendScore[]> {
    // Queued requests run as sequences free up; llama.cpp batches the running ones together.
    return Promise.all(prompts.map((p) => this.scoreAndClassify(p, options)));
  }

  async close(): Promise<void> {
    if (this.closing) return this.closing;
    this.closed = true;
    for (const w of this.waiters.splice(0))
      w.reject(new GuardError('BACKEND_CLOSED', 'the backend was closed'));
    this.closing = (async () => {
      await this.context.dispose();
      await this.model.dispose();
      await this.llama.dispose();
    })();
    return this.closing;
  }

  private ensureOpen(): void {
    if (this.closed) throw new GuardError('BACKEND_CLOSED', 'the backend was closed');
  }

  private async run(
    slot: Slot,
    prompt: RenderedPrompt,
    tokens: Token[],
    threshold: number,
    maxTokens: number,
  ): Promise<BackendScore> {
    const keep = await this.alignTo(slot, tokens);
    let pending = tokens.slice(keep);
    this.stats.requests++;
    this.stats.promptTokens += tokens.length;
    this.stats.evaluatedTokens += pending.length;
    let prefixText = '';
    let logits: { safe: number; unsafe: number } = { safe: 0, unsafe: 0 };
    for (let blanks = 0; ; blanks++) {
      const { top, ...verdict } = await this.readVerdict(slot.seq, pending);
      logits = verdict;
      const topText = this.model.detokenize([top], false);
      if (
        blanks >= MAX_BLANK_TOKENS ||
        top === this.verdict.safe ||
        top === this.verdict.unsafe ||
        !isBlank(topText)
      ) {
        break;
      }
      prefixText += topText;
      pending = [top];
    }
    const pUnsafe = pUnsafeFromLogits(logits.safe, logits.unsafe);
    if (pUnsafe < threshold) return { pUnsafe, logits };
    const codes = await this.generateCodes(slot, prompt, maxTokens);
    return { pUnsafe, logits, generated: `${prefixText}unsafe\n${codes.join(',')}` };
  }

  /**
   * Evaluates `pending` and reads the verdict position after its last token. llama.cpp adds
   * `verdictBias` to the `safe` and `unsafe` logits and returns the softmax of the top
   * `VERDICT_TOP_K` candidates. When both verdict tokens are among them, the bias cancels from their
   * difference, and the other candidates are the best remaining tokens, so the best of those (the
   * first listed) decides the overall top: its logit is ln(p / p_safe) + bias relative to `safe`.
   * A candidate whose probability underflowed to 0 is more than ~87 - bias nats below `safe`, so it
   * is not the top. Otherwise the last token is evaluated again and read over the whole vocabulary.
   * Logits are returned relative to the top token's logit (a softmax does not see the offset).
   */
  private async readVerdict(seq: LlamaContextSequence, pending: Token[]): Promise<VerdictRead> {
    const short = await this.evaluateAndRead(seq, pending, this.verdictSampling);
    if (!short) throw new GuardError('BAD_RESPONSE', 'llama.cpp returned no next-token probabilities');
    const { safe, unsafe } = this.verdict;
    const ps = short.get(safe) ?? 0;
    const pu = short.get(unsafe) ?? 0;
    if (ps > 0 && pu > 0) {
      const lu = Math.log(pu) - Math.log(ps);
      let top = lu > 0 ? unsafe : safe;
      let topLogit = Math.max(0, lu);
      for (const [t, p] of short) {
        if (t === safe || t === unsafe) continue;
        const l = Math.log(p) - Math.log(ps) + this.verdictBias;
        if (p > 0 && l > topLogit) {
          top = t;
          topLogit = l;
        }
        break;
      }
      return { top, safe: -topLogit, unsafe: lu - topLogit };
    }
    this.stats.fullVocabularyReads++;
    // The same tokens again in the same steps, so the position is computed exactly as before.
    const end = seq.nextTokenIndex;
    await seq.eraseContextTokenRanges([{ start: end - pending.length, end }]);
    const full = await this.evaluateAndRead(seq, pending, undefined);
    if (!full) throw new GuardError('BAD_RESPONSE', 'llama.cpp returned no next-token probabilities');
    const top = full.keys().next().value as Token;
    const lt = Math.log(full.get(top) ?? 0);
    return {
      top,
      safe: Math.log(full.get(safe) ?? 0) - lt,
      unsafe: Math.log(full.get(unsafe) ?? 0) - lt,
    };
  }

  /**
   * Evaluates `tokens` in steps of `steps(…)` and returns the next-token probabilities after the last
   * one (top candidates after `sampling`, or the whole vocabulary without it).
   */
  private async evaluateAndRead(
    seq: LlamaContextSequence,
    tokens: Token[],
    sampling: LlamaGuardBackend['verdictSampling'] | undefined,
  ): Promise<Map<Token, number> | undefined> {
    const parts = this.steps(tokens);
    const lastPart = parts.pop() as Token[];
    for (const part of parts) await seq.evaluateWithoutGeneratingNewTokens(part);
    const last = lastPart.length - 1;
    const next = sampling ? { probabilities: true, options: sampling } : { probabilities: true };
    const out = await seq.controlledEvaluate(
      lastPart.map((t, i) => (i === last ? [t, { generateNext: next }] : t)),
    );
    return out[last]?.next.probabilities;
  }

  /** Evaluates `tokens` (no logits read) in the steps `steps(…)` gives. */
  private async evaluateSteps(seq: LlamaContextSequence, tokens: Token[]): Promise<void> {
    for (const part of this.steps(tokens)) await seq.evaluateWithoutGeneratingNewTokens(part);
  }

  /**
   * `tokens` cut into the fewest decode steps of at most `batchSize`, of near-equal length (each at
   * least batchSize / 2 ≥ `MIN_STEP_TOKENS` when there are two or more), instead of full batches
   * and a short rest (see `MIN_STEP_TOKENS`).
   */
  private steps(tokens: Token[]): Token[][] {
    const n = Math.max(1, Math.ceil(tokens.length / this.batchSize));
    const out: Token[][] = [];
    for (let i = 0, start = 0; i < n; i++) {
      const end = Math.round(((i + 1) * tokens.length) / n);
      out.push(tokens.slice(start, end));
      start = end;
    }
    return out;
  }

  /** Greedy grammar-constrained codes after a forced `unsafe`; incomplete trailing codes are dropped. */
  private async generateCodes(slot: Slot, prompt: RenderedPrompt, maxTokens: number): Promise<string[]> {
    const excluded = new Set(prompt.excluded);
    const codes = prompt.categories.map((c) => c.code).filter((c) => !excluded.has(c));
    const grammar = await this.grammarFor(codes);
    const state = new LlamaGrammarEvaluationState({ model: this.model, grammar });
    const generated: Token[] = [];
    const it = slot.seq.evaluate([this.verdict.unsafe], { temperature: 0, grammarEvaluationState: state });
    try {
      for await (const token of it) {
        if (this.model.isEogToken(token)) break;
        generated.push(token);
        if (generated.length >= maxTokens) break;
      }
    } finally {
      await it.return();
    }
    const text = this.model.detokenize(generated, false).replace(/^\n/, '');
    const allowed = new Set(codes);
    const parts = text.split(',');
    while (parts.length > 0 && !allowed.has(parts[parts.length - 1] as string)) parts.pop();
    return parts;
  }

  private grammarFor(codes: readonly string[]): Promise<LlamaGrammar> {
    const key = codes.join(',');
    let g = this.grammars.get(key);
    if (!g) {
      // Longest codes first so that S10 is not cut to S1 by an alternation that matched early.
      const alts = [...codes].sort((a, b) => b.length - a.length).map((c) => JSON.stringify(c));
      g = this.llama.createGrammar({
        grammar: `root ::= "\\n" code ("," code)*\ncode ::= ${alts.join(' | ')}\n`,
      });
      this.grammars.set(key, g);
    }
    return g;
  }

  /**
   * Erases the slot's cached tokens after its common prefix with `tokens`; returns what it kept. At
   * least the last `MIN_STEP_TOKENS` tokens (all, if fewer) are left to evaluate again: the last one's
   * logits are what we read, and a shorter step would compute them differently (see `MIN_STEP_TOKENS`).
   */
  private async alignTo(slot: Slot, tokens: Token[]): Promise<number> {
    const seq = slot.seq;
    const keep = Math.min(
      seq.compareContextTokens(tokens).firstDifferentIndex,
      Math.max(0, tokens.length - MIN_STEP_TOKENS),
    );
    if (keep < seq.nextTokenIndex)
      await seq.eraseContextTokenRanges([{ start: keep, end: seq.nextTokenIndex }]);
    return keep;
  }

  private acquire(tokens: Token[], deadline: number, signal?: AbortSignal): Promise<Slot> {
    const slot = this.pick(tokens);
    if (slot) {
      slot.busy = true;
      return Promise.resolve(slot);
    }
    return new Promise<Slot>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const cleanup = () => {
        if (timer) clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
      };
      const w: Waiter = {
        resolve: (s) => {
          cleanup();
          resolve(s);
        },
        reject: (e) => {
          cleanup();
          reject(e);
        },
      };
      const drop = (e: GuardError) => {
        const i = this.waiters.indexOf(w);
        if (i >= 0) {
          this.waiters.splice(i, 1);
          w.reject(e);
        }
      };
      const onAbort = () => drop(new GuardError('ABORTED', 'the request was aborted'));
      if (Number.isFinite(deadline)) {
        timer = setTimeout(
          () => drop(new GuardError('BACKEND_TIMEOUT', 'timed out waiting for a free sequence')),
          Math.max(0, deadline - Date.now()),
        );
      }
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(w);
    });
  }

  /** The idle slot sharing the longest cached prefix with `tokens`, or undefined if all are busy. */
  private pick(tokens: Token[]): Slot | undefined {
    let best: Slot | undefined;
    let bestLen = -1;
    for (const s of this.slots) {
      if (s.busy) continue;
      const len = s.seq.compareContextTokens(tokens).firstDifferentIndex;
      if (len > bestLen) {
        best = s;
        bestLen = len;
      }
    }
    return best;
  }

  private release(slot: Slot): void {
    slot.busy = false;
    if (this.closed) return;
    const w = this.waiters.shift();
    if (w) {
      slot.busy = true;
      w.resolve(slot);
    }
  }

  private withDeadline<T>(work: Promise<T>, deadline: number, signal?: AbortSignal): Promise<T> {
    if (!Number.isFinite(deadline) && !signal) return work.catch((e) => Promise.reject(wrap(e)));
    return new Promise<T>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const onAbort = () => finish(() => reject(new GuardError('ABORTED', 'the request was aborted')));
      const finish = (f: () => void) => {
        if (timer) clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        f();
      };
      if (Number.isFinite(deadline)) {
        timer = setTimeout(
          () => finish(() => reject(new GuardError('BACKEND_TIMEOUT', 'the request ran past its deadline'))),
          Math.max(0, deadline - Date.now()),
        );
      }
      signal?.addEventListener('abort', onAbort, { once: true });
      work.then(
        (v) => finish(() => resolve(v)),
        (e) => finish(() => reject(wrap(e))),
      );
    });
  }
}

function wrap(e: unknown): GuardError {
  if (e instanceof GuardError) return e;
  return new GuardError(
    'BAD_RESPONSE',
    `llama.cpp evaluation failed: ${(e as Error)?.message ?? String(e)}`,
    {
      cause: e,
    },
  );
}

/** Registry entry point (`createBackend('llama', { modelPath, threads, sequences })`). */
export async function createGuardBackend(options: BackendFactoryOptions): Promise<GuardBackend> {
  if (options.modelPath === undefined)
    throw new GuardError('MODEL_FILE', 'the llama backend needs --model file.gguf');
  return LlamaGuardBackend.create({
    modelPath: options.modelPath,
    ...(options.threads !== undefined ? { threads: options.threads } : {}),
    ...(options.sequences !== undefined ? { sequences: options.sequences } : {}),
  });
}
