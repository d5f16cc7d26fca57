/**
 * FedAsync (Xie et al., 2019): every accepted update is mixed into the model at once,
 * x ← (1 − α_s)·x + α_s·x_client with α_s = alpha · w(s). Since x_client = x_base − delta this is
 * implemented as x ← x − α_s·delta on the current model (the usual FedAsync-with-deltas form; it
 * equals the paper's rule when the client's base is the current model). One version per update.
 */
import { ConfigError } from '../../core/errors.ts';
import { axpy } from '../../core/vec.ts';
import type { StalenessSpec } from '../spec.ts';
import type {
  Assignment,
  ClientUpdate,
  DurableStrategy,
  Strategy,
  StrategySnapshot,
  TimerOutcome,
  UpdateOutcome,
} from '../types.ts';
import { AsyncAdmission, checkSnapshot, copySnapshot } from './common.ts';

export interface FedAsyncOptions {
  readonly alpha: number;
  readonly staleness: StalenessSpec;
  readonly maxStaleness: number;
}

const NONE: readonly number[] = Object.freeze([]);

export class FedAsync implements Strategy, DurableStrategy {
  readonly name = 'fedasync';
  private versionNo = 0;
  private current: Float32Array;
  private readonly admission: AsyncAdmission;

  constructor(
    private readonly options: FedAsyncOptions,
    initialParams: Float32Array,
  ) {
    if (!(options.alpha > 0 && options.alpha <= 1))
      throw new ConfigError(
        [{ path: 'alpha', message: `must be in (0, 1], got ${options.alpha}` }],
        'fedasync',
      );
    this.admission = new AsyncAdmission(options.staleness, options.maxStaleness);
    this.current = new Float32Array(initialParams);
  }

  get version(): number {
    return this.versionNo;
  }
  get params(): Float32Array {
    return this.current;
  }

  demand(_now: number, inFlight: number, concurrency: number): number {
    return Math.max(0, concurrency - inFlight);
  }

  assign(clientId: number, _now: number): Assignment {
    this.admission.assign(clientId, this.versionNo);
    return { version: this.versionNo, params: this.current };
  }

  resumeAssignment(clientId: number, version: number): void {
    this.admission.resume(clientId, version, this.versionNo);
  }

  snapshot(): StrategySnapshot {
    return copySnapshot(this.view());
  }

  view(): StrategySnapshot {
    return { version: this.versionNo, params: this.current };
  }

  restore(snapshot: StrategySnapshot): void {
    checkSnapshot(snapshot, this.current.length);
    this.current = new Float32Array(snapshot.params);
    this.versionNo = snapshot.version;
  }

  onUpdate(update: ClientUpdate, _now: number): UpdateOutcome {
    const admitted = this.admission.admit(update, this.current.length, this.versionNo);
    if ('kind' in admitted) return admitted;
    const alphaS = this.options.alpha * admitted.weight;
    // New array: the old snapshot may still be in clients' hands.
    const next = new Float32Array(this.current);
    axpy(next, -alphaS, update.delta);
    this.current = next;
    this.versionNo++;
    return {
      kind: 'accepted',
      staleness: admitted.staleness,
      weight: alphaS,
      stepped: true,
      version: this.versionNo,
      abandoned: NONE,
    };
  }

  onDropout(clientId: number, _now: number): void {
    this.admission.drop(clientId);
  }

  nextDeadline(): number {
    return Number.POSITIVE_INFINITY;
  }

  onTimer(_now: number): TimerOutcome {
    return { stepped: false, version: this.versionNo, abandoned: NONE };
  }
}
