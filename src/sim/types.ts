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
}

export type StopReason = 'target_reached' | 'max_time' | 'max_trips' | 'max_versions' | 'diverged';

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
}
