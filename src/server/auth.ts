/**
 * Device authentication. A device registers once with the enrollment key and gets a random bearer
 * token; only the token's SHA-256 is stored, so a leaked database does not leak credentials. The
 * admin token revokes devices. Lookups are cached briefly; a revocation in this process takes
 * effect at once, one in another process within `cacheMs`.
 */
import * as nodeCrypto from 'node:crypto';
import { createHash, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import { ApiError } from './errors.ts';
import type { RegisterResponse } from './protocol.ts';
import type { Storage } from './storage/types.ts';

/** `crypto.hash` (Node ≥ 20.12): one call, no Hash object; about half the cost per token here. */
const oneShotHash = (nodeCrypto as { hash?: (algorithm: string, data: string, encoding: 'hex') => string })
  .hash;

export function sha256Hex(text: string): string {
  return oneShotHash !== undefined
    ? oneShotHash('sha256', text, 'hex')
    : createHash('sha256').update(text).digest('hex');
}

/** Constant-time comparison of two secrets (hashes first, so lengths never leak). */
export function secretsEqual(given: string, expected: string): boolean {
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}

export function newSecret(bytes = 32): string {
  return randomBytes(bytes).toString('base64url');
}

/** The bearer token of an `Authorization: Bearer …` header, or null. */
export function bearerOf(header: string | undefined): string | null {
  if (header === undefined) return null;
  const match = /^Bearer ([A-Za-z0-9._~+/=-]{1,512})$/.exec(header.trim());
  return match?.[1] ?? null;
}

interface CachedDevice {
  readonly deviceId: string;
  readonly revoked: boolean;
  readonly until: number;
}

export class DeviceAuth {
  private readonly cache = new Map<string, CachedDevice>();

  constructor(
    private readonly storage: Storage,
    private readonly enrollmentKey: string,
    private readonly adminToken: string,
    private readonly cacheMs = 1000,
  ) {}

  async register(enrollmentKey: unknown): Promise<RegisterResponse> {
    if (typeof enrollmentKey !== 'string' || !secretsEqual(enrollmentKey, this.enrollmentKey))
      throw new ApiError('unauthenticated', 'wrong enrollment key');
    const deviceId = randomUUID();
    const token = newSecret();
    await this.storage.putDevice({
      deviceId,
      tokenHash: sha256Hex(token),
      createdAt: Date.now(),
      revokedAt: null,
    });
    return { deviceId, token };
  }

  /** The device behind an Authorization header; typed 401 for missing, unknown or revoked tokens. */
  async authenticate(authorization: string | undefined): Promise<string> {
    const token = bearerOf(authorization);
    if (token === null) throw new ApiError('unauthenticated', 'missing or malformed bearer token');
    const hash = sha256Hex(token);
    const now = Date.now();
    let entry = this.cache.get(hash);
    if (entry === undefined || entry.until <= now) {
      const device = await this.storage.deviceByTokenHash(hash);
      if (device === null) {
        this.cache.delete(hash);
        throw new ApiError('unauthenticated', 'unknown token');
      }
      entry = { deviceId: device.deviceId, revoked: device.revokedAt !== null, until: now + this.cacheMs };
      if (this.cache.size > 100_000) this.cache.clear();
      this.cache.set(hash, entry);
    }
    if (entry.revoked) throw new ApiError('revoked', 'this device token was revoked');
    return entry.deviceId;
  }

  checkAdmin(authorization: string | undefined): void {
    const token = bearerOf(authorization);
    if (token === null) throw new ApiError('unauthenticated', 'missing or malformed admin token');
    if (!secretsEqual(token, this.adminToken)) throw new ApiError('forbidden', 'not the admin token');
  }

  async revoke(authorization: string | undefined, deviceId: string): Promise<void> {
    this.checkAdmin(authorization);
    const found = await this.storage.revokeDevice(deviceId, Date.now());
    if (!found) throw new ApiError('not_found', `unknown device ${deviceId}`);
    for (const [hash, entry] of this.cache) if (entry.deviceId === deviceId) this.cache.delete(hash);
  }
}
