/**
 * Typed errors. Every error Orchard throws on bad input is an OrchardError with a stable `code`
 * so callers (CLI, server, tests) can branch on data instead of parsing messages.
 */
export type ErrorCode =
  | 'CONFIG_INVALID'
  | 'SHAPE_MISMATCH'
  | 'NON_FINITE'
  | 'STALE_UPDATE'
  | 'DUPLICATE_UPDATE'
  | 'UNKNOWN_VERSION'
  | 'DIVERGED'
  | 'DATA_INVALID'
  | 'INVALID_ARGUMENT'
  | 'INVALID_STATE';

export interface Issue {
  /** Dotted path of the offending field, e.g. `strategy.bufferSize`; empty for the whole value. */
  readonly path: string;
  readonly message: string;
}

export class OrchardError extends Error {
  readonly code: ErrorCode;
  readonly issues: readonly Issue[];
  constructor(code: ErrorCode, message: string, issues: readonly Issue[] = []) {
    super(message);
    this.name = 'OrchardError';
    this.code = code;
    this.issues = issues;
  }
}

export class ConfigError extends OrchardError {
  constructor(issues: readonly Issue[], what = 'config') {
    const lines = issues.map((i) => `  - ${i.path || '(root)'}: ${i.message}`).join('\n');
    super('CONFIG_INVALID', `invalid ${what}:\n${lines}`, issues);
    this.name = 'ConfigError';
  }
}

export class ShapeError extends OrchardError {
  constructor(message: string) {
    super('SHAPE_MISMATCH', message);
    this.name = 'ShapeError';
  }
}

export class NonFiniteError extends OrchardError {
  constructor(message: string) {
    super('NON_FINITE', message);
    this.name = 'NonFiniteError';
  }
}

export class DivergenceError extends OrchardError {
  constructor(message: string) {
    super('DIVERGED', message);
    this.name = 'DivergenceError';
  }
}

export function invalidArgument(message: string): OrchardError {
  return new OrchardError('INVALID_ARGUMENT', message);
}
