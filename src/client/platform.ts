/**
 * What the SDK needs from its host, so one OrchardClient runs unchanged in Node and in browsers:
 * HTTP, a small durable key-value store (device token, current assignment, a pending upload), secure
 * random bytes, timers and a clock. `platform/node.ts` and `platform/browser.ts` provide them; tests
 * can pass their own (e.g. a fetch that fails on purpose). Nothing in this file touches a host API.
 */

/** The subset of `fetch` the SDK uses (global fetch in Node ≥ 18 and every browser fits). */
export type FetchLike = (input: string, init: RequestInit) => Promise<Response>;

/**
 * Durable byte store. `set` resolves only once the value would survive a restart of the host
 * (a file renamed into place, an IndexedDB transaction completed), because a pending upload is only
 * safe to resume if it was persisted before it was sent.
 */
export interface KeyValueStore {
  get(key: string): Promise<Uint8Array | null>;
  set(key: string, value: Uint8Array): Promise<void>;
  delete(key: string): Promise<void>;
}

export interface Platform {
  readonly fetch: FetchLike;
  readonly storage: KeyValueStore;
  /** Cryptographically secure random bytes (idempotency keys, backoff jitter). */
  randomBytes(n: number): Uint8Array;
  /** Resolves after `ms`, or rejects with the signal's reason as soon as `signal` aborts. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
  /** Wall clock, ms since the epoch (assignment deadlines are wall-clock times). */
  now(): number;
}

/** A store that lives and dies with the process (simulated fleets, tests). */
export class MemoryStore implements KeyValueStore {
  private readonly map = new Map<string, Uint8Array>();

  async get(key: string): Promise<Uint8Array | null> {
    const v = this.map.get(key);
    return v === undefined ? null : v.slice();
  }

  async set(key: string, value: Uint8Array): Promise<void> {
    this.map.set(key, value.slice());
  }

  async delete(key: string): Promise<void> {
    this.map.delete(key);
  }

  get size(): number {
    return this.map.size;
  }
}

/** setTimeout-based sleep shared by the adapters (both hosts have setTimeout and AbortSignal). */
export function timerSleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(
      () => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      },
      Math.max(0, ms),
    );
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

const BASE64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
const BASE64_INDEX = new Int16Array(128).fill(-1);
for (let i = 0; i < BASE64.length; i++) BASE64_INDEX[BASE64.charCodeAt(i)] = i;

/** Standard base64 with padding (stores that only hold strings: JSON files, localStorage). */
export function toBase64(bytes: Uint8Array): string {
  let out = '';
  let i = 0;
  for (; i + 2 < bytes.length; i += 3) {
    const n = ((bytes[i] as number) << 16) | ((bytes[i + 1] as number) << 8) | (bytes[i + 2] as number);
    out += `${BASE64[n >> 18]}${BASE64[(n >> 12) & 63]}${BASE64[(n >> 6) & 63]}${BASE64[n & 63]}`;
  }
  const rest = bytes.length - i;
  if (rest === 1) {
    const n = (bytes[i] as number) << 16;
    out += `${BASE64[n >> 18]}${BASE64[(n >> 12) & 63]}==`;
  } else if (rest === 2) {
    const n = ((bytes[i] as number) << 16) | ((bytes[i + 1] as number) << 8);
    out += `${BASE64[n >> 18]}${BASE64[(n >> 12) & 63]}${BASE64[(n >> 6) & 63]}=`;
  }
  return out;
}

/** Inverse of toBase64; throws on characters outside the alphabet or a length that is not 4k. */
export function fromBase64(text: string): Uint8Array {
  if (text.length % 4 !== 0) throw new Error(`base64 length ${text.length} is not a multiple of 4`);
  const pad = text.endsWith('==') ? 2 : text.endsWith('=') ? 1 : 0;
  const out = new Uint8Array((text.length / 4) * 3 - pad);
  let o = 0;
  for (let i = 0; i < text.length; i += 4) {
    let n = 0;
    for (let j = 0; j < 4; j++) {
      const c = text.charCodeAt(i + j);
      const v = c === 61 && i + j >= text.length - pad ? 0 : c < 128 ? (BASE64_INDEX[c] as number) : -1;
      if (v < 0) throw new Error(`invalid base64 character at ${i + j}`);
      n = (n << 6) | v;
    }
    if (o < out.length) out[o++] = (n >> 16) & 255;
    if (o < out.length) out[o++] = (n >> 8) & 255;
    if (o < out.length) out[o++] = n & 255;
  }
  return out;
}
