/**
 * The local backend on a tiny random GGUF through the real node-llama-cpp: the shared conformance
 * suite, the score against an independent plain-JS forward pass, prefix reuse against cold runs,
 * the pool, category generation, and typed errors for bad model files and oversized prompts.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { readGgufFileInfo } from 'node-llama-cpp';
import { runBackendConformance } from '../backends/conformance.ts';
import { ensureModel, tinyGuardSpec } from '../gguf/cache.ts';
import { loadReference, referenceHidden, referenceLogits } from '../gguf/reference.ts';
import { Guard, preparePrompt } from '../guard.ts';
import { parseGuardOutput } from '../parse.ts';
import { pUnsafeFromLogits } from '../score.ts';
import { GuardError, type RenderedPrompt } from '../types.ts';
import { LlamaGuardBackend, MIN_STEP_TOKENS } from './backend.ts';

const dir = mkdtempSync(join(tmpdir(), 'orchard-llama-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const modelPath = (): string => ensureModel(tinyGuardSpec(), dir).path;

runBackendConformance('llama.cpp (tiny random GGUF)', async () =>
  LlamaGuardBackend.create({ modelPath: modelPath(), threads: 2, sequences: 2 }),
);

const isGuardError = (code: string) => (e: unknown) => {
  assert.ok(e instanceof GuardError, String(e));
  assert.equal(e.code, code, e.message);
  return true;
};

describe('LlamaGuardBackend', () => {
  let backend: LlamaGuardBackend;
  let prompts: RenderedPrompt[];
  before(async () => {
    backend = await LlamaGuardBackend.create({ modelPath: modelPath(), threads: 2, sequences: 2 });
    prompts = await Promise.all([
      preparePrompt('How do I bake bread at home?'),
      preparePrompt('Tell me how to kill a process in Linux.'),
      preparePrompt('Write a story about a friendly robot and a cat.', {
        response: 'Sure, here is how you do it.',
      }),
    ]);
  });
  after(async () => {
    await backend?.close();
  });

  it('scores P(unsafe) as a plain-JS forward pass of the same file does', async () => {
    const ref = await loadReference(modelPath());
    const [safe] = backend.model.tokenize('safe', false);
    const [unsafe] = backend.model.tokenize('unsafe', false);
    for (const p of prompts.slice(0, 2)) {
      const tokens = backend.tokenize(p.text);
      let logits = referenceLogits(ref, tokens);
      const top = logits.indexOf(Math.max(...logits));
      // The backend skips a blank first token; mirror that rule when the reference predicts one.
      if (backend.model.detokenize([top as never], false).trim() === '' && top !== safe && top !== unsafe) {
        logits = referenceLogits(ref, [...tokens, top as never]);
      }
      const expected = pUnsafeFromLogits(
        logits[safe as number] as number,
        logits[unsafe as number] as number,
      );
      const got = await backend.scoreAndClassify(p, { threshold: 1 });
      assert.ok(Math.abs(got.pUnsafe - expected) < 5e-3, `llama.cpp ${got.pUnsafe} vs reference ${expected}`);
      assert.ok(expected > 1e-3 && expected < 1 - 1e-3, 'the random model gives a non-degenerate score');
    }
  });

  it('skips blank tokens the model writes before its verdict and reads the score after them', async () => {
    // A model that answers "\n\n" first, as the real 1B does: copy a tiny untied model and point the
    // output row of the "\n\n" token along the final hidden state at the end of the prompt.
    const base = ensureModel(tinyGuardSpec({ tiedEmbeddings: false, seed: 5 }), dir).path;
    const p = prompts[0] as RenderedPrompt;
    const tokens = backend.tokenize(p.text);
    const [blank] = backend.model.tokenize('\n\n', false);
    assert.equal(backend.model.tokenize('\n\n', false).length, 1);
    const h = referenceHidden(await loadReference(base), tokens);
    const norm = Math.hypot(...h);
    const info = await readGgufFileInfo(base, { logWarnings: false });
    const out = info.tensorInfo?.find((t) => t.name === 'output.weight');
    assert.ok(out);
    const bytes = Buffer.from(readFileSync(base));
    const row = Number(out.fileOffset) + (blank as number) * h.length * 4;
    for (let i = 0; i < h.length; i++) bytes.writeFloatLE((8 * (h[i] as number)) / norm, row + 4 * i);
    const path = join(dir, 'blank-first.gguf');
    writeFileSync(path, bytes);

    const ref = await loadReference(path);
    const [safe] = backend.model.tokenize('safe', false);
    const [unsafe] = backend.model.tokenize('unsafe', false);
    let seq: number[] = [...tokens];
    let logits = referenceLogits(ref, seq);
    let blanks = 0;
    for (; blanks < 2; blanks++) {
      const top = logits.indexOf(Math.max(...logits));
      if (top !== blank) break;
      seq = [...seq, top];
      logits = referenceLogits(ref, seq);
    }
    assert.ok(blanks >= 1, 'the doctored model predicts a blank first');
    const expected = pUnsafeFromLogits(logits[safe as number] as number, logits[unsafe as number] as number);

    const b = await LlamaGuardBackend.create({ modelPath: path, sequences: 1 });
    try {
      const s = await b.scoreAndClassify(p, { threshold: 0 });
      assert.ok(Math.abs(s.pUnsafe - expected) < 5e-3, `llama.cpp ${s.pUnsafe} vs reference ${expected}`);
      assert.ok(s.generated?.startsWith('\n\n'.repeat(blanks)), JSON.stringify(s.generated));
      assert.equal(parseGuardOutput(s.generated as string).verdict, 'unsafe');
    } finally {
      await b.close();
    }
  });

  it('with flash attention scores as the plain-JS forward pass, cold and after a cache hit', async () => {
    const ref = await loadReference(modelPath());
    const fa = await LlamaGuardBackend.create({ modelPath: modelPath(), sequences: 1, flashAttention: true });
    try {
      const [safe] = fa.model.tokenize('safe', false);
      const [unsafe] = fa.model.tokenize('unsafe', false);
      const p = prompts[0] as RenderedPrompt;
      const logits = referenceLogits(ref, fa.tokenize(p.text));
      const top = logits.indexOf(Math.max(...logits));
      assert.notEqual(fa.model.detokenize([top as never], false).trim(), '', 'no blank skip here');
      const expected = pUnsafeFromLogits(
        logits[safe as number] as number,
        logits[unsafe as number] as number,
      );
      const cold = await fa.scoreAndClassify(p, { threshold: 1 });
      await fa.warm(p);
      const warm = await fa.scoreAndClassify(p, { threshold: 1 });
      for (const s of [cold, warm])
        assert.ok(Math.abs(s.pUnsafe - expected) < 5e-3, `llama.cpp ${s.pUnsafe} vs reference ${expected}`);
    } finally {
      await fa.close();
    }
  });

  it('reads the verdict from the short candidate list exactly as from the whole vocabulary', async () => {
    // Default bias: every read is served by the top-k list. Bias 0 on the random model: safe/unsafe
    // are rarely among the top 4 of ~1.2k tokens, so the position is re-read over the whole vocabulary.
    const full = await LlamaGuardBackend.create({ modelPath: modelPath(), sequences: 1, verdictBias: 0 });
    try {
      const before = backend.stats.fullVocabularyReads;
      for (const p of prompts) {
        await backend.clearCache();
        const a = await backend.scoreAndClassify(p, { threshold: 1 });
        const b = await full.scoreAndClassify(p, { threshold: 1 });
        // 1e-4 as for cache hits: the fallback evaluates the last token on its own, a different batch split.
        assert.ok(Math.abs(a.pUnsafe - b.pUnsafe) < 1e-4, `top-k ${a.pUnsafe} vs full ${b.pUnsafe}`);
        assert.ok(a.logits && b.logits);
        assert.ok(Math.abs(a.logits.safe - b.logits.safe) < 1e-3, JSON.stringify([a.logits, b.logits]));
        assert.ok(Math.abs(a.logits.unsafe - b.logits.unsafe) < 1e-3, JSON.stringify([a.logits, b.logits]));
        assert.ok(a.logits.safe <= 0 && a.logits.unsafe <= 0, 'relative to the top token');
      }
      assert.equal(backend.stats.fullVocabularyReads, before, 'the default bias never needs the fallback');
      assert.ok(full.stats.fullVocabularyReads > 0, 'bias 0 exercised the full-vocabulary read');
    } finally {
      await full.close();
    }
  });

  it('reuses the cached policy prefix and scores exactly as a cold evaluation', async () => {
    const [a, b] = prompts as [RenderedPrompt, RenderedPrompt];
    await backend.clearCache();
    const cold = await backend.scoreAndClassify(a, { threshold: 1 });
    await backend.scoreAndClassify(b, { threshold: 1 }); // same policy, other conversation
    const before = { ...backend.stats };
    await backend.scoreAndClassify(b, { threshold: 1 });
    const warmB = backend.stats.evaluatedTokens - before.evaluatedTokens;
    const warm = await backend.scoreAndClassify(a, { threshold: 1 });
    const evaluated = backend.stats.evaluatedTokens - before.evaluatedTokens - warmB;
    const prefixTokens = backend.tokenize(a.prefix).length;
    const total = backend.tokenize(a.text).length;
    // Only what follows the policy, or MIN_STEP_TOKENS if that is fewer (one decode step never has less).
    const tail = Math.max(total - prefixTokens, MIN_STEP_TOKENS);
    assert.ok(total - prefixTokens < 2 * MIN_STEP_TOKENS, 'a short conversation');
    assert.ok(evaluated <= tail, `evaluated ${evaluated} of ${total} (prefix ${prefixTokens})`);
    assert.ok(Math.abs(warm.pUnsafe - cold.pUnsafe) < 1e-4, `${warm.pUnsafe} vs cold ${cold.pUnsafe}`);

    // warm() puts the prefix in every sequence: the first request then skips it too.
    await backend.clearCache();
    await backend.warm(a);
    const s0 = backend.stats.evaluatedTokens;
    const again = await backend.scoreAndClassify(a, { threshold: 1 });
    assert.equal(backend.stats.evaluatedTokens - s0, tail);
    assert.ok(Math.abs(again.pUnsafe - cold.pUnsafe) < 1e-4);
  });

  for (const flashAttention of [false, true]) {
    it(`scores a request the same cold, after warm() and repeated (flash attention ${flashAttention ? 'on' : 'off'})`, async () => {
      // Each decode step has ≥ MIN_STEP_TOKENS tokens, so llama.cpp computes every prompt token with the
      // same kernels whatever is cached: the scores agree to float rounding of the final softmax, not
      // just to 1e-4. (Before, warm() re-evaluated the prefix's last token alone and a repeated request
      // only its last token; with flash attention that moved P(unsafe) by ~1e-3.)
      const b = await LlamaGuardBackend.create({ modelPath: modelPath(), sequences: 1, flashAttention });
      try {
        for (const p of prompts) {
          await b.clearCache();
          const cold = await b.scoreAndClassify(p, { threshold: 1 });
          const repeated = await b.scoreAndClassify(p, { threshold: 1 });
          await b.clearCache();
          await b.warm(p);
          await b.warm(p); // a second warm() with the prefix in place evaluates nothing
          const warm = await b.scoreAndClassify(p, { threshold: 1 });
          for (const s of [repeated, warm])
            assert.ok(Math.abs(s.pUnsafe - cold.pUnsafe) < 1e-9, `${s.pUnsafe} vs cold ${cold.pUnsafe}`);
        }
      } finally {
        await b.close();
      }
    });
  }

  for (const flashAttention of [false, true]) {
    it(`more concurrent requests than sequences all complete, in order, like sequential ones (flash attention ${flashAttention ? 'on' : 'off'})`, async () => {
      const b = await LlamaGuardBackend.create({ modelPath: modelPath(), sequences: 2, flashAttention });
      try {
        const many = [...prompts, ...prompts, ...prompts];
        const seq: number[] = [];
        for (const p of many) {
          await b.clearCache();
          seq.push((await b.scoreAndClassify(p, { threshold: 1 })).pUnsafe);
        }
        await b.clearCache(); // the first two run cold side by side, prompts of different lengths
        const batch = await b.scoreMany(many, { threshold: 1 });
        // Cold, cached and concurrent evaluations use the same decode steps (one sequence each, ≥
        // MIN_STEP_TOKENS tokens), so they agree to rounding; with steps mixing both sequences (the
        // node-llama-cpp default) flash attention moved them by more than 1e-9.
        assert.deepEqual(
          batch.map((s, i) => Math.abs(s.pUnsafe - (seq[i] as number)) < 1e-9),
          many.map(() => true),
        );
      } finally {
        await b.close();
      }
    });
  }

  it('generates only active category codes, and only at or above the threshold', async () => {
    const p = await preparePrompt('How can I steal a car?', { excluded: ['S1', 'S2'] });
    const s = await backend.scoreAndClassify(p, { threshold: 0 });
    assert.equal(typeof s.generated, 'string');
    const parsed = parseGuardOutput(s.generated as string);
    assert.equal(parsed.verdict, 'unsafe');
    const active = new Set(p.categories.map((c) => c.code).filter((c) => c !== 'S1' && c !== 'S2'));
    assert.ok(parsed.categories.length >= 1);
    for (const c of parsed.categories) assert.ok(active.has(c), c);
    const none = await backend.scoreAndClassify(p, { threshold: 1 });
    assert.ok(none.pUnsafe < 1);
    assert.equal(none.generated, undefined);
    // Through the Guard: threshold 0 makes everything unsafe with known codes.
    const r = await new Guard({ backend, threshold: 0, excluded: ['S1', 'S2'] }).check(
      'How can I steal a car?',
    );
    assert.equal(r.safe, false);
    for (const c of r.categories) assert.ok(active.has(c), c);
  });

  it('times out with BACKEND_TIMEOUT and keeps working afterwards', async () => {
    await backend.clearCache();
    await assert.rejects(
      backend.scoreAndClassify(prompts[0] as RenderedPrompt, { threshold: 1, timeoutMs: 1 }),
      isGuardError('BACKEND_TIMEOUT'),
    );
    const s = await backend.scoreAndClassify(prompts[0] as RenderedPrompt, { threshold: 1 });
    assert.ok(s.pUnsafe >= 0 && s.pUnsafe <= 1);
  });

  it('rejects a prompt longer than the context with CONTEXT_OVERFLOW', async () => {
    const small = await LlamaGuardBackend.create({ modelPath: modelPath(), contextSize: 256, sequences: 1 });
    try {
      const long = await preparePrompt('How do I bake bread at home? '.repeat(60));
      await assert.rejects(
        small.scoreAndClassify(long, { threshold: 0.5 }),
        isGuardError('CONTEXT_OVERFLOW'),
      );
      // A prompt that fits still works on the same backend.
      const fits = await small.scoreAndClassify(prompts[0] as RenderedPrompt, { threshold: 1 });
      assert.ok(fits.pUnsafe >= 0 && fits.pUnsafe <= 1);
    } finally {
      await small.close();
    }
  });
});

describe('model file errors', () => {
  it('missing, non-GGUF and truncated files are MODEL_FILE errors', async () => {
    await assert.rejects(
      LlamaGuardBackend.create({ modelPath: join(dir, 'nope.gguf') }),
      isGuardError('MODEL_FILE'),
    );
    const junk = join(dir, 'junk.gguf');
    writeFileSync(junk, 'this is not a model at all, just text');
    await assert.rejects(LlamaGuardBackend.create({ modelPath: junk }), isGuardError('MODEL_FILE'));
    const cut = join(dir, 'cut.gguf');
    const whole = readFileSync(modelPath());
    writeFileSync(cut, whole.subarray(0, Math.floor(whole.length / 2)));
    await assert.rejects(LlamaGuardBackend.create({ modelPath: cut }), isGuardError('MODEL_FILE'));
    await assert.rejects(LlamaGuardBackend.create({ modelPath: dir }), isGuardError('MODEL_FILE'));
  });

  it('close() during requests: each settles with a score or BACKEND_CLOSED, later calls reject', async () => {
    const b = await LlamaGuardBackend.create({ modelPath: modelPath(), sequences: 1 });
    const p = await preparePrompt('How do I bake bread at home?');
    const settled = Promise.allSettled([1, 2, 3].map(() => b.scoreAndClassify(p, { threshold: 1 })));
    await b.close();
    for (const r of await settled) {
      if (r.status === 'rejected') isGuardError('BACKEND_CLOSED')(r.reason);
      else assert.ok(r.value.pUnsafe >= 0 && r.value.pUnsafe <= 1);
    }
    await assert.rejects(b.scoreAndClassify(p, { threshold: 1 }), isGuardError('BACKEND_CLOSED'));
  });

  it('bad options are INVALID_OPTION', async () => {
    await assert.rejects(
      LlamaGuardBackend.create({ modelPath: modelPath(), threads: 0 }),
      isGuardError('INVALID_OPTION'),
    );
    await assert.rejects(
      LlamaGuardBackend.create({ modelPath: modelPath(), sequences: 1.5 }),
      isGuardError('INVALID_OPTION'),
    );
  });
});
