import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
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
