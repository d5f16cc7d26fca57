/** Shared option parsing for CLI commands: bad values are ConfigErrors (exit code 2). */
import { ConfigError } from '../core/errors.ts';

export function parseIntegerOption(flag: string, value: string): number {
  if (!/^-?\d+$/.test(value.trim()) || !Number.isSafeInteger(Number(value))) {
    throw new ConfigError([{ path: flag, message: `expected an integer, got '${value}'` }], 'arguments');
  }
  return Number(value);
}
