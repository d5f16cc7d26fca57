/**
 * The HTTP backends against guard-core's conformance suite, each talking to the shape-checking test
 * server playing a Llama Guard model. The fake model's verdict logprobs are a fixed function of the
 * request's text, so repeated and concurrent requests must agree exactly; any request whose shape is
 * wrong is answered 400 and fails the suite.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after } from 'node:test';
import { runBackendConformance } from './conformance.ts';
import { OllamaBackend } from './ollama.ts';
import { OpenAiBackend } from './openai.ts';
import {
  expectOllamaGenerate,
  expectOpenAiChat,
  expectOpenAiCompletion,
  type FakeDecision,
  fakeOllamaAnswer,
  fakeOpenAiChatAnswer,
  fakeOpenAiCompletionAnswer,
  type RecordedRequest,
  requestText,
  type ShapeCheck,
  startTestServer,
  type TestServer,
} from './testing-server.ts';

/** Deterministic "judgement": a hash of the text sets the margin; 'explosives' pushes it unsafe. */
function decide(req: RecordedRequest): FakeDecision {
  const text = requestText(req.body);
  const h = createHash('sha256').update(text).digest().readUInt32BE(0) / 2 ** 32;
  const margin = (text.includes('explosives') ? 2 : -2) + (h - 0.5);
  return { safe: -Math.log1p(Math.exp(margin)), unsafe: -Math.log1p(Math.exp(-margin)), categories: 'S9' };
}

const servers: TestServer[] = [];
after(async () => {
  for (const s of servers) {
    assert.deepEqual(s.shapeProblems, [], 'requests with a wrong shape');
    await s.close();
  }
});

function lazyServer(answer: (d: FakeDecision) => unknown, check: ShapeCheck): () => Promise<TestServer> {
  let started: Promise<TestServer> | undefined;
  return () => {
    started ??= startTestServer((req) => ({ json: answer(decide(req)) }), check).then((s) => {
      servers.push(s);
      return s;
    });
    return started;
  };
}

const chat = lazyServer((d) => fakeOpenAiChatAnswer(d), expectOpenAiChat());
runBackendConformance('openai chat (test server)', async () => {
  const s = await chat();
  return new OpenAiBackend({ endpoint: `${s.url}/v1`, model: 'meta-llama/Llama-Guard-3-1B' });
});
runBackendConformance(
  'openai chat, Vision prompts (test server)',
  async () => {
    const s = await chat();
    return new OpenAiBackend({ endpoint: `${s.url}/v1`, model: 'meta-llama/Llama-Guard-3-11B-Vision' });
  },
  { variant: 'vision' },
);

const completions = lazyServer((d) => fakeOpenAiCompletionAnswer(d), expectOpenAiCompletion());
runBackendConformance('openai completions, raw prompt (test server)', async () => {
  const s = await completions();
  return new OpenAiBackend({ endpoint: `${s.url}/v1/completions`, model: 'meta-llama/Llama-Guard-3-8B' });
});

const ollama = lazyServer((d) => fakeOllamaAnswer(d, true), expectOllamaGenerate());
runBackendConformance('ollama with logprobs (test server)', async () => {
  const s = await ollama();
  return new OllamaBackend({ endpoint: s.url, model: 'llama-guard3:1b' });
});

const ollamaOld = lazyServer((d) => fakeOllamaAnswer(d, false), expectOllamaGenerate());
runBackendConformance('ollama without logprobs: verdict fallback (test server)', async () => {
  const s = await ollamaOld();
  return new OllamaBackend({ endpoint: s.url, model: 'llama-guard3:1b' });
});
