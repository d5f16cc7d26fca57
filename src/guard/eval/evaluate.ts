/**
 * Runs a guard over a labelled dataset and keeps, per example, the ground truth next to the guard's
 * score, verdict and categories. An example whose *input* the guard refuses (an oversized image, an
 * empty text after trimming…) is kept with its error and left out of the metrics; a runtime failure
 * (unreachable endpoint, broken model) stops the run, since every later example would fail too.
 */
import type { Guard } from '../guard.ts';
import { checkConcurrency, mapPool } from '../pool.ts';
import { GUARD_INPUT_ERRORS, GuardError, type GuardResult, type ScoreSource } from '../types.ts';
import type { EvalDataset, EvalExample } from './datasets.ts';

export interface EvalPrediction {
  readonly id: string;
  readonly line: number;
  /** Ground truth. */
  readonly unsafe: boolean;
  readonly categories: readonly string[];
  readonly language?: string;
  /** The guard's answer (absent when `error` is set). */
  readonly score?: number;
  readonly predictedUnsafe?: boolean;
  readonly predictedCategories?: readonly string[];
  readonly unknownCategories?: readonly string[];
  readonly scoreSource?: ScoreSource;
  readonly error?: { readonly code: string; readonly message: string };
}

export interface RunEvalOptions {
  /** Requests in flight at once [4]. */
  readonly concurrency?: number;
  /** Called after each example with (done, total). */
  readonly onProgress?: (done: number, total: number) => void;
  readonly signal?: AbortSignal;
}

function request(example: EvalExample) {
  return {
    ...(example.response === undefined ? {} : { response: example.response }),
    ...(example.image === undefined ? {} : { image: { path: example.image } }),
  };
}

/** The example's identity and ground truth, which every prediction carries. */
function truthOf(example: EvalExample): EvalPrediction {
  return {
    id: example.id,
    line: example.line,
    unsafe: example.unsafe,
    categories: example.categories,
    ...(example.language === undefined ? {} : { language: example.language }),
  };
}

function toPrediction(example: EvalExample, result: GuardResult): EvalPrediction {
  return {
    ...truthOf(example),
    score: result.score,
    predictedUnsafe: !result.safe,
    predictedCategories: result.categories,
    ...(result.unknownCategories === undefined ? {} : { unknownCategories: result.unknownCategories }),
    ...(result.scoreSource === undefined ? {} : { scoreSource: result.scoreSource }),
  };
}

export async function runEval(
  guard: Guard,
  dataset: EvalDataset,
  options: RunEvalOptions = {},
): Promise<EvalPrediction[]> {
  const concurrency = checkConcurrency(options.concurrency ?? 4);
  const examples = dataset.examples;
  let done = 0;
  // Per-example outcomes for input errors; anything else escapes to the pool, which is fail-fast
  // (pool.ts): no further example starts, the ones in flight are aborted, the first error is thrown.
  return mapPool(
    examples,
    concurrency,
    async (example, _i, signal): Promise<EvalPrediction> => {
      let prediction: EvalPrediction;
      try {
        prediction = toPrediction(example, await guard.check(example.text, { ...request(example), signal }));
      } catch (e) {
        if (!(e instanceof GuardError && GUARD_INPUT_ERRORS.has(e.code))) throw e;
        prediction = { ...truthOf(example), error: { code: e.code, message: e.message } };
      }
      done++;
      options.onProgress?.(done, examples.length);
      return prediction;
    },
    options.signal === undefined ? {} : { signal: options.signal },
  );
}
