import { z } from 'zod';

export const PartitionSpecSchema = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('iid') }),
  /** Label skew: each client's class mix ~ Dirichlet(alpha). Small alpha = few classes per client. */
  z.strictObject({ kind: z.literal('dirichlet'), alpha: z.number().positive() }),
  /** Quantity skew: client sizes ~ Dirichlet(alpha) over clients (labels IID). */
  z.strictObject({ kind: z.literal('quantity'), alpha: z.number().positive() }),
]);
export type PartitionSpec = z.infer<typeof PartitionSpecSchema>;

export const DatasetSpecSchema = z.discriminatedUnion('kind', [
  z.strictObject({
    kind: z.literal('synthetic'),
    /** LEAF Synthetic(alpha, beta): alpha = model heterogeneity, beta = feature heterogeneity. */
    alpha: z.number().nonnegative().default(1),
    beta: z.number().nonnegative().default(1),
    numClients: z.number().int().positive().default(1000),
    dim: z.number().int().positive().default(60),
    numClasses: z.number().int().min(2).default(10),
    /** Examples per client: fixed, or log-normal (as LEAF) when `examplesSigma` > 0. */
    examplesPerClient: z.number().int().positive().default(20),
    examplesSigma: z.number().nonnegative().default(0),
    testSize: z.number().int().positive().default(2000),
  }),
  z.strictObject({
    kind: z.literal('mnist'),
    numClients: z.number().int().positive().default(1000),
    partition: PartitionSpecSchema.default({ kind: 'iid' }),
    /** Fraction of the pooled examples held out for server-side evaluation. */
    testFraction: z.number().gt(0).lt(1).default(0.15),
  }),
  z.strictObject({
    kind: z.literal('spam'),
    numClients: z.number().int().positive().default(200),
    partition: PartitionSpecSchema.default({ kind: 'iid' }),
    testFraction: z.number().gt(0).lt(1).default(0.2),
    /** Hash buckets for word uni/bi-grams. */
    buckets: z.number().int().positive().default(4096),
  }),
  z.strictObject({
    kind: z.literal('file'),
    /** CSV or JSONL file with one example per row and a client-id column. */
    path: z.string().min(1),
    format: z.enum(['csv', 'jsonl']).optional(),
    clientColumn: z.string().default('client_id'),
    labelColumn: z.string().default('label'),
    testFraction: z.number().gt(0).lt(1).default(0.2),
  }),
]);
export type DatasetSpec = z.infer<typeof DatasetSpecSchema>;
