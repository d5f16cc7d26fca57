/**
 * Dataset entry point: `createDataset` builds the FederatedDataset a DatasetSpec describes. Pool datasets
 * (MNIST, spam) are split train/test (stratified) and the training part partitioned over clients, each
 * step with its own rng stream derived from `seed`, so the same (spec, seed) always gives the same data.
 */
import { Rng } from '../core/rng.ts';
import { federatedFromPool, selectRows, trainTestSplit } from './federated.ts';
import { loadFileDataset } from './loaders.ts';
import { loadMnist, MNIST_CLASSES } from './mnist.ts';
import { partitionFromSpec } from './partition.ts';
import { loadSpam } from './spam.ts';
import type { DatasetSpec, PartitionSpec } from './spec.ts';
import { syntheticDataset } from './synthetic.ts';
import type { Examples, FederatedDataset } from './types.ts';

export { federatedFromPool, type Split, selectRows, trainTestSplit } from './federated.ts';
export { type FileDataset, type FileDatasetOptions, loadFileDataset, parseCsv } from './loaders.ts';
export { loadMnist, MNIST_CLASSES, MNIST_DIM } from './mnist.ts';
export {
  dirichletPartition,
  iidPartition,
  type Partition,
  partitionFromSpec,
  quantityPartition,
} from './partition.ts';
export { fnv1a, loadSpam, messageText } from './spam.ts';
export { type SyntheticOptions, syntheticDataset } from './synthetic.ts';

const SPLIT_STREAM = 1;
const PARTITION_STREAM = 2;

function pooled(
  name: string,
  pool: Examples,
  numClasses: number,
  numClients: number,
  partition: PartitionSpec,
  testFraction: number,
  seed: number,
): FederatedDataset {
  const split = trainTestSplit(pool.y, testFraction, Rng.derive(seed, SPLIT_STREAM));
  const train = selectRows(pool, split.train);
  const parts = partitionFromSpec(
    partition,
    train.y,
    numClasses,
    numClients,
    Rng.derive(seed, PARTITION_STREAM),
  );
  return federatedFromPool(name, train, parts, selectRows(pool, split.test), numClasses);
}

/** The federated dataset for a (parsed, defaulted) DatasetSpec. */
export function createDataset(spec: DatasetSpec, seed: number): FederatedDataset {
  switch (spec.kind) {
    case 'synthetic':
      return syntheticDataset({ ...spec, seed });
    case 'mnist':
      return pooled(
        `mnist/${spec.partition.kind}`,
        loadMnist(),
        MNIST_CLASSES,
        spec.numClients,
        spec.partition,
        spec.testFraction,
        seed,
      );
    case 'spam':
      return pooled(
        `spam/${spec.partition.kind}`,
        loadSpam(spec.buckets),
        2,
        spec.numClients,
        spec.partition,
        spec.testFraction,
        seed,
      );
    case 'file':
      return loadFileDataset({
        path: spec.path,
        format: spec.format,
        clientColumn: spec.clientColumn,
        labelColumn: spec.labelColumn,
        testFraction: spec.testFraction,
        seed,
      });
  }
}
