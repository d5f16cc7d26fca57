/**
 * Local Llama Guard latency on an LG3-1B-INT4-shaped random GGUF (12 layers, width 2048, 32/8 heads,
 * FFN 6400, 128,256-token vocabulary, Q4_0, tied embeddings), through node-llama-cpp on the CPU with
 * 2 threads. The model is generated on first use into the model cache (see src/guard/gguf/cache.ts);
 * its generation time is reported in a note, never in a timing.
 *
 * - guard.ttft_cold: time to the score (one prefill, P(unsafe) from the verdict logits, no
 *   generation) for the real rendered 1B prompt judging the reply of an ~80-token exchange, with an
 *   empty KV cache.
 * - guard.ttft_warm: the same request with the policy prefix already in the KV cache (the sequence is
 *   rewound to the prefix before each timed call), ratio = cold / warm.
 * - guard.ttft_*_long_policy: the same pair with a 13-category policy that carries a description per
 *   category (the shape of the llama.cpp figure, whose reused prefix was 620 tokens).
 * - guard.decode_tok_s: greedy decode speed after that prompt; guard.decode_tok_s_1_thread the same on
 *   one thread, which shows what a core delivers when the machine is oversubscribed.
 * - guard.model_mb: the GGUF file's size in MB (10^6 bytes).
 */
import { loadavg } from 'node:os';
import type { Token } from 'node-llama-cpp';
import { ensureModel, lg3OneBInt4Spec } from '../src/guard/gguf/cache.ts';
import { DESCRIBED_CATEGORIES, SAMPLE_EXCHANGE } from '../src/guard/gguf/corpus.ts';
import { LlamaGuardBackend } from '../src/guard/llama/backend.ts';
import { resolvePolicy } from '../src/guard/taxonomy.ts';
import { renderPrompt } from '../src/guard/template.ts';
import type { Category, RenderedPrompt } from '../src/guard/types.ts';
import type { BenchEntry } from './harness.ts';

const THREADS = 2;
const COLD_REPS = 3;
const WARM_REPS = 5;
const DECODE_TOKENS = 48;

function prompt(categories?: readonly Category[]): RenderedPrompt {
  const policy = resolvePolicy('1b', categories);
  const r = renderPrompt({ variant: '1b', messages: SAMPLE_EXCHANGE, policy });
  return {
    variant: '1b',
    text: r.text,
    prefix: r.prefix,
    classifiedRole: r.classifiedRole,
    messages: SAMPLE_EXCHANGE,
    categories: policy.categories,
    excluded: policy.excluded,
  };
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor((s.length - 1) / 2)] as number;
};

/** CPU seconds this process spent (all threads) during the timed calls, per thread: on a busy shared
 * machine wall time includes waiting for a core; this is what the work itself costs. */
let cpuSeconds = 0;

async function timeScore(backend: LlamaGuardBackend, p: RenderedPrompt): Promise<number> {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  await backend.scoreAndClassify(p, { threshold: 1 });
  const c = process.cpuUsage(c0);
  cpuSeconds = (c.user + c.system) / 1e6 / THREADS;
  return (performance.now() - t0) / 1000;
}

/** Cold and warm time-to-score (s), measured alternately so machine noise hits both alike. */
async function coldWarm(
  backend: LlamaGuardBackend,
  p: RenderedPrompt,
): Promise<{ cold: number; warm: number; coldCpu: number; warmCpu: number }> {
  const cold: number[] = [];
  const warm: number[] = [];
  const coldCpu: number[] = [];
  const warmCpu: number[] = [];
  await backend.clearCache();
  await timeScore(backend, p); // warm-up: page the weights in
  for (let i = 0; i < Math.max(COLD_REPS, WARM_REPS); i++) {
    if (i < COLD_REPS) {
      await backend.clearCache();
      cold.push(await timeScore(backend, p));
      coldCpu.push(cpuSeconds);
    }
    if (i < WARM_REPS) {
      await backend.warm(p); // rewinds the sequence to exactly the policy prefix (evaluates it if missing)
      warm.push(await timeScore(backend, p));
      warmCpu.push(cpuSeconds);
    }
  }
  return { cold: median(cold), warm: median(warm), coldCpu: median(coldCpu), warmCpu: median(warmCpu) };
}

/**
 * Greedy decode speed after `prompt` on a fresh context of the same model and settings, and the CPU
 * time per token per thread. The first yielded token marks the end of the prefill.
 */
async function decode(
  backend: LlamaGuardBackend,
  prompt: Token[],
  threads: number,
): Promise<{ tokS: number; cpuMs: number }> {
  const ctx = await backend.model.createContext({
    contextSize: 2048,
    threads: { ideal: threads, min: threads },
    flashAttention: false,
  });
  try {
    const it = ctx.getSequence().evaluate(prompt, { temperature: 0 });
    let n = 0;
    let t0 = 0;
    let c0 = process.cpuUsage();
    for await (const _ of it) {
      if (n === 0) {
        t0 = performance.now();
        c0 = process.cpuUsage();
      }
      if (++n > DECODE_TOKENS) break;
    }
    const s = (performance.now() - t0) / 1000;
    const c = process.cpuUsage(c0);
    await it.return();
    return { tokS: DECODE_TOKENS / s, cpuMs: (c.user + c.system) / 1000 / threads / DECODE_TOKENS };
  } finally {
    await ctx.dispose();
  }
}

export async function run(): Promise<BenchEntry[]> {
  const model = ensureModel(lg3OneBInt4Spec());
  const backend = await LlamaGuardBackend.create({ modelPath: model.path, threads: THREADS, sequences: 1 });
  try {
    const short = prompt();
    const long = prompt(DESCRIBED_CATEGORIES);
    const count = (p: RenderedPrompt) => {
      const all = backend.tokenize(p.text).length;
      const prefix = backend.tokenize(p.prefix).length;
      return { all, prefix, rest: all - prefix };
    };
    const ns = count(short);
    const nl = count(long);
    const a = await coldWarm(backend, short);
    const b = await coldWarm(backend, long);

    const prompt743 = backend.tokenize(long.text);
    const d2 = await decode(backend, prompt743, THREADS);
    const d1 = await decode(backend, prompt743, 1);

    const load = loadavg()
      .map((l) => l.toFixed(1))
      .join('/');
    const gen = model.generated
      ? `generated now in ${(model.ms / 1000).toFixed(0)} s`
      : 'from the model cache';
    const shape = (n: { all: number; prefix: number; rest: number }) =>
      `${n.all} prompt tokens: ${n.prefix}-token policy prefix + ${n.rest} conversation/instruction tokens`;
    return [
      {
        name: 'guard.ttft_cold',
        value: a.cold,
        unit: 's',
        baseline: null,
        ratio: null,
        goal: '≤ 2.5 s',
        note: `default 1B prompt, ${shape(ns)}; ${THREADS} threads; median of ${COLD_REPS}; CPU time per thread ${a.coldCpu.toFixed(2)} s; load average ${load}`,
      },
      {
        name: 'guard.ttft_warm',
        value: a.warm,
        unit: 's',
        baseline: a.cold,
        ratio: a.cold / a.warm,
        goal: '≤ 0.5 s and ratio ≥ 6',
        note: `policy prefix (${ns.prefix} tokens) reused from the KV cache; ratio = cold / warm; median of ${WARM_REPS}; CPU time per thread ${a.warmCpu.toFixed(2)} s`,
      },
      {
        name: 'guard.ttft_cold_long_policy',
        value: b.cold,
        unit: 's',
        baseline: null,
        ratio: null,
        goal: '≤ 2.5 s',
        note: `13 described categories, ${shape(nl)}; CPU time per thread ${b.coldCpu.toFixed(2)} s`,
      },
      {
        name: 'guard.ttft_warm_long_policy',
        value: b.warm,
        unit: 's',
        baseline: b.cold,
        ratio: b.cold / b.warm,
        goal: '≤ 0.5 s and ratio ≥ 6',
        note: `${nl.prefix}-token policy prefix reused; ratio = cold / warm; CPU time per thread ${b.warmCpu.toFixed(2)} s`,
      },
      {
        name: 'guard.decode_tok_s',
        value: d2.tokS,
        unit: 'tok/s',
        baseline: null,
        ratio: null,
        goal: '≥ 30',
        note: `greedy, ${DECODE_TOKENS} tokens after a ${nl.all}-token prompt, ${THREADS} threads; CPU time per thread ${d2.cpuMs.toFixed(0)} ms/token`,
      },
      {
        name: 'guard.decode_tok_s_1_thread',
        value: d1.tokS,
        unit: 'tok/s',
        baseline: null,
        ratio: null,
        goal: 'context for decode_tok_s',
        note: `the same on 1 thread (${d1.cpuMs.toFixed(0)} ms/token CPU): no cross-thread barriers, which on a machine with more runnable threads than cores make 2 threads spin-wait for each other`,
      },
      {
        name: 'guard.model_mb',
        value: model.bytes / 1e6,
        unit: 'MB',
        baseline: null,
        ratio: null,
        goal: '≤ 500',
        note: `LG3-1B-INT4 shape, Q4_0 with tied embeddings (plain Q4_0 with output.weight: ~631 MB); ${gen}`,
      },
    ];
  } finally {
    await backend.close();
  }
}
