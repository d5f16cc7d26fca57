import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { parseExperimentConfig } from './config.ts';

// The configuration example in the README must stay a valid config.
test('the README config example validates', () => {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  const block = /```jsonc\n([\s\S]*?)```/.exec(readme)?.[1];
  assert.ok(block, 'README has a jsonc config block');
  const json = block.replace(/\s\/\/[^\n]*/g, '');
  const config = parseExperimentConfig(JSON.parse(json));
  assert.equal(config.runs.length, 3);
  assert.equal(config.runs[2]?.strategy.kind, 'fedasync');
});
