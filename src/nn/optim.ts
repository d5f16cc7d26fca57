/**
 * First-order optimizers over one flat parameter vector. Used by clients (local SGD) and by servers
 * (FedAvg = sgd lr 1 on the averaged pseudo-gradient, FedAvgM = momentum, FedAdam = adam).
 *
 * `step` updates `params` in place: params ← params − lr · direction(grad, state). State (velocity,
 * moments) is preallocated once for `numParams`, so a step never allocates.
 */
import { ConfigError, type Issue, ShapeError } from '../core/errors.ts';
import type { OptimizerSpec } from '../fl/spec.ts';
import { simdGemm } from './simd.ts';

/** Vectors at least this long take the Wasm SIMD update in SGD. */
const SIMD_MIN_LENGTH = 4096;

export interface Optimizer {
  readonly kind: OptimizerSpec['kind'];
  readonly numParams: number;
  /** Steps taken since construction or the last reset (Adam's bias correction uses it). */
  readonly steps: number;
  step(params: Float32Array, grad: Float32Array): void;
  /** Forget all state (velocity, moments, step count). */
  reset(): void;
  /** Copies of the state (step count, per-parameter slots), for checkpoints. */
  exportState(): OptimizerState;
  /** Replaces the state with one from `exportState` of an optimizer of the same kind and size. */
  importState(state: OptimizerState): void;
}

export interface OptimizerState {
  readonly steps: number;
  /** Per-parameter state vectors: none (SGD), velocity (momentum), first and second moments (Adam). */
  readonly slots: readonly Float32Array[];
}

function importSlots(
  kind: string,
  numParams: number,
  state: OptimizerState,
  slots: readonly Float32Array[],
): number {
  if (!(Number.isInteger(state.steps) && state.steps >= 0))
    throw new ConfigError([{ path: 'steps', message: `must be an integer ≥ 0, got ${state.steps}` }], kind);
  if (state.slots.length !== slots.length || state.slots.some((s) => s.length !== numParams))
    throw new ShapeError(
      `${kind} state needs ${slots.length} slots of ${numParams} values, got ${state.slots.map((s) => s.length).join(', ') || 'none'}`,
    );
  slots.forEach((slot, i) => {
    slot.set(state.slots[i] as Float32Array);
  });
  return state.steps;
}

function checkLengths(numParams: number, params: Float32Array, grad: Float32Array): void {
  if (params.length !== numParams || grad.length !== numParams)
    throw new ShapeError(
      `optimizer built for ${numParams} parameters got params of length ${params.length} and grad of length ${grad.length}`,
    );
}

class Sgd implements Optimizer {
  readonly kind = 'sgd' as const;
  steps = 0;
  constructor(
    readonly numParams: number,
    private readonly lr: number,
  ) {}
  step(params: Float32Array, grad: Float32Array): void {
    checkLengths(this.numParams, params, grad);
    const lr = this.lr;
    const n = params.length;
    if (simdGemm !== null && n >= SIMD_MIN_LENGTH) simdGemm.axpyArrays(params, -lr, grad);
    else for (let i = 0; i < n; i++) params[i] = (params[i] as number) - lr * (grad[i] as number);
    this.steps++;
  }
  reset(): void {
    this.steps = 0;
  }
  exportState(): OptimizerState {
    return { steps: this.steps, slots: [] };
  }
  importState(state: OptimizerState): void {
    this.steps = importSlots(this.kind, this.numParams, state, []);
  }
}

/** Heavy-ball momentum in the v ← μv + g form (lr outside the velocity), optionally Nesterov. */
class Momentum implements Optimizer {
  readonly kind = 'momentum' as const;
  steps = 0;
  private readonly velocity: Float32Array;
  constructor(
    readonly numParams: number,
    private readonly lr: number,
    private readonly mu: number,
    private readonly nesterov: boolean,
  ) {
    this.velocity = new Float32Array(numParams);
  }
  step(params: Float32Array, grad: Float32Array): void {
    checkLengths(this.numParams, params, grad);
    const { lr, mu, velocity } = this;
    const n = params.length;
    if (this.nesterov) {
      for (let i = 0; i < n; i++) {
        const g = grad[i] as number;
        const v = mu * (velocity[i] as number) + g;
        velocity[i] = v;
        // Look-ahead direction: g + μ·v_new.
        params[i] = (params[i] as number) - lr * (g + mu * v);
      }
    } else {
      for (let i = 0; i < n; i++) {
        const v = mu * (velocity[i] as number) + (grad[i] as number);
        velocity[i] = v;
        params[i] = (params[i] as number) - lr * v;
      }
    }
    this.steps++;
  }
  reset(): void {
    this.velocity.fill(0);
    this.steps = 0;
  }
  exportState(): OptimizerState {
    return { steps: this.steps, slots: [new Float32Array(this.velocity)] };
  }
  importState(state: OptimizerState): void {
    this.steps = importSlots(this.kind, this.numParams, state, [this.velocity]);
  }
}

/** Adam with bias-corrected moments; eps is added to sqrt(v̂) (FedAdam calls it tau). */
class Adam implements Optimizer {
  readonly kind = 'adam' as const;
  steps = 0;
  private readonly m: Float32Array;
  private readonly v: Float32Array;
  constructor(
    readonly numParams: number,
    private readonly lr: number,
    private readonly beta1: number,
    private readonly beta2: number,
    private readonly eps: number,
  ) {
    this.m = new Float32Array(numParams);
    this.v = new Float32Array(numParams);
  }
  step(params: Float32Array, grad: Float32Array): void {
    checkLengths(this.numParams, params, grad);
    const { lr, beta1, beta2, eps, m, v } = this;
    const t = this.steps + 1;
    const c1 = 1 / (1 - beta1 ** t);
    const c2 = 1 / (1 - beta2 ** t);
    const n = params.length;
    for (let i = 0; i < n; i++) {
      const g = grad[i] as number;
      const mi = beta1 * (m[i] as number) + (1 - beta1) * g;
      const vi = beta2 * (v[i] as number) + (1 - beta2) * g * g;
      m[i] = mi;
      v[i] = vi;
      params[i] = (params[i] as number) - (lr * (mi * c1)) / (Math.sqrt(vi * c2) + eps);
    }
    this.steps = t;
  }
  reset(): void {
    this.m.fill(0);
    this.v.fill(0);
    this.steps = 0;
  }
  exportState(): OptimizerState {
    return { steps: this.steps, slots: [new Float32Array(this.m), new Float32Array(this.v)] };
  }
  importState(state: OptimizerState): void {
    this.steps = importSlots(this.kind, this.numParams, state, [this.m, this.v]);
  }
}

function validate(spec: OptimizerSpec, numParams: number): Issue[] {
  const issues: Issue[] = [];
  if (!Number.isInteger(numParams) || numParams < 0)
    issues.push({ path: 'numParams', message: `must be a non-negative integer, got ${numParams}` });
  if (!(Number.isFinite(spec.lr) && spec.lr > 0))
    issues.push({ path: 'lr', message: `must be a finite positive number, got ${spec.lr}` });
  const unit = (path: string, x: number) => {
    if (!(x >= 0 && x < 1)) issues.push({ path, message: `must be in [0, 1), got ${x}` });
  };
  if (spec.kind === 'momentum') unit('momentum', spec.momentum);
  if (spec.kind === 'adam') {
    unit('beta1', spec.beta1);
    unit('beta2', spec.beta2);
    if (!(Number.isFinite(spec.eps) && spec.eps > 0))
      issues.push({ path: 'eps', message: `must be a finite positive number, got ${spec.eps}` });
  }
  return issues;
}

/** Builds an optimizer for a parsed OptimizerSpec; throws ConfigError on values the schema would reject. */
export function createOptimizer(spec: OptimizerSpec, numParams: number): Optimizer {
  const issues = validate(spec, numParams);
  if (issues.length > 0) throw new ConfigError(issues, `${String(spec.kind)} optimizer`);
  switch (spec.kind) {
    case 'sgd':
      return new Sgd(numParams, spec.lr);
    case 'momentum':
      return new Momentum(numParams, spec.lr, spec.momentum, spec.nesterov);
    case 'adam':
      return new Adam(numParams, spec.lr, spec.beta1, spec.beta2, spec.eps);
    default: {
      const unknown: never = spec;
      throw new ConfigError(
        [
          {
            path: 'kind',
            message: `unknown optimizer ${JSON.stringify((unknown as { kind: unknown }).kind)}`,
          },
        ],
        'optimizer',
      );
    }
  }
}
