/**
 * TEST DOUBLE — not a model. A deterministic in-memory GuardBackend for tests of the guard core, the
 * CLI, the server and the eval harness: it "judges" the classified turn by keyword rules, so tests
 * can predict its verdicts without weights. It follows the backend contract exactly (two-way softmax
 * score, generation only at or above the threshold, typed errors, idempotent close) and passes the
 * backend conformance suite, which keeps the suite itself honest.
 */
import { pUnsafeFromLogits } from '../score.ts';
import {
  type BackendCapabilities,
  type BackendScore,
  type GuardBackend,
  GuardError,
  type RenderedPrompt,
  type ScoreOptions,
} from '../types.ts';

export interface FakeBackendOptions {
  /** Lower-case substring of the judged turn → category codes it triggers (in order). */
  readonly rules?: Readonly<Record<string, readonly string[]>>;
  /** Logit margin: triggered turns get logits (safe 0, unsafe +margin), others (0, −margin). Default 4. */
  readonly margin?: number;
  readonly vision?: boolean;
  /** Artificial latency per request (ms), to exercise timeouts, aborts and concurrency. */
  readonly delayMs?: number;
  /** Replaces the generated text (to feed the parser real-world variations). */
  readonly output?: (prompt: RenderedPrompt) => string;
  /** Replaces the score (e.g. to return out-of-range values). */
  readonly pUnsafe?: (prompt: RenderedPrompt) => number;
  /** Every request fails with this error (e.g. BACKEND_UNREACHABLE). */
  readonly fail?: GuardError;
  /** Also offer the optional batch path (`scoreMany`); `batchCalls` counts its uses. */
  readonly batch?: boolean;
}

export const DEFAULT_FAKE_RULES: Readonly<Record<string, readonly string[]>> = {
  kill: ['S1'],
  steal: ['S2'],
  bomb: ['S9', 'S1'],
};

export class FakeGuardBackend implements GuardBackend {
  readonly name = 'fake';
  readonly capabilities: BackendCapabilities;
  /** Requests scored / category generations run: lets tests check that safe verdicts skip generation. */
  calls = 0;
  generations = 0;
  closeCalls = 0;
  readonly prompts: RenderedPrompt[] = [];
  private closed = false;
  private inFlight = 0;
  maxInFlight = 0;

  batchCalls = 0;
  scoreMany?: (prompts: readonly RenderedPrompt[], options: ScoreOptions) => Promise<BackendScore[]>;

  constructor(private readonly options: FakeBackendOptions = {}) {
    this.capabilities = { vision: options.vision ?? false };
    if (options.batch) {
      this.scoreMany = async (prompts, so) => {
        this.batchCalls++;
        return Promise.all(prompts.map((p) => this.scoreAndClassify(p, so)));
      };
    }
  }

  async scoreAndClassify(prompt: RenderedPrompt, options: ScoreOptions): Promise<BackendScore> {
    if (this.closed) throw new GuardError('BACKEND_CLOSED', 'fake backend is closed');
    if (options.signal?.aborted) throw new GuardError('ABORTED', 'request aborted');
    if (prompt.image !== undefined && !this.capabilities.vision) {
      throw new GuardError('IMAGE_UNSUPPORTED', 'fake backend built without vision');
    }
    if (!prompt.text.startsWith(prompt.prefix))
      throw new GuardError('BAD_RESPONSE', 'prompt prefix mismatch');
    this.calls++;
    this.prompts.push(prompt);
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    try {
      if (this.options.delayMs !== undefined) await this.sleep(this.options.delayMs, options);
      if (this.options.fail) throw this.options.fail;
      const codes = this.judge(prompt);
      const margin = this.options.margin ?? 4;
      const logits = { safe: 0, unsafe: codes.length > 0 ? margin : -margin };
      const pUnsafe = this.options.pUnsafe
        ? this.options.pUnsafe(prompt)
        : pUnsafeFromLogits(logits.safe, logits.unsafe);
      if (!(pUnsafe >= options.threshold)) return { pUnsafe, logits };
      this.generations++;
      // Like a constrained backend: past the threshold the verdict is forced to "unsafe".
      const generated = this.options.output ? this.options.output(prompt) : `\n\nunsafe\n${codes.join(',')}`;
      return { pUnsafe, logits, generated };
    } finally {
      this.inFlight--;
    }
  }

  async close(): Promise<void> {
    this.closeCalls++;
    this.closed = true;
  }

  private judge(prompt: RenderedPrompt): string[] {
    const last = prompt.messages[prompt.messages.length - 1];
    const text = (last?.parts ?? [])
      .map((p) => (p.type === 'text' ? p.text : ''))
      .join(' ')
      .toLowerCase();
    const active = new Set(prompt.categories.map((c) => c.code).filter((c) => !prompt.excluded.includes(c)));
    const codes: string[] = [];
    for (const [word, cs] of Object.entries(this.options.rules ?? DEFAULT_FAKE_RULES)) {
      if (!text.includes(word)) continue;
      for (const c of cs) if (active.has(c) && !codes.includes(c)) codes.push(c);
    }
    return codes;
  }

  private sleep(ms: number, options: ScoreOptions): Promise<void> {
    return new Promise((resolve, reject) => {
      const limit = options.timeoutMs;
      const timer =
        limit !== undefined && limit < ms
          ? setTimeout(
              () => reject(new GuardError('BACKEND_TIMEOUT', `fake backend: no answer in ${limit} ms`)),
              limit,
            )
          : setTimeout(resolve, ms);
      options.signal?.addEventListener(
        'abort',
        () => {
          clearTimeout(timer);
          reject(new GuardError('ABORTED', 'request aborted'));
        },
        { once: true },
      );
    });
  }
}

/** A 1×1 PNG (valid signature and chunks), for image tests. */
export const TINY_PNG = new Uint8Array(
  Buffer.from(
    'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==',
    'base64',
  ),
);
