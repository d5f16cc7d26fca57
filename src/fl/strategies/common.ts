/** Pieces every strategy shares: update validation and the immutable-snapshot server step. */

import { OrchardError } from '../../core/errors.ts';
import { allFinite } from '../../core/vec.ts';
import { createOptimizer, type Optimizer, type OptimizerState } from '../../nn/optim.ts';
import type { OptimizerSpec, StalenessSpec } from '../spec.ts';
import { type StalenessWeight, stalenessWeight } from '../staleness.ts';
import type { ClientUpdate, RejectReason, StrategySnapshot, UpdateOutcome } from '../types.ts';

export type Rejection = Extract<UpdateOutcome, { kind: 'rejected' }>;

export function reject(reason: RejectReason, message: string, staleness?: number): Rejection {
  return staleness === undefined
    ? { kind: 'rejected', reason, message }
    : { kind: 'rejected', reason, message, staleness };
}

/** A deep copy of a `view()` (optimizer slots and DP state come copied already). */
export function copySnapshot(view: StrategySnapshot): StrategySnapshot {
  return {
    ...view,
    params: new Float32Array(view.params),
    ...(view.buffer === undefined
      ? {}
      : { buffer: { ...view.buffer, sum: new Float32Array(view.buffer.sum) } }),
  };
}

/** Validates a snapshot's version and model size before a strategy adopts any of it. */
export function checkSnapshot(snapshot: StrategySnapshot, numParams: number): void {
  const { version, params } = snapshot;
  if (!(Number.isInteger(version) && version >= 0))
    throw new OrchardError('INVALID_ARGUMENT', `snapshot version must be an integer ≥ 0, got ${version}`);
  if (params.length !== numParams)
    throw new OrchardError(
      'SHAPE_MISMATCH',
      `snapshot has ${params.length} parameters, the model ${numParams}`,
    );
}

/**
 * Checks that do not depend on strategy state beyond the model size and current version. The
 * assignment check comes first in each strategy, so a stranger never learns anything else.
 */
export function checkUpdate(
  update: ClientUpdate,
  numParams: number,
  version: number,
  assignedVersion: number,
  /**
   * false only where the caller proves finiteness itself (the DP path's fail-closed norm); an
   * update flagged `verifiedFinite` is not scanned again either.
   */
  checkFinite = true,
): Rejection | null {
  if (update.delta.length !== numParams)
    return reject('shape', `delta has length ${update.delta.length}, model has ${numParams} parameters`);
  if (!(Number.isFinite(update.numExamples) && update.numExamples >= 0))
    return reject('non_finite', `numExamples must be a finite number ≥ 0, got ${update.numExamples}`);
  if (checkFinite && update.verifiedFinite !== true && !allFinite(update.delta))
    return reject('non_finite', 'delta contains NaN or Infinity');
  if (!Number.isInteger(update.baseVersion) || update.baseVersion > version || update.baseVersion < 0)
    return reject(
      'unknown_version',
      `base version ${update.baseVersion} was never issued (current ${version})`,
    );
  if (update.baseVersion !== assignedVersion)
    return reject(
      'unknown_version',
      `client ${update.clientId} was given version ${assignedVersion} but reports base version ${update.baseVersion}`,
    );
  return null;
}

/**
 * Applies the server optimizer with a pseudo-gradient to a NEW parameter array, so snapshots that
 * were handed out stay exactly as they were.
 */
export class ServerStepper {
  private readonly optimizer: Optimizer;
  params: Float32Array;
  constructor(spec: OptimizerSpec, initialParams: Float32Array) {
    this.optimizer = createOptimizer(spec, initialParams.length);
    this.params = new Float32Array(initialParams);
  }
  exportState(): OptimizerState {
    return this.optimizer.exportState();
  }
  /** Restores parameters (copied; their length checked by checkSnapshot) and optimizer state. */
  restore(params: Float32Array, state: OptimizerState): void {
    this.optimizer.importState(state);
    this.params = new Float32Array(params);
  }
  step(gradient: Float32Array): Float32Array {
    const next = new Float32Array(this.params);
    this.optimizer.step(next, gradient);
    this.params = next;
    return next;
  }
}

/** Scales `sum` by 1/total in place (the weighted mean); an all-zero weight leaves a zero gradient. */
export function normalize(sum: Float32Array, total: number): void {
  if (total <= 0) {
    sum.fill(0);
    return;
  }
  const inv = 1 / total;
  for (let i = 0; i < sum.length; i++) sum[i] = (sum[i] as number) * inv;
}

/**
 * Assignment bookkeeping and admission of arriving updates, shared by the asynchronous strategies:
 * a client trains from the version it was given, reports once, and its update is weighted by
 * staleness (rejected past maxStaleness or at zero weight).
 */
export class AsyncAdmission {
  /** clientId → version it downloaded; cleared on report or dropout. */
  private readonly assigned = new Map<number, number>();
  private readonly weightOf: StalenessWeight;

  constructor(
    staleness: StalenessSpec,
    private readonly maxStaleness: number,
  ) {
    this.weightOf = stalenessWeight(staleness);
  }

  assign(clientId: number, version: number): void {
    if (this.assigned.has(clientId))
      throw new OrchardError('INVALID_STATE', `client ${clientId} is already training`);
    this.assigned.set(clientId, version);
  }

  /** Re-establishes an assignment of `version` (≤ current) made before a restart. */
  resume(clientId: number, version: number, current: number): void {
    if (!(Number.isInteger(version) && version >= 0 && version <= current))
      throw new OrchardError(
        'UNKNOWN_VERSION',
        `cannot resume an assignment of version ${version} (current ${current})`,
      );
    this.assign(clientId, version);
  }

  drop(clientId: number): void {
    this.assigned.delete(clientId);
  }

  /** Validates an update against the current version; the client's trip ends whatever the verdict. */
  admit(
    update: ClientUpdate,
    numParams: number,
    version: number,
    checkFinite = true,
  ): { readonly staleness: number; readonly weight: number } | Rejection {
    const base = this.assigned.get(update.clientId);
    if (base === undefined)
      return reject(
        'not_assigned',
        `client ${update.clientId} is not training (never assigned or already reported)`,
      );
    this.assigned.delete(update.clientId);
    const bad = checkUpdate(update, numParams, version, base, checkFinite);
    if (bad) return bad;
    const s = version - update.baseVersion;
    if (s > this.maxStaleness)
      return reject('stale', `staleness ${s} exceeds maxStaleness ${this.maxStaleness}`, s);
    const weight = this.weightOf(s);
    if (weight <= 0) return reject('stale', `staleness ${s} has zero weight`, s);
    return { staleness: s, weight };
  }
}
