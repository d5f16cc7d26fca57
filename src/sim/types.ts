/** What one simulated run produces; the report, CSV and results.json are built from this alone. */

export interface CurvePoint {
  /** Virtual seconds since the start of the run. */
  readonly time: number;
  /** Client trips completed so far (updates that reached the server, accepted or not). */
  readonly trips: number;
  /** Server model version at evaluation time. */
  readonly version: number;
  readonly bytesUp: number;
  readonly bytesDown: number;
  readonly accuracy: number;
  readonly loss: number;
  /** Clients training at this moment. */
  readonly inFlight: number;
  /** Privacy spent so far (ε at the run's δ); only for strategies with DP. */
  readonly epsilon?: number;
}

export type StopReason =
  | 'target_reached'
  | 'max_time'
  | 'max_trips'
  | 'max_versions'
  | 'diverged'
  /** The next server step would have spent more than the configured ε budget. */
  | 'privacy_budget';

/** Differential-privacy figures of a run with a DP strategy. */
export interface PrivacySummary {
  readonly epsilon: number;
  readonly delta: number;
  readonly noiseMultiplier: number;
  /** Clip norm at the end of the run (moves under adaptive clipping). */
  readonly clipNorm: number;
  /** Noised server steps released. */
  readonly steps: number;
  readonly accountant: 'rdp' | 'pld';
}

export interface RunSummary {
  /** Label shown in reports, e.g. "FedBuff (K=10)". */
  readonly label: string;
  /** Strategy name, e.g. "fedbuff". */
  readonly strategy: string;
  readonly seed: number;
  readonly stopReason: StopReason;
  /** Human-readable detail, e.g. the divergence message. */
  readonly stopMessage?: string;
  readonly curve: readonly CurvePoint[];
  readonly finalAccuracy: number;
  readonly finalLoss: number;
  /** First point where accuracy ≥ target, if a target was set and reached. */
  readonly toTarget?: {
    readonly time: number;
    readonly trips: number;
    readonly bytesUp: number;
    readonly version: number;
  };
  readonly counts: {
    readonly started: number;
    readonly completed: number;
    readonly accepted: number;
    readonly droppedOut: number;
    readonly abandoned: number;
    readonly rejected: Readonly<Record<string, number>>;
    /** Check-ins (constant/poisson arrivals) that left because no slot was free or no client was wanted. */
    readonly turnedAway?: number;
  };
  /** stalenessHistogram[s] = accepted updates with staleness s (last bin collects the tail). */
  readonly stalenessHistogram: readonly number[];
  readonly virtualSeconds: number;
  readonly wallSeconds: number;
  readonly bytesUp: number;
  readonly bytesDown: number;
  /** Present when the strategy applied user-level DP. */
  readonly privacy?: PrivacySummary;
}
