/**
 * Kernels for online KRR, written as a cheap pair statistic plus a hyperparameter-dependent transform:
 * RBF and Laplacian keep the squared / L1 distance, linear and polynomial keep the dot product. Storing
 * the statistic for every window pair lets a change of the width γ rebuild K with one transform per
 * entry instead of d-dimensional work, and gives γ·∂k/∂γ in closed form for the hypergradient.
 */
import { invalidArgument } from '../../core/errors.ts';

export type KernelType = 'rbf' | 'laplacian' | 'linear' | 'polynomial';

export interface KernelSpec {
  readonly type: KernelType;
  /** Polynomial degree (polynomial only); default 2. */
  readonly degree?: number;
  /** Polynomial offset c0 in (γ·xᵀy + c0)^p; default 1. */
  readonly offset?: number;
}

export interface Kernel {
  readonly type: KernelType;
  readonly degree: number;
  readonly offset: number;
}

/**
 * Accounting convention (deterministic, documented in the report): one multiply or add = 1 flop; an
 * exp / pow costs TRANSFORM_FLOPS, a rough count of what a libm call costs in multiply-adds.
 */
export const TRANSFORM_FLOPS = 10;

export function makeKernel(spec: KernelSpec): Kernel {
  const degree = spec.degree ?? 2;
  const offset = spec.offset ?? 1;
  if (!['rbf', 'laplacian', 'linear', 'polynomial'].includes(spec.type)) {
    throw invalidArgument(`unknown kernel '${String(spec.type)}' (rbf, laplacian, linear, polynomial)`);
  }
  if (!Number.isInteger(degree) || degree < 1) throw invalidArgument(`kernel degree must be an integer >= 1`);
  if (!Number.isFinite(offset) || offset < 0) throw invalidArgument(`kernel offset must be finite and >= 0`);
  return { type: spec.type, degree, offset };
}

/** Squared distance (rbf), L1 distance (laplacian) or dot product (linear, polynomial). */
export function pairStat(kernel: Kernel, a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  const d = a.length;
  if (kernel.type === 'rbf') {
    for (let i = 0; i < d; i++) {
      const t = (a[i] as number) - (b[i] as number);
      s += t * t;
    }
  } else if (kernel.type === 'laplacian') {
    for (let i = 0; i < d; i++) s += Math.abs((a[i] as number) - (b[i] as number));
  } else {
    for (let i = 0; i < d; i++) s += (a[i] as number) * (b[i] as number);
  }
  return s;
}

/** Flops of one pairStat on d features. */
export function pairStatFlops(kernel: Kernel, d: number): number {
  return kernel.type === 'rbf' || kernel.type === 'laplacian' ? 3 * d : 2 * d;
}

/** k from the pair statistic. */
export function kernelFromStat(kernel: Kernel, stat: number, gamma: number): number {
  switch (kernel.type) {
    case 'rbf':
    case 'laplacian':
      return Math.exp(-gamma * stat);
    case 'linear':
      return gamma * stat;
    case 'polynomial':
      return (gamma * stat + kernel.offset) ** kernel.degree;
  }
}

/** γ·∂k/∂γ (the derivative with respect to log γ) from the pair statistic. */
export function kernelLogGammaDerivative(kernel: Kernel, stat: number, gamma: number): number {
  switch (kernel.type) {
    case 'rbf':
    case 'laplacian':
      return -gamma * stat * Math.exp(-gamma * stat);
    case 'linear':
      return gamma * stat;
    case 'polynomial':
      return kernel.degree * gamma * stat * (gamma * stat + kernel.offset) ** (kernel.degree - 1);
  }
}
