/**
 * The renderer against the models' own chat templates: fixtures/rendered-reference.json holds the
 * published Jinja templates (sources in fixtures/README.md) rendered by Python jinja2 configured like
 * Hugging Face transformers. Our output must match byte for byte.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { preparePrompt } from './guard.ts';
import { parseCategories } from './taxonomy.ts';
import { pythonStrip } from './template.ts';
import { TINY_PNG } from './testing/fake-backend.ts';
import { type ContentPart, GuardError, type GuardModelVariant, type Message } from './types.ts';

interface RefCase {
  name: string;
  variant: GuardModelVariant;
  messages: { role: 'user' | 'assistant'; content: string | { type: 'text' | 'image'; text?: string }[] }[];
  kwargs: { categories?: Record<string, string>; excluded_category_keys?: string[] };
  rendered: string;
}
const ref = JSON.parse(
  readFileSync(new URL('./fixtures/rendered-reference.json', import.meta.url), 'utf8'),
) as {
  cases: RefCase[];
  errors: { variant: GuardModelVariant; name: string; raises: string | null }[];
};

function toMessages(c: RefCase): Message[] {
  return c.messages.map((m) => ({
    role: m.role,
    content:
      typeof m.content === 'string'
        ? m.content
        : m.content.map(
            (p): ContentPart =>
              p.type === 'image' ? { type: 'image', image: TINY_PNG } : { type: 'text', text: p.text ?? '' },
          ),
  }));
}

describe('templates: byte-for-byte against the published chat templates', () => {
  assert.ok(ref.cases.length >= 10);
  for (const c of ref.cases) {
    it(`${c.variant}: ${c.name}`, async () => {
      const p = await preparePrompt(toMessages(c), {
        variant: c.variant,
        specialTokens: 'allow', // some cases carry control-token text, which the templates render verbatim
        ...(c.kwargs.categories ? { categories: parseCategories(c.kwargs.categories) } : {}),
        ...(c.kwargs.excluded_category_keys ? { excluded: c.kwargs.excluded_category_keys } : {}),
      });
      assert.equal(p.text, c.rendered);
      assert.ok(p.text.startsWith(p.prefix));
      assert.ok(p.prefix.endsWith('<BEGIN CONVERSATION>\n\n'));
    });
  }

  it('every variant rejects the orders its template rejects', async () => {
    for (const e of ref.errors) {
      assert.match(e.raises ?? '', /roles must alternate/);
      const msgs: Message[] =
        e.name === 'starts with assistant'
          ? [{ role: 'assistant', content: 'x' }]
          : [
              { role: 'user', content: 'a' },
              { role: 'user', content: 'b' },
            ];
      await assert.rejects(
        preparePrompt(msgs, { variant: e.variant }),
        (err) => err instanceof GuardError && err.code === 'ROLE_ORDER',
      );
    }
  });
});

describe('templates: structure', () => {
  it('1B and Vision list S1–S13, the 8B adds S14', async () => {
    for (const variant of ['1b', 'vision'] as const) {
      const p = await preparePrompt('hi', { variant });
      assert.ok(p.text.includes('S13: Elections.\n<END UNSAFE'));
      assert.ok(!p.text.includes('S14'));
    }
    const p8 = await preparePrompt('hi', { variant: '8b' });
    assert.ok(p8.text.includes('S13: Elections.\nS14: Code Interpreter Abuse.\n<END UNSAFE'));
  });

  it('response classification judges the Agent turn', async () => {
    const p = await preparePrompt('q', { response: 'a' });
    assert.equal(p.classifiedRole, 'agent');
    assert.ok(p.text.includes("unsafe content in 'Agent' messages"));
    assert.ok(p.text.includes('ONLY THE LAST Agent message'));
  });

  it('the policy prefix is shared across conversations with the same policy and role', async () => {
    const a = await preparePrompt('first conversation');
    const b = await preparePrompt([
      { role: 'user', content: 'x' },
      { role: 'assistant', content: 'y' },
      { role: 'user', content: 'z' },
    ]);
    assert.equal(a.prefix, b.prefix);
    const c = await preparePrompt('q', { response: 'r' });
    assert.notEqual(a.prefix, c.prefix);
    const d = await preparePrompt('q', { excluded: ['S6'] });
    assert.notEqual(a.prefix, d.prefix);
  });

  it('custom categories print their descriptions under the name', async () => {
    const p = await preparePrompt('x', {
      categories: [
        { code: 'S1', name: 'Pets', description: 'Talk about cats or dogs.\nAlso hamsters.' },
        { code: 'S2', name: 'Weather.' },
      ],
    });
    assert.ok(
      p.text.includes(
        '<BEGIN UNSAFE CONTENT CATEGORIES>\nS1: Pets.\nTalk about cats or dogs.\nAlso hamsters.\nS2: Weather.\n<END',
      ),
    );
  });
});

describe('pythonStrip', () => {
  it('strips what Python str.strip strips, not what JS trim strips', () => {
    assert.equal(pythonStrip('\x1c\x1d\x1e\x1f\x85 a \u3000'), 'a');
    assert.equal(pythonStrip('\ufeffa\ufeff'), '\ufeffa\ufeff');
    assert.equal(pythonStrip(' \t\n'), '');
    assert.equal(pythonStrip('a b'), 'a b');
  });
});
