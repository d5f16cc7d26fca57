/** Result and progress types of an experiment; what reports are built from. */
import type { LocalTrainSpec, StrategySpec } from '../fl/spec.ts';
import type { RunSummary } from '../sim/types.ts';
import type { Comparison } from './compare.ts';
import type { ExperimentConfig, TuningSpec } from './config.ts';

/** Progress as reported by the simulator. */
export interface SimProgress {
  readonly time: number;
  readonly trips: number;
  readonly version: number;
  readonly accuracy?: number;
}

/** Which simulation is running. */
export interface RunInfo {
  readonly label: string;
  readonly seed: number;
  readonly phase: 'tune' | 'run';
  /** For tuning: the candidate, e.g. "client lr 0.05, server lr 1". */
  readonly candidate?: string;
  /** Index of this simulation among all the experiment will do, and their total. */
  readonly step: number;
  readonly steps: number;
  /** The stop conditions this simulation runs under. */
  readonly limits: { readonly maxTrips?: number; readonly maxTime?: number; readonly maxVersions?: number };
}

export interface RunOptions {
  onRunStart?: (info: RunInfo) => void;
  onProgress?: (info: RunInfo, progress: SimProgress, fraction: number) => void;
  onRunEnd?: (info: RunInfo, summary: RunSummary) => void;
  log?: (message: string) => void;
}

export interface TuningCandidate {
  readonly clientLr: number;
  readonly serverLr: number;
  /** The metric's value; null when the candidate diverged. */
  readonly score: number | null;
  readonly stopReason: string;
  readonly wallSeconds: number;
}

export interface TuningResult {
  readonly label: string;
  readonly metric: TuningSpec['metric'];
  readonly budget: TuningSpec['budget'];
  readonly candidates: readonly TuningCandidate[];
  /** The chosen candidate; null when every candidate diverged (the run then uses its own settings). */
  readonly best: { readonly clientLr: number; readonly serverLr: number } | null;
}

/** The settings a full run actually used (after tuning). */
export interface RunSettings {
  readonly label: string;
  readonly seed: number;
  readonly strategy: StrategySpec;
  readonly local: LocalTrainSpec;
}

export interface Environment {
  readonly node: string;
  readonly platform: string;
  readonly arch: string;
  readonly cpus: number;
  readonly cpuModel: string;
}

export interface ExperimentResult {
  readonly config: ExperimentConfig;
  readonly target: number | null;
  readonly runs: readonly RunSummary[];
  readonly settings: readonly RunSettings[];
  readonly tuning: readonly TuningResult[];
  readonly comparisons: readonly Comparison[];
  readonly startedAt: string;
  readonly wallSeconds: number;
  readonly environment: Environment;
}
