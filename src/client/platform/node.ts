/**
 * Node adapter: global fetch (or nodeHttpFetch, a bounded keep-alive pool), node:crypto random
 * bytes, timers, and either an in-memory store or a JSON file store that survives restarts.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { Agent, request as httpRequest } from 'node:http';
import { dirname } from 'node:path';
import {
  type FetchLike,
  fromBase64,
  type KeyValueStore,
  MemoryStore,
  type Platform,
  timerSleep,
  toBase64,
} from '../platform.ts';

/**
 * All values in one JSON file (base64), rewritten whole on each change: write a temp file, fsync
 * it, rename it over the old one. A crash leaves either the old or the new file, never a torn one.
 * Meant for one device's few small entries, not for bulk data.
 */
export class JsonFileStore implements KeyValueStore {
  private readonly path: string;
  private values: Record<string, string>;
  private writing: Promise<void> = Promise.resolve();

  constructor(path: string) {
    this.path = path;
    mkdirSync(dirname(path), { recursive: true });
    try {
      const parsed = JSON.parse(readFileSync(path, 'utf8')) as unknown;
      this.values =
        parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed)
          ? (parsed as Record<string, string>)
          : {};
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT' && !(e instanceof SyntaxError)) throw e;
      this.values = {};
    }
  }

  async get(key: string): Promise<Uint8Array | null> {
    const v = this.values[key];
    return typeof v === 'string' ? fromBase64(v) : null;
  }

  async set(key: string, value: Uint8Array): Promise<void> {
    this.values[key] = toBase64(value);
    await this.flush();
  }

  async delete(key: string): Promise<void> {
    if (!(key in this.values)) return;
    delete this.values[key];
    await this.flush();
  }

  /** Serializes writes so a later snapshot never lands before an earlier one. */
  private flush(): Promise<void> {
    const snapshot = JSON.stringify(this.values);
    const next = this.writing.then(async () => {
      const tmp = `${this.path}.${process.pid}.tmp`;
      const fh = await open(tmp, 'w');
      try {
        await fh.writeFile(snapshot);
        await fh.sync();
      } finally {
        await fh.close();
      }
      renameSync(tmp, this.path);
    });
    this.writing = next.catch(() => {});
    return next;
  }
}

export interface NodePlatformOptions {
  /** Default: an in-memory store (nothing survives a restart). */
  readonly storage?: KeyValueStore;
  readonly fetch?: FetchLike;
}

export function nodePlatform(options: NodePlatformOptions = {}): Platform {
  const fetchImpl: FetchLike = options.fetch ?? ((input, init) => fetch(input, init));
  return {
    fetch: fetchImpl,
    storage: options.storage ?? new MemoryStore(),
    randomBytes: (n) => new Uint8Array(randomBytes(n)),
    sleep: timerSleep,
    now: () => Date.now(),
  };
}

/**
 * A fetch over node:http with its own keep-alive agent, so a process simulating thousands of
 * devices shares a bounded pool of connections (global fetch opens one per concurrent request).
 * Supports what the SDK sends: method, headers, a string or byte body, an abort signal.
 */
export function nodeHttpFetch(options: { maxSockets?: number } = {}): FetchLike & { agent: Agent } {
  const agent = new Agent({ keepAlive: true, maxSockets: options.maxSockets ?? 256, scheduling: 'fifo' });
  const fetchLike = (input: string, init: RequestInit): Promise<Response> =>
    new Promise<Response>((resolve, reject) => {
      const url = new URL(input);
      const headers: Record<string, string> = {};
      new Headers(init.headers).forEach((v, k) => {
        headers[k] = v;
      });
      const body = init.body;
      let bytes: Uint8Array | undefined;
      if (typeof body === 'string') bytes = Buffer.from(body, 'utf8');
      else if (body instanceof Uint8Array) bytes = body;
      else if (body !== undefined && body !== null) {
        reject(new TypeError('nodeHttpFetch sends only string or Uint8Array bodies'));
        return;
      }
      if (bytes !== undefined) headers['content-length'] = String(bytes.length);
      const req = httpRequest(
        {
          host: url.hostname.replace(/^\[|\]$/g, ''),
          port: url.port,
          path: `${url.pathname}${url.search}`,
          method: init.method ?? 'GET',
          headers,
          agent,
          ...(init.signal ? { signal: init.signal } : {}),
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('error', reject);
          res.on('end', () => {
            const out = new Headers();
            for (const [k, v] of Object.entries(res.headers))
              if (typeof v === 'string') out.set(k, v);
              else if (Array.isArray(v)) for (const x of v) out.append(k, x);
            const status = res.statusCode ?? 0;
            const nullBody = status === 204 || status === 304;
            resolve(new Response(nullBody ? null : Buffer.concat(chunks), { status, headers: out }));
          });
        },
      );
      req.on('error', reject);
      req.end(bytes);
    });
  return Object.assign(fetchLike, { agent });
}
