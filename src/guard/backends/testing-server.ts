/**
 * A local HTTP server for testing the guard's HTTP backends without a model server.
 *
 * It records every request, checks its exact shape against what the real APIs expect (method,
 * path, JSON content type, the exact set of body fields and their types and values: see the
 * `expect*` checkers) and answers with a scripted reply: a JSON body, a status, a delay, a
 * malformed body, a dropped connection or no answer at all (for timeouts). A request whose shape is
 * wrong is answered 400 and its problems are kept in `shapeProblems`, so a test fails on them even
 * when the backend swallows the error.
 *
 * The `fake*` responders play a Llama Guard model: `decide(promptText)` returns the verdict
 * logprobs and categories, and the responder wraps them in each API's answer format.
 */
import { createServer, type IncomingHttpHeaders, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { preparePrompt } from '../guard.ts';
import type { Category, Conversation, GuardModelVariant, ImageSource, RenderedPrompt } from '../types.ts';

export interface RecordedRequest {
  readonly method: string;
  readonly path: string;
  readonly headers: IncomingHttpHeaders;
  readonly rawBody: string;
  /** Parsed JSON body, or undefined when the body is not JSON. */
  readonly body: unknown;
}

export type Reply =
  | {
      readonly status?: number;
      /** Serialized as JSON unless `text` is given. */
      readonly json?: unknown;
      /** Raw body text (for malformed answers). */
      readonly text?: string;
      readonly delayMs?: number;
    }
  | { readonly destroy: true }
  | { readonly hang: true };

export type Handler = (req: RecordedRequest) => Reply | Promise<Reply>;
/** Returns the problems with a request's shape (empty when it is right). */
export type ShapeCheck = (req: RecordedRequest) => string[];

export interface TestServer {
  /** `http://127.0.0.1:<port>` */
  readonly url: string;
  readonly requests: RecordedRequest[];
  readonly shapeProblems: string[];
  close(): Promise<void>;
}

export async function startTestServer(handler: Handler, check?: ShapeCheck): Promise<TestServer> {
  const requests: RecordedRequest[] = [];
  const shapeProblems: string[] = [];
  const pending = new Set<ServerResponse>();
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const rawBody = Buffer.concat(chunks).toString('utf8');
      let body: unknown;
      try {
        body = JSON.parse(rawBody) as unknown;
      } catch {
        body = undefined;
      }
      const recorded: RecordedRequest = {
        method: req.method ?? '',
        path: req.url ?? '',
        headers: req.headers,
        rawBody,
        body,
      };
      requests.push(recorded);
      const problems = check === undefined ? [] : check(recorded);
      if (problems.length > 0) {
        shapeProblems.push(...problems);
        res.writeHead(400, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: { message: `bad request shape: ${problems.join('; ')}` } }));
        return;
      }
      void Promise.resolve(handler(recorded)).then(
        (reply) => send(res, reply),
        (e: unknown) => {
          res.writeHead(500, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ error: { message: `test handler failed: ${String(e)}` } }));
        },
      );
    });
  });
  const send = (res: ServerResponse, reply: Reply): void => {
    if ('destroy' in reply) {
      res.socket?.destroy();
      return;
    }
    if ('hang' in reply) {
      pending.add(res);
      return;
    }
    const write = () => {
      const isText = reply.text !== undefined;
      res.writeHead(reply.status ?? 200, { 'content-type': isText ? 'text/plain' : 'application/json' });
      res.end(isText ? reply.text : JSON.stringify(reply.json ?? {}));
    };
    if (reply.delayMs !== undefined && reply.delayMs > 0) {
      const timer = setTimeout(write, reply.delayMs);
      res.on('close', () => clearTimeout(timer));
    } else write();
  };
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    shapeProblems,
    close: () =>
      new Promise<void>((resolve) => {
        for (const res of pending) res.socket?.destroy();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

// ---------------------------------------------------------------------------------------------
// Exact request shapes.

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** Problems with `body` against an exact field list: every required field present, nothing else. */
function exactFields(
  body: unknown,
  required: Record<string, (v: unknown) => boolean>,
  optional: Record<string, (v: unknown) => boolean> = {},
): string[] {
  if (!isObject(body)) return ['body is not a JSON object'];
  const problems: string[] = [];
  for (const [key, ok] of Object.entries(required)) {
    if (!(key in body)) problems.push(`missing field '${key}'`);
    else if (!ok(body[key])) problems.push(`bad value for '${key}': ${JSON.stringify(body[key])}`);
  }
  for (const [key, value] of Object.entries(body)) {
    if (key in required) continue;
    const ok = optional[key];
    if (ok === undefined) problems.push(`unexpected field '${key}'`);
    else if (!ok(value)) problems.push(`bad value for '${key}': ${JSON.stringify(value)}`);
  }
  return problems;
}

function common(req: RecordedRequest, path: string): string[] {
  const problems: string[] = [];
  if (req.method !== 'POST') problems.push(`method ${req.method}, expected POST`);
  if (req.path !== path) problems.push(`path ${req.path}, expected ${path}`);
  const ct = req.headers['content-type'] ?? '';
  if (!ct.startsWith('application/json')) problems.push(`content-type '${ct}', expected application/json`);
  if (req.body === undefined) problems.push('body is not JSON');
  return problems;
}

const isString = (v: unknown) => typeof v === 'string' && v !== '';
const isPosInt = (v: unknown) => Number.isInteger(v) && (v as number) > 0;
const isZero = (v: unknown) => v === 0;
const isFalse = (v: unknown) => v === false;
const isTrue = (v: unknown) => v === true;

function isChatMessages(v: unknown): boolean {
  if (!Array.isArray(v) || v.length === 0) return false;
  return v.every((m, i) => {
    if (!isObject(m) || Object.keys(m).sort().join(',') !== 'content,role') return false;
    if (m.role !== (i % 2 === 0 ? 'user' : 'assistant')) return false;
    if (typeof m.content === 'string') return true;
    if (!Array.isArray(m.content)) return false;
    return m.content.every(
      (p: unknown) =>
        isObject(p) &&
        ((p.type === 'text' && typeof p.text === 'string' && Object.keys(p).length === 2) ||
          (p.type === 'image_url' &&
            Object.keys(p).length === 2 &&
            isObject(p.image_url) &&
            Object.keys(p.image_url).length === 1 &&
            typeof p.image_url.url === 'string' &&
            /^data:image\/(png|jpeg|webp);base64,[A-Za-z0-9+/]+=*$/.test(p.image_url.url))),
    );
  });
}

function isTemplateKwargs(v: unknown): boolean {
  if (!isObject(v)) return false;
  for (const [key, value] of Object.entries(v)) {
    if (key === 'categories') {
      if (!isObject(value) || !Object.values(value).every((n) => typeof n === 'string')) return false;
    } else if (key === 'excluded_category_keys') {
      if (!Array.isArray(value) || !value.every((c) => typeof c === 'string')) return false;
    } else return false;
  }
  return Object.keys(v).length > 0;
}

/** POST {base}/chat/completions as the OpenAI-compatible backend must send it. */
export function expectOpenAiChat(path = '/v1/chat/completions'): ShapeCheck {
  return (req) => [
    ...common(req, path),
    ...exactFields(
      req.body,
      {
        model: isString,
        messages: isChatMessages,
        max_tokens: isPosInt,
        temperature: isZero,
        logprobs: isTrue,
        top_logprobs: (v) => isPosInt(v) && (v as number) <= 20,
        stream: isFalse,
      },
      { chat_template_kwargs: isTemplateKwargs },
    ),
  ];
}

/** POST {base}/completions (raw prompt). */
export function expectOpenAiCompletion(path = '/v1/completions'): ShapeCheck {
  return (req) => [
    ...common(req, path),
    ...exactFields(req.body, {
      model: isString,
      prompt: isString,
      max_tokens: isPosInt,
      temperature: isZero,
      logprobs: (v) => isPosInt(v) && (v as number) <= 20,
      stream: isFalse,
    }),
  ];
}

/** POST /api/generate in raw mode. */
export function expectOllamaGenerate(path = '/api/generate'): ShapeCheck {
  return (req) => [
    ...common(req, path),
    ...exactFields(
      req.body,
      {
        model: isString,
        prompt: isString,
        raw: isTrue,
        stream: isFalse,
        options: (v) =>
          isObject(v) &&
          Object.keys(v).sort().join(',') === 'num_predict,temperature' &&
          v.temperature === 0 &&
          isPosInt(v.num_predict),
        logprobs: isTrue,
        top_logprobs: (v) => isPosInt(v) && (v as number) <= 20,
      },
      {
        images: (v) =>
          Array.isArray(v) && v.length === 1 && typeof v[0] === 'string' && /^[A-Za-z0-9+/]+=*$/.test(v[0]),
        keep_alive: isString,
      },
    ),
  ];
}

// ---------------------------------------------------------------------------------------------
// Fake Llama Guard answers.

/** What the fake model "decides" for one request. */
export interface FakeDecision {
  /** Logprobs of the verdict tokens at the verdict position; omit one to leave it out of the top N. */
  readonly safe?: number;
  readonly unsafe?: number;
  /** Other alternatives listed at the verdict position. */
  readonly others?: ReadonlyArray<{ token: string; logprob: number }>;
  /** Category line written after `unsafe` (e.g. `S1,S10`). */
  readonly categories?: string;
  /** Blank tokens generated before the verdict (the 1B writes `\n\n` first sometimes). */
  readonly leadingBlank?: boolean;
}

/** The full text of the request: the raw prompt, or the chat messages' text parts joined. */
export function requestText(body: unknown): string {
  if (!isObject(body)) return '';
  if (typeof body.prompt === 'string') return body.prompt;
  if (Array.isArray(body.messages)) {
    return body.messages
      .map((m: unknown) => {
        if (!isObject(m)) return '';
        if (typeof m.content === 'string') return m.content;
        if (Array.isArray(m.content))
          return m.content
            .map((p: unknown) => (isObject(p) && typeof p.text === 'string' ? p.text : ''))
            .join('');
        return '';
      })
      .join('\n');
  }
  return '';
}

interface FakeToken {
  token: string;
  logprob: number;
  top: Array<{ token: string; logprob: number }>;
}

/** The generated token sequence for a decision: [blank], verdict, [\n, categories…]. */
function fakeTokens(d: FakeDecision): { text: string; tokens: FakeToken[] } {
  const top: Array<{ token: string; logprob: number }> = [];
  if (d.safe !== undefined) top.push({ token: 'safe', logprob: d.safe });
  if (d.unsafe !== undefined) top.push({ token: 'unsafe', logprob: d.unsafe });
  top.push(...(d.others ?? []));
  top.sort((a, b) => b.logprob - a.logprob);
  const chosen = top[0] ?? { token: 'safe', logprob: 0 };
  const tokens: FakeToken[] = [];
  let text = '';
  if (d.leadingBlank === true) {
    tokens.push({ token: '\n\n', logprob: -0.01, top: [{ token: '\n\n', logprob: -0.01 }] });
    text += '\n\n';
  }
  tokens.push({ token: chosen.token, logprob: chosen.logprob, top });
  text += chosen.token;
  if (chosen.token === 'unsafe' && d.categories !== undefined) {
    tokens.push({ token: '\n', logprob: -0.001, top: [{ token: '\n', logprob: -0.001 }] });
    text += '\n';
    for (const piece of d.categories.split(/(,)/).filter((s) => s !== '')) {
      tokens.push({ token: piece, logprob: -0.01, top: [{ token: piece, logprob: -0.01 }] });
    }
    text += d.categories;
  }
  return { text, tokens };
}

export function fakeOpenAiChatAnswer(d: FakeDecision, model = 'fake-guard'): unknown {
  const { text, tokens } = fakeTokens(d);
  return {
    id: 'chatcmpl-test',
    object: 'chat.completion',
    created: 0,
    model,
    choices: [
      {
        index: 0,
        message: { role: 'assistant', content: text },
        logprobs: {
          content: tokens.map((t) => ({
            token: t.token,
            logprob: t.logprob,
            bytes: [...Buffer.from(t.token)],
            top_logprobs: t.top.map((a) => ({ ...a, bytes: [...Buffer.from(a.token)] })),
          })),
        },
        finish_reason: 'stop',
      },
    ],
  };
}

export function fakeOpenAiCompletionAnswer(d: FakeDecision, model = 'fake-guard'): unknown {
  const { text, tokens } = fakeTokens(d);
  return {
    id: 'cmpl-test',
    object: 'text_completion',
    created: 0,
    model,
    choices: [
      {
        index: 0,
        text,
        logprobs: {
          tokens: tokens.map((t) => t.token),
          token_logprobs: tokens.map((t) => t.logprob),
          top_logprobs: tokens.map((t) => Object.fromEntries(t.top.map((a) => [a.token, a.logprob]))),
          text_offset: tokens.map((_, i) => i),
        },
        finish_reason: 'stop',
      },
    ],
  };
}

/** `/api/generate` answer; `withLogprobs: false` plays a server without logprob support. */
export function fakeOllamaAnswer(d: FakeDecision, withLogprobs: boolean, model = 'fake-guard'): unknown {
  const { text, tokens } = fakeTokens(d);
  return {
    model,
    created_at: '2026-01-01T00:00:00Z',
    response: text,
    done: true,
    done_reason: 'stop',
    total_duration: 1,
    eval_count: tokens.length,
    ...(withLogprobs
      ? { logprobs: tokens.map((t) => ({ token: t.token, logprob: t.logprob, top_logprobs: t.top })) }
      : {}),
  };
}

// ---------------------------------------------------------------------------------------------
// Prompts rendered the way Guard renders them (validation, policy, template), for backend tests.

export function renderForTest(
  variant: GuardModelVariant,
  conversation: Conversation,
  options: { image?: ImageSource; categories?: readonly Category[]; excluded?: readonly string[] } = {},
): Promise<RenderedPrompt> {
  return preparePrompt(conversation, { variant, ...options });
}

/** A PNG signature followed by a few bytes: enough for the magic-byte check. */
export const TINY_PNG = new Uint8Array([
  0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13, 73, 72, 68, 82,
]);
