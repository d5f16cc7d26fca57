/**
 * Random-weight llama-architecture GGUF models: tiny ones for tests and an LG3-1B-INT4-shaped one for
 * the benchmark. The weights are noise, so the models say nothing useful, but llama.cpp runs exactly
 * the computation (and the memory traffic) of a real model of that shape, with a real tokenizer for
 * our prompts. Weights come from a seeded Rng, so a given spec always yields the same file.
 */
import { Rng } from '../../core/rng.ts';
import type { TensorType } from './quant.ts';
import { buildVocab, LLAMA3_SPECIAL_TOKENS, type Vocab } from './tokenizer.ts';
import { type GgufValue, gguf, type TensorSpec, writeGguf } from './writer.ts';

export interface LlamaShape {
  readonly layers: number;
  readonly width: number;
  readonly heads: number;
  readonly kvHeads: number;
  readonly ffn: number;
  readonly contextLength: number;
  readonly ropeBase: number;
  readonly rmsEps: number;
}

export interface ModelSpec {
  readonly name: string;
  readonly shape: LlamaShape;
  /** Type of the attention and feed-forward matrices. */
  readonly weightType: TensorType;
  /** Type of token_embd.weight (which is also the output matrix when `tiedEmbeddings`). */
  readonly embeddingType: TensorType;
  /**
   * No output.weight: llama.cpp then multiplies by token_embd for the logits, as Llama 3.2 1B does
   * (it ties input and output embeddings). Saves a vocab × width matrix.
   */
  readonly tiedEmbeddings: boolean;
  /** Type of output.weight when not tied (default: weightType). */
  readonly outputType?: TensorType;
  /** Texts whose words become single tokens (e.g. rendered Llama Guard prompts). */
  readonly corpus: readonly string[];
  /** Vocabulary size after padding (default: just what the corpus needs). */
  readonly vocabSize?: number;
  readonly seed: number;
}

/** Spread of the token embeddings relative to 1/√width: gives logits with a standard deviation ≈ 2. */
const EMBED_GAIN = 2;

const FILE_TYPE: Record<TensorType, number> = { F32: 0, F16: 1, Q4_0: 2, Q8_0: 7 };

/** Words a guard model must emit as single tokens: the verdicts (with and without a leading space). */
export const VERDICT_WORDS = ['safe', 'unsafe', ' safe', ' unsafe'] as const;

export function modelVocab(spec: ModelSpec): Vocab {
  return buildVocab({
    corpus: spec.corpus,
    words: VERDICT_WORDS,
    specialTokens: LLAMA3_SPECIAL_TOKENS,
    ...(spec.vocabSize !== undefined ? { targetSize: spec.vocabSize } : {}),
  });
}

/** Fills tensors with uniform noise of a given standard deviation from a per-tensor seeded stream. */
function noise(seed: number, id: number, std: number, mean = 0): (start: number, out: Float32Array) => void {
  const rng = Rng.derive(seed, id);
  const a = std * Math.sqrt(3);
  let expected = 0;
  return (start, out) => {
    // The stream is sequential: the writer asks for chunks in order.
    if (start !== expected) throw new Error(`non-sequential fill at ${start}, expected ${expected}`);
    for (let i = 0; i < out.length; i++) out[i] = mean + a * (2 * rng.next() - 1);
    expected = start + out.length;
  };
}

export interface TensorLayout {
  readonly name: string;
  readonly shape: readonly number[];
  readonly type: TensorType;
  readonly std: number;
  readonly mean: number;
}

/** The tensors of the model in file order, with ggml shapes and init scales. */
export function tensorLayout(spec: ModelSpec, vocabSize: number): TensorLayout[] {
  const { width, heads, kvHeads, ffn, layers } = spec.shape;
  const headDim = width / heads;
  const kvWidth = headDim * kvHeads;
  const w = (name: string, nIn: number, nOut: number, type = spec.weightType): TensorLayout => ({
    name,
    shape: [nIn, nOut],
    type,
    std: 1 / Math.sqrt(nIn),
    mean: 0,
  });
  // Norm gains around 1 (not exactly 1) so a test can tell whether they are applied.
  const norm = (name: string): TensorLayout => ({ name, shape: [width], type: 'F32', std: 0.1, mean: 1 });
  const out: TensorLayout[] = [
    {
      name: 'token_embd.weight',
      shape: [width, vocabSize],
      type: spec.embeddingType,
      std: EMBED_GAIN / Math.sqrt(width),
      mean: 0,
    },
    norm('output_norm.weight'),
  ];
  if (!spec.tiedEmbeddings) {
    const o = w('output.weight', width, vocabSize, spec.outputType ?? spec.weightType);
    out.push({ ...o, std: EMBED_GAIN / Math.sqrt(width) });
  }
  for (let l = 0; l < layers; l++) {
    out.push(
      norm(`blk.${l}.attn_norm.weight`),
      w(`blk.${l}.attn_q.weight`, width, width),
      w(`blk.${l}.attn_k.weight`, width, kvWidth),
      w(`blk.${l}.attn_v.weight`, width, kvWidth),
      w(`blk.${l}.attn_output.weight`, width, width),
      norm(`blk.${l}.ffn_norm.weight`),
      w(`blk.${l}.ffn_gate.weight`, width, ffn),
      w(`blk.${l}.ffn_up.weight`, width, ffn),
      w(`blk.${l}.ffn_down.weight`, ffn, width),
    );
  }
  return out;
}

export function validateShape(s: LlamaShape): void {
  const bad = (m: string) => {
    throw new RangeError(`bad model shape: ${m}`);
  };
  for (const [k, v] of Object.entries(s)) if (!(typeof v === 'number' && v > 0)) bad(`${k} = ${v}`);
  if (s.width % s.heads !== 0) bad('width must be a multiple of heads');
  if (s.heads % s.kvHeads !== 0) bad('heads must be a multiple of kvHeads');
  if ((s.width / s.heads) % 2 !== 0) bad('head dimension must be even (rotary pairs)');
}

export interface GeneratedModel {
  readonly path: string;
  readonly bytes: number;
  readonly vocab: Vocab;
}

/** Writes the model to `path` and returns its size and vocabulary. */
export function generateModel(spec: ModelSpec, path: string): GeneratedModel {
  validateShape(spec.shape);
  const vocab = modelVocab(spec);
  const s = spec.shape;
  const bos = vocab.special.get('<|begin_of_text|>') as number;
  const eot = vocab.special.get('<|eot_id|>') as number;
  const metadata: [string, GgufValue][] = [
    ['general.architecture', gguf.str('llama')],
    ['general.name', gguf.str(spec.name)],
    ['general.file_type', gguf.u32(FILE_TYPE[spec.weightType])],
    ['general.quantization_version', gguf.u32(2)],
    ['llama.vocab_size', gguf.u32(vocab.tokens.length)],
    ['llama.context_length', gguf.u32(s.contextLength)],
    ['llama.embedding_length', gguf.u32(s.width)],
    ['llama.block_count', gguf.u32(s.layers)],
    ['llama.feed_forward_length', gguf.u32(s.ffn)],
    ['llama.attention.head_count', gguf.u32(s.heads)],
    ['llama.attention.head_count_kv', gguf.u32(s.kvHeads)],
    ['llama.rope.dimension_count', gguf.u32(s.width / s.heads)],
    ['llama.rope.freq_base', gguf.f32(s.ropeBase)],
    ['llama.attention.layer_norm_rms_epsilon', gguf.f32(s.rmsEps)],
    ['tokenizer.ggml.model', gguf.str('gpt2')],
    ['tokenizer.ggml.pre', gguf.str('llama-bpe')],
    ['tokenizer.ggml.tokens', gguf.arr('string', vocab.tokens)],
    ['tokenizer.ggml.token_type', gguf.arr('i32', vocab.types)],
    ['tokenizer.ggml.merges', gguf.arr('string', vocab.merges)],
    ['tokenizer.ggml.bos_token_id', gguf.u32(bos)],
    ['tokenizer.ggml.eos_token_id', gguf.u32(eot)],
    ['tokenizer.ggml.eot_token_id', gguf.u32(eot)],
    // Prompts carry their own <|begin_of_text|>; llama.cpp must not add another.
    ['tokenizer.ggml.add_bos_token', gguf.bool(false)],
  ];
  const tensors: TensorSpec[] = tensorLayout(spec, vocab.tokens.length).map((t, i) => ({
    name: t.name,
    shape: t.shape,
    type: t.type,
    fill: noise(spec.seed, i, t.std, t.mean),
  }));
  const bytes = writeGguf(path, { metadata, tensors });
  return { path, bytes, vocab };
}
