/** `orchard presets`: the built-in experiments. */
import type { Command } from 'commander';
import { listPresets } from '../../experiment/presets.ts';

export function registerPresets(program: Command): void {
  program
    .command('presets')
    .description('list built-in experiments for `orchard simulate --preset`')
    .action(() => {
      const presets = listPresets();
      const width = Math.max(...presets.map((p) => p.name.length));
      for (const p of presets) process.stdout.write(`${p.name.padEnd(width)}  ${p.description}\n`);
    });
}
