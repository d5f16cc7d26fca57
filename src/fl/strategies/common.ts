/** Pieces every strategy shares: update validation and the immutable-snapshot server step. */
import { allFinite } from '../../core/vec.ts';
import { createOptimizer, type Optimizer } from '../../nn/optim.ts';
import type { OptimizerSpec } from '../spec.ts';
import type { ClientUpdate, RejectReason, UpdateOutcome } from '../types.ts';

export type Rejection = Extract<UpdateOutcome, { kind: 'rejected' }>;

export function reject(reason: RejectReason, message: string, staleness?: number): Rejection {
  return staleness === undefined
    ? { kind: 'rejected', reason, message }
    : { kind: 'rejected', reason, message, staleness };
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
): Rejection | null {
  if (update.delta.length !== numParams)
    return reject('shape', `delta has length ${update.delta.length}, model has ${numParams} parameters`);
  if (!(Number.isFinite(update.numExamples) && update.numExamples >= 0))
    return reject('non_finite', `numExamples must be a finite number ≥ 0, got ${update.numExamples}`);
  if (!allFinite(update.delta)) return reject('non_finite', 'delta contains NaN or Infinity');
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
