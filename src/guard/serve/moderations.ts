/**
 * The OpenAI moderations API shape on top of Llama Guard.
 *
 * Request (`POST /v1/moderations`): `{ input, model? }` where `input` is
 * - a string → one result;
 * - an array of strings → one result per string, in order;
 * - an array of typed parts (`{type:"text", text}`, `{type:"image_url", image_url:{url}}`) → one
 *   result for the combined input (text with at most one image, the Vision model's limit), as
 *   OpenAI's multi-modal moderation does.
 * Orchard extension: `messages` (OpenAI chat messages, roles user/assistant) instead of `input`
 * judges the last turn of a conversation, e.g. an assistant response in context. Images are accepted
 * only as `data:` URLs: the server never fetches URLs or reads files for a caller. `model` is
 * accepted and ignored (the server serves one guard); the response names the served model.
 *
 * Response: `{ id, model, results: [{ flagged, categories, category_scores,
 * category_applied_input_types, llama_guard }] }`.
 *
 * Category keys. Every S-code of the active policy is a key (the model's own taxonomy). Where a
 * Llama Guard category has a clean OpenAI counterpart, the OpenAI name is a key too, flagged when any
 * of its S-codes is:
 *   S1 Violent Crimes → violence, illicit/violent     S2 Non-Violent Crimes → illicit
 *   S4 Child Exploitation → sexual/minors             S9 Indiscriminate Weapons → illicit/violent
 *   S10 Hate → hate                                   S11 Self-Harm → self-harm
 *   S12 Sexual Content → sexual
 * S3 Sex Crimes, S5 Defamation, S6 Specialized Advice, S7 Privacy, S8 Intellectual Property,
 * S13 Elections and S14 Code Interpreter Abuse have no OpenAI counterpart; OpenAI's harassment,
 * harassment/threatening, hate/threatening, self-harm/intent, self-harm/instructions and
 * violence/graphic have no Llama Guard one and are omitted (not reported as false).
 *
 * Scores. Llama Guard yields one P(unsafe), not a probability per category. A category's score is
 * that P(unsafe) when the model named the category, else 0 (an OpenAI name takes the max over its
 * S-codes); the overall P(unsafe) is in `llama_guard.score`.
 */
import { randomUUID } from 'node:crypto';
import { parseOpenAIConversation } from '../conversation.ts';
import type { Guard } from '../guard.ts';
import {
  type ContentPart,
  type Conversation,
  GuardError,
  type GuardResult,
  type Message,
  type ScoreSource,
} from '../types.ts';

/** Llama Guard S-code → OpenAI moderation category names it maps onto cleanly. */
export const OPENAI_CATEGORY_MAP: Readonly<Record<string, readonly string[]>> = {
  S1: ['violence', 'illicit/violent'],
  S2: ['illicit'],
  S4: ['sexual/minors'],
  S9: ['illicit/violent'],
  S10: ['hate'],
  S11: ['self-harm'],
  S12: ['sexual'],
};

/** A request error in OpenAI's error shape; `status` is the HTTP status to answer with. */
export class ModerationRequestError extends Error {
  readonly status: number;
  readonly type: string;
  readonly param: string | null;
  readonly code: string | null;
  constructor(
    status: number,
    message: string,
    options: { type?: string; param?: string | null; code?: string | null } = {},
  ) {
    super(message);
    this.name = 'ModerationRequestError';
    this.status = status;
    this.type = options.type ?? (status >= 500 ? 'server_error' : 'invalid_request_error');
    this.param = options.param ?? null;
    this.code = options.code ?? null;
  }

  toJSON(): { error: { message: string; type: string; param: string | null; code: string | null } } {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

const bad = (message: string, param: string, code = 'invalid_input') =>
  new ModerationRequestError(400, message, { param, code });

/** One unit the guard judges: a conversation and which input types it holds. */
export interface ModerationItem {
  readonly conversation: Conversation;
  readonly inputTypes: readonly ('text' | 'image')[];
}

const notDataUrl = (param: string) =>
  bad(
    'only data: URLs are accepted for images (the server does not fetch URLs or read files)',
    param,
    'image_url_not_data',
  );

function dataUrlImage(url: unknown, param: string): ContentPart {
  if (typeof url !== 'string' || url === '') throw bad('image_url needs a url', param);
  if (!url.startsWith('data:')) throw notDataUrl(param);
  return { type: 'image', image: { base64: url } };
}

function typedParts(parts: readonly unknown[], param: string): ContentPart[] {
  return parts.map((p, i) => {
    const part = p as { type?: unknown; text?: unknown; image_url?: unknown };
    if (part?.type === 'text') {
      if (typeof part.text !== 'string')
        throw bad('a text part needs a string "text"', `${param}[${i}].text`);
      return { type: 'text', text: part.text };
    }
    if (part?.type === 'image_url') {
      const url =
        typeof part.image_url === 'object' && part.image_url !== null
          ? (part.image_url as { url?: unknown }).url
          : part.image_url;
      return dataUrlImage(url, `${param}[${i}].image_url`);
    }
    throw bad(
      `expected {"type":"text","text":...} or {"type":"image_url","image_url":{"url":...}}, got ${JSON.stringify(part?.type ?? p)}`,
      `${param}[${i}]`,
    );
  });
}

function typesOf(conversation: Conversation): ('text' | 'image')[] {
  const hasImage = conversation.some(
    (m) => typeof m.content !== 'string' && m.content.some((p) => p.type === 'image'),
  );
  return hasImage ? ['text', 'image'] : ['text'];
}

export interface ParseLimits {
  /** Most strings in one `input` array [64]. */
  readonly maxInputs?: number;
}

/** Validates a request body into the items to judge; every problem is a 400 in OpenAI's shape. */
export function parseModerationRequest(body: unknown, limits: ParseLimits = {}): ModerationItem[] {
  const maxInputs = limits.maxInputs ?? 64;
  if (body === null || typeof body !== 'object' || Array.isArray(body))
    throw bad('the request body must be a JSON object', '(body)', 'invalid_body');
  const b = body as Record<string, unknown>;
  for (const key of Object.keys(b))
    if (key !== 'input' && key !== 'model' && key !== 'messages')
      throw bad(`unknown field '${key}'`, key, 'unknown_parameter');
  if (b.model !== undefined && typeof b.model !== 'string') throw bad('model must be a string', 'model');
  if (b.messages !== undefined) {
    if (b.input !== undefined) throw bad("give either 'input' or 'messages', not both", 'messages');
    let messages: Message[];
    try {
      messages = parseOpenAIConversation(b.messages);
    } catch (e) {
      if (e instanceof GuardError) throw bad(e.message, 'messages', e.code.toLowerCase());
      throw e;
    }
    const conversation = messages.map((m, i): Message => {
      if (typeof m.content === 'string') return m;
      // parseOpenAIConversation also resolves file paths; a server must not read local files.
      for (const p of m.content)
        if (p.type === 'image' && !('base64' in (p.image as object))) throw notDataUrl(`messages[${i}]`);
      return m;
    });
    return [{ conversation, inputTypes: typesOf(conversation) }];
  }
  const input = b.input;
  if (input === undefined) throw bad("missing required field 'input'", 'input', 'missing_input');
  if (typeof input === 'string')
    return [{ conversation: [{ role: 'user', content: input }], inputTypes: ['text'] }];
  if (!Array.isArray(input))
    throw bad('input must be a string, an array of strings or an array of typed parts', 'input');
  if (input.length === 0) throw bad('input is an empty array', 'input', 'empty_input');
  if (input.every((x) => typeof x === 'string')) {
    if (input.length > maxInputs)
      throw bad(`at most ${maxInputs} inputs per request, got ${input.length}`, 'input', 'too_many_inputs');
    return input.map((text: string) => ({
      conversation: [{ role: 'user', content: text }],
      inputTypes: ['text'],
    }));
  }
  if (input.every((x) => typeof x === 'object' && x !== null && !Array.isArray(x))) {
    const content = typedParts(input, 'input');
    const conversation: Conversation = [{ role: 'user', content }];
    return [{ conversation, inputTypes: typesOf(conversation) }];
  }
  throw bad('input arrays must hold only strings or only typed parts', 'input', 'mixed_input');
}

export interface ModerationResult {
  flagged: boolean;
  categories: Record<string, boolean>;
  category_scores: Record<string, number>;
  category_applied_input_types: Record<string, ('text' | 'image')[]>;
  llama_guard: {
    score: number;
    categories: string[];
    unknown_categories?: string[];
    score_source?: ScoreSource;
  };
}

/** One result in OpenAI's shape for a guard verdict (see the module comment for the mapping). */
export function toModerationResult(
  result: GuardResult,
  activeCodes: readonly string[],
  inputTypes: readonly ('text' | 'image')[],
): ModerationResult {
  const categories: Record<string, boolean> = {};
  const scores: Record<string, number> = {};
  const applied: Record<string, ('text' | 'image')[]> = {};
  const named = new Set(result.safe ? [] : result.categories);
  const set = (key: string, flagged: boolean) => {
    categories[key] = (categories[key] ?? false) || flagged;
    scores[key] = Math.max(scores[key] ?? 0, flagged ? result.score : 0);
    applied[key] = [...inputTypes];
  };
  for (const code of activeCodes) set(code, named.has(code));
  for (const [code, names] of Object.entries(OPENAI_CATEGORY_MAP)) {
    if (!activeCodes.includes(code)) continue;
    for (const name of names) set(name, named.has(code));
  }
  return {
    flagged: !result.safe,
    categories,
    category_scores: scores,
    category_applied_input_types: applied,
    llama_guard: {
      score: result.score,
      categories: result.categories,
      ...(result.unknownCategories === undefined ? {} : { unknown_categories: result.unknownCategories }),
      ...(result.scoreSource === undefined ? {} : { score_source: result.scoreSource }),
    },
  };
}

export interface ModerationResponse {
  id: string;
  model: string;
  results: ModerationResult[];
}

/** Maps a guard/backend failure to an HTTP error in OpenAI's shape. */
export function errorFor(e: unknown): ModerationRequestError {
  if (e instanceof ModerationRequestError) return e;
  if (e instanceof GuardError) {
    const code = e.code.toLowerCase();
    switch (e.code) {
      case 'BACKEND_TIMEOUT':
        return new ModerationRequestError(504, `the guard model did not answer in time: ${e.message}`, {
          code,
        });
      case 'BACKEND_UNREACHABLE':
      case 'BACKEND_HTTP':
      case 'BAD_RESPONSE':
        return new ModerationRequestError(502, `the guard model failed: ${e.message}`, { code });
      case 'BACKEND_CLOSED':
        return new ModerationRequestError(503, 'the server is shutting down', { code });
      case 'ABORTED':
        return new ModerationRequestError(499, 'request aborted', { code });
      case 'IMAGE_TOO_LARGE':
        return new ModerationRequestError(413, e.message, { param: 'input', code });
      default:
        return new ModerationRequestError(400, e.message, { param: 'input', code });
    }
  }
  return new ModerationRequestError(500, 'internal error', { code: 'internal_error' });
}

/** Judges every item of a parsed request and builds the response. */
export async function moderate(
  guard: Guard,
  items: readonly ModerationItem[],
  model: string,
  signal?: AbortSignal,
): Promise<ModerationResponse> {
  const results = await guard.checkMany(
    items.map((it) => ({ input: it.conversation })),
    { concurrency: 4, ...(signal === undefined ? {} : { signal }) },
  );
  const active = guard.policy.active.map((c) => c.code);
  return {
    id: `modr-${randomUUID().replace(/-/g, '')}`,
    model,
    results: results.map((r, i) => toModerationResult(r, active, items[i]?.inputTypes ?? ['text'])),
  };
}
