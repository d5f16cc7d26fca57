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
  /** Sync tasks: the round whose cohort the device joined (absent for asynchronous tasks). */
  readonly round?: number;
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

/** Ids this signer remembers at most (see `issued`); past it, new ids are verified by their MAC only. */
const MAX_REMEMBERED = 100_000;

export class AssignmentSigner {
  /**
   * The ids this signer issued that nothing was uploaded under yet and whose deadline has not
   * passed, with their claims, oldest first: the first upload under one of them (the embedded
   * server, where the selector and the aggregator are one process) is checked by an exact-string
   * lookup instead of an HMAC, a base64 round trip and a JSON parse. Equally strict: only the exact
   * text signed is found, and anything else goes through `verify`'s MAC check as before.
   */
  private readonly issued = new Map<string, AssignmentClaims>();

  private readonly now: () => number;
  private readonly maxRemembered: number;

  constructor(
    private readonly key: Uint8Array,
    options: { readonly now?: () => number; readonly maxRemembered?: number } = {},
  ) {
    if (key.length < 16) throw new Error('assignment signing key must have at least 16 bytes');
    this.now = options.now ?? Date.now;
    this.maxRemembered = options.maxRemembered ?? MAX_REMEMBERED;
  }

  /** Ids remembered for a lookup instead of a MAC check (see `issued`). */
  get rememberedIds(): number {
    return this.issued.size;
  }

  private mac(payload: string): Buffer {
    return createHmac('sha256', this.key).update(payload).digest().subarray(0, SIGNATURE_BYTES);
  }

  sign(claims: AssignmentClaims): string {
    const fields = [claims.taskId, claims.deviceId, claims.version, claims.deadline, nonce()];
    if (claims.round !== undefined) fields.push(claims.round);
    const payload = Buffer.from(JSON.stringify(fields)).toString('base64url');
    const id = `${payload}.${this.mac(payload).toString('base64url')}`;
    this.forgetLapsed();
    if (this.issued.size < this.maxRemembered) {
      const { taskId, deviceId, version, deadline, round } = claims;
      this.issued.set(id, { taskId, deviceId, version, deadline, ...(round === undefined ? {} : { round }) });
    }
    return id;
  }

  /** An id that will never be uploaded under (admission refused it): not remembered any more. */
  forget(id: string): void {
    this.issued.delete(id);
  }

  /** Drops remembered ids whose deadline passed, oldest first (deadlines mostly follow issue order). */
  private forgetLapsed(): void {
    const now = this.now();
    for (const [id, claims] of this.issued) {
      if (claims.deadline >= now) return;
      this.issued.delete(id);
    }
  }

  /**
   * The claims of a genuine id, or null for anything forged, truncated, malformed or not spelled
   * exactly as `sign` wrote it: ids are deduplicated as strings, and base64url decoding ignores the
   * low bits of the last character, '=' padding and whitespace, so a respelled copy of a genuine id
   * must not verify.
   */
  verify(id: string): AssignmentClaims | null {
    const known = this.issued.get(id);
    if (known !== undefined) {
      // Taken: the map holds only ids not uploaded under yet (a retry is verified by its MAC).
      this.issued.delete(id);
      return known;
    }
    if (id.length > 512) return null;
    const dot = id.indexOf('.');
    if (dot <= 0) return null;
    const payload = id.slice(0, dot);
    const text = id.slice(dot + 1);
    const given = Buffer.from(text, 'base64url');
    if (given.length !== SIGNATURE_BYTES || given.toString('base64url') !== text) return null;
    if (!timingSafeEqual(given, this.mac(payload))) return null;
    return parseClaims(payload);
  }
}

function parseClaims(payload: string): AssignmentClaims | null {
  try {
    const parsed: unknown = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
    if (!Array.isArray(parsed) || (parsed.length !== 5 && parsed.length !== 6)) return null;
    const [taskId, deviceId, version, deadline, , round] = parsed as unknown[];
    if (typeof taskId !== 'string' || typeof deviceId !== 'string') return null;
    if (!Number.isInteger(version) || typeof deadline !== 'number') return null;
    const claims = { taskId, deviceId, version: version as number, deadline };
    if (parsed.length === 5) return claims;
    if (!(Number.isInteger(round) && (round as number) >= 0)) return null;
    return { ...claims, round: round as number };
  } catch {
    return null;
  }
}

/**
 * The round an assignment id names, read WITHOUT checking its signature: only for ids the
 * aggregator already verified or that come back from the journal (which holds verified ids only).
 */
export function assignmentRound(id: string): number | undefined {
  const dot = id.indexOf('.');
  return dot <= 0 ? undefined : (parseClaims(id.slice(0, dot))?.round ?? undefined);
}
