/**
 * Ollama backend: POST /api/generate with *our* rendered prompt (`raw: true`), because Ollama's stock
 * template for the Llama Guard models always judges the user turn and ignores custom policies.
 *
 * Request: `{model, prompt, raw: true, stream: false, options: {temperature: 0, num_predict},
 * logprobs: true, top_logprobs: N, images?: [base64]}`. The leading `<|begin_of_text|>` is dropped
 * by default since Ollama's tokenizer adds BOS itself (`keepBos: true` keeps it).
 *
 * Score: Ollama servers with logprob support (added to /api/generate in late 2025) answer with
 * `logprobs: [{token, logprob, top_logprobs: [{token, logprob}]}]`; the score is read from them as
 * for OpenAI-compatible servers (verdict-logprobs.ts). Older servers ignore the request fields and
 * return none: the score then falls back to **1 or 0 from the generated verdict**, labelled
 * `scoreSource: 'verdict'` — a hard decision, not a probability (AUPRC over such scores is the
 * precision/recall of one operating point, not a curve).
 *
 * Images: sent base64 in `images`; our Vision prompt already holds the `<|image|>` marker. Whether a
 * given Ollama version places the image at that marker in raw mode was not verified here (no Ollama
 * server with the Vision model was available); prefer an OpenAI-compatible chat endpoint for images.
 */
import { z } from 'zod';
import { imageToBase64 } from '../image.ts';
import type { BackendCapabilities, GuardBackend, RenderedPrompt, ScoreOptions } from '../types.ts';
import { GuardError } from '../types.ts';
import { checkEndpoint, checkPositiveInt, joinUrl, parseShape, postJson, withoutBos } from './http.ts';
import type { HttpBackendScore } from './openai.ts';
import type { BackendFactoryOptions } from './registry.ts';
import { logprobScore } from './verdict-logprobs.ts';

export interface OllamaBackendOptions {
  /** Server base URL (`http://127.0.0.1:11434`) or the full `/api/generate` URL. */
  readonly endpoint: string;
  /** Ollama model name, e.g. `llama-guard3:1b`. */
  readonly model: string;
  /** Per-request deadline in ms when ScoreOptions has none [60000: Ollama may load the model first]. */
  readonly timeoutMs?: number | undefined;
  /** Top logprobs requested per token, 1–20 [10]. */
  readonly topLogprobs?: number | undefined;
  /** Default `num_predict` when ScoreOptions has none [20]. */
  readonly maxTokens?: number | undefined;
  readonly keepBos?: boolean | undefined;
  /** `keep_alive` passed through (e.g. `30m`), unset by default. */
  readonly keepAlive?: string | undefined;
  readonly headers?: Readonly<Record<string, string>> | undefined;
}

export function resolveOllamaUrl(endpoint: string): string {
  const clean = endpoint.replace(/\/+$/, '');
  return /\/api\/generate$/.test(clean) ? clean : joinUrl(clean, '/api/generate');
}

const logprobEntry = z.object({
  token: z.string(),
  logprob: z.number(),
  top_logprobs: z
    .array(z.object({ token: z.string(), logprob: z.number() }))
    .nullable()
    .optional(),
});
const generateResponse = z.object({
  response: z.string(),
  done: z.boolean().optional(),
  logprobs: z.array(logprobEntry).nullable().optional(),
});

/** 1 / 0 from the first non-blank line of the model's answer (the fallback score). */
export function verdictScore(text: string): 0 | 1 {
  const first = text
    .split('\n')
    .map((l) => l.trim())
    .find((l) => l !== '');
  if (first === 'unsafe') return 1;
  if (first === 'safe') return 0;
  throw new GuardError(
    'BAD_RESPONSE',
    `the model's answer does not start with 'safe' or 'unsafe': ${JSON.stringify(text.slice(0, 120))}`,
  );
}

export class OllamaBackend implements GuardBackend {
  readonly name: string;
  readonly capabilities: BackendCapabilities = { vision: true };
  private readonly url: string;
  private readonly model: string;
  private readonly timeoutMs: number;
  private readonly topLogprobs: number;
  private readonly maxTokens: number;
  private readonly keepBos: boolean;
  private readonly keepAlive: string | undefined;
  private readonly headers: Record<string, string>;
  private closed = false;

  constructor(options: OllamaBackendOptions) {
    checkEndpoint(options.endpoint, 'ollama');
    if (options.model.trim() === '')
      throw new GuardError(
        'INVALID_OPTION',
        'the ollama backend needs the model name (e.g. llama-guard3:1b)',
      );
    this.url = resolveOllamaUrl(options.endpoint);
    this.model = options.model;
    this.name = `ollama(${options.model})`;
    this.timeoutMs = checkPositiveInt('timeoutMs', options.timeoutMs, 60_000, 3_600_000);
    this.topLogprobs = checkPositiveInt('topLogprobs', options.topLogprobs, 10, 20);
    this.maxTokens = checkPositiveInt('maxTokens', options.maxTokens, 20, 4096);
    this.keepBos = options.keepBos === true;
    this.keepAlive = options.keepAlive;
    this.headers = { ...options.headers };
  }

  requestBody(prompt: RenderedPrompt, options: ScoreOptions): Record<string, unknown> {
    const numPredict = checkPositiveInt('maxTokens', options.maxTokens, this.maxTokens, 4096);
    const text = this.keepBos ? prompt.text : withoutBos(prompt.text);
    return {
      model: this.model,
      prompt: text,
      raw: true,
      stream: false,
      options: { temperature: 0, num_predict: numPredict },
      logprobs: true,
      top_logprobs: this.topLogprobs,
      ...(prompt.image === undefined ? {} : { images: [imageToBase64(prompt.image)] }),
      ...(this.keepAlive === undefined ? {} : { keep_alive: this.keepAlive }),
    };
  }

  async scoreAndClassify(prompt: RenderedPrompt, options: ScoreOptions): Promise<HttpBackendScore> {
    if (this.closed) throw new GuardError('BACKEND_CLOSED', `${this.name} is closed`);
    const json = await postJson({
      url: this.url,
      body: this.requestBody(prompt, options),
      headers: this.headers,
      timeoutMs: options.timeoutMs ?? this.timeoutMs,
      signal: options.signal,
    });
    const { response, logprobs } = parseShape(generateResponse, json, this.url);
    if (logprobs === null || logprobs === undefined || logprobs.length === 0) {
      const score = verdictScore(response);
      return { pUnsafe: score, generated: response, scoreSource: 'verdict' };
    }
    return logprobScore(
      logprobs.map((e) => ({ token: e.token, logprob: e.logprob, top: e.top_logprobs ?? [] })),
      response,
    );
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}

/** Registry entry point (see registry.ts): `--backend ollama --endpoint URL --model-name NAME`. */
export async function createGuardBackend(options: BackendFactoryOptions): Promise<GuardBackend> {
  return new OllamaBackend({
    endpoint: checkEndpoint(options.endpoint, 'ollama'),
    model: options.modelName ?? '',
    timeoutMs: options.timeoutMs,
  });
}
