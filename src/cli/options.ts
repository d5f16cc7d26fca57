/** Shared option parsing for CLI commands: bad values are ConfigErrors (exit code 2). */
import { ConfigError, type Issue } from '../core/errors.ts';

export function parseIntegerOption(flag: string, value: string): number {
  if (!/^-?\d+$/.test(value.trim()) || !Number.isSafeInteger(Number(value))) {
    throw new ConfigError([{ path: flag, message: `expected an integer, got '${value}'` }], 'arguments');
  }
  return Number(value);
}

/** An integer ≥ 1 (a size, a count, a deadline in ms); anything else is a ConfigError naming the flag. */
export function parsePositiveIntegerOption(flag: string, value: string): number {
  const n = parseIntegerOption(flag, value);
  if (n < 1) {
    throw new ConfigError(
      [{ path: flag, message: `expected a positive integer, got '${value}'` }],
      'arguments',
    );
  }
  return n;
}

const DECIMAL = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

/** A finite decimal number; hex, blanks, 'Infinity' and trailing junk are refused. */
export function parseNumberOption(flag: string, value: string): number {
  const trimmed = value.trim();
  const n = Number(trimmed);
  if (!DECIMAL.test(trimmed) || !Number.isFinite(n)) {
    throw new ConfigError([{ path: flag, message: `expected a number, got '${value}'` }], 'arguments');
  }
  return n;
}

/**
 * Gathers the issues of several option parsers so that one ConfigError names every bad flag:
 * `attempt` runs a parser and, when it throws a ConfigError, keeps its issues and returns undefined.
 */
export function issueCollector(): {
  readonly issues: Issue[];
  readonly attempt: <T>(parse: () => T) => T | undefined;
} {
  const issues: Issue[] = [];
  const attempt = <T>(parse: () => T): T | undefined => {
    try {
      return parse();
    } catch (e) {
      if (e instanceof ConfigError) issues.push(...e.issues);
      else throw e;
      return undefined;
    }
  };
  return { issues, attempt };
}
