/**
 * OpenAI-compatible HTTP backend (vLLM, llama.cpp server, TGI, … serving Llama Guard 3).
 *
 * Two modes, chosen by the endpoint URL:
 * - **chat** (`…/v1` or `…/v1/chat/completions`): POST /chat/completions with the conversation as
 *   chat messages; the *server* applies the model's chat template, which judges the role of the last
 *   message. Images go as `image_url` parts with a `data:` URL (Llama Guard 3 Vision). A custom or
 *   reduced policy is passed as `chat_template_kwargs` (`categories`, `excluded_category_keys`: the
 *   variables of the published templates; vLLM forwards them), which only servers that support that
 *   field accept; the stock policy sends no such field.
 * - **completions** (`…/v1/completions`): POST /completions with *our* rendered prompt, byte for
 *   byte, so the policy text, custom descriptions and the classified role are exactly ours. The
 *   leading `<|begin_of_text|>` is dropped by default because servers add BOS themselves when they
 *   tokenize (vLLM, llama.cpp); `keepBos: true` sends it. Text only: no image channel exists here.
 *
 * Both request greedy decoding (temperature 0), a few tokens (the verdict and the category line) and
 * the top-N logprobs of each generated token; the score is read from them (verdict-logprobs.ts).
 */
import { z } from 'zod';
import { imageToDataUrl } from '../image.ts';
import { categoryText, defaultCategories } from '../taxonomy.ts';
import {
  type BackendCapabilities,
  type BackendScore,
  type GuardBackend,
  GuardError,
  type RenderedPrompt,
  type ScoreOptions,
} from '../types.ts';
import { checkEndpoint, checkPositiveInt, joinUrl, parseShape, postJson, withoutBos } from './http.ts';
import type { BackendFactoryOptions } from './registry.ts';
import { type GeneratedPosition, logprobScore } from './verdict-logprobs.ts';

export type OpenAiMode = 'chat' | 'completions';

export interface OpenAiBackendOptions {
  /** Base URL (`http://host:8000/v1`, chat mode) or a full `/chat/completions` or `/completions` URL. */
  readonly endpoint: string;
  /** The served model name sent as `model`. */
  readonly model: string;
  readonly apiKey?: string | undefined;
  /** Per-request deadline in ms when ScoreOptions has none [30000]. */
  readonly timeoutMs?: number | undefined;
  /** Top logprobs requested per token, 1–20 [10]. */
  readonly topLogprobs?: number | undefined;
  /** Default `max_tokens` when ScoreOptions has none [20]. */
  readonly maxTokens?: number | undefined;
  /** Completions mode: send the rendered prompt's `<|begin_of_text|>` instead of letting the server add BOS. */
  readonly keepBos?: boolean | undefined;
  readonly headers?: Readonly<Record<string, string>> | undefined;
}

/** Fields a scored answer carries beyond BackendScore, for debugging and reports. */
export interface HttpBackendScore extends BackendScore {
  /**
   * How `pUnsafe` was obtained: `logprobs` (both verdict tokens in the top N), `logprobs-bounded`
   * (one missing and bounded, see verdict-logprobs.ts) or `verdict` (no logprobs at all: 1 or 0
   * from the generated verdict, a fallback only the Ollama backend uses).
   */
  readonly scoreSource: 'logprobs' | 'logprobs-bounded' | 'verdict';
}

const DEFAULT_TIMEOUT_MS = 30_000;
const DEFAULT_TOP_LOGPROBS = 10;
const DEFAULT_MAX_TOKENS = 20;

/** Resolves the mode and the URL posted to from the endpoint the user gave. */
export function resolveOpenAiEndpoint(endpoint: string): { mode: OpenAiMode; url: string } {
  const clean = endpoint.replace(/\/+$/, '');
  if (/\/chat\/completions$/.test(clean)) return { mode: 'chat', url: clean };
  if (/\/completions$/.test(clean)) return { mode: 'completions', url: clean };
  return { mode: 'chat', url: joinUrl(clean, '/chat/completions') };
}

type ChatContent =
  | string
  | Array<{ type: 'text'; text: string } | { type: 'image_url'; image_url: { url: string } }>;

/** The rendered conversation as OpenAI chat messages (string content unless there is an image). */
export function chatMessages(prompt: RenderedPrompt): Array<{ role: string; content: ChatContent }> {
  return prompt.messages.map((m) => {
    const hasImage = m.parts.some((p) => p.type === 'image');
    if (!hasImage) {
      return { role: m.role, content: m.parts.map((p) => (p.type === 'text' ? p.text : '')).join('') };
    }
    const content: ChatContent = m.parts.map((p) => {
      if (p.type === 'text') return { type: 'text' as const, text: p.text };
      if (prompt.image === undefined)
        throw new GuardError('INVALID_CONVERSATION', 'an image part has no image attached to the prompt');
      return { type: 'image_url' as const, image_url: { url: imageToDataUrl(prompt.image) } };
    });
    return { role: m.role, content };
  });
}

/**
 * `chat_template_kwargs` for a policy that differs from the template's defaults, or undefined for the
 * stock policy (so plain OpenAI-compatible servers that reject unknown fields still work). The values
 * are what the template prints after `S1: `: the name with its full stop, then any description lines.
 */
export function templateKwargs(
  prompt: RenderedPrompt,
): { categories?: Record<string, string>; excluded_category_keys?: string[] } | undefined {
  const stock = defaultCategories(prompt.variant);
  const isStock =
    prompt.categories.length === stock.length &&
    prompt.categories.every((c, i) => {
      const s = stock[i];
      return s !== undefined && c.code === s.code && categoryText(c) === categoryText(s);
    });
  const out: { categories?: Record<string, string>; excluded_category_keys?: string[] } = {};
  if (!isStock) out.categories = Object.fromEntries(prompt.categories.map((c) => [c.code, categoryText(c)]));
  if (prompt.excluded.length > 0) out.excluded_category_keys = [...prompt.excluded];
  return Object.keys(out).length === 0 ? undefined : out;
}

// Response shapes (only the fields we read; servers add more).
const topEntry = z.object({ token: z.string(), logprob: z.number() });
const chatResponse = z.object({
  choices: z
    .array(
      z.object({
        message: z.object({ content: z.string().nullable() }),
        logprobs: z
          .object({
            content: z
              .array(z.object({ token: z.string(), logprob: z.number(), top_logprobs: z.array(topEntry) }))
              .nullable(),
          })
          .nullable()
          .optional(),
      }),
    )
    .min(1),
});
const completionResponse = z.object({
  choices: z
    .array(
      z.object({
        text: z.string(),
        logprobs: z
          .object({
            tokens: z.array(z.string()),
            token_logprobs: z.array(z.number().nullable()),
            top_logprobs: z.array(z.record(z.string(), z.number()).nullable()),
          })
          .nullable()
          .optional(),
      }),
    )
    .min(1),
});

export class OpenAiBackend implements GuardBackend {
  readonly name: string;
  readonly capabilities: BackendCapabilities;
  readonly mode: OpenAiMode;
  private readonly url: string;
  private readonly model: string;
  private readonly headers: Record<string, string>;
  private readonly timeoutMs: number;
  private readonly topLogprobs: number;
  private readonly maxTokens: number;
  private readonly keepBos: boolean;
  private closed = false;

  constructor(options: OpenAiBackendOptions) {
    checkEndpoint(options.endpoint, 'openai');
    if (options.model.trim() === '')
      throw new GuardError('INVALID_OPTION', 'the openai backend needs the served model name');
    const { mode, url } = resolveOpenAiEndpoint(options.endpoint);
    this.mode = mode;
    this.url = url;
    this.model = options.model;
    this.name = `openai-${mode}(${options.model})`;
    this.capabilities = { vision: mode === 'chat' };
    this.headers = { ...options.headers };
    if (options.apiKey !== undefined && options.apiKey !== '')
      this.headers.authorization = `Bearer ${options.apiKey}`;
    this.timeoutMs = checkPositiveInt('timeoutMs', options.timeoutMs, DEFAULT_TIMEOUT_MS, 3_600_000);
    this.topLogprobs = checkPositiveInt('topLogprobs', options.topLogprobs, DEFAULT_TOP_LOGPROBS, 20);
    this.maxTokens = checkPositiveInt('maxTokens', options.maxTokens, DEFAULT_MAX_TOKENS, 4096);
    this.keepBos = options.keepBos === true;
  }

  /** The exact JSON body sent for a prompt (exported for tests and `guard render`-style debugging). */
  requestBody(prompt: RenderedPrompt, options: ScoreOptions): Record<string, unknown> {
    const maxTokens = checkPositiveInt('maxTokens', options.maxTokens, this.maxTokens, 4096);
    if (this.mode === 'completions') {
      if (prompt.image !== undefined)
        throw new GuardError(
          'IMAGE_UNSUPPORTED',
          'the completions endpoint carries text only; send images through the chat endpoint (…/v1/chat/completions)',
        );
      const text = this.keepBos ? prompt.text : withoutBos(prompt.text);
      return {
        model: this.model,
        prompt: text,
        max_tokens: maxTokens,
        temperature: 0,
        logprobs: this.topLogprobs,
        stream: false,
      };
    }
    const last = prompt.messages[prompt.messages.length - 1];
    // The published template judges the role of the last message; a chat request cannot ask otherwise.
    const judged = last?.role === 'assistant' ? 'agent' : 'user';
    if (judged !== prompt.classifiedRole)
      throw new GuardError(
        'INVALID_OPTION',
        `a chat endpoint judges the last message (${judged}); classifying the ${prompt.classifiedRole} turn needs the completions endpoint`,
      );
    const kwargs = templateKwargs(prompt);
    return {
      model: this.model,
      messages: chatMessages(prompt),
      max_tokens: maxTokens,
      temperature: 0,
      logprobs: true,
      top_logprobs: this.topLogprobs,
      stream: false,
      ...(kwargs === undefined ? {} : { chat_template_kwargs: kwargs }),
    };
  }

  async scoreAndClassify(prompt: RenderedPrompt, options: ScoreOptions): Promise<HttpBackendScore> {
    if (this.closed) throw new GuardError('BACKEND_CLOSED', `${this.name} is closed`);
    const body = this.requestBody(prompt, options);
    const json = await postJson({
      url: this.url,
      body,
      headers: this.headers,
      timeoutMs: options.timeoutMs ?? this.timeoutMs,
      signal: options.signal,
    });
    let generated: string;
    let positions: GeneratedPosition[];
    if (this.mode === 'chat') {
      const choice = parseShape(chatResponse, json, this.url).choices[0];
      generated = choice?.message.content ?? '';
      const content = choice?.logprobs?.content;
      if (content === null || content === undefined)
        throw new GuardError(
          'BAD_RESPONSE',
          `${this.url} returned no logprobs (does the server support them?)`,
        );
      positions = content.map((c) => ({ token: c.token, logprob: c.logprob, top: c.top_logprobs }));
    } else {
      const choice = parseShape(completionResponse, json, this.url).choices[0];
      generated = choice?.text ?? '';
      const lp = choice?.logprobs;
      if (lp === null || lp === undefined)
        throw new GuardError(
          'BAD_RESPONSE',
          `${this.url} returned no logprobs (does the server support them?)`,
        );
      positions = lp.tokens.map((token, i) => ({
        token,
        logprob: lp.token_logprobs[i] ?? Number.NEGATIVE_INFINITY,
        top: Object.entries(lp.top_logprobs[i] ?? {}).map(([t, l]) => ({ token: t, logprob: l })),
      }));
    }
    return logprobScore(positions, generated);
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}

/** Registry entry point (see registry.ts): `--backend openai --endpoint URL --model-name NAME`. */
export async function createGuardBackend(options: BackendFactoryOptions): Promise<GuardBackend> {
  return new OpenAiBackend({
    endpoint: checkEndpoint(options.endpoint, 'openai'),
    model: options.modelName ?? '',
    apiKey: options.apiKey,
    timeoutMs: options.timeoutMs,
  });
}
