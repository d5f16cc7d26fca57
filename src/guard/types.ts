/**
 * Shared types of the safety guard (Llama Guard 3). Everything a backend, the eval harness, the
 * server or the CLI needs to agree on lives here so the pieces can be built independently.
 *
 * Flow: a `Conversation` (+ optional image) is validated and rendered by `Guard` into a
 * `RenderedPrompt` (the exact prompt text of the model's chat template, plus the structured pieces an
 * HTTP chat backend needs); a `GuardBackend` turns it into P(unsafe) and, only when unsafe, the
 * model's generated text; `Guard` parses that text into a `GuardResult`.
 */

/** Which Llama Guard 3 model the prompt is rendered for. They differ in template and taxonomy. */
export type GuardModelVariant = '1b' | '8b' | 'vision';
export const GUARD_VARIANTS: readonly GuardModelVariant[] = ['1b', '8b', 'vision'];

/** Chat roles the guard accepts. Conversations must alternate, starting with `user`. */
export type Role = 'user' | 'assistant';

/**
 * Where an image comes from. A bare `Uint8Array` is raw file bytes; `base64` accepts plain base64
 * or a `data:image/...;base64,` URL. Validated (type by magic bytes, size) into a `GuardImage`.
 */
export type ImageSource =
  | Uint8Array
  | { readonly path: string }
  | { readonly bytes: Uint8Array }
  | { readonly base64: string }
  | GuardImage;

/** A validated image: its type was read from the magic bytes, its size is within the limit. */
export interface GuardImage {
  readonly mime: ImageMime;
  readonly bytes: Uint8Array;
}
export type ImageMime = 'image/png' | 'image/jpeg' | 'image/webp';

export interface TextPart {
  readonly type: 'text';
  readonly text: string;
}
export interface ImagePart {
  readonly type: 'image';
  readonly image: ImageSource;
}
export type ContentPart = TextPart | ImagePart;

export interface Message {
  readonly role: Role;
  /** A string, or typed parts (text and at most one image per request, in a user turn). */
  readonly content: string | readonly ContentPart[];
}
export type Conversation = readonly Message[];

/** One hazard category as it appears in the policy: `S1: Violent Crimes.` */
export interface Category {
  /** `S1`…`S14` for the built-in taxonomy; custom lists may use any code without `:` or newlines. */
  readonly code: string;
  readonly name: string;
  /** Extra policy text printed under the name (custom categories only; the stock prompts have none). */
  readonly description?: string;
}

/** Which turn is judged: the last user turn (prompt classification) or the last agent turn. */
export type ClassifiedRole = 'user' | 'agent';

/** A message as rendered: text parts joined, image parts kept as markers pointing at `prompt.image`. */
export type PromptPart = { readonly type: 'text'; readonly text: string } | { readonly type: 'image' };
export interface PromptMessage {
  readonly role: Role;
  readonly parts: readonly PromptPart[];
}

/** What a backend receives. `text` is byte-for-byte the model's chat template output. */
export interface RenderedPrompt {
  readonly variant: GuardModelVariant;
  /**
   * The full prompt, starting with `<|begin_of_text|>` (the 8B template puts a space before it)
   * and ending with the assistant header `<|start_header_id|>assistant<|end_header_id|>` — with no
   * blank line after it, as published, so models usually emit `\n\n` before the verdict.
   * Special tokens appear as their literal text (message text containing them is refused unless
   * allowed); a llama.cpp backend tokenizes with special tokens enabled and adds no second BOS.
   */
  readonly text: string;
  /**
   * A prefix of `text` that is identical for every request with the same variant, categories,
   * exclusions and classified role (the task line and the policy). A local backend may keep its KV
   * cache and evaluate only `text.slice(prefix.length)`. Always `text.startsWith(prefix)`.
   */
  readonly prefix: string;
  readonly classifiedRole: ClassifiedRole;
  /** The conversation as rendered (validated, alternating), for chat-completions style backends. */
  readonly messages: readonly PromptMessage[];
  /** The categories passed to the template (before exclusion) and the excluded codes. */
  readonly categories: readonly Category[];
  readonly excluded: readonly string[];
  /** The request's image (vision variant only), already validated. */
  readonly image?: GuardImage;
}

export interface ScoreOptions {
  /**
   * Decision threshold on P(unsafe). A backend must produce `generated` (the category line) when
   * `pUnsafe >= threshold` and may skip generation otherwise; that is the whole point of the split.
   */
  readonly threshold: number;
  /** Upper bound on tokens generated for the category list (default: backend's choice, ~20). */
  readonly maxTokens?: number;
  /** Deadline for this request; a backend rejects with GuardError BACKEND_TIMEOUT past it. */
  readonly timeoutMs?: number;
  readonly signal?: AbortSignal;
}

/**
 * A backend's answer. `pUnsafe` is the two-way softmax of the logits of the `safe` and `unsafe`
 * tokens at the verdict position (see `pUnsafeFromLogits` in score.ts); an HTTP backend reads the
 * same from top logprobs. Leading whitespace tokens the model emits first (the 1B often writes
 * `\n\n` before its verdict) are skipped: the verdict position is the first non-blank token.
 */
export interface BackendScore {
  readonly pUnsafe: number;
  /**
   * The model's output from the verdict on, e.g. `unsafe\nS1,S10` (leading blank lines allowed).
   * Required when `pUnsafe >= threshold`; may also be present otherwise (it is then ignored except
   * for `raw`). A backend that forces the verdict token must include it in this text.
   */
  readonly generated?: string;
  /** The two raw logits (or logprobs), for debugging and calibration. */
  readonly logits?: { readonly safe: number; readonly unsafe: number };
  /**
   * How `pUnsafe` was obtained, when it is not the plain two-token softmax: `logprobs-bounded` (an
   * HTTP server's top-N list lacked one verdict token, bounded from above) or `verdict` (no
   * logprobs at all: 1/0 from the generated verdict, a hard decision rather than a probability).
   */
  readonly scoreSource?: ScoreSource;
}

export type ScoreSource = 'logits' | 'logprobs' | 'logprobs-bounded' | 'verdict';

export interface BackendCapabilities {
  /** Accepts `RenderedPrompt.image`. Backends without it reject image prompts with IMAGE_UNSUPPORTED. */
  readonly vision: boolean;
}

export interface GuardBackend {
  readonly name: string;
  readonly capabilities: BackendCapabilities;
  scoreAndClassify(prompt: RenderedPrompt, options: ScoreOptions): Promise<BackendScore>;
  /** Optional batch path (a pool of sequences, one HTTP batch…); `Guard.checkMany` falls back to concurrent single calls. */
  scoreMany?(prompts: readonly RenderedPrompt[], options: ScoreOptions): Promise<BackendScore[]>;
  /** Releases models, contexts, sockets. Idempotent; calls after it reject with BACKEND_CLOSED. */
  close(): Promise<void>;
}

/** The moderation verdict. */
export interface GuardResult {
  /** `score < threshold`. */
  readonly safe: boolean;
  /** Category codes the model listed (only when unsafe), known ones, in the model's order. */
  readonly categories: string[];
  /** Codes the model listed that are not in the active policy: reported, not dropped. */
  readonly unknownCategories?: string[];
  /** P(unsafe) in [0, 1]. */
  readonly score: number;
  /** The model's generated text, when there was any. */
  readonly raw?: string;
  /** Copied from the backend when it reports how the score was obtained (see BackendScore). */
  readonly scoreSource?: ScoreSource;
}

export type GuardErrorCode =
  // input
  | 'EMPTY_CONVERSATION'
  | 'ROLE_ORDER'
  | 'EMPTY_MESSAGE'
  | 'UNKNOWN_CATEGORY'
  | 'INVALID_CATEGORIES'
  | 'INVALID_OPTION'
  | 'INVALID_CONVERSATION'
  | 'SPECIAL_TOKEN'
  // images
  | 'IMAGE_TYPE'
  | 'IMAGE_TOO_LARGE'
  | 'IMAGE_COUNT'
  | 'IMAGE_READ'
  | 'IMAGE_UNSUPPORTED'
  // backends
  | 'BACKEND_UNREACHABLE'
  | 'BACKEND_TIMEOUT'
  | 'BACKEND_HTTP'
  | 'BACKEND_CLOSED'
  | 'BACKEND_UNKNOWN'
  | 'MODEL_FILE'
  | 'CONTEXT_OVERFLOW'
  | 'BAD_RESPONSE'
  | 'ABORTED';

/** Codes that mean "the caller's input is wrong" (CLI exit 2, HTTP 400) rather than a runtime failure. */
export const GUARD_INPUT_ERRORS: ReadonlySet<GuardErrorCode> = new Set<GuardErrorCode>([
  'EMPTY_CONVERSATION',
  'ROLE_ORDER',
  'EMPTY_MESSAGE',
  'UNKNOWN_CATEGORY',
  'INVALID_CATEGORIES',
  'INVALID_OPTION',
  'INVALID_CONVERSATION',
  'SPECIAL_TOKEN',
  'IMAGE_TYPE',
  'IMAGE_TOO_LARGE',
  'IMAGE_COUNT',
  'IMAGE_READ',
  'IMAGE_UNSUPPORTED',
]);

/** Every error the guard throws on bad input or a failing backend. Branch on `code`, not the message. */
export class GuardError extends Error {
  readonly code: GuardErrorCode;
  constructor(code: GuardErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'GuardError';
    this.code = code;
  }
}

export function isGuardError(e: unknown, code?: GuardErrorCode): e is GuardError {
  return e instanceof GuardError && (code === undefined || e.code === code);
}
