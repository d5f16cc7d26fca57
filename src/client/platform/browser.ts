/**
 * Browser adapter: window fetch, WebCrypto random bytes, timers, and IndexedDB (binary values,
 * durable once the transaction completes) or localStorage (base64 strings) as the store.
 * Uses only web APIs, so it also runs in web workers (IndexedDB only there).
 */
import {
  type FetchLike,
  fromBase64,
  type KeyValueStore,
  type Platform,
  timerSleep,
  toBase64,
} from '../platform.ts';

/** One object store in one IndexedDB database; each call is its own transaction. */
export class IndexedDbStore implements KeyValueStore {
  private readonly dbName: string;
  private db: Promise<IDBDatabase> | null = null;

  constructor(dbName = 'orchard') {
    this.dbName = dbName;
  }

  private open(): Promise<IDBDatabase> {
    if (this.db === null) {
      this.db = new Promise((resolve, reject) => {
        const req = indexedDB.open(this.dbName, 1);
        req.onupgradeneeded = () => {
          req.result.createObjectStore('kv');
        };
        req.onsuccess = () => resolve(req.result);
        req.onerror = () => reject(req.error);
      });
    }
    return this.db;
  }

  private async tx<T>(mode: IDBTransactionMode, run: (store: IDBObjectStore) => IDBRequest): Promise<T> {
    const db = await this.open();
    return new Promise<T>((resolve, reject) => {
      const t = db.transaction('kv', mode, { durability: 'strict' });
      const req = run(t.objectStore('kv'));
      // Resolve on transaction completion, not request success: only then is a write durable.
      t.oncomplete = () => resolve(req.result as T);
      t.onerror = () => reject(t.error);
      t.onabort = () => reject(t.error);
    });
  }

  async get(key: string): Promise<Uint8Array | null> {
    const v = await this.tx<unknown>('readonly', (s) => s.get(key));
    return v instanceof Uint8Array ? v : v instanceof ArrayBuffer ? new Uint8Array(v) : null;
  }

  async set(key: string, value: Uint8Array): Promise<void> {
    await this.tx('readwrite', (s) => s.put(value.slice(), key));
  }

  async delete(key: string): Promise<void> {
    await this.tx('readwrite', (s) => s.delete(key));
  }
}

/** localStorage with base64 values under `prefix` (synchronous and durable as soon as set). */
export class LocalStorageStore implements KeyValueStore {
  constructor(
    private readonly prefix = 'orchard:',
    private readonly storage: Storage = localStorage,
  ) {}

  async get(key: string): Promise<Uint8Array | null> {
    const v = this.storage.getItem(this.prefix + key);
    return v === null ? null : fromBase64(v);
  }

  async set(key: string, value: Uint8Array): Promise<void> {
    this.storage.setItem(this.prefix + key, toBase64(value));
  }

  async delete(key: string): Promise<void> {
    this.storage.removeItem(this.prefix + key);
  }
}

export interface BrowserPlatformOptions {
  /** Default: IndexedDB where available, else localStorage. */
  readonly storage?: KeyValueStore;
  readonly fetch?: FetchLike;
}

export function browserPlatform(options: BrowserPlatformOptions = {}): Platform {
  const storage =
    options.storage ?? (typeof indexedDB !== 'undefined' ? new IndexedDbStore() : new LocalStorageStore());
  const fetchImpl: FetchLike = options.fetch ?? ((input, init) => fetch(input, init));
  return {
    fetch: fetchImpl,
    storage,
    randomBytes: (n) => crypto.getRandomValues(new Uint8Array(n)),
    sleep: timerSleep,
    now: () => Date.now(),
  };
}
