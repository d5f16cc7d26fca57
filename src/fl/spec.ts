import { z } from 'zod';

export const OptimizerSpecSchema = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('sgd'), lr: z.number().positive() }),
  z.strictObject({
    kind: z.literal('momentum'),
    lr: z.number().positive(),
    momentum: z.number().min(0).lt(1).default(0.9),
    nesterov: z.boolean().default(false),
  }),
  z.strictObject({
    kind: z.literal('adam'),
    lr: z.number().positive(),
    beta1: z.number().min(0).lt(1).default(0.9),
    beta2: z.number().min(0).lt(1).default(0.99),
    /** FedAdam's tau (adaptivity); Adam's epsilon. */
    eps: z.number().positive().default(1e-3),
  }),
]);
export type OptimizerSpec = z.infer<typeof OptimizerSpecSchema>;

/** Client-side local training. */
export const LocalTrainSpecSchema = z.strictObject({
  epochs: z.number().int().positive().default(1),
  batchSize: z.number().int().positive().default(10),
  lr: z.number().positive().default(0.05),
  /** Optional cap on local steps per trip. */
  maxSteps: z.number().int().positive().optional(),
});
export type LocalTrainSpec = z.infer<typeof LocalTrainSpecSchema>;

export const StalenessSpecSchema = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('constant') }),
  /** w(s) = 1 / (1 + s)^exponent */
  z.strictObject({ kind: z.literal('polynomial'), exponent: z.number().nonnegative().default(0.5) }),
  /** w(s) = 1 for s <= threshold, else 1 / (1 + slope·(s − threshold)) (FedAsync's hinge) */
  z.strictObject({
    kind: z.literal('hinge'),
    threshold: z.number().int().nonnegative().default(10),
    slope: z.number().nonnegative().default(1),
  }),
  /** w(s) = 1 for s <= threshold, else 0-weight rejection handled by maxStaleness */
  z.strictObject({ kind: z.literal('threshold'), threshold: z.number().int().nonnegative() }),
]);
export type StalenessSpec = z.infer<typeof StalenessSpecSchema>;

export const StrategySpecSchema = z.discriminatedUnion('kind', [
  z.strictObject({
    kind: z.literal('sync'),
    /** Clients whose updates close a round. */
    cohortSize: z.number().int().positive().default(100),
    /** Extra fraction selected to absorb stragglers/dropouts (0.3 = select 130 for a cohort of 100). */
    overSelection: z.number().nonnegative().default(0.3),
    /** Virtual seconds before a round closes with what it has (stragglers dropped). */
    roundTimeout: z.number().positive().default(Number.POSITIVE_INFINITY),
    /** A round that times out with fewer updates than this is discarded and restarted. */
    minUpdates: z.number().int().positive().default(1),
    /** FedAvg = sgd lr 1; FedAvgM = momentum; FedAdam = adam. */
    serverOptimizer: OptimizerSpecSchema.default({ kind: 'sgd', lr: 1 }),
  }),
  z.strictObject({
    kind: z.literal('fedbuff'),
    /** Updates per server step (K). */
    bufferSize: z.number().int().positive().default(10),
    staleness: StalenessSpecSchema.default({ kind: 'polynomial', exponent: 0.5 }),
    maxStaleness: z.number().int().nonnegative().default(Number.MAX_SAFE_INTEGER),
    serverOptimizer: OptimizerSpecSchema.default({ kind: 'sgd', lr: 1 }),
  }),
  z.strictObject({
    kind: z.literal('fedasync'),
    /** Mixing rate: x ← (1 − α_s) x + α_s x_client, α_s = alpha · staleness weight. */
    alpha: z.number().gt(0).max(1).default(0.6),
    staleness: StalenessSpecSchema.default({ kind: 'polynomial', exponent: 0.5 }),
    maxStaleness: z.number().int().nonnegative().default(Number.MAX_SAFE_INTEGER),
  }),
]);
export type StrategySpec = z.infer<typeof StrategySpecSchema>;
