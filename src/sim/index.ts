/** Discrete-event federated-learning simulator on a virtual clock. */
export { EventQueue } from './queue.ts';
export {
  NON_FINITE_STORM,
  type SimProgress,
  type SimulateOptions,
  STALENESS_BINS,
  simulate,
} from './simulate.ts';
export {
  type ArrivalSpec,
  ArrivalSpecSchema,
  type DurationSpec,
  DurationSpecSchema,
  type SimSpec,
  SimSpecSchema,
} from './spec.ts';
export {
  type DurationSampler,
  durationSampler,
  modelBytes,
  speedFactor,
  TripTiming,
  transferSeconds,
} from './timing.ts';
export type { CurvePoint, PrivacySummary, RunSummary, StopReason } from './types.ts';
