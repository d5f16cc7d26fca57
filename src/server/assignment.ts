/**
 * Assignment ids are self-verifying: the selector signs (task, device, version, deadline, nonce)
 * with the server's HMAC key, so any aggregator process, before or after a restart, can check an
 * upload without shared session state. An assignment is applied at most once because the
 * aggregator journals its id as the idempotency key (kept forever by the storage).
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

export interface AssignmentClaims {
  readonly taskId: string;
  readonly deviceId: string;
  readonly version: number;
  /** ms since epoch after which the assignment has lapsed. */
  readonly deadline: number;
}

const SIGNATURE_BYTES = 16;
const NONCE_BYTES = 9;

/** Nonces come from a pool refilled 4 kB at a time: one crypto call per ~450 assignments. */
let noncePool = Buffer.alloc(0);
let nonceAt = 0;
function nonce(): string {
  if (nonceAt + NONCE_BYTES > noncePool.length) {
    noncePool = randomBytes(4095);
    nonceAt = 0;
  }
  const out = noncePool.toString('base64url', nonceAt, nonceAt + NONCE_BYTES);
  nonceAt += NONCE_BYTES;
  return out;
}

export class AssignmentSigner {
  constructor(private readonly key: Uint8Array) {
    if (key.length < 16) throw new Error('assignment signing key must have at least 16 bytes');
  }

  private mac(payload: string): Buffer {
    return createHmac('sha256', this.key).update(payload).digest().subarray(0, SIGNATURE_BYTES);
  }

  sign(claims: AssignmentClaims): string {
    const payload = Buffer.from(
      JSON.stringify([claims.taskId, claims.deviceId, claims.version, claims.deadline, nonce()]),
    ).toString('base64url');
    return `${payload}.${this.mac(payload).toString('base64url')}`;
  }

  /** The claims of a genuine id, or null for anything forged, truncated or malformed. */
  verify(id: string): AssignmentClaims | null {
    if (id.length > 512) return null;
    const dot = id.indexOf('.');
    if (dot <= 0) return null;
    const payload = id.slice(0, dot);
    const given = Buffer.from(id.slice(dot + 1), 'base64url');
    if (given.length !== SIGNATURE_BYTES || !timingSafeEqual(given, this.mac(payload))) return null;
    try {
      const parsed: unknown = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
      if (!Array.isArray(parsed) || parsed.length !== 5) return null;
      const [taskId, deviceId, version, deadline] = parsed as unknown[];
      if (typeof taskId !== 'string' || typeof deviceId !== 'string') return null;
      if (!Number.isInteger(version) || typeof deadline !== 'number') return null;
      return { taskId, deviceId, version: version as number, deadline };
    } catch {
      return null;
    }
  }
}
