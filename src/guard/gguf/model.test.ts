/**
 * Generated models through the real node-llama-cpp (llama.cpp CPU build): the file loads, the
 * tokenizer behaves as built, and llama.cpp's next-token distribution equals an independent plain-JS
 * forward pass over the same file (reference.ts), which checks tensor names, layouts, rope and tying.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { getLlama, type Llama, LlamaLogLevel, type Token } from 'node-llama-cpp';
import { resolvePolicy } from '../taxonomy.ts';
import { renderPrompt } from '../template.ts';
import { ensureModel, lg3OneBInt4Spec, specHash, tinyGuardSpec } from './cache.ts';
import { SAMPLE_EXCHANGE } from './corpus.ts';
import { modelVocab, tensorLayout } from './model.ts';
import { loadReference, referenceLogits } from './reference.ts';

let dir = '';
let llama: Llama;
before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'orchard-model-'));
  llama = await getLlama({ gpu: false, logLevel: LlamaLogLevel.error });
});
after(async () => {
  await llama?.dispose();
  rmSync(dir, { recursive: true, force: true });
});

const prompt = renderPrompt({ variant: '1b', messages: SAMPLE_EXCHANGE, policy: resolvePolicy('1b') }).text;

test('llama.cpp tokenizes the guard prompt with our vocabulary: specials, verdict words, any bytes', async () => {
  const { path } = ensureModel(tinyGuardSpec(), dir);
  const model = await llama.loadModel({ modelPath: path });
  try {
    const vocab = modelVocab(tinyGuardSpec());
    assert.equal(model.fileInfo.metadata.general.architecture, 'llama');
    for (const w of ['safe', 'unsafe', ' safe', ' unsafe']) {
      const ids = model.tokenize(w, false);
      assert.equal(ids.length, 1, `${JSON.stringify(w)} is one token`);
      assert.equal(vocab.tokens[ids[0] as number], w.replace(' ', 'Ġ'));
    }
    const ids = model.tokenize(prompt, true);
    assert.equal(ids[0], vocab.special.get('<|begin_of_text|>'));
    assert.equal(ids.at(-1), vocab.special.get('<|end_header_id|>'));
    assert.equal(ids.filter((i) => i === vocab.special.get('<|eot_id|>')).length, 1);
    // Every word of the prompt is in the vocabulary: far fewer tokens than bytes.
    assert.ok(ids.length < prompt.length / 4, `${ids.length} tokens for ${prompt.length} chars`);
    assert.equal(ids.map((i) => model.detokenize([i], true)).join(''), prompt);
    // Text the corpus never saw still encodes (byte tokens) and decodes to the same bytes.
    const odd = 'Zebra 🦓 斑马 ünïcödé\t\r\n';
    const oddIds = model.tokenize(odd, false);
    assert.ok(oddIds.length > 10, 'multi-byte characters fall back to byte tokens');
    assert.equal(model.detokenize(oddIds, false), odd);
  } finally {
    await model.dispose();
  }
});

// Tolerances: with f32/f16 weights only llama.cpp's f16 KV cache differs from the reference (~1%);
// with Q8_0/Q4_0 weights llama.cpp also rounds the activations to 8 bits for its integer dot
// products, so agreement is looser, but still far tighter than a wrong block or nibble layout
// (which scrambles the weights and with them the whole distribution).
for (const [label, overrides, tv] of [
  ['F32, tied embeddings', {}, 0.005],
  [
    'F16 matrices, separate output.weight',
    { weightType: 'F16', embeddingType: 'F16', tiedEmbeddings: false },
    0.01,
  ],
  [
    'Q8_0 matrices, separate Q8_0 output.weight',
    { weightType: 'Q8_0', embeddingType: 'Q8_0', tiedEmbeddings: false },
    0.05,
  ],
  ['Q4_0 matrices and tied Q4_0 embeddings', { weightType: 'Q4_0', embeddingType: 'Q4_0' }, 0.05],
] as const) {
  test(`llama.cpp’s next-token distribution equals a plain-JS forward pass (${label})`, async () => {
    const spec = tinyGuardSpec({ ...overrides, seed: 3 });
    const { path } = ensureModel(spec, dir);
    const model = await llama.loadModel({ modelPath: path });
    const context = await model.createContext({ contextSize: 512, threads: 2 });
    try {
      const tokens = model.tokenize(prompt, true).slice(0, 48);
      const seq = context.getSequence();
      const out = await seq.controlledEvaluate(
        tokens.map((t, i) => (i === tokens.length - 1 ? [t, { generateNext: { probabilities: true } }] : t)),
      );
      const probs = out[tokens.length - 1]?.next.probabilities;
      assert.ok(probs);
      const logits = referenceLogits(await loadReference(path), tokens);
      const max = Math.max(...logits);
      const z = logits.reduce((a, l) => a + Math.exp(l - max), 0);
      let top = 0;
      let distance = 0;
      for (let i = 0; i < logits.length; i++) {
        const p = Math.exp((logits[i] as number) - max) / z;
        const q = probs.get(i as Token) ?? 0;
        distance += Math.abs(p - q) / 2;
        if (tv < 0.01)
          assert.ok(Math.abs(p - q) <= 2e-3 + 0.03 * p, `token ${i}: reference ${p}, llama.cpp ${q}`);
        if (p > Math.exp((logits[top] as number) - max) / z) top = i;
      }
      // Total variation distance between the two next-token distributions.
      assert.ok(distance <= tv, `distance ${distance}`);
      if (tv < 0.01) assert.equal(probs.keys().next().value, top, 'same most likely token');
      assert.equal(
        tensorLayout(spec, logits.length).some((t) => t.name === 'output.weight'),
        !spec.tiedEmbeddings,
      );
    } finally {
      await context.dispose();
      await model.dispose();
    }
  });
}

test('cache: same spec → same file (not regenerated), changed spec → new name; big spec size by arithmetic', () => {
  const a = ensureModel(tinyGuardSpec({ seed: 9 }), dir);
  const b = ensureModel(tinyGuardSpec({ seed: 9 }), dir);
  assert.equal(a.path, b.path);
  assert.equal(b.generated, false);
  assert.notEqual(specHash(tinyGuardSpec({ seed: 9 })), specHash(tinyGuardSpec({ seed: 10 })));
  // LG3-1B-INT4 shape in Q4_0 (18 bytes per 32 weights), tied: embeddings + 12 blocks of
  // q, o (2048²), k, v (2048·512), gate, up, down (2048·6400), plus f32 norms.
  const big = lg3OneBInt4Spec();
  const weights = 2048 * 128256 + 12 * (2 * 2048 * 2048 + 2 * 2048 * 512 + 3 * 2048 * 6400);
  const norms = 4 * 2048 * (1 + 2 * 12);
  const layout = tensorLayout(big, 128256);
  assert.equal(layout.length, 2 + 12 * 9);
  const q4 = layout
    .filter((t) => t.type === 'Q4_0')
    .reduce((a, t) => a + t.shape.reduce((x, y) => x * y, 1), 0);
  assert.equal(q4, weights);
  const expectedMb = ((weights / 32) * 18 + norms) / 1e6;
  assert.ok(expectedMb > 480 && expectedMb < 490, `${expectedMb} MB`);
});
