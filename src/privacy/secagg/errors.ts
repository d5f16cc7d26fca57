/**
 * Typed errors of the secure-aggregation protocol. Every failure carries a stable `reason` on top of
 * the OrchardError `code`, so a server or test can tell an abort below threshold from a forged share
 * without parsing messages.
 */
import { OrchardError } from '../../core/errors.ts';

export type SecAggFailure =
  /** Too few clients (or, in SecAgg+, too few live neighbours of some client) to go on. */
  | 'BELOW_THRESHOLD'
  /** An AES-GCM tag did not verify: the ciphertext, its header or its associated data was altered. */
  | 'AUTH_FAILED'
  /** The server asked for the self-mask share and the key share of the same client. */
  | 'BOTH_SHARES_REQUESTED'
  /** A message arrived twice, or for another session, round or recipient. */
  | 'REPLAYED_MESSAGE'
  /** A message is malformed or names clients it may not name. */
  | 'INVALID_MESSAGE'
  /** Shamir shares are malformed or do not lie on one polynomial. */
  | 'INVALID_SHARE'
  /** A call that the current protocol phase does not allow. */
  | 'INVALID_TRANSITION'
  /** A fixed-point configuration whose sum could wrap around the modulus. */
  | 'OVERFLOW';

export class SecAggError extends OrchardError {
  readonly reason: SecAggFailure;
  constructor(reason: SecAggFailure, message: string) {
    const code =
      reason === 'INVALID_TRANSITION' || reason === 'BELOW_THRESHOLD'
        ? 'INVALID_STATE'
        : reason === 'OVERFLOW'
          ? 'INVALID_ARGUMENT'
          : 'DATA_INVALID';
    super(code, `secagg ${reason}: ${message}`);
    this.name = 'SecAggError';
    this.reason = reason;
  }
}

export function secaggError(reason: SecAggFailure, message: string): SecAggError {
  return new SecAggError(reason, message);
}
