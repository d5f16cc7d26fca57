/**
 * The standard Trainer: builds the plan's model with src/nn's createModel for the device's data
 * shape and runs the foundation's trainLocal (src/fl/client.ts) from the downloaded parameters, so a
 * device trains exactly as a simulated client does.
 */
import { OrchardError } from '../core/errors.ts';
import { Rng } from '../core/rng.ts';
import type { Examples } from '../data/types.ts';
import { TrainScratch, trainLocal } from '../fl/client.ts';
import type { LocalTrainSpec } from '../fl/spec.ts';
import { createModel } from '../nn/index.ts';
import type { Model } from '../nn/model.ts';
import type { ModelSpec } from '../nn/spec.ts';
import type { Trainer, TrainInput, TrainOutput } from './client.ts';
import { OrchardClientError } from './errors.ts';

export interface LocalTrainerOptions {
  /** Classes of the task's label space (the device may hold only some of them). */
  readonly numClasses: number;
  /** Seeds the local shuffles: one Rng stream per trainer, continued across trips. */
  readonly seed: number;
  /** Overrides `seed` with a stream per trip (the fleet derives one from (seed, device, trip)). */
  readonly rngForTrip?: (input: TrainInput) => Rng;
  /** Models and scratch buffers to share between trainers (a fleet of thousands of devices). */
  readonly context?: TrainerContext;
}

/** Built models (by spec) and training scratch; safe to share because training is synchronous. */
export class TrainerContext {
  readonly models = new Map<string, Model>();
  readonly scratch = new TrainScratch();
}

const MODEL_KINDS = new Set(['softmax', 'mlp', 'cnn', 'embedding_bag']);

function checkPlan(plan: TrainInput['plan']): { model: ModelSpec; local: LocalTrainSpec } {
  const model = plan.model as { kind?: unknown } | null;
  const local = plan.localTrain as Partial<LocalTrainSpec> | null;
  if (model === null || typeof model !== 'object' || !MODEL_KINDS.has(model.kind as string))
    throw new OrchardClientError('protocol', `train plan has an unknown model ${JSON.stringify(model)}`);
  if (
    local === null ||
    typeof local !== 'object' ||
    typeof local.epochs !== 'number' ||
    typeof local.batchSize !== 'number' ||
    typeof local.lr !== 'number'
  )
    throw new OrchardClientError(
      'protocol',
      `train plan has an incomplete localTrain ${JSON.stringify(local)}`,
    );
  return { model: model as ModelSpec, local: local as LocalTrainSpec };
}

/** A Trainer over `data`; models are built once per distinct model spec and reused. */
export function localTrainer(data: Examples, options: LocalTrainerOptions): Trainer {
  const { models, scratch } = options.context ?? new TrainerContext();
  const stream = new Rng(options.seed);
  const input = {
    inputKind: data.kind,
    inputDim: data.kind === 'dense' ? data.dim : data.vocab,
    numClasses: options.numClasses,
  };
  return (job: TrainInput): TrainOutput => {
    const { model: spec, local } = checkPlan(job.plan);
    const cacheKey = `${JSON.stringify(spec)}|${input.inputKind}|${input.inputDim}|${input.numClasses}`;
    let model = models.get(cacheKey);
    if (model === undefined) {
      try {
        model = createModel(spec, input);
      } catch (e) {
        if (e instanceof OrchardError)
          throw new OrchardClientError(
            'invalid_argument',
            `the task's model does not fit this device's data: ${e.message}`,
          );
        throw e;
      }
      models.set(cacheKey, model);
    }
    if (model.numParams !== job.params.length)
      throw new OrchardClientError(
        'invalid_argument',
        `the task's model ${model.name} has ${model.numParams} parameters, the server sent ${job.params.length}`,
      );
    const rng = options.rngForTrip?.(job) ?? stream;
    const result = trainLocal(model, job.params, data, local, rng, scratch);
    return { delta: result.delta, numExamples: result.numExamples, loss: result.loss };
  };
}
