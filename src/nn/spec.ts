import { z } from 'zod';

/** Model architectures by config. Input shape comes from the dataset, not from here. */
export const ModelSpecSchema = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('softmax') }),
  z.strictObject({
    kind: z.literal('mlp'),
    hidden: z.array(z.number().int().positive()).min(1).default([200]),
    activation: z.enum(['relu', 'tanh']).default('relu'),
  }),
  z.strictObject({
    kind: z.literal('cnn'),
    /** Input image side and channels; the dataset's inputDim must equal side·side·channels. */
    side: z.number().int().positive().default(28),
    channels: z.number().int().positive().default(1),
    conv: z.array(z.number().int().positive()).min(1).default([8, 16]),
    kernel: z.number().int().positive().default(5),
    hidden: z.number().int().positive().default(64),
  }),
  z.strictObject({
    kind: z.literal('embedding_bag'),
    embeddingDim: z.number().int().positive().default(32),
  }),
]);
export type ModelSpec = z.infer<typeof ModelSpecSchema>;
