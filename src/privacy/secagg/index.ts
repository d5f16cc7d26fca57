/** Secure aggregation: SecAgg (Bonawitz et al. 2017) and SecAgg+ (Bell et al. 2020). */
export { type ClientPhase, SecAggClient } from './client.ts';
export type { CryptoProvider, MaskTerm, X25519KeyPair } from './crypto.ts';
export { NodeCryptoProvider } from './crypto-node.ts';
export { WebCryptoProvider } from './crypto-web.ts';
export { SecAggError, type SecAggFailure } from './errors.ts';
export {
  decodeSum,
  encodeFixedPoint,
  type FixedPointConfig,
  fixedPointConfig,
  fixedPointFor,
  quantizationStep,
} from './fixedpoint.ts';
export {
  completeGraph,
  hararyGraph,
  majorityThreshold,
  type NeighbourGraph,
  secAggPlusDegree,
} from './graph.ts';
export type * from './messages.ts';
export { holdersOf } from './messages.ts';
export { type DropoutPlan, runSecAgg } from './run.ts';
export { SecAggServer, type ServerPhase } from './server.ts';
export { combineShares, SHAMIR_PRIME, type Share, splitSecret } from './shamir.ts';
