/**
 * Runs the client side (and, for an end-to-end check, a whole aggregation) in headless Chromium on
 * WebCrypto, and checks it against node:crypto in this process. The protocol sources are transpiled
 * with the TypeScript compiler and served from a local HTTP server; the page posts its results back.
 * Skipped where no Chromium is installed (set CHROMIUM to its path to choose one).
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { Rng } from '../../core/rng.ts';
import { NodeCryptoProvider } from './crypto-node.ts';
import { shareEncryptionKey } from './keys.ts';
import { shareAad } from './messages.ts';

const here = dirname(fileURLToPath(import.meta.url));
const srcRoot = resolve(here, '../..');
const chromium = [
  process.env.CHROMIUM,
  '/usr/bin/chromium',
  '/usr/bin/chromium-browser',
  '/usr/bin/google-chrome',
].find((p): p is string => p !== undefined && existsSync(p));

const SOURCES = [
  'core/errors.ts',
  'core/rng.ts',
  ...[
    'crypto',
    'crypto-web',
    'errors',
    'fixedpoint',
    'graph',
    'keys',
    'messages',
    'shamir',
    'client',
    'server',
    'run',
  ].map((f) => `privacy/secagg/${f}.ts`),
];

function transpile(file: string): string {
  const out = ts.transpileModule(readFileSync(join(srcRoot, file), 'utf8'), {
    compilerOptions: {
      module: ts.ModuleKind.ESNext,
      target: ts.ScriptTarget.ES2022,
      rewriteRelativeImportExtensions: true,
      verbatimModuleSyntax: true,
    },
  });
  return out.outputText;
}

// The page: RFC vectors, a fixed-key mask, a share sealed to a node:crypto key, and two whole runs.
const PAGE_SCRIPT = `
import { WebCryptoProvider } from './privacy/secagg/crypto-web.js';
import { shareEncryptionKey } from './privacy/secagg/keys.js';
import { shareAad } from './privacy/secagg/messages.js';
import { completeGraph, hararyGraph, majorityThreshold } from './privacy/secagg/graph.js';
import { fixedPointFor } from './privacy/secagg/fixedpoint.js';
import { runSecAgg } from './privacy/secagg/run.js';
import { Rng } from './core/rng.js';
const hex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
const unhex = (s) => new Uint8Array(s.match(/../g).map((h) => parseInt(h, 16)));
const post = (body) => fetch('/result', { method: 'POST', body: JSON.stringify(body) });
try {
  const cfg = await (await fetch('/config')).json();
  const c = new WebCryptoProvider();
  const out = { userAgent: navigator.userAgent };
  const base = new Uint8Array(32); base[0] = 9;
  const alice = unhex('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a');
  out.alicePublic = hex(await c.x25519(alice, base));
  out.hkdf = hex(await c.hkdfSha256(new Uint8Array(22).fill(11), unhex('000102030405060708090a0b0c'), unhex('f0f1f2f3f4f5f6f7f8f9'), 42));
  out.mask = Array.from(await c.expandMask(unhex(cfg.maskKey), 300));
  const mine = await c.generateX25519();
  const session = unhex(cfg.session);
  const key = await shareEncryptionKey(c, session, mine.privateKey, unhex(cfg.nodePublic));
  const nonce = c.randomBytes(12);
  out.sealed = { publicKey: hex(mine.publicKey), nonce: hex(nonce), ciphertext: hex(await c.sealAesGcm(key, nonce, unhex(cfg.plaintext), shareAad(session, 3, 4))) };
  out.runs = [];
  for (const run of cfg.runs) {
    const rng = new Rng(run.seed);
    const inputs = Array.from({ length: run.n }, () => Float32Array.from({ length: run.dim }, () => rng.uniform(-1.2, 1.2)));
    const graph = run.k >= run.n - 1 ? completeGraph(run.n) : hararyGraph(run.n, run.k, new Rng(run.seed + 1));
    const params = { sessionId: c.randomBytes(16), graph, threshold: majorityThreshold(graph.degree + 1), dimension: run.dim, encoding: fixedPointFor(1, run.n) };
    const r = await runSecAgg(params, inputs, c, run.plan);
    out.runs.push({ sum: Array.from(r.sum), survivors: r.survivors, step: 2 / (2 ** params.encoding.valueBits - 1) });
  }
  await post(out);
} catch (e) {
  await post({ error: String(e && e.stack || e) });
}
`;

const RUNS = [
  { n: 8, k: 7, dim: 50, seed: 11, plan: { beforeMaskedInput: [2] } },
  { n: 30, k: 12, dim: 40, seed: 12, plan: { beforeShareKeys: [5], beforeUnmask: [7, 9] } },
];

// Locally the test is skipped without Chromium; in CI (.ci/run installs it) a missing browser fails.
test('CI has Chromium for the browser tests', { skip: process.env.CI === undefined }, () => {
  assert.ok(chromium, 'no Chromium found: .ci/run should have installed Debian chromium');
});

test('the client side runs in headless Chromium on WebCrypto and agrees with node:crypto', {
  skip: chromium === undefined ? 'no Chromium found' : false,
  timeout: 120_000,
}, async () => {
  const node = new NodeCryptoProvider();
  const nodeKeys = await node.generateX25519();
  const session = node.randomBytes(16);
  const maskKey = node.randomBytes(16);
  const plaintext = node.randomBytes(74);
  const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
  const config = {
    maskKey: hex(maskKey),
    session: hex(session),
    nodePublic: hex(nodeKeys.publicKey),
    plaintext: hex(plaintext),
    runs: RUNS,
  };
  const files = new Map<string, string>(SOURCES.map((f) => [`/${f.replace(/\.ts$/, '.js')}`, transpile(f)]));
  files.set('/main.js', PAGE_SCRIPT);
  files.set('/index.html', '<!doctype html><script type="module" src="/main.js"></script>');

  let deliver: (body: string) => void = () => {};
  const result = new Promise<string>((res) => {
    deliver = res;
  });
  const server: Server = createServer((req, res) => {
    if (req.url === '/result' && req.method === 'POST') {
      let body = '';
      req.on('data', (d) => {
        body += d;
      });
      req.on('end', () => {
        res.end('ok');
        deliver(body);
      });
      return;
    }
    const body = req.url === '/config' ? JSON.stringify(config) : files.get(req.url ?? '');
    if (body === undefined) {
      res.statusCode = 404;
      res.end();
      return;
    }
    res.setHeader(
      'content-type',
      req.url?.endsWith('.html')
        ? 'text/html'
        : req.url?.endsWith('.js')
          ? 'text/javascript'
          : 'application/json',
    );
    res.end(body);
  });
  await new Promise<void>((res) => server.listen(0, '127.0.0.1', res));
  const port = (server.address() as AddressInfo).port;
  const profile = mkdtempSync(join(tmpdir(), 'orchard-chromium-'));
  let browser: ChildProcess | null = null;
  try {
    browser = spawn(
      chromium as string,
      [
        '--headless=new',
        '--no-sandbox',
        '--disable-gpu',
        '--no-first-run',
        `--user-data-dir=${profile}`,
        `http://127.0.0.1:${port}/index.html`,
      ],
      { stdio: 'ignore' },
    );
    const launched = browser;
    const crashed = new Promise<never>((_, reject) =>
      launched.once('exit', (code) => reject(new Error(`Chromium exited (code ${code}) before reporting`))),
    );
    // The exit caused by our own kill() below must not surface as an unhandled rejection.
    crashed.catch(() => {});
    const out = JSON.parse(await Promise.race([result, crashed])) as {
      error?: string;
      alicePublic: string;
      hkdf: string;
      mask: number[];
      sealed: { publicKey: string; nonce: string; ciphertext: string };
      runs: { sum: number[]; survivors: number[]; step: number }[];
    };
    assert.equal(out.error, undefined, out.error);
    // RFC 7748 §6.1 and RFC 5869 case 1, computed by Chromium's WebCrypto.
    assert.equal(out.alicePublic, '8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a');
    assert.equal(
      out.hkdf,
      '3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865',
    );
    // The browser's PRG equals OpenSSL's, so a Node server removes browser clients' masks.
    assert.deepEqual(out.mask, Array.from(await node.expandMask(maskKey, 300)));
    // A share the browser sealed to a Node key opens in Node.
    const unhex = (s: string) => new Uint8Array(Buffer.from(s, 'hex'));
    const key = await shareEncryptionKey(node, session, nodeKeys.privateKey, unhex(out.sealed.publicKey));
    assert.deepEqual(
      await node.openAesGcm(
        key,
        unhex(out.sealed.nonce),
        unhex(out.sealed.ciphertext),
        shareAad(session, 3, 4),
      ),
      plaintext,
    );
    // Whole aggregations in the browser: the sums match the plain sums of the same seeded inputs.
    RUNS.forEach((run, idx) => {
      const got = out.runs[idx] as { sum: number[]; survivors: number[]; step: number };
      const rng = new Rng(run.seed);
      const inputs = Array.from({ length: run.n }, () =>
        Float32Array.from({ length: run.dim }, () => rng.uniform(-1.2, 1.2)),
      );
      const tol = (got.survivors.length * got.step) / 2 + 1e-5;
      for (let i = 0; i < run.dim; i++) {
        let want = 0;
        for (const u of got.survivors)
          want += Math.min(1, Math.max(-1, (inputs[u] as Float32Array)[i] as number));
        assert.ok(Math.abs(want - (got.sum[i] as number)) <= tol, `run ${idx} coordinate ${i}`);
      }
    });
    assert.deepEqual(out.runs[0]?.survivors, [0, 1, 3, 4, 5, 6, 7]);
    assert.equal(out.runs[1]?.survivors.length, 29);
  } finally {
    if (browser !== null && browser.exitCode === null) {
      const exited = new Promise((res) => browser?.once('exit', res));
      browser.kill();
      await exited;
    }
    server.close();
    rmSync(profile, { recursive: true, force: true, maxRetries: 5, retryDelay: 200 });
  }
});
