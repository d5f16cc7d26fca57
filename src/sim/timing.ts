/**
 * How long a simulated client trip takes in virtual seconds: download + on-device training (scaled by
 * the device's fixed speed factor) + upload. Training times are drawn per trip from a DurationSpec; the
 * speed factor is a pure function of (seed, clientId), so a slow phone stays slow on every trip.
 */
import { ConfigError } from '../core/errors.ts';
import { Rng } from '../core/rng.ts';
import type { DurationSpec, SimSpec } from './spec.ts';

/** Bytes of a float32 model with `numParams` parameters (what is sent each way per trip). */
export function modelBytes(numParams: number): number {
  return 4 * numParams;
}

/** Seconds to move `bytes` at `bandwidth` bytes/s; bandwidth 0 means instantaneous. */
export function transferSeconds(bytes: number, bandwidth: number): number {
  return bandwidth > 0 ? bytes / bandwidth : 0;
}

/** Rng.derive stream for device speed factors (distinct from dataset and simulator streams). */
const SPEED_STREAM = 0x5eed;

/** exp(N(0, sigma²)) for client `clientId`: identical for the same (seed, clientId, sigma). */
export function speedFactor(seed: number, clientId: number, sigma: number): number {
  if (sigma === 0) return 1;
  return Math.exp(sigma * Rng.derive(seed, SPEED_STREAM, clientId).normal());
}

/** Draws one training duration for a client holding `examples` examples (before the speed factor). */
export type DurationSampler = (rng: Rng, examples: number) => number;

export function durationSampler(spec: DurationSpec): DurationSampler {
  switch (spec.kind) {
    case 'constant': {
      const v = spec.value;
      return () => v;
    }
    case 'half_normal': {
      const { sigma, offset } = spec;
      return (rng) => Math.abs(sigma * rng.normal()) + offset;
    }
    case 'exponential': {
      const mean = spec.mean;
      return (rng) => -Math.log(rng.nextOpen()) * mean;
    }
    case 'log_normal': {
      const { mu, sigma } = spec;
      return (rng) => Math.exp(mu + sigma * rng.normal());
    }
    case 'uniform': {
      const { min, max } = spec;
      if (!(min <= max))
        throw new ConfigError([{ path: 'sim.duration', message: `uniform min ${min} exceeds max ${max}` }]);
      return (rng) => min + (max - min) * rng.next();
    }
    case 'per_example': {
      const s = spec.secondsPerExample;
      return (_rng, examples) => s * examples;
    }
  }
}

/** Trip timing for one run: the parts of SimSpec that decide how long a trip takes. */
export class TripTiming {
  private readonly sample: DurationSampler;
  private readonly seed: number;
  private readonly speedSigma: number;
  readonly downloadSeconds: number;
  readonly uploadSeconds: number;

  constructor(
    sim: Pick<SimSpec, 'duration' | 'speedSigma' | 'uploadBandwidth' | 'downloadBandwidth' | 'seed'>,
    numParams: number,
  ) {
    this.sample = durationSampler(sim.duration);
    this.seed = sim.seed;
    this.speedSigma = sim.speedSigma;
    const bytes = modelBytes(numParams);
    this.downloadSeconds = transferSeconds(bytes, sim.downloadBandwidth);
    this.uploadSeconds = transferSeconds(bytes, sim.uploadBandwidth);
  }

  /** On-device training seconds for this trip of `clientId` (speed factor applied). */
  trainSeconds(rng: Rng, clientId: number, examples: number): number {
    return this.sample(rng, examples) * speedFactor(this.seed, clientId, this.speedSigma);
  }

  /** Whole trip: download, training, upload. */
  tripSeconds(rng: Rng, clientId: number, examples: number): number {
    return this.downloadSeconds + this.trainSeconds(rng, clientId, examples) + this.uploadSeconds;
  }
}
