/** Federated learning core: local client training, staleness weighting, aggregation strategies. */
import { invalidArgument } from '../core/errors.ts';
import { allFinite } from '../core/vec.ts';
import type { StrategySpec } from './spec.ts';
import { FedAsync } from './strategies/fedasync.ts';
import { FedBuff } from './strategies/fedbuff.ts';
import { SyncRounds } from './strategies/sync.ts';
import type { Strategy } from './types.ts';

export { accumulate } from './aggregate.ts';
export { type LocalResult, TrainScratch, trainLocal } from './client.ts';
export { type StalenessWeight, stalenessWeight } from './staleness.ts';
export {
  DpAggregator,
  isPrivate,
  type PrivacyReport,
  type PrivacySpent,
  type PrivateStrategy,
  type ResolvedPrivacy,
  resolvePrivacy,
} from './strategies/dp.ts';
export { FedAsync, type FedAsyncOptions } from './strategies/fedasync.ts';
export { FedBuff, type FedBuffOptions } from './strategies/fedbuff.ts';
export { type SyncOptions, SyncRounds, syncName } from './strategies/sync.ts';

/**
 * Builds the strategy for a parsed StrategySpec. Names: 'fedavg' / 'fedavgm' / 'fedadam' for sync
 * rounds by server optimizer, 'fedbuff', 'fedasync'; with a `privacy` block (sync and fedbuff) the
 * name gets a 'dp-' prefix and the strategy implements PrivateStrategy (see strategies/dp.ts; the
 * block needs `population`, which the experiment runner fills in). `initialParams` is copied.
 */
export function createStrategy(spec: StrategySpec, initialParams: Float32Array): Strategy {
  if (!allFinite(initialParams)) throw invalidArgument('initial parameters contain NaN or Infinity');
  switch (spec.kind) {
    case 'sync':
      return new SyncRounds(spec, initialParams);
    case 'fedbuff':
      return new FedBuff(spec, initialParams);
    case 'fedasync':
      return new FedAsync(spec, initialParams);
    default: {
      const unknown: never = spec;
      throw invalidArgument(`unknown strategy kind ${JSON.stringify((unknown as { kind: unknown }).kind)}`);
    }
  }
}
