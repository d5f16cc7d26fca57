/**
 * Browser-test support: finds Chromium, launches it headless through playwright-core, and serves
 * the repository's TypeScript sources to the page without a bundle — each `/src/….ts` request is
 * transpiled on its own by esbuild and served as JavaScript, so the page imports the SDK exactly as
 * it is laid out on disk. Requests under `/v1/` and `/healthz` are forwarded to an Orchard server,
 * so the page and the API share one origin (no CORS in the way). Test support only.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname, join, normalize, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { transformSync } from 'esbuild';
import type { Browser } from 'playwright-core';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');

export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-quic',
  '--no-first-run',
  '--disable-component-update',
  '--disable-sync',
];

/** The Chromium to use: $CHROMIUM, else Debian's, else none. */
export function findChromium(): string | undefined {
  return [process.env.CHROMIUM, '/usr/bin/chromium', '/usr/bin/chromium-browser'].find(
    (p): p is string => p !== undefined && p !== '' && existsSync(p),
  );
}

/** Skip reason when Chromium is missing locally; in CI a missing browser is a failure, not a skip. */
export function chromiumSkip(): string | false {
  if (findChromium() !== undefined || process.env.CI !== undefined) return false;
  return 'no Chromium found (set CHROMIUM or apt-get install chromium)';
}

export async function launchChromium(): Promise<Browser> {
  const executablePath = findChromium();
  if (executablePath === undefined) throw new Error('no Chromium found: CI must install Debian chromium');
  const { chromium } = await import('playwright-core');
  return chromium.launch({ executablePath, args: CHROMIUM_ARGS, timeout: 60_000 });
}

export interface SdkPageServer {
  readonly url: string;
  close(): Promise<void>;
}

/**
 * Serves `/` (an HTML page running `pageScript` as a module), `/config.json`, the transpiled
 * `/src/**` sources, and proxies the API to `apiUrl`.
 */
export async function serveSdkPage(options: {
  apiUrl: string;
  pageScript: string;
  config: unknown;
}): Promise<SdkPageServer> {
  const cache = new Map<string, string>();
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const path = url.pathname;
    if (path.startsWith('/v1/') || path === '/healthz') {
      proxy(options.apiUrl, req, res).catch(() => {
        res.statusCode = 502;
        res.end();
      });
      return;
    }
    if (path === '/' || path === '/index.html') {
      res.setHeader('content-type', 'text/html');
      res.end(
        '<!doctype html><meta charset="utf-8"><title>sdk</title><script type="module" src="/main.js"></script>',
      );
      return;
    }
    if (path === '/main.js') {
      res.setHeader('content-type', 'text/javascript');
      res.end(options.pageScript);
      return;
    }
    if (path === '/config.json') {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify(options.config));
      return;
    }
    const file = normalize(join(repoRoot, path));
    if (
      !path.startsWith('/src/') ||
      !file.startsWith(join(repoRoot, 'src')) ||
      !file.endsWith('.ts') ||
      !existsSync(file)
    ) {
      res.statusCode = 404;
      res.end();
      return;
    }
    let js = cache.get(file);
    if (js === undefined) {
      js = transformSync(readFileSync(file, 'utf8'), {
        loader: 'ts',
        format: 'esm',
        target: 'es2022',
        sourcefile: file,
      }).code;
      cache.set(file, js);
    }
    res.setHeader('content-type', 'text/javascript');
    res.end(js);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

async function proxy(
  apiUrl: string,
  req: import('node:http').IncomingMessage,
  res: import('node:http').ServerResponse,
): Promise<void> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(req.headers))
    if (typeof v === 'string' && k !== 'host' && k !== 'connection' && k !== 'content-length') headers[k] = v;
  const init: RequestInit = { method: req.method ?? 'GET', headers, signal: AbortSignal.timeout(30_000) };
  if (chunks.length > 0) init.body = Buffer.concat(chunks);
  const upstream = await fetch(`${apiUrl}${req.url ?? '/'}`, init);
  res.statusCode = upstream.status;
  upstream.headers.forEach((v, k) => {
    if (k !== 'content-encoding' && k !== 'content-length' && k !== 'transfer-encoding' && k !== 'connection')
      res.setHeader(k, v);
  });
  res.end(Buffer.from(await upstream.arrayBuffer()));
}
