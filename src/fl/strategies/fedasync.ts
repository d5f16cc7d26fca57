/**
 * FedAsync (Xie et al., 2019): every accepted update is mixed into the model at once,
 * x ← (1 − α_s)·x + α_s·x_client with α_s = alpha · w(s). Since x_client = x_base − delta this is
 * implemented as x ← x − α_s·delta on the current model (the usual FedAsync-with-deltas form; it
 * equals the paper's rule when the client's base is the current model). One version per update.
 */
import { ConfigError, OrchardError } from '../../core/errors.ts';
import { axpy } from '../../core/vec.ts';
import type { StalenessSpec } from '../spec.ts';
import { type StalenessWeight, stalenessWeight } from '../staleness.ts';
import type { Assignment, ClientUpdate, Strategy, TimerOutcome, UpdateOutcome } from '../types.ts';
import { checkUpdate, reject } from './common.ts';

export interface FedAsyncOptions {
  readonly alpha: number;
  readonly staleness: StalenessSpec;
  readonly maxStaleness: number;
}

const NONE: readonly number[] = Object.freeze([]);

export class FedAsync implements Strategy {
  readonly name = 'fedasync';
  private versionNo = 0;
  private current: Float32Array;
  private readonly weightOf: StalenessWeight;
  private readonly assigned = new Map<number, number>();

  constructor(
    private readonly options: FedAsyncOptions,
    initialParams: Float32Array,
  ) {
    if (!(options.alpha > 0 && options.alpha <= 1))
      throw new ConfigError(
        [{ path: 'alpha', message: `must be in (0, 1], got ${options.alpha}` }],
        'fedasync',
      );
    this.weightOf = stalenessWeight(options.staleness);
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
    if (this.assigned.has(clientId))
      throw new OrchardError('INVALID_STATE', `client ${clientId} is already training`);
    this.assigned.set(clientId, this.versionNo);
    return { version: this.versionNo, params: this.current };
  }

  onUpdate(update: ClientUpdate, _now: number): UpdateOutcome {
    const base = this.assigned.get(update.clientId);
    if (base === undefined)
      return reject(
        'not_assigned',
        `client ${update.clientId} is not training (never assigned or already reported)`,
      );
    this.assigned.delete(update.clientId);
    const bad = checkUpdate(update, this.current.length, this.versionNo, base);
    if (bad) return bad;
    const s = this.versionNo - update.baseVersion;
    if (s > this.options.maxStaleness)
      return reject('stale', `staleness ${s} exceeds maxStaleness ${this.options.maxStaleness}`, s);
    const alphaS = this.options.alpha * this.weightOf(s);
    if (alphaS <= 0) return reject('stale', `staleness ${s} has zero weight`, s);
    // New array: the old snapshot may still be in clients' hands.
    const next = new Float32Array(this.current);
    axpy(next, -alphaS, update.delta);
    this.current = next;
    this.versionNo++;
    return {
      kind: 'accepted',
      staleness: s,
      weight: alphaS,
      stepped: true,
      version: this.versionNo,
      abandoned: NONE,
    };
  }

  onDropout(clientId: number, _now: number): void {
    this.assigned.delete(clientId);
  }

  nextDeadline(): number {
    return Number.POSITIVE_INFINITY;
  }

  onTimer(_now: number): TimerOutcome {
    return { stepped: false, version: this.versionNo, abandoned: NONE };
  }
}
