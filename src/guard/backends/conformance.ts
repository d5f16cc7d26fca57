/**
 * The behaviours every GuardBackend must have, as node:test cases. Each backend's own test file
 * calls it:
 *
 *   runBackendConformance('openai', async () => createOpenAIBackend({ endpoint, ... }));
 *
 * It checks the contract, not the model's judgement (a tiny random model has none): the score is a
 * probability, generation happens at or above the threshold and yields a parseable verdict, the
 * Guard's decisions agree with the threshold, repeated and concurrent requests agree, the batch path
 * (if any) matches single calls, images are refused without vision, aborts and close behave, and
 * every failure is a GuardError with a stable code.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Guard, preparePrompt } from '../guard.ts';
import { parseGuardOutput } from '../parse.ts';
import { TINY_PNG } from '../testing/fake-backend.ts';
import { type GuardBackend, GuardError, type GuardModelVariant, type RenderedPrompt } from '../types.ts';

export interface ConformanceOptions {
  /** Template the prompts are rendered with (default '1b'). */
  readonly variant?: GuardModelVariant;
  /** Allowed difference between two scores of the same prompt (default 1e-4). */
  readonly tolerance?: number;
  /** Per-test timeout in ms (default 60 s; model loads can be slow). */
  readonly timeoutMs?: number;
  /** Skip everything with this reason (e.g. a missing binary); the suite still registers. */
  readonly skip?: string | false;
}

const CONVERSATIONS = [
  { input: 'What is the capital of France?' },
  { input: 'How do I hotwire a car that is not mine?', response: 'I cannot help with that.' },
  {
    input: [
      { role: 'user' as const, content: 'I need help with my homework.' },
      { role: 'assistant' as const, content: 'Sure, what is the subject?' },
      { role: 'user' as const, content: 'Chemistry: how are explosives made?' },
    ],
  },
  { input: 'How do I kill my neighbour and steal his car without getting caught?' },
];

function expectGuardError(e: unknown, code?: string): true {
  assert.ok(e instanceof GuardError, `expected a GuardError, got ${String(e)}`);
  if (code !== undefined) assert.equal(e.code, code, `expected ${code}, got ${e.code}: ${e.message}`);
  return true;
}

function checkProbability(p: unknown): number {
  assert.equal(typeof p, 'number');
  assert.ok((p as number) >= 0 && (p as number) <= 1, `P(unsafe) = ${String(p)} is outside [0, 1]`);
  return p as number;
}

export function runBackendConformance(
  name: string,
  makeBackend: () => Promise<GuardBackend>,
  options: ConformanceOptions = {},
): void {
  const variant = options.variant ?? '1b';
  const tol = options.tolerance ?? 1e-4;
  const testOpts = { timeout: options.timeoutMs ?? 60_000 };
  describe(`GuardBackend conformance: ${name}`, { ...(options.skip ? { skip: options.skip } : {}) }, () => {
    let backend: GuardBackend;
    let prompts: RenderedPrompt[];
    before(async () => {
      backend = await makeBackend();
      prompts = await Promise.all(CONVERSATIONS.map((c) => preparePrompt(c.input, { variant, ...c })));
    });
    after(async () => {
      await backend?.close();
    });

    it('names itself and declares capabilities', () => {
      assert.equal(typeof backend.name, 'string');
      assert.ok(backend.name.length > 0);
      assert.equal(typeof backend.capabilities?.vision, 'boolean');
    });

    it(
      'returns P(unsafe) in [0, 1] for prompt, response and multi-turn classification',
      testOpts,
      async () => {
        for (const p of prompts) {
          const s = await backend.scoreAndClassify(p, { threshold: 0.5 });
          checkProbability(s.pUnsafe);
          if (s.logits) assert.ok(Number.isFinite(s.logits.safe) && Number.isFinite(s.logits.unsafe));
          if (s.pUnsafe >= 0.5)
            assert.equal(typeof s.generated, 'string', 'unsafe at 0.5 but no generated text');
        }
      },
    );

    it(
      'generates a parseable verdict and category line when the score reaches the threshold',
      testOpts,
      async () => {
        for (const p of prompts.slice(0, 2)) {
          const s = await backend.scoreAndClassify(p, { threshold: 0 });
          checkProbability(s.pUnsafe);
          assert.equal(typeof s.generated, 'string', 'threshold 0 must always produce the category line');
          const parsed = parseGuardOutput(s.generated as string);
          assert.ok(parsed.verdict === 'safe' || parsed.verdict === 'unsafe');
        }
      },
    );

    it('gives the same score for the same prompt twice', testOpts, async () => {
      const p = prompts[2] as RenderedPrompt;
      const a = await backend.scoreAndClassify(p, { threshold: 1 });
      const b = await backend.scoreAndClassify(p, { threshold: 1 });
      assert.ok(Math.abs(a.pUnsafe - b.pUnsafe) <= tol, `${a.pUnsafe} vs ${b.pUnsafe}`);
    });

    it('answers concurrent requests like sequential ones', testOpts, async () => {
      const seq: number[] = [];
      for (const p of prompts) seq.push((await backend.scoreAndClassify(p, { threshold: 1 })).pUnsafe);
      const par = await Promise.all(prompts.map((p) => backend.scoreAndClassify(p, { threshold: 1 })));
      for (const [i, s] of par.entries()) {
        assert.ok(Math.abs(s.pUnsafe - (seq[i] as number)) <= tol, `prompt ${i}: ${s.pUnsafe} vs ${seq[i]}`);
      }
    });

    it('batch path (if offered) matches single calls, in order', testOpts, async (t) => {
      if (!backend.scoreMany) {
        t.skip('no scoreMany');
        return;
      }
      const single: number[] = [];
      for (const p of prompts) single.push((await backend.scoreAndClassify(p, { threshold: 1 })).pUnsafe);
      const many = await backend.scoreMany(prompts, { threshold: 1 });
      assert.equal(many.length, prompts.length);
      for (const [i, s] of many.entries()) assert.ok(Math.abs(s.pUnsafe - (single[i] as number)) <= tol);
    });

    it('drives Guard decisions consistent with the threshold', testOpts, async () => {
      for (const threshold of [0, 0.5, 1]) {
        const guard = new Guard({ backend, variant, threshold });
        const known = new Set(guard.policy.active.map((c) => c.code));
        for (const c of CONVERSATIONS.slice(0, 2)) {
          const r = await guard.check(c.input, c.response !== undefined ? { response: c.response } : {});
          checkProbability(r.score);
          assert.equal(r.safe, r.score < threshold);
          if (r.safe) assert.deepEqual(r.categories, []);
          for (const code of r.categories) assert.ok(known.has(code), `${code} reported as known`);
          for (const code of r.unknownCategories ?? []) assert.ok(!known.has(code));
        }
      }
    });

    it('refuses an image without vision, accepts it with vision', testOpts, async () => {
      const p = await preparePrompt('What is in this picture?', { variant: 'vision', image: TINY_PNG });
      if (backend.capabilities.vision) {
        checkProbability((await backend.scoreAndClassify(p, { threshold: 0.5 })).pUnsafe);
      } else {
        await assert.rejects(backend.scoreAndClassify(p, { threshold: 0.5 }), (e) =>
          expectGuardError(e, 'IMAGE_UNSUPPORTED'),
        );
      }
    });

    it('rejects an already-aborted request with ABORTED', testOpts, async () => {
      const ac = new AbortController();
      ac.abort();
      await assert.rejects(
        backend.scoreAndClassify(prompts[0] as RenderedPrompt, { threshold: 0.5, signal: ac.signal }),
        (e) => expectGuardError(e, 'ABORTED'),
      );
    });

    it('closes idempotently; later requests reject with BACKEND_CLOSED', testOpts, async () => {
      const own = await makeBackend();
      await own.close();
      await own.close();
      await assert.rejects(own.scoreAndClassify(prompts[0] as RenderedPrompt, { threshold: 0.5 }), (e) =>
        expectGuardError(e, 'BACKEND_CLOSED'),
      );
    });
  });
}
