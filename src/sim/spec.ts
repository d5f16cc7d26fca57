import { z } from 'zod';

/** Distribution of on-device training time (virtual seconds). */
export const DurationSpecSchema = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('constant'), value: z.number().nonnegative() }),
  /** |N(0, sigma²)| + offset — FedBuff paper's training-time model. */
  z.strictObject({
    kind: z.literal('half_normal'),
    sigma: z.number().positive(),
    offset: z.number().nonnegative().default(0),
  }),
  z.strictObject({ kind: z.literal('exponential'), mean: z.number().positive() }),
  /** exp(N(mu, sigma²)) */
  z.strictObject({ kind: z.literal('log_normal'), mu: z.number(), sigma: z.number().nonnegative() }),
  z.strictObject({
    kind: z.literal('uniform'),
    min: z.number().nonnegative(),
    max: z.number().nonnegative(),
  }),
  /** secondsPerExample · examples, times the device's speed factor. */
  z.strictObject({ kind: z.literal('per_example'), secondsPerExample: z.number().positive() }),
]);
export type DurationSpec = z.infer<typeof DurationSpecSchema>;

export const ArrivalSpecSchema = z.discriminatedUnion('kind', [
  /** Keep `concurrency` clients in flight at all times: a new one starts as soon as a slot frees. */
  z.strictObject({ kind: z.literal('saturate') }),
  /** Clients check in at a constant rate (per virtual second); those finding no free slot leave. */
  z.strictObject({ kind: z.literal('constant'), rate: z.number().positive() }),
  /** Poisson check-ins at `rate` per virtual second. */
  z.strictObject({ kind: z.literal('poisson'), rate: z.number().positive() }),
]);
export type ArrivalSpec = z.infer<typeof ArrivalSpecSchema>;

export const SimSpecSchema = z.strictObject({
  concurrency: z.number().int().positive().default(100),
  arrival: ArrivalSpecSchema.default({ kind: 'saturate' }),
  duration: DurationSpecSchema.default({ kind: 'half_normal', sigma: 1, offset: 0 }),
  /** Device speed heterogeneity: each client's duration is multiplied by exp(N(0, speedSigma²)), fixed per client. */
  speedSigma: z.number().nonnegative().default(0),
  /** Probability a started client never reports. Drop happens at a uniform point of its trip. */
  dropoutProbability: z.number().min(0).max(1).default(0),
  /** Network: bytes per second each way (0 = instantaneous). Model size comes from the model. */
  uploadBandwidth: z.number().nonnegative().default(0),
  downloadBandwidth: z.number().nonnegative().default(0),
  /** Stop conditions (any that is set). */
  maxTime: z.number().positive().optional(),
  maxTrips: z.number().int().positive().optional(),
  maxVersions: z.number().int().positive().optional(),
  targetAccuracy: z.number().gt(0).max(1).optional(),
  /** Evaluate the server model every `evalEvery` versions and at the end. */
  evalEvery: z.number().int().positive().default(10),
  /** Cap on test examples used per evaluation (a fixed subset; full set when absent). */
  evalSubset: z.number().int().positive().optional(),
  seed: z.number().int().default(0),
});
export type SimSpec = z.infer<typeof SimSpecSchema>;
