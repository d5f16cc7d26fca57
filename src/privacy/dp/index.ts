/** Differential privacy for Orchard: accountants, calibration, clipping and secure Gaussian noise. */

export { type AdaptiveClipOptions, AdaptiveClipper, updateNoiseMultiplier } from './adaptive-clip.ts';
export {
  ACCOUNTANTS,
  type AccountantKind,
  type EpsilonForInput,
  epsilonFor,
  type NoiseMultiplierForInput,
  noiseMultiplierFor,
} from './calibrate.ts';
export { type ClipResult, clipL2, finiteL2Norm } from './clip.ts';
export {
  addGaussianNoise,
  cryptoRandomSource,
  fillStandardNormal,
  type NoiseOptions,
  type RandomSource,
  snapGranularity,
  snapSensitivityInflation,
} from './noise.ts';
export {
  type PldDirection,
  type PldOptions,
  PrivacyLossDistribution,
  pldDelta,
  pldEpsilon,
  subsampledGaussianPld,
} from './pld.ts';
export {
  computeRdp,
  DEFAULT_RDP_ORDERS,
  RdpAccountant,
  type RdpEpsilon,
  rdpEpsilon,
  rdpSubsampledGaussianStep,
  rdpToEpsilon,
} from './rdp.ts';
