/**
 * Backend factories by kind, loaded lazily. The CLI and server pick a backend by name without
 * importing every implementation (node-llama-cpp is heavy; HTTP backends pull in nothing big but are
 * written by another module owner). Each module listed in BACKEND_MODULES must export
 * `createGuardBackend(options: BackendFactoryOptions): Promise<GuardBackend>`.
 * Factories registered at run time (tests, embedders) take precedence over the table.
 */
import { type GuardBackend, GuardError, type GuardModelVariant } from '../types.ts';

export type BackendKind = 'llama' | 'openai' | 'ollama';
export const BACKEND_KINDS: readonly BackendKind[] = ['llama', 'openai', 'ollama'];

export interface BackendFactoryOptions {
  readonly variant: GuardModelVariant;
  /** `llama`: path of the GGUF file. */
  readonly modelPath?: string;
  /** `openai` / `ollama`: base URL of the server, e.g. http://127.0.0.1:8000/v1 or http://127.0.0.1:11434. */
  readonly endpoint?: string;
  /** `openai` / `ollama`: the served model's name (e.g. meta-llama/Llama-Guard-3-1B, llama-guard3:1b). */
  readonly modelName?: string;
  readonly apiKey?: string;
  readonly timeoutMs?: number;
  /** `llama`: CPU threads and concurrent sequences. */
  readonly threads?: number;
  readonly sequences?: number;
}

export type BackendFactory = (options: BackendFactoryOptions) => Promise<GuardBackend>;

/** Module (relative to this file) that implements each kind. */
const BACKEND_MODULES: Record<BackendKind, string> = {
  llama: '../llama/backend.ts',
  openai: './openai.ts',
  ollama: './ollama.ts',
};

const registered = new Map<string, BackendFactory>();

export function registerBackendFactory(kind: string, factory: BackendFactory): void {
  registered.set(kind, factory);
}

export function unregisterBackendFactory(kind: string): void {
  registered.delete(kind);
}

export async function createBackend(kind: string, options: BackendFactoryOptions): Promise<GuardBackend> {
  const direct = registered.get(kind);
  if (direct) return direct(options);
  if (!(BACKEND_KINDS as readonly string[]).includes(kind)) {
    throw new GuardError(
      'BACKEND_UNKNOWN',
      `unknown guard backend '${kind}' (known: ${[...BACKEND_KINDS, ...registered.keys()].join(', ')})`,
    );
  }
  // Built output (dist/*.js) has the same layout with .js files.
  const spec = BACKEND_MODULES[kind as BackendKind].replace(
    /\.ts$/,
    import.meta.url.endsWith('.js') ? '.js' : '.ts',
  );
  let mod: { createGuardBackend?: BackendFactory };
  try {
    mod = (await import(new URL(spec, import.meta.url).href)) as { createGuardBackend?: BackendFactory };
  } catch (e) {
    throw new GuardError('BACKEND_UNKNOWN', `guard backend '${kind}' is not available (${spec})`, {
      cause: e,
    });
  }
  if (typeof mod.createGuardBackend !== 'function') {
    throw new GuardError('BACKEND_UNKNOWN', `${spec} does not export createGuardBackend`);
  }
  return mod.createGuardBackend(options);
}
