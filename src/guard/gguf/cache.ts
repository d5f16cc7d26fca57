/**
 * Generated models live in a cache folder (never in the repository): `$ORCHARD_CACHE/models/` or
 * `~/.cache/orchard/models/`. A file's name carries a hash of everything that determines its bytes
 * (spec, corpus, generator version), so a changed spec gets a new file and an unchanged one is
 * generated once. Writes are atomic (temp file + rename), so concurrent first uses are safe.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { guardCorpus } from './corpus.ts';
import { generateModel, type ModelSpec } from './model.ts';

/** Bump when the generator's output for the same spec changes. */
const GENERATOR_VERSION = 1;

export function modelCacheDir(): string {
  const root = process.env.ORCHARD_CACHE;
  return root !== undefined && root !== ''
    ? join(root, 'models')
    : join(homedir(), '.cache', 'orchard', 'models');
}

export function specHash(spec: ModelSpec): string {
  return createHash('sha256')
    .update(JSON.stringify({ v: GENERATOR_VERSION, ...spec }))
    .digest('hex')
    .slice(0, 12);
}

export interface CachedModel {
  readonly path: string;
  readonly bytes: number;
  /** False when the file was already there. */
  readonly generated: boolean;
  /** Generation time in ms (0 when cached). */
  readonly ms: number;
}

/** Path of the model for `spec`, generating it first if it is not in `dir` yet. */
export function ensureModel(spec: ModelSpec, dir = modelCacheDir()): CachedModel {
  const path = join(dir, `${spec.name}-${specHash(spec)}.gguf`);
  if (existsSync(path)) return { path, bytes: statSync(path).size, generated: false, ms: 0 };
  mkdirSync(dir, { recursive: true });
  const t0 = performance.now();
  const { bytes } = generateModel(spec, path);
  return { path, bytes, generated: true, ms: performance.now() - t0 };
}

/** A 2-layer, width-64 model with the guard vocabulary (~1.2k tokens): loads in milliseconds. */
export function tinyGuardSpec(overrides: Partial<ModelSpec> = {}): ModelSpec {
  return {
    name: 'tiny-guard',
    shape: {
      layers: 2,
      width: 64,
      heads: 4,
      kvHeads: 2,
      ffn: 128,
      contextLength: 4096,
      ropeBase: 500000,
      rmsEps: 1e-5,
    },
    weightType: 'F32',
    embeddingType: 'F32',
    tiedEmbeddings: true,
    corpus: guardCorpus(),
    seed: 1,
    ...overrides,
  };
}

/**
 * Llama Guard 3 1B INT4's shape: 12 layers (pruned from Llama 3.2 1B's 16), width 2048, 32 query /
 * 8 KV heads, FFN 6400 (pruned from 8192), a 128,256-token vocabulary, 4-bit weights. Every matrix is
 * Q4_0 and the output layer is tied to the token embeddings (no output.weight), as in Llama 3.2 1B:
 * that drops a 2048 × 128,256 Q4_0 matrix (148 MB) and brings the file from ~631 MB to ~485 MB. The
 * trade-off: one matrix serves both as lookup and as classifier, so the logits are only as good as a
 * 4-bit embedding (the real INT4 model instead prunes the output layer to the tokens it needs).
 */
export function lg3OneBInt4Spec(): ModelSpec {
  return {
    name: 'lg3-1b-int4-shape',
    shape: {
      layers: 12,
      width: 2048,
      heads: 32,
      kvHeads: 8,
      ffn: 6400,
      contextLength: 8192,
      ropeBase: 500000,
      rmsEps: 1e-5,
    },
    weightType: 'Q4_0',
    embeddingType: 'Q4_0',
    tiedEmbeddings: true,
    corpus: guardCorpus(),
    vocabSize: 128256,
    seed: 1,
  };
}
