/**
 * Staleness weights for asynchronous aggregation: how much an update computed from an older model
 * version counts. s = server version at arrival − version the client trained from (s ≥ 0).
 */
import { ConfigError, invalidArgument } from '../core/errors.ts';
import type { StalenessSpec } from './spec.ts';

export type StalenessWeight = (staleness: number) => number;

function checkStaleness(s: number): void {
  if (!(Number.isInteger(s) && s >= 0))
    throw invalidArgument(`staleness must be a non-negative integer, got ${s}`);
}

/**
 * Builds w(s) for a parsed spec. Weights lie in [0, 1] with w(0) = 1. A weight of 0 (threshold kind,
 * beyond the threshold) means the update must not be applied; strategies reject it as 'stale'.
 */
export function stalenessWeight(spec: StalenessSpec): StalenessWeight {
  switch (spec.kind) {
    case 'constant':
      return (s) => {
        checkStaleness(s);
        return 1;
      };
    case 'polynomial': {
      const a = spec.exponent;
      if (!(Number.isFinite(a) && a >= 0))
        throw new ConfigError(
          [{ path: 'exponent', message: `must be finite and ≥ 0, got ${a}` }],
          'staleness',
        );
      return (s) => {
        checkStaleness(s);
        return (1 + s) ** -a;
      };
    }
    case 'hinge': {
      const { threshold, slope } = spec;
      const issues = [];
      if (!(Number.isInteger(threshold) && threshold >= 0))
        issues.push({ path: 'threshold', message: `must be a non-negative integer, got ${threshold}` });
      if (!(Number.isFinite(slope) && slope >= 0))
        issues.push({ path: 'slope', message: `must be finite and ≥ 0, got ${slope}` });
      if (issues.length > 0) throw new ConfigError(issues, 'staleness');
      return (s) => {
        checkStaleness(s);
        return s <= threshold ? 1 : 1 / (1 + slope * (s - threshold));
      };
    }
    case 'threshold': {
      const { threshold } = spec;
      if (!(Number.isInteger(threshold) && threshold >= 0))
        throw new ConfigError(
          [{ path: 'threshold', message: `must be a non-negative integer, got ${threshold}` }],
          'staleness',
        );
      return (s) => {
        checkStaleness(s);
        return s <= threshold ? 1 : 0;
      };
    }
    default: {
      const unknown: never = spec;
      throw new ConfigError(
        [
          {
            path: 'kind',
            message: `unknown staleness kind ${JSON.stringify((unknown as { kind: unknown }).kind)}`,
          },
        ],
        'staleness',
      );
    }
  }
}
