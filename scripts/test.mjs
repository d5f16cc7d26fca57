#!/usr/bin/env node
// The one test command: lint/format check, type check, then every *.test.ts under src/ and bench/.
// Node 20's test runner has no glob support, so the files are listed here.
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { ensureSystemDeps } from './system-deps.mjs';

function findTests(dir, out = []) {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) findTests(p, out);
    else if (name.endsWith('.test.ts')) out.push(p);
  }
  return out;
}

function step(label, cmd, args) {
  console.log(`\n== ${label}: ${cmd} ${args.join(' ')}`);
  const r = spawnSync(cmd, args, { stdio: 'inherit' });
  if (r.status !== 0) {
    console.error(`${label} failed (exit ${r.status ?? r.signal})`);
    process.exit(r.status ?? 1);
  }
}

const only = process.argv.slice(2);
if (only.length === 0) {
  ensureSystemDeps();
  step('lint', 'npx', ['biome', 'ci', '.']);
  step('typecheck', 'npx', ['tsc', '--noEmit', '-p', '.']);
}
const files = only.length > 0 ? only : [...findTests('src'), ...findTests('examples')].sort();
step('tests', process.execPath, ['--import', 'tsx', '--test', '--test-reporter=spec', ...files]);
