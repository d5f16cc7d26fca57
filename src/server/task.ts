/**
 * Task definitions the coordinator serves: which model, which strategy (the same src/fl state
 * machines the simulator drives), what clients train, and the serving limits (concurrency,
 * eligibility, norm bound, staleness, checkpoint cadence).
 */
import { z } from 'zod';
import { ConfigError } from '../core/errors.ts';
import { Rng } from '../core/rng.ts';
import { createDataset } from '../data/index.ts';
import { DatasetSpecSchema } from '../data/spec.ts';
import type { Examples } from '../data/types.ts';
import { issuesFromZod } from '../experiment/config.ts';
import { presetConfig } from '../experiment/presets.ts';
import { withPopulation } from '../experiment/run.ts';
import { createStrategy } from '../fl/index.ts';
import { LocalTrainSpecSchema, StrategySpecSchema } from '../fl/spec.ts';
import { type DurableStrategy, isDurable, type Strategy } from '../fl/types.ts';
import { createModel } from '../nn/index.ts';
import type { Model } from '../nn/model.ts';
import { ModelSpecSchema } from '../nn/spec.ts';

const ModelInputSchema = z.strictObject({
  inputKind: z.enum(['dense', 'bags']),
  inputDim: z.number().int().positive(),
  numClasses: z.number().int().min(2),
});

export const TaskSpecSchema = z
  .strictObject({
    taskId: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'letters, digits, _ . - (1–64 characters)'),
    /** Seeds the initial parameters (and the dataset, when the server evaluates on one). */
    seed: z.number().int().nonnegative().default(1),
    /** Where clients' data comes from (simulated fleets) and the server's held-out evaluation set. */
    dataset: DatasetSpecSchema.optional(),
    /** The model's input shape when there is no dataset to read it from. */
    modelInput: ModelInputSchema.optional(),
    model: ModelSpecSchema,
    localTrain: LocalTrainSpecSchema.prefault({}),
    strategy: StrategySpecSchema,
    /** Target number of clients training at once (admission control). */
    concurrency: z.number().int().positive().default(100),
    /** Check-in attributes a device must match exactly to be eligible. */
    eligibility: z.record(z.string(), z.union([z.string(), z.number(), z.boolean()])).default({}),
    /** Updates with an L2 norm above this are rejected (absent: no bound). */
    normBound: z.number().positive().optional(),
    /** An assignment lapses this long after check-in. */
    assignmentTtlMs: z
      .number()
      .int()
      .positive()
      .default(10 * 60_000),
    /**
     * An applied upload's idempotency key is kept this long after its assignment lapsed, then
     * forgotten (storage would otherwise grow by one row per update for good). At-most-once still
     * holds: a lapsed assignment's upload is refused by its signed deadline. A retry later than this
     * gets 409 `not_assigned` instead of its original answer. Allow for clock skew between processes.
     */
    keyRetentionMs: z
      .number()
      .int()
      .nonnegative()
      .default(24 * 60 * 60_000),
    /** A device checking in again sooner than this gets `rate_limited`. */
    minCheckinIntervalMs: z.number().int().nonnegative().default(0),
    /** Pacing hint for devices that were told to wait. */
    waitMs: z.number().int().positive().default(1000),
    /** Checkpoint every N model versions (the journal covers the rest). */
    checkpointEvery: z.number().int().positive().default(1),
    /** Evaluate on the dataset's test set every N versions (0: never). */
    evalEvery: z.number().int().nonnegative().default(5),
    evalSubset: z.number().int().positive().default(2000),
  })
  .superRefine((t, ctx) => {
    if (t.dataset === undefined && t.modelInput === undefined)
      ctx.addIssue({ code: 'custom', path: ['modelInput'], message: 'required without a dataset' });
    if (t.strategy.kind === 'sync' && !Number.isFinite(t.strategy.roundTimeout))
      ctx.addIssue({
        code: 'custom',
        path: ['strategy', 'roundTimeout'],
        message:
          'the server needs a finite roundTimeout (seconds) for sync rounds: a round whose devices went away must still close',
      });
    const privacy = t.strategy.kind === 'fedasync' ? undefined : t.strategy.privacy;
    if (privacy !== undefined) {
      // A version is published only once its checkpoint is durable, so a crash can never make the
      // server release a second, differently noised model for the same step.
      if (t.checkpointEvery !== 1)
        ctx.addIssue({
          code: 'custom',
          path: ['checkpointEvery'],
          message: `must be 1 for a task with privacy (every noised step is checkpointed before it is published), got ${t.checkpointEvery}`,
        });
      if (privacy.population === undefined && t.dataset === undefined)
        ctx.addIssue({
          code: 'custom',
          path: ['strategy', 'privacy', 'population'],
          message: 'required without a dataset (the sampling rate is updates per step / population)',
        });
    }
    if (t.strategy.kind === 'fedbuff' && t.strategy.secureAggregation)
      ctx.addIssue({
        code: 'custom',
        path: ['strategy', 'secureAggregation'],
        message:
          'secure aggregation is simulator-only: its multi-round masking protocol is not served over HTTP',
      });
  });
export type TaskSpec = z.infer<typeof TaskSpecSchema>;

export function parseTaskSpec(raw: unknown): TaskSpec {
  const parsed = TaskSpecSchema.safeParse(raw);
  if (!parsed.success) throw new ConfigError(issuesFromZod(parsed.error), 'task');
  return parsed.data;
}

/**
 * The foundation's default experiment as a served task: label-skewed MNIST over 3000 clients,
 * softmax regression, FedBuff (K = 10, 1/√(1+s) staleness weights, server SGD lr 1), 100 clients
 * training at once, one local epoch of batch 10.
 */
export function defaultTask(taskId = 'mnist-fedbuff'): TaskSpec {
  const config = presetConfig('default');
  const fedbuff = config.runs.find((r) => r.strategy.kind === 'fedbuff');
  if (fedbuff === undefined) throw new Error('the default preset has no FedBuff run');
  return parseTaskSpec({
    taskId,
    seed: config.seed,
    dataset: config.dataset,
    model: config.model,
    localTrain: config.local,
    strategy: fedbuff.strategy,
    concurrency: config.sim.concurrency,
  });
}

/** What serving a task needs in memory: the model, a fresh strategy, the evaluation set. */
export interface TaskRuntime {
  readonly spec: TaskSpec;
  readonly model: Model;
  readonly modelInput: z.infer<typeof ModelInputSchema>;
  readonly initialParams: Float32Array;
  /** Builds a strategy at version 0 (recovery restores a checkpoint into it). */
  newStrategy(): Strategy & DurableStrategy;
  /** Held-out examples, built on first use; null without a dataset. */
  testSet(): Examples | null;
}

export function taskRuntime(spec: TaskSpec): TaskRuntime {
  let dataset: ReturnType<typeof createDataset> | null = null;
  const loadDataset = () => {
    if (spec.dataset === undefined) return null;
    dataset ??= createDataset(spec.dataset, spec.seed);
    return dataset;
  };
  const modelInput =
    spec.modelInput ??
    (() => {
      const d = loadDataset();
      if (d === null) throw new Error('unreachable: the schema requires modelInput without a dataset');
      return { inputKind: d.inputKind, inputDim: d.inputDim, numClasses: d.numClasses };
    })();
  const model = createModel(spec.model, modelInput);
  // Same derivation as the experiment runner, so a served task starts where its simulation does.
  const initialParams = model.init(Rng.derive(spec.seed, 0x1917));
  return {
    spec,
    model,
    modelInput,
    initialParams,
    newStrategy() {
      // As in the simulator, a DP task's population defaults to the dataset's client count.
      const s = spec.strategy;
      const d = s.kind !== 'fedasync' && s.privacy?.population === undefined ? loadDataset() : null;
      const strategySpec = d === null ? s : withPopulation(s, d.numClients);
      const strategy = createStrategy(strategySpec, initialParams);
      if (!isDurable(strategy)) throw new Error(`strategy ${strategy.name} cannot be checkpointed`);
      return strategy;
    },
    testSet() {
      return loadDataset()?.testSet() ?? null;
    },
  };
}
