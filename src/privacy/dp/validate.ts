/** Input checks shared by the accountants and the calibration: bad values are ConfigErrors, listed all at once. */
import { ConfigError, type Issue } from '../../core/errors.ts';

export interface MechanismInput {
  readonly noiseMultiplier?: number;
  readonly samplingRate?: number;
  readonly steps?: number;
  readonly delta?: number;
  readonly epsilon?: number;
}

/** Collects every problem with the given fields (only the fields present are checked). */
export function mechanismIssues(input: MechanismInput): Issue[] {
  const issues: Issue[] = [];
  const { noiseMultiplier, samplingRate, steps, delta, epsilon } = input;
  if (noiseMultiplier !== undefined && !(Number.isFinite(noiseMultiplier) && noiseMultiplier > 0))
    issues.push({ path: 'noiseMultiplier', message: `must be a finite number > 0, got ${noiseMultiplier}` });
  if (samplingRate !== undefined && !(samplingRate > 0 && samplingRate <= 1))
    issues.push({ path: 'samplingRate', message: `must be in (0, 1], got ${samplingRate}` });
  if (steps !== undefined && !(Number.isSafeInteger(steps) && steps >= 1))
    issues.push({ path: 'steps', message: `must be a positive integer, got ${steps}` });
  if (delta !== undefined && !(delta > 0 && delta < 1))
    issues.push({ path: 'delta', message: `must be in (0, 1), got ${delta}` });
  if (epsilon !== undefined && !(Number.isFinite(epsilon) && epsilon > 0))
    issues.push({ path: 'epsilon', message: `must be a finite number > 0, got ${epsilon}` });
  return issues;
}

export function assertMechanism(input: MechanismInput, what = 'privacy parameters'): void {
  const issues = mechanismIssues(input);
  if (issues.length > 0) throw new ConfigError(issues, what);
}
