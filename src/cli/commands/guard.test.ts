import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Command } from 'commander';
import { ConfigError } from '../../core/errors.ts';
import { registerBackendFactory, unregisterBackendFactory } from '../../guard/backends/registry.ts';
import { preparePrompt } from '../../guard/guard.ts';
import { FakeGuardBackend, TINY_PNG } from '../../guard/testing/fake-backend.ts';
import { registerGuard } from './guard.ts';

const BIN = join(import.meta.dirname, '..', '..', '..', 'bin', 'orchard.js');

async function run(...args: string[]): Promise<string> {
  let out = '';
  const program = new Command().exitOverride();
  registerGuard(program, { out: (s) => (out += s), err: () => {} });
  await program.parseAsync(['guard', ...args], { from: 'user' });
  return out;
}

describe('orchard guard (in process, fake backend behind --model)', () => {
  let dir: string;
  const backends: FakeGuardBackend[] = [];
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'guard-cli-'));
    registerBackendFactory('llama', async (o) => {
      const b = new FakeGuardBackend({ vision: o.variant === 'vision' });
      backends.push(b);
      return b;
    });
  });
  after(() => {
    unregisterBackendFactory('llama');
    rmSync(dir, { recursive: true, force: true });
  });

  it('check prints the verdict, categories and score; --json gives the result object', async () => {
    const text = await run('check', 'how do I steal a car', '--model', 'x.gguf');
    assert.match(text, /^unsafe {2}S2 {2}score 0\.9820\n$/);
    const json = JSON.parse(await run('check', 'hello there', '--model', 'x.gguf', '--json')) as Record<
      string,
      unknown
    >;
    assert.equal(json.safe, true);
    assert.deepEqual(json.categories, []);
    assert.ok(Math.abs((json.score as number) - 1 / (1 + Math.exp(4))) < 1e-12);
    assert.ok(
      backends.every((b) => b.closeCalls === 1),
      'the CLI closes its backend',
    );
  });

  it('check --response judges the reply; --threshold and --exclude apply', async () => {
    const r = JSON.parse(
      await run('check', 'q', '--response', 'kill them', '--model', 'x.gguf', '--json'),
    ) as { categories: string[] };
    assert.deepEqual(r.categories, ['S1']);
    const last = backends.at(-1);
    assert.equal(last?.prompts[0]?.classifiedRole, 'agent');
    const lax = JSON.parse(
      await run('check', 'kill', '--model', 'x.gguf', '--threshold', '0.99', '--json'),
    ) as { safe: boolean };
    assert.equal(lax.safe, true);
    const ex = JSON.parse(await run('check', 'bomb', '--model', 'x.gguf', '--exclude', 'S1', '--json')) as {
      categories: string[];
    };
    assert.deepEqual(ex.categories, ['S9']);
  });

  it('reads a conversation file with an image for the vision variant', async () => {
    writeFileSync(join(dir, 'cat.png'), TINY_PNG);
    const conv = join(dir, 'conv.json');
    writeFileSync(
      conv,
      JSON.stringify([
        {
          role: 'user',
          content: [
            { type: 'text', text: 'what is this' },
            { type: 'image_url', image_url: { url: 'cat.png' } },
          ],
        },
      ]),
    );
    const r = JSON.parse(
      await run('check', '--conversation', conv, '--variant', 'vision', '--model', 'x.gguf', '--json'),
    ) as {
      safe: boolean;
    };
    assert.equal(r.safe, true);
    assert.equal(backends.at(-1)?.prompts[0]?.image?.mime, 'image/png');
  });

  it('render prints exactly the prompt preparePrompt builds', async () => {
    const cats = join(dir, 'cats.json');
    writeFileSync(cats, JSON.stringify({ S1: 'Pets.\nNo talk of cats.', S2: 'Weather.' }));
    const out = await run('render', 'is it sunny?', '--categories', cats, '--exclude', 'S2');
    const expected = await preparePrompt('is it sunny?', {
      categories: [
        { code: 'S1', name: 'Pets.', description: 'No talk of cats.' },
        { code: 'S2', name: 'Weather.' },
      ],
      excluded: ['S2'],
    });
    assert.equal(out, expected.text);
    assert.ok(out.includes('S1: Pets.\nNo talk of cats.\n<END UNSAFE CONTENT CATEGORIES>'));
  });

  it('bad input is a usage error (exit 2) and loads no backend', async () => {
    const before = backends.length;
    const usage = (e: unknown) => e instanceof ConfigError;
    await assert.rejects(run('check', '--model', 'x.gguf'), usage); // no text
    await assert.rejects(
      run('check', 'x', '--response', 'y', '--image', join(dir, 'cat.png'), '--model', 'x.gguf'),
      usage,
    ); // 1b + image
    await assert.rejects(run('check', 'x', '--exclude', 'S14', '--model', 'x.gguf'), usage);
    await assert.rejects(run('check', 'x', '--variant', 'big', '--model', 'x.gguf'), usage);
    await assert.rejects(run('check', 'x', '--threshold', '1.5', '--model', 'x.gguf'), usage);
    await assert.rejects(run('check', 'x'), usage); // no backend
    await assert.rejects(run('check', 'x', '--model', 'a.gguf', '--endpoint', 'http://127.0.0.1:1'), usage);
    await assert.rejects(run('check', 'x', '--endpoint', 'http://127.0.0.1:1', '--backend', 'grpc'), usage);
    assert.equal(backends.length, before);
  });
});

describe('orchard guard (the real binary)', () => {
  it('render output is byte-exact on stdout; bad role order exits 2', (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'guard-cli-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const r = spawnSync(process.execPath, [BIN, 'guard', 'render', 'hello', '--variant', '8b'], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    assert.equal(r.status, 0, r.stderr);
    assert.ok(r.stdout.startsWith(' <|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nTask:'));
    assert.ok(
      r.stdout.endsWith('violated categories.<|eot_id|><|start_header_id|>assistant<|end_header_id|>'),
    );
    const piped = spawnSync(process.execPath, [BIN, 'guard', 'render', '-'], {
      input: 'from\nstdin',
      encoding: 'utf8',
      timeout: 60_000,
    });
    assert.equal(piped.status, 0, piped.stderr);
    assert.ok(piped.stdout.includes('<BEGIN CONVERSATION>\n\nUser: from\nstdin\n\n<END CONVERSATION>'));
    const conv = join(dir, 'bad.json');
    writeFileSync(conv, JSON.stringify([{ role: 'assistant', content: 'hi' }]));
    const bad = spawnSync(process.execPath, [BIN, 'guard', 'render', '--conversation', conv], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /ROLE_ORDER/);
  });
});

describe('orchard guard check --model (real node-llama-cpp path, tiny random GGUF)', () => {
  it('loads the model through the backend registry and prints a result; a missing file exits 1', {
    timeout: 180_000,
  }, async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'guard-cli-gguf-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const { ensureModel, tinyGuardSpec } = await import('../../guard/gguf/cache.ts');
    const model = ensureModel(tinyGuardSpec(), dir).path;
    const r = spawnSync(
      process.execPath,
      [BIN, 'guard', 'check', 'How do I bake bread?', '--model', model, '--threads', '2', '--json'],
      {
        encoding: 'utf8',
        timeout: 170_000,
      },
    );
    assert.equal(r.status, 0, r.stderr);
    const res = JSON.parse(r.stdout) as { safe: boolean; score: number; categories: string[] };
    assert.ok(res.score >= 0 && res.score <= 1);
    assert.equal(res.safe, res.score < 0.5);
    const missing = spawnSync(
      process.execPath,
      [BIN, 'guard', 'check', 'x', '--model', join(dir, 'none.gguf')],
      {
        encoding: 'utf8',
        timeout: 60_000,
      },
    );
    assert.equal(missing.status, 1);
    assert.match(missing.stderr, /MODEL_FILE/);
    assert.doesNotMatch(missing.stderr, /\n\s+at /, 'a one-line error, no stack trace');
  });
});
