/**
 * Orchard client SDK (browser-safe: nothing here imports a Node module). Pick a platform adapter:
 * `./platform/node.ts` (nodePlatform, JsonFileStore) or `./platform/browser.ts` (browserPlatform,
 * IndexedDbStore, LocalStorageStore).
 */
export {
  type Assignment,
  type DeviceIdentity,
  isExpiredAssignment,
  OrchardClient,
  type OrchardClientOptions,
  type PendingUpload,
  type RequestEvent,
  type Trainer,
  type TrainInput,
  type TrainOutput,
  type TripOutcome,
  type WaitAdvice,
} from './client.ts';
export { ApiError, type ClientErrorCode, isRetryable, OrchardClientError } from './errors.ts';
export { type FetchLike, type KeyValueStore, MemoryStore, type Platform } from './platform.ts';
export { backoffDelay, DEFAULT_RETRY, type RetryPolicy, retryPolicy } from './retry.ts';
export { type LocalTrainerOptions, localTrainer, TrainerContext } from './trainer.ts';
