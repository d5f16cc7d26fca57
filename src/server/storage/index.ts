/**
 * `openStorage(url)`: the one place a `--storage` value becomes a Storage.
 *
 *   ./orchard-data, /var/lib/orchard   a data folder → SQLite file <folder>/orchard.db (created)
 *   sqlite:<folder> | sqlite:<file.db>  the same, explicitly; a path ending .db/.sqlite/.sqlite3 is the file
 *   sqlite::memory:                     in-memory SQLite (tests; nothing persists)
 *   postgres://user:pass@host:5432/db   PostgreSQL (also postgresql://)
 *
 * With `baseDir` (the server's data folder), a relative `sqlite:<path>` resolves inside it, so
 * `orchard serve --data-dir D --storage sqlite:main.db` uses D/main.db; a plain folder path and an
 * absolute `sqlite:` path are used as given.
 */
import { mkdirSync, statSync } from 'node:fs';
import { dirname, extname, isAbsolute, join } from 'node:path';
import { ConfigError } from '../../core/errors.ts';
import { PostgresStorage, type PostgresStorageOptions } from './postgres.ts';
import { SqliteStorage } from './sqlite.ts';
import type { Storage } from './types.ts';

export { PostgresStorage } from './postgres.ts';
export { SqliteStorage } from './sqlite.ts';
export * from './types.ts';

export type StorageLocation =
  | { readonly kind: 'sqlite'; readonly file: string }
  | { readonly kind: 'postgres'; readonly connectionString: string };

const SQLITE_EXTENSIONS = new Set(['.db', '.sqlite', '.sqlite3']);

function bad(message: string): never {
  throw new ConfigError([{ path: 'storage', message }], 'storage URL');
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

function sqliteFile(path: string): string {
  if (path.length === 0) bad('empty path');
  if (path === ':memory:') return path;
  return !isDirectory(path) && SQLITE_EXTENSIONS.has(extname(path).toLowerCase())
    ? path
    : join(path, 'orchard.db');
}

export interface ParseStorageOptions {
  /** Folder a relative `sqlite:<path>` resolves in (the data folder); default: the working directory. */
  readonly baseDir?: string;
}

/** Parses a `--storage` value without touching the backend. Throws ConfigError on anything else. */
export function parseStorageUrl(url: string, options: ParseStorageOptions = {}): StorageLocation {
  if (typeof url !== 'string' || url.trim().length === 0) bad('empty storage URL');
  if (/^postgres(ql)?:\/\//i.test(url)) {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      return bad(`malformed PostgreSQL URL "${redact(url)}"`);
    }
    if (!parsed.hostname && !parsed.searchParams.has('host')) bad('PostgreSQL URL needs a host');
    return { kind: 'postgres', connectionString: url };
  }
  if (/^sqlite:/i.test(url)) {
    // Accept sqlite:path and sqlite:///abs/path (URL style).
    const rest = url.slice('sqlite:'.length);
    const path = rest.startsWith('//') ? rest.slice(2) : rest;
    const { baseDir } = options;
    const inBase = baseDir !== undefined && path.length > 0 && path !== ':memory:' && !isAbsolute(path);
    return { kind: 'sqlite', file: sqliteFile(inBase ? join(baseDir, path) : path) };
  }
  // Any other scheme (two letters or more, so Windows drive letters stay paths) is a mistake.
  const scheme = /^([a-z][a-z0-9+.-]+):/i.exec(url);
  if (scheme)
    bad(`unsupported storage scheme "${scheme[1]}:" (use a folder path, sqlite:<path> or postgres://…)`);
  return { kind: 'sqlite', file: sqliteFile(url) };
}

/** The URL with any password replaced, for logs and error messages. */
export function redact(url: string): string {
  return url.replace(/^(postgres(?:ql)?:\/\/[^:/@]*:)[^@]*@/i, '$1***@');
}

export interface OpenStorageOptions extends ParseStorageOptions {
  readonly postgres?: Omit<PostgresStorageOptions, 'connectionString'>;
  readonly keepCheckpoints?: number;
}

/** Opens and initializes the storage a URL names (creating the SQLite folder if needed). */
export async function openStorage(url: string, options: OpenStorageOptions = {}): Promise<Storage> {
  const loc = parseStorageUrl(url, options.baseDir === undefined ? {} : { baseDir: options.baseDir });
  const keep = options.keepCheckpoints === undefined ? {} : { keepCheckpoints: options.keepCheckpoints };
  let storage: Storage;
  if (loc.kind === 'postgres') {
    storage = new PostgresStorage({ ...options.postgres, ...keep, connectionString: loc.connectionString });
  } else {
    if (loc.file !== ':memory:') mkdirSync(dirname(loc.file), { recursive: true });
    storage = new SqliteStorage({ path: loc.file, ...keep });
  }
  try {
    await storage.init();
  } catch (err) {
    await storage.close().catch(() => {});
    throw err;
  }
  return storage;
}
