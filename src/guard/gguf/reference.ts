/**
 * A plain-JS forward pass of a llama-architecture GGUF model: the second method the tests compare
 * llama.cpp's output against. It takes tensor locations from node-llama-cpp's own GGUF parser (not
 * our writer), and follows the llama architecture as specified: RMSNorm, rotary embeddings on adjacent
 * pairs (llama.cpp's "normal" rope for the llama arch), grouped-query causal attention, SwiGLU, and
 * logits from output.weight or, when absent, token_embd.weight. Slow and only for tiny models.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { readGgufFileInfo } from 'node-llama-cpp';
import { decodeTensor, GgmlTypeId, type TensorType, tensorBytes } from './quant.ts';

const TYPE_BY_ID = new Map<number, TensorType>(
  Object.entries(GgmlTypeId).map(([k, v]) => [v, k as TensorType]),
);

export interface ReferenceModel {
  readonly width: number;
  readonly heads: number;
  readonly kvHeads: number;
  readonly layers: number;
  readonly ffn: number;
  readonly vocab: number;
  readonly ropeBase: number;
  readonly eps: number;
  readonly tensors: ReadonlyMap<string, Float32Array>;
}

export async function loadReference(path: string): Promise<ReferenceModel> {
  const info = await readGgufFileInfo(path, { logWarnings: false });
  const md = info.metadata as unknown as Record<string, Record<string, unknown>>;
  const llama = md.llama as Record<string, unknown>;
  const attention = llama.attention as Record<string, number>;
  const rope = llama.rope as Record<string, number>;
  const tensors = new Map<string, Float32Array>();
  const fd = openSync(path, 'r');
  try {
    for (const t of info.tensorInfo ?? []) {
      const type = TYPE_BY_ID.get(t.ggmlType);
      if (type === undefined) throw new Error(`unsupported tensor type ${t.ggmlType}`);
      const count = t.dimensions.reduce<number>((a, d) => a * Number(d), 1);
      const bytes = new Uint8Array(tensorBytes(type, count));
      readSync(fd, bytes, 0, bytes.length, Number(t.fileOffset));
      tensors.set(t.name, decodeTensor(type, bytes, count));
    }
  } finally {
    closeSync(fd);
  }
  const emb = info.tensorInfo?.find((t) => t.name === 'token_embd.weight');
  return {
    width: llama.embedding_length as number,
    heads: attention.head_count as number,
    kvHeads: attention.head_count_kv as number,
    layers: llama.block_count as number,
    ffn: llama.feed_forward_length as number,
    vocab: Number(emb?.dimensions[1]),
    ropeBase: rope.freq_base as number,
    eps: attention.layer_norm_rms_epsilon as number,
    tensors,
  };
}

function get(m: ReferenceModel, name: string): Float32Array {
  const t = m.tensors.get(name);
  if (!t) throw new Error(`missing tensor ${name}`);
  return t;
}

/** y = W x for a ggml weight of shape [n_in, n_out] (row o is W[o*n_in .. (o+1)*n_in]). */
function matvec(w: Float32Array, x: Float64Array, nIn: number, nOut: number): Float64Array {
  const y = new Float64Array(nOut);
  for (let o = 0; o < nOut; o++) {
    let s = 0;
    const base = o * nIn;
    for (let i = 0; i < nIn; i++) s += (w[base + i] as number) * (x[i] as number);
    y[o] = s;
  }
  return y;
}

function rmsNorm(x: Float64Array, g: Float32Array, eps: number): Float64Array {
  let ss = 0;
  for (const v of x) ss += v * v;
  const r = 1 / Math.sqrt(ss / x.length + eps);
  return x.map((v, i) => v * r * (g[i] as number));
}

function rope(v: Float64Array, heads: number, headDim: number, pos: number, base: number): void {
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < headDim / 2; i++) {
      const theta = pos * base ** (-(2 * i) / headDim);
      const c = Math.cos(theta);
      const s = Math.sin(theta);
      const a = h * headDim + 2 * i;
      const x0 = v[a] as number;
      const x1 = v[a + 1] as number;
      v[a] = x0 * c - x1 * s;
      v[a + 1] = x0 * s + x1 * c;
    }
  }
}

/** Logits after the last token of `tokens` (a full, uncached evaluation). */
export function referenceLogits(m: ReferenceModel, tokens: readonly number[]): Float64Array {
  const out = m.tensors.get('output.weight') ?? get(m, 'token_embd.weight');
  return matvec(out, referenceHidden(m, tokens), m.width, m.vocab);
}

/** The final hidden state (after output_norm) at the last token: what the output matrix multiplies. */
export function referenceHidden(m: ReferenceModel, tokens: readonly number[]): Float64Array {
  const { width, heads, kvHeads, ffn, eps } = m;
  const headDim = width / heads;
  const kvWidth = headDim * kvHeads;
  const emb = get(m, 'token_embd.weight');
  let xs = tokens.map((t) => Float64Array.from(emb.subarray(t * width, (t + 1) * width)));
  for (let l = 0; l < m.layers; l++) {
    const p = `blk.${l}.`;
    const ks: Float64Array[] = [];
    const vs: Float64Array[] = [];
    const qs: Float64Array[] = [];
    xs.forEach((x, pos) => {
      const h = rmsNorm(x, get(m, `${p}attn_norm.weight`), eps);
      const q = matvec(get(m, `${p}attn_q.weight`), h, width, width);
      const k = matvec(get(m, `${p}attn_k.weight`), h, width, kvWidth);
      rope(q, heads, headDim, pos, m.ropeBase);
      rope(k, kvHeads, headDim, pos, m.ropeBase);
      qs.push(q);
      ks.push(k);
      vs.push(matvec(get(m, `${p}attn_v.weight`), h, width, kvWidth));
    });
    xs = xs.map((x, pos) => {
      const att = new Float64Array(width);
      for (let h = 0; h < heads; h++) {
        const kh = Math.floor(h / (heads / kvHeads));
        const q = qs[pos] as Float64Array;
        const scores: number[] = [];
        for (let j = 0; j <= pos; j++) {
          let s = 0;
          const k = ks[j] as Float64Array;
          for (let d = 0; d < headDim; d++)
            s += (q[h * headDim + d] as number) * (k[kh * headDim + d] as number);
          scores.push(s / Math.sqrt(headDim));
        }
        const mx = Math.max(...scores);
        const e = scores.map((s) => Math.exp(s - mx));
        const z = e.reduce((a, b) => a + b, 0);
        for (let j = 0; j <= pos; j++) {
          const v = vs[j] as Float64Array;
          const w = (e[j] as number) / z;
          for (let d = 0; d < headDim; d++) {
            const i = h * headDim + d;
            att[i] = (att[i] as number) + w * (v[kh * headDim + d] as number);
          }
        }
      }
      const o = matvec(get(m, `${p}attn_output.weight`), att, width, width);
      const x1 = x.map((v, i) => v + (o[i] as number));
      const h2 = rmsNorm(x1, get(m, `${p}ffn_norm.weight`), eps);
      const g = matvec(get(m, `${p}ffn_gate.weight`), h2, width, ffn);
      const u = matvec(get(m, `${p}ffn_up.weight`), h2, width, ffn);
      const a = g.map((gv, i) => (gv / (1 + Math.exp(-gv))) * (u[i] as number));
      const d = matvec(get(m, `${p}ffn_down.weight`), a, ffn, width);
      return x1.map((v, i) => v + (d[i] as number));
    });
  }
  return rmsNorm(xs[xs.length - 1] as Float64Array, get(m, 'output_norm.weight'), eps);
}
