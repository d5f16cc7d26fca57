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

/**
 * User-level differential privacy for the sync and FedBuff strategies (absent = no DP). Each update
 * is clipped to an L2 norm (fixed `clipNorm`, or `adaptive` to a target quantile), the server adds
 * N(0, (σ·C)²) to the SUM of a step's clipped updates and divides by the fixed target count. σ is
 * either given (`noiseMultiplier`) or calibrated before the run to `targetEpsilon` at `delta` over
 * `plannedSteps`, with sampling rate q = (updates per step) / population.
 */
export const PrivacySpecSchema = z
  .strictObject({
    /** Fixed clipping norm C. Exactly one of clipNorm / adaptive. */
    clipNorm: z.number().positive().optional(),
    /** Adaptive clipping (Andrew et al. 2021); the count noise is folded into the accounted σ. */
    adaptive: z
      .strictObject({
        targetQuantile: z.number().gt(0).lt(1),
        initialClipNorm: z.number().positive(),
        learningRate: z.number().positive().default(0.2),
        /** σ_b: standard deviation of the noise on the unclipped count (the paper suggests m/20 for m updates per step); must exceed σ/2. */
        countNoiseMultiplier: z.number().positive(),
      })
      .optional(),
    /** σ: noise standard deviation in units of the clip norm. Exactly one of noiseMultiplier / targetEpsilon. */
    noiseMultiplier: z.number().nonnegative().optional(),
    /** Calibrate σ so that `plannedSteps` steps spend this ε at `delta`. */
    targetEpsilon: z.number().positive().optional(),
    plannedSteps: z.number().int().positive().optional(),
    delta: z.number().gt(0).lt(1),
    /** Clients that could be sampled (q = updates per step / population); the experiment runner fills in the dataset's client count. */
    population: z.number().int().positive().optional(),
    accountant: z.enum(['rdp', 'pld']).default('rdp'),
    /** Stop training before a step would push ε past this. */
    budget: z.strictObject({ epsilon: z.number().positive() }).optional(),
  })
  .superRefine((p, ctx) => {
    if ((p.clipNorm === undefined) === (p.adaptive === undefined))
      ctx.addIssue({
        code: 'custom',
        path: ['clipNorm'],
        message: 'set exactly one of clipNorm or adaptive',
      });
    if ((p.noiseMultiplier === undefined) === (p.targetEpsilon === undefined))
      ctx.addIssue({
        code: 'custom',
        path: ['noiseMultiplier'],
        message: 'set exactly one of noiseMultiplier or targetEpsilon',
      });
    if (p.targetEpsilon !== undefined && p.plannedSteps === undefined)
      ctx.addIssue({ code: 'custom', path: ['plannedSteps'], message: 'required with targetEpsilon' });
  });
export type PrivacySpec = z.infer<typeof PrivacySpecSchema>;

/**
 * Secure aggregation of each FedBuff buffer (see src/privacy/secagg/README.md): the buffer's K
 * updates form one SecAgg group and the server learns only their weighted sum.
 */
export const SecureAggregationSpecSchema = z
  .strictObject({
    /** Coordinate clipping range of the (example-share × staleness)-weighted delta. */
    clipRange: z.number().positive().default(1),
    modulusBits: z.number().int().min(2).max(32).default(32),
    /** 'secagg': all pairs; 'secagg+': sparse random neighbour graph. */
    mode: z.enum(['secagg', 'secagg+']).default('secagg'),
    /** Simulated probability that a group member vanishes before sending its masked input. */
    dropoutRate: z.number().min(0).lt(1).default(0),
    /** Seeds the simulated protocol dropouts and the SecAgg+ graph. */
    seed: z.number().int().nonnegative().default(0),
    /**
     * How a buffer becomes a group. 'arrival': the K updates that would fill one plaintext buffer
     * (same steps as plain FedBuff). 'checkin': clients join a forming group when they are assigned
     * work (keys are shared before training); it sums the first K reports, or what it has at the
     * timeout (see src/privacy/secagg/README.md).
     */
    grouping: z.enum(['arrival', 'checkin']).default('arrival'),
    /** 'checkin': extra members per group to absorb stragglers (0.3: 13 members for K = 10). */
    overSelection: z.number().min(0).max(4).default(0.3),
    /** 'checkin': virtual seconds a full group waits for its K reports before closing with fewer (absent: no timeout). */
    groupTimeout: z.number().positive().optional(),
    /**
     * Shamir threshold t over each client's holders (its neighbours and itself); default the
     * smallest majority. Must exceed half the holders (security against the server) and be
     * reachable by the reports that close a group (checked against the group size at start).
     */
    threshold: z.number().int().min(2).optional(),
    /** 'secagg+' only: neighbours per client (graph degree); default about 3·log2 of the group. */
    neighbours: z.number().int().min(2).optional(),
  })
  .superRefine((spec, ctx) => {
    if (spec.neighbours !== undefined && spec.mode !== 'secagg+')
      ctx.addIssue({
        code: 'custom',
        path: ['neighbours'],
        message: "only with mode 'secagg+' (SecAgg connects every pair)",
      });
    if (spec.grouping === 'arrival' && spec.groupTimeout !== undefined)
      ctx.addIssue({
        code: 'custom',
        path: ['groupTimeout'],
        message: "only with grouping 'checkin' (an arrival group closes when its K-th update arrives)",
      });
  });
export type SecureAggregationSpec = z.infer<typeof SecureAggregationSpecSchema>;

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
    privacy: PrivacySpecSchema.optional(),
  }),
  z.strictObject({
    kind: z.literal('fedbuff'),
    /** Updates per server step (K). */
    bufferSize: z.number().int().positive().default(10),
    staleness: StalenessSpecSchema.default({ kind: 'polynomial', exponent: 0.5 }),
    maxStaleness: z.number().int().nonnegative().default(Number.MAX_SAFE_INTEGER),
    serverOptimizer: OptimizerSpecSchema.default({ kind: 'sgd', lr: 1 }),
    privacy: PrivacySpecSchema.optional(),
    secureAggregation: SecureAggregationSpecSchema.optional(),
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
