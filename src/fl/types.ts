/**
 * The contract between aggregation strategies and whatever drives them (the simulator, the network
 * server). A strategy is a pure state machine: no clocks, no I/O, no randomness of its own beyond a
 * seeded rng given at construction. Drivers pass the current time in.
 *
 * Parameter arrays handed out by a strategy (`params`, `Assignment.params`) are immutable snapshots:
 * a server step builds a new array instead of writing into the old one, so a client that downloaded
 * version v keeps training from exactly version v.
 */

import type { OptimizerState } from '../nn/optim.ts';

export interface ClientUpdate {
  readonly clientId: number;
  /** The model version the client downloaded and trained from. */
  readonly baseVersion: number;
  /** start params − trained params (a pseudo-gradient: the server subtracts it). */
  readonly delta: Float32Array;
  /** Training examples behind the update (example weight). */
  readonly numExamples: number;
  readonly trainLoss?: number;
  /**
   * Set only by a caller that already proved every value of `delta` finite (the server's
   * aggregator does, in the same pass as the norm bound), so the strategy skips its own scan.
   * Anything else (simulator, journal replay) leaves it unset and the strategy checks.
   */
  readonly verifiedFinite?: true;
}

export interface Assignment {
  readonly version: number;
  readonly params: Float32Array;
  /** Sync strategies: the round this client belongs to. */
  readonly round?: number;
}

export type RejectReason =
  | 'stale' // staleness above the configured maximum
  | 'wrong_round' // sync: the round it was selected for has closed
  | 'shape' // delta length differs from the model
  | 'non_finite' // NaN or Infinity in the delta
  | 'unknown_version' // base version from the future or never issued
  | 'not_assigned' // client was never assigned (or already reported)
  | 'secagg_abort'; // its secure-aggregation group fell below threshold: the whole buffer is lost

export type UpdateOutcome =
  | {
      readonly kind: 'accepted';
      readonly staleness: number;
      /** Effective aggregation weight (example weight × staleness weight, before normalization). */
      readonly weight: number;
      /** True when this update completed a buffer/round and the server stepped. */
      readonly stepped: boolean;
      /** Model version after handling the update. */
      readonly version: number;
      /** Clients whose work is no longer wanted (e.g. stragglers of a closed sync round). */
      readonly abandoned: readonly number[];
    }
  | {
      readonly kind: 'rejected';
      readonly reason: RejectReason;
      readonly message: string;
      readonly staleness?: number;
      /** Updates this rejection discards (default 1; a secure-aggregation abort loses a whole buffer). */
      readonly count?: number;
    };

export interface TimerOutcome {
  readonly stepped: boolean;
  readonly version: number;
  readonly abandoned: readonly number[];
}

/** Everything a durable strategy's future behaviour depends on, apart from open assignments. */
export interface StrategySnapshot {
  readonly version: number;
  readonly params: Float32Array;
  /** FedBuff: the partly filled buffer (weighted sum, updates, examples). */
  readonly buffer?: { readonly sum: Float32Array; readonly count: number; readonly examples: number };
  /** Server optimizer state (momentum velocity, Adam moments and step count). */
  readonly optimizer?: OptimizerState;
  /**
   * Sync rounds: the open round's number, how many of its selected clients already reported or
   * dropped out, and when it opened / must close (driver time; null: not yet / no forced close).
   * Its partial sum is `buffer` (count = updates received, examples = their example total).
   */
  readonly round?: {
    readonly number: number;
    readonly settled: number;
    readonly openedAt: number | null;
    readonly closeDueAt: number | null;
  };
  /**
   * User-level DP: noised steps released so far (the accountant's ledger: σ and q are fixed per
   * task), the clip norm for the next step (adaptive clipping moves it) and the current step's
   * unclipped update norms; the step's clipped sum is `buffer.sum`.
   */
  readonly privacy?: { readonly steps: number; readonly clipNorm: number; readonly norms: readonly number[] };
}

/**
 * Hooks for drivers that must survive restarts (the network server): checkpoint and restore the
 * state, and re-establish an assignment handed out before the restart (or by another process).
 */
export interface DurableStrategy {
  /** Client `clientId` trains from `version` (≤ the current version), as if assigned back then. */
  resumeAssignment(clientId: number, version: number): void;
  /** A deep copy of the state (no open assignments). */
  snapshot(): StrategySnapshot;
  /**
   * The same state as `snapshot`, but its arrays may be the strategy's own (no copies): valid only
   * until the strategy next changes, for a caller that encodes or copies it at once.
   */
  view(): StrategySnapshot;
  /** Replaces the state with a snapshot of a strategy built from the same spec and model size. */
  restore(snapshot: StrategySnapshot): void;
}

export function isDurable(strategy: Strategy): strategy is Strategy & DurableStrategy {
  const s = strategy as Partial<DurableStrategy>;
  return (
    typeof s.snapshot === 'function' &&
    typeof s.restore === 'function' &&
    typeof s.resumeAssignment === 'function'
  );
}

export interface Strategy {
  readonly name: string;
  /** Current model version; starts at 0 and increases by one per server step. */
  readonly version: number;
  /** Current global parameters (immutable snapshot). */
  readonly params: Float32Array;
  /** How many new clients the strategy wants started now, given `inFlight` clients already training
   *  and a driver-imposed cap of `concurrency` simultaneous clients. */
  demand(now: number, inFlight: number, concurrency: number): number;
  /** Client `clientId` starts: returns what it trains from. */
  assign(clientId: number, now: number): Assignment;
  /** A trained update arrives. */
  onUpdate(update: ClientUpdate, now: number): UpdateOutcome;
  /** An assigned client will never report (dropout, failure, cancellation). */
  onDropout(clientId: number, now: number): void;
  /** Virtual time of the next deadline the strategy needs (sync round timeout), or Infinity. */
  nextDeadline(): number;
  /** Called by the driver at (or after) `nextDeadline()`. */
  onTimer(now: number): TimerOutcome;
}
