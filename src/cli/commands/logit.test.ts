import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { choiceCsv } from '../../stats/latent-logit/csv.ts';
import type { ChoicePanel } from '../../stats/latent-logit/data.ts';
import { simulatePanel } from '../../stats/latent-logit/simulate.ts';
import { EXIT_USAGE, main } from '../main.ts';

async function quietly(run: () => Promise<number>): Promise<number> {
  const write = process.stderr.write.bind(process.stderr);
  process.stderr.write = (() => true) as typeof process.stderr.write;
  try {
    return await run();
  } finally {
    process.stderr.write = write;
  }
}

test('orchard logit fit: bad arguments and bad data exit with the usage code', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'logit-cli-'));
  try {
    const bad = join(dir, 'bad.csv');
    writeFileSync(bad, 'individual,situation,alternative,chosen,price\n1,1,a,1,2\n1,1,b,1,3\n');
    assert.equal(await quietly(() => main(['logit', 'fit', '--data', bad])), EXIT_USAGE);
    assert.equal(await quietly(() => main(['logit', 'fit'])), EXIT_USAGE);
    assert.equal(await quietly(() => main(['logit', 'fit', '--data', bad, '--lambda1', '0.1'])), EXIT_USAGE);
    assert.equal(
      await quietly(() => main(['logit', 'fit', '--data', bad, '--lambda1', '-1', '--lambda2', '1'])),
      EXIT_USAGE,
    );
    assert.equal(await quietly(() => main(['logit', 'fit', '--data', join(dir, 'missing.csv')])), EXIT_USAGE);
    assert.equal(await quietly(() => main(['logit', 'repro', '--restarts', '0'])), EXIT_USAGE);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('orchard logit fit --json on a choice CSV: a converged path fit with its rank selection', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'logit-cli-'));
  const write = process.stdout.write.bind(process.stdout);
  let out = '';
  try {
    const sim = simulatePanel({ kind: 'choice', n: 12, T: 16, d: 3, r: 1, seed: 4 });
    const file = join(dir, 'choices.csv');
    writeFileSync(file, choiceCsv(sim.panel as ChoicePanel));
    process.stdout.write = ((chunk: string) => {
      out += chunk;
      return true;
    }) as typeof process.stdout.write;
    const code = await main(['logit', 'fit', '--data', file, '--json']);
    process.stdout.write = write;
    assert.equal(code, 0);
    const fit = JSON.parse(out) as {
      individuals: number;
      attributes: string[];
      rank: number;
      certificate: { converged: boolean };
      rankSelection: { rank: number; heldOutNllByRank: number[]; U: number[] };
      coefficients: Array<{ id: string; beta: number[] }>;
    };
    assert.equal(fit.individuals, 12);
    assert.deepEqual(fit.attributes, ['x1', 'x2', 'x3']);
    assert.ok(fit.certificate.converged);
    assert.ok(fit.rankSelection.rank <= fit.rank);
    assert.equal(fit.rankSelection.U.length, 12 * 3);
    assert.equal(fit.coefficients.length, 12);
  } finally {
    process.stdout.write = write;
    rmSync(dir, { recursive: true, force: true });
  }
});
