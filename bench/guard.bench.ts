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
 *   The conversation and the closing instructions come after the policy, so a warm request still
 *   evaluates them: cold/warm can be at most (all prompt tokens) / (tokens after the policy prefix)
 *   plus what the cold attention over the longer context costs, which is why a ratio of 6 needs a
 *   long policy prefix. The notes state the counts and that bound.
 * - guard.prefill_raw_long_policy: node-llama-cpp evaluating the same tail tokens after the same cached
 *   prefix directly on its own context (no logits read, no backend), timed interleaved with the warm
 *   calls: the gap to guard.ttft_warm_long_policy is the backend's own work (tokenizing, cache
 *   alignment, reading the verdict).
 * - guard.ttft_*_no_flash_attention, guard.ttft_*_long_policy_no_flash_attention: both pairs on a
 *   second backend with llama.cpp's flash attention off (it is on by default), timed interleaved
 *   with the default backend call by call; the notes give |P(unsafe) cold − warm| for both backends
 *   (0 expected: see MIN_STEP_TOKENS in the backend).
 * - guard.decode_tok_s: greedy decode speed after that prompt; guard.decode_tok_s_1_thread the same on
 *   one thread, which shows what a core delivers when the machine is oversubscribed.
 * - guard.model_mb: the GGUF file's size in MB (10^6 bytes).
 */
import { loadavg } from 'node:os';
import type { LlamaContextSequence, Token } from 'node-llama-cpp';
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

/** Seconds and CPU seconds per thread of one call. */
async function timed(f: () => Promise<unknown>): Promise<{ s: number; cpu: number }> {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  await f();
  const c = process.cpuUsage(c0);
  return { s: (performance.now() - t0) / 1000, cpu: (c.user + c.system) / 1e6 / THREADS };
}

interface ColdWarm {
  cold: number;
  warm: number;
  coldCpu: number;
  warmCpu: number;
  warmAll: number[];
  raw: number;
  rawCpu: number;
}

/**
 * Cold and warm time-to-score (s) of each backend, measured alternately (cold on every backend, then
 * warm on every backend, per repetition) so machine noise hits all of them alike; `raw`, when given,
 * is timed right after each warm call of the first backend.
 */
async function coldWarm(
  backends: readonly LlamaGuardBackend[],
  p: RenderedPrompt,
  raw?: () => Promise<unknown>,
): Promise<ColdWarm[]> {
  const runs = backends.map(() => ({
    cold: [] as number[],
    warm: [] as number[],
    coldCpu: [] as number[],
    warmCpu: [] as number[],
  }));
  const rawS: number[] = [];
  const rawCpu: number[] = [];
  for (const backend of backends) {
    await backend.clearCache();
    await timeScore(backend, p); // warm-up: page the weights in
  }
  for (let i = 0; i < Math.max(COLD_REPS, WARM_REPS); i++) {
    if (i < COLD_REPS)
      for (const [b, backend] of backends.entries()) {
        const run = runs[b] as (typeof runs)[number];
        await backend.clearCache();
        run.cold.push(await timeScore(backend, p));
        run.coldCpu.push(cpuSeconds);
      }
    if (i < WARM_REPS)
      for (const [b, backend] of backends.entries()) {
        const run = runs[b] as (typeof runs)[number];
        // Exactly the policy prefix in the cache (warm() leaves a sequence that already holds it alone).
        await backend.clearCache();
        await backend.warm(p);
        run.warm.push(await timeScore(backend, p));
        run.warmCpu.push(cpuSeconds);
        if (raw && b === 0) {
          const r = await timed(raw);
          rawS.push(r.s);
          rawCpu.push(r.cpu);
        }
      }
  }
  return runs.map((run) => ({
    cold: median(run.cold),
    warm: median(run.warm),
    coldCpu: median(run.coldCpu),
    warmCpu: median(run.warmCpu),
    warmAll: run.warm,
    raw: rawS.length > 0 ? median(rawS) : Number.NaN,
    rawCpu: rawCpu.length > 0 ? median(rawCpu) : Number.NaN,
  }));
}

/**
 * A context like the backend's (same size, batch, threads, flash attention) holding `prefix`;
 * the returned function erases everything after it and evaluates `tail` without reading logits.
 */
async function rawTail(
  backend: LlamaGuardBackend,
  prefix: Token[],
  tail: Token[],
): Promise<{ run: () => Promise<void>; dispose: () => Promise<void> }> {
  const ctx = await backend.model.createContext({
    contextSize: backend.contextPerSequence,
    batchSize: 512,
    threads: { ideal: THREADS, min: THREADS },
    flashAttention: true,
  });
  const seq: LlamaContextSequence = ctx.getSequence();
  await seq.evaluateWithoutGeneratingNewTokens(prefix);
  return {
    run: async () => {
      if (seq.nextTokenIndex > prefix.length)
        await seq.eraseContextTokenRanges([{ start: prefix.length, end: seq.nextTokenIndex }]);
      await seq.evaluateWithoutGeneratingNewTokens(tail);
    },
    dispose: () => ctx.dispose(),
  };
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
    flashAttention: true,
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
    // A second backend with llama.cpp's flash attention off, timed interleaved with the default one.
    const plainBackend = await LlamaGuardBackend.create({
      modelPath: model.path,
      threads: THREADS,
      sequences: 1,
      flashAttention: false,
    });
    let a: ColdWarm;
    let e: ColdWarm;
    let b: ColdWarm;
    let f: ColdWarm;
    let driftDefault: number;
    let driftPlain: number;
    let reads: number;
    try {
      [a, e] = (await coldWarm([backend, plainBackend], short)) as [ColdWarm, ColdWarm];
      const longTokens = backend.tokenize(long.text);
      const raw = await rawTail(backend, longTokens.slice(0, nl.prefix), longTokens.slice(nl.prefix));
      try {
        [b, f] = (await coldWarm([backend, plainBackend], long, raw.run)) as [ColdWarm, ColdWarm];
      } finally {
        await raw.dispose();
      }
      reads = backend.stats.fullVocabularyReads;
      /** |P(unsafe) cold − P(unsafe) after warm()| on the long prompt. */
      const drift = async (b: LlamaGuardBackend): Promise<number> => {
        await b.clearCache();
        const c = await b.scoreAndClassify(long, { threshold: 1 });
        await b.clearCache();
        await b.warm(long);
        const w = await b.scoreAndClassify(long, { threshold: 1 });
        return Math.abs(c.pUnsafe - w.pUnsafe);
      };
      driftDefault = await drift(backend);
      driftPlain = await drift(plainBackend);
    } finally {
      await plainBackend.close();
    }

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
    const bound = (n: { all: number; rest: number }) =>
      `the ${n.rest} tokens after the policy cannot come from the cache, so cold/warm ≤ ~${n.all}/${n.rest} = ${(n.all / n.rest).toFixed(1)} (token count; attention over the longer context makes cold tokens a little dearer)`;
    const range = (xs: number[]) => `${Math.min(...xs).toFixed(2)}–${Math.max(...xs).toFixed(2)} s`;
    /** The pair measured with flash attention off, interleaved with `on` (ratio = without / with). */
    const withoutFlashAttention = (
      suffix: string,
      on: ColdWarm,
      off: ColdWarm,
      warmNote: string,
    ): BenchEntry[] => [
      {
        name: `guard.ttft_cold${suffix}_no_flash_attention`,
        value: off.cold,
        unit: 's',
        baseline: on.cold,
        ratio: off.cold / on.cold,
        goal: 'context (flash attention is on by default)',
        note: `as ttft_cold${suffix} with flashAttention: false, on a second backend timed interleaved with the default one; ratio = without / with; CPU time per thread ${off.coldCpu.toFixed(2)} s`,
      },
      {
        name: `guard.ttft_warm${suffix}_no_flash_attention`,
        value: off.warm,
        unit: 's',
        baseline: on.warm,
        ratio: off.warm / on.warm,
        goal: 'context (flash attention is on by default)',
        note: `as ttft_warm${suffix} with flashAttention: false, interleaved; ratio = without / with; cold/warm without it ${(off.cold / off.warm).toFixed(2)}; median of ${WARM_REPS} (range ${range(off.warmAll)})${warmNote}`,
      },
    ];
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
        note: `policy prefix (${ns.prefix} tokens) reused from the KV cache, ${ns.rest} evaluated; ${bound(ns)}; ratio = cold / warm; median of ${WARM_REPS} (range ${range(a.warmAll)}); CPU time per thread ${a.warmCpu.toFixed(2)} s`,
      },
      ...withoutFlashAttention('', a, e, ''),
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
        note: `${nl.prefix}-token policy prefix reused, ${nl.rest} evaluated; ${bound(nl)}; ratio = cold / warm; median of ${WARM_REPS} (range ${range(b.warmAll)}); CPU time per thread ${b.warmCpu.toFixed(2)} s; verdicts re-read over the full vocabulary: ${reads}; |P(unsafe) cold − warm| ${driftDefault.toExponential(1)}`,
      },
      {
        name: 'guard.prefill_raw_long_policy',
        value: b.raw,
        unit: 's',
        baseline: null,
        ratio: null,
        goal: 'context for ttft_warm_long_policy',
        note: `node-llama-cpp alone evaluating the same ${nl.rest} tokens after the same cached ${nl.prefix}-token prefix (own context, same settings, no logits read), right after each warm call; median of ${WARM_REPS}; CPU time per thread ${b.rawCpu.toFixed(2)} s. ttft_warm_long_policy minus this is the backend's own work: tokenizing, cache alignment, reading the verdict`,
      },
      ...withoutFlashAttention(
        '_long_policy',
        b,
        f,
        `; |P(unsafe) cold − warm| without it ${driftPlain.toExponential(1)}`,
      ),
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
