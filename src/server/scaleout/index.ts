/**
 * Scale-out primitives for running the server's roles as several processes on several machines
 * around one Redis: coordinator leases with fencing tokens, shared admission counters, and the
 * partial-aggregate exchange between aggregators and the task's leader. Each has an in-process
 * counterpart for the embedded single-process server.
 */
export { RedisAdmission } from './admission.ts';
export { ScaleoutError, type ScaleoutErrorCode } from './errors.ts';
export { type FencedLease, type LeaseGrant, LocalFencedLease, RedisLease } from './lease.ts';
export {
  type DeliveredPartial,
  LocalPartialExchange,
  type PartialAggregate,
  type PartialExchange,
  PartialFolder,
  RedisPartialExchange,
} from './partials.ts';
export { connectRedis, type RedisClient, type RedisConnectOptions } from './redis.ts';
