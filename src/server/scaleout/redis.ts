/**
 * A Redis connection configured to fail fast: while Redis is down, commands reject at once with
 * ScaleoutError('BACKEND_UNAVAILABLE') instead of queueing (a selector must answer "come back
 * later", not hang), and the client keeps reconnecting in the background.
 */
import { createHash } from 'node:crypto';
import { Redis } from 'ioredis';
import { ScaleoutError } from './errors.ts';

export type RedisClient = Redis;

export interface RedisConnectOptions {
  /** Deadline for the first connection; default 5000 ms. */
  readonly connectTimeoutMs?: number;
  /** Deadline for one command; default 2000 ms. */
  readonly commandTimeoutMs?: number;
}

/** Connects and waits until the server answers, or throws BACKEND_UNAVAILABLE by the deadline. */
export async function connectRedis(url: string, options: RedisConnectOptions = {}): Promise<RedisClient> {
  const connectTimeoutMs = options.connectTimeoutMs ?? 5000;
  const client = new Redis(url, {
    protocol: 2,
    lazyConnect: true,
    connectTimeout: connectTimeoutMs,
    // disconnect() of a client that never connected otherwise holds the process open for 2 s.
    disconnectTimeout: 200,
    commandTimeout: options.commandTimeoutMs ?? 2000,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    // Reconnect forever, backing off to one attempt per second.
    retryStrategy: (times) => Math.min(50 * times, 1000),
  });
  // Connection errors surface as rejected commands; without a listener they would be printed.
  let lastError: Error | null = null;
  client.on('error', (err: Error) => {
    lastError = err;
  });
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      client.connect(),
      new Promise((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`no answer within ${connectTimeoutMs} ms`)),
          connectTimeoutMs,
        );
      }),
    ]);
  } catch (err) {
    client.disconnect();
    const why = (lastError as Error | null)?.message ?? (err as Error).message;
    throw new ScaleoutError('BACKEND_UNAVAILABLE', `redis ${redactRedis(url)}: ${why}`);
  } finally {
    clearTimeout(timer);
  }
  return client;
}

export function redactRedis(url: string): string {
  return url.replace(/^(rediss?:\/\/[^:/@]*:)[^@]*@/i, '$1***@');
}

/** Any ioredis failure → ScaleoutError (script errors raised on purpose are passed through). */
export function mapRedisError(err: unknown): ScaleoutError {
  if (err instanceof ScaleoutError) return err;
  return new ScaleoutError('BACKEND_UNAVAILABLE', `redis: ${(err as Error).message}`);
}

/** A Lua script run by EVALSHA, re-sent with EVAL when the server lost its script cache (restart). */
export class Script {
  private readonly sha: string;
  constructor(
    private readonly source: string,
    private readonly numKeys: number,
  ) {
    this.sha = createHash('sha1').update(source).digest('hex');
  }

  async run(
    client: RedisClient,
    keys: readonly string[],
    args: ReadonlyArray<string | number>,
  ): Promise<unknown> {
    if (keys.length !== this.numKeys) throw new Error(`script expects ${this.numKeys} keys`);
    try {
      try {
        return await client.evalsha(this.sha, this.numKeys, ...keys, ...args);
      } catch (err) {
        if (!String((err as Error).message).includes('NOSCRIPT')) throw err;
        return await client.eval(this.source, this.numKeys, ...keys, ...args);
      }
    } catch (err) {
      throw mapRedisError(err);
    }
  }
}
