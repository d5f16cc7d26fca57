/**
 * Sliding-window kernel ridge regression with an incrementally maintained inverse M = (K + λI)⁻¹.
 *
 * Insertion (bordering): with b = k(X, x), c = k(x, x) + λ, u = M b and Schur complement s = c − bᵀu,
 *   M' = [[M + u uᵀ/s, −u/s], [−uᵀ/s, 1/s]]      (≈ 3n² flops: Mb, then a symmetric update)
 * Deletion of point j (Schur downdate): with f = M_jj and e = M_{−j,j},
 *   (A without row/col j)⁻¹ = M_{−j,−j} − e eᵀ / f   (≈ n² flops, symmetric)
 * α = M y follows both in O(n) (see add/remove) and is recomputed exactly at every drift check.
 *
 * Stability: rounding errors accumulate over many insert/delete cycles. Every `driftCheckEvery` updates (more often,
 * adaptively, while checks keep finding drift; up to 8× less often while drift stays far below the tolerance) we measure drift = ‖(K + λI) M v − v‖ / ‖v‖ for a fixed probe v (4n² flops), and refresh M by a direct
 * Cholesky factorization (≈ n³ flops) when drift exceeds both `driftTolerance` and `driftGrowth` × the
 * drift of the last fresh factorization (so an ill-conditioned matrix is not refactorized at every check). A non-positive Schur
 * complement or pivot (the update lost positive definiteness numerically) also forces a refresh.
 */
import { invalidArgument, NonFiniteError, OrchardError, ShapeError } from '../../core/errors.ts';
import {
  type Kernel,
  kernelFromStat,
  kernelLogGammaDerivative,
  pairStat,
  pairStatFlops,
  TRANSFORM_FLOPS,
} from './kernels.ts';
import { ComputeMeter, choleskyFlops, choleskyInPlace, inverseFromCholesky } from './meter.ts';

export interface WindowOptions {
  /** Refresh threshold on the probe residual; default 1e-8. */
  readonly driftTolerance?: number;
  /**
   * Refresh only when drift also exceeds this multiple of the drift measured right after the last refresh
   * (default 10). An ill-conditioned K + λI has a large residual even when freshly factorized; without this
   * the window would refactorize at every check and gain nothing.
   */
  readonly driftGrowth?: number;
  /** Updates between drift checks; default 32. */
  readonly driftCheckEvery?: number;
  /**
   * Longest interval between drift checks (default 8 × driftCheckEvery): the interval doubles up to this
   * only after checks that find drift below driftTolerance / 100, i.e. while rounding is far from
   * mattering; any larger drift brings it back to driftCheckEvery (or below, after a refresh).
   */
  readonly driftCheckMax?: number;
  /**
   * Keep the pair statistics and kernel values that predict(x) computed against the window's points and
   * reuse them when the same x is inserted later (default true). In h-step forecasting the point
   * predicted at t is inserted at t + h, when n − h of its n kernel values are still needed; this saves
   * recomputing them and changes no value (the same numbers, bit for bit).
   */
  readonly reuseKernelRows?: boolean;
}

/** Kernel row of a predicted point against the window's points (by point id), kept for its insert. */
interface KernelRow {
  readonly x: Float64Array;
  readonly ids: readonly number[];
  readonly stats: Float64Array;
  readonly values: Float64Array;
  readonly gamma: number;
}

/** Predicted rows kept for a later insert (the forecast horizon is far smaller). */
const ROW_CACHE = 64;

export function assertHyper(lambda: number, gamma: number): void {
  if (!Number.isFinite(lambda) || lambda <= 0)
    throw invalidArgument(`lambda must be finite and > 0, got ${lambda}`);
  if (!Number.isFinite(gamma) || gamma <= 0)
    throw invalidArgument(`gamma must be finite and > 0, got ${gamma}`);
}

export class KrrWindow {
  readonly kernel: Kernel;
  readonly capacity: number;
  readonly dim: number;
  readonly meter: ComputeMeter;
  private lambdaValue: number;
  private gammaValue: number;
  private readonly driftTolerance: number;
  private readonly driftCheckEvery: number;
  private readonly driftGrowth: number;
  private readonly driftCheckMax: number;
  private readonly reuseKernelRows: boolean;
  private readonly rowCache: KernelRow[] = [];
  /** Id of each point (ascending in window order), so cached kernel rows can be matched after deletes. */
  private readonly ids: number[] = [];
  private nextId = 0;
  /** Drift checks performed (each 4n² flops plus a fresh α = My). */
  driftChecks = 0;
  /** Drift of the last freshly factorized inverse (the best this conditioning allows). */
  private baselineDrift = 0;
  /** Updates between checks now: halves after a check that refreshes, doubles back after one that passes. */
  private checkInterval: number;
  private count = 0;
  private readonly xs: Float64Array[] = [];
  private readonly ys: number[] = [];
  /** Row-major, row stride = capacity: pair statistics, kernel values, inverse. */
  private readonly stat: Float64Array;
  private readonly kmat: Float64Array;
  private readonly minv: Float64Array;
  private readonly scratch: Float64Array;
  private readonly work: Float64Array;
  private updatesSinceCheck = 0;
  /** α = M y for the current window, or null when it must be recomputed. */
  private alphaCache: Float64Array | null = null;
  /** Largest drift seen at a check, and how many refreshes drift or lost definiteness forced. */
  maxDrift = 0;
  lastDrift = 0;
  stabilityRefreshes = 0;

  constructor(
    kernel: Kernel,
    capacity: number,
    dim: number,
    lambda: number,
    gamma: number,
    meter = new ComputeMeter(),
    options: WindowOptions = {},
  ) {
    if (!Number.isInteger(capacity) || capacity < 2) throw invalidArgument(`window must be an integer >= 2`);
    if (!Number.isInteger(dim) || dim < 1) throw invalidArgument(`feature dimension must be an integer >= 1`);
    assertHyper(lambda, gamma);
    this.kernel = kernel;
    this.capacity = capacity;
    this.dim = dim;
    this.meter = meter;
    this.lambdaValue = lambda;
    this.gammaValue = gamma;
    this.driftTolerance = options.driftTolerance ?? 1e-8;
    this.driftCheckEvery = options.driftCheckEvery ?? 32;
    this.driftGrowth = options.driftGrowth ?? 10;
    this.driftCheckMax = Math.max(this.driftCheckEvery, options.driftCheckMax ?? 8 * this.driftCheckEvery);
    this.reuseKernelRows = options.reuseKernelRows ?? true;
    this.checkInterval = this.driftCheckEvery;
    const cells = capacity * capacity;
    this.stat = new Float64Array(cells);
    this.kmat = new Float64Array(cells);
    this.minv = new Float64Array(cells);
    this.scratch = new Float64Array(cells);
    this.work = new Float64Array(capacity);
  }

  get size(): number {
    return this.count;
  }
  get lambda(): number {
    return this.lambdaValue;
  }
  get gamma(): number {
    return this.gammaValue;
  }
  get full(): boolean {
    return this.count === this.capacity;
  }

  /** Targets in window order (oldest first). */
  targets(): Float64Array {
    return Float64Array.from(this.ys);
  }
  point(i: number): Float64Array {
    const x = this.xs[i];
    if (x === undefined) throw invalidArgument(`no point ${i} in a window of ${this.count}`);
    return x;
  }
  /** Entry (i, j) of the maintained inverse. */
  inverseAt(i: number, j: number): number {
    return this.minv[i * this.capacity + j] as number;
  }
  kernelAt(i: number, j: number): number {
    return this.kmat[i * this.capacity + j] as number;
  }
  statAt(i: number, j: number): number {
    return this.stat[i * this.capacity + j] as number;
  }

  private checkPoint(x: ArrayLike<number>, y?: number): void {
    if (x.length !== this.dim)
      throw new ShapeError(`feature vector has ${x.length} entries, expected ${this.dim}`);
    for (let i = 0; i < x.length; i++) {
      if (!Number.isFinite(x[i] as number)) throw new NonFiniteError(`feature ${i} is not finite`);
    }
    if (y !== undefined && !Number.isFinite(y)) throw new NonFiniteError(`target is not finite`);
  }

  /** Appends (x, y) by bordering. The window must not be full (remove the oldest first). */
  add(x: ArrayLike<number>, y: number): void {
    this.checkPoint(x, y);
    if (this.count >= this.capacity)
      throw new OrchardError('INVALID_STATE', 'window is full: removeOldest() first');
    const n = this.count;
    const c = this.capacity;
    const xv = Float64Array.from(x);
    const meter = this.meter;
    const b = this.work;
    const row = this.takeCachedRow(xv);
    let p = 0;
    let evals = 0;
    let transforms = 0;
    for (let i = 0; i < n; i++) {
      const id = this.ids[i] as number;
      if (row !== null) while (p < row.ids.length && (row.ids[p] as number) < id) p++;
      const cached = row !== null && row.ids[p] === id;
      let s: number;
      let k: number;
      if (cached) {
        s = row.stats[p] as number;
        if (row.gamma === this.gammaValue) k = row.values[p] as number;
        else {
          k = kernelFromStat(this.kernel, s, this.gammaValue);
          transforms++;
        }
      } else {
        s = pairStat(this.kernel, this.xs[i] as Float64Array, xv);
        k = kernelFromStat(this.kernel, s, this.gammaValue);
        evals++;
        transforms++;
      }
      this.stat[i * c + n] = s;
      this.stat[n * c + i] = s;
      this.kmat[i * c + n] = k;
      this.kmat[n * c + i] = k;
      b[i] = k;
    }
    const selfStat = pairStat(this.kernel, xv, xv);
    this.stat[n * c + n] = selfStat;
    const kxx = kernelFromStat(this.kernel, selfStat, this.gammaValue);
    this.kmat[n * c + n] = kxx;
    evals++;
    transforms++;
    meter.kernelEvals += evals;
    meter.kernelTransforms += transforms;
    meter.add(evals * pairStatFlops(this.kernel, this.dim) + transforms * TRANSFORM_FLOPS);
    this.xs.push(xv);
    this.ys.push(y);
    this.ids.push(this.nextId++);
    this.count = n + 1;

    // u = M b, s = c − bᵀu
    const u = this.scratch; // first n entries of the scratch buffer
    let schur = kxx + this.lambdaValue;
    for (let i = 0; i < n; i++) {
      let s = 0;
      for (let j = 0; j < n; j++) s += (this.minv[i * c + j] as number) * (b[j] as number);
      u[i] = s;
      schur -= (b[i] as number) * s;
    }
    meter.add(2 * n * n + 2 * n);
    if (!(schur > 1e-12 * (kxx + this.lambdaValue))) {
      // Numerically singular border: the update would amplify rounding errors; factorize instead.
      this.stabilityRefreshes++;
      this.refresh();
      return;
    }
    const inv = 1 / schur;
    // Symmetric rank-one update: compute the lower triangle, mirror it (n² + n flops).
    for (let i = 0; i < n; i++) {
      const ui = (u[i] as number) * inv;
      for (let j = 0; j <= i; j++) {
        const v = (this.minv[i * c + j] as number) + ui * (u[j] as number);
        this.minv[i * c + j] = v;
        this.minv[j * c + i] = v;
      }
      this.minv[i * c + n] = -ui;
      this.minv[n * c + i] = -ui;
    }
    this.minv[n * c + n] = inv;
    meter.add(n * n + 2 * n);
    // α' = [α − u α'_n, α'_n] with α'_n = (y − bᵀα) / s: O(n) instead of recomputing My.
    const alpha = this.alphaCache;
    if (alpha !== null && alpha.length === n) {
      let bta = 0;
      for (let i = 0; i < n; i++) bta += (b[i] as number) * (alpha[i] as number);
      const last = (y - bta) * inv;
      const next = new Float64Array(n + 1);
      for (let i = 0; i < n; i++) next[i] = (alpha[i] as number) - (u[i] as number) * last;
      next[n] = last;
      this.alphaCache = next;
      meter.add(4 * n + 2);
    } else {
      this.alphaCache = null;
    }
    this.afterUpdate();
  }

  /** Removes the oldest point by a Schur-complement downdate. */
  removeOldest(): void {
    this.remove(0);
  }

  /** Removes point j by a Schur-complement downdate and compacts the storage. */
  remove(j: number): void {
    if (!Number.isInteger(j) || j < 0 || j >= this.count) {
      throw invalidArgument(`cannot remove point ${j} from a window of ${this.count}`);
    }
    const n = this.count;
    const c = this.capacity;
    const f = this.minv[j * c + j] as number;
    const e = this.work;
    for (let i = 0; i < n; i++) e[i] = this.minv[i * c + j] as number;
    const ok = f > 0 && Number.isFinite(f);
    const alpha = this.alphaCache;
    let nextAlpha: Float64Array | null = null;
    if (ok) {
      const invF = 1 / f;
      // Symmetric rank-one downdate on the lower triangle, mirrored (n² + n flops).
      for (let i = 0; i < n; i++) {
        const ei = (e[i] as number) * invF;
        for (let k = 0; k <= i; k++) {
          const v = (this.minv[i * c + k] as number) - ei * (e[k] as number);
          this.minv[i * c + k] = v;
          this.minv[k * c + i] = v;
        }
      }
      this.meter.add(n * n + 2 * n);
      // α' = α₋ⱼ − e α_j / f (O(n)).
      if (alpha !== null && alpha.length === n) {
        nextAlpha = new Float64Array(n - 1);
        const scale = (alpha[j] as number) * invF;
        for (let i = 0, k = 0; i < n; i++) {
          if (i === j) continue;
          nextAlpha[k++] = (alpha[i] as number) - (e[i] as number) * scale;
        }
        this.meter.add(2 * n);
      }
    }
    this.alphaCache = nextAlpha;
    // Compact: drop row and column j of stat, K and M (data movement, no flops).
    for (const mat of [this.stat, this.kmat, this.minv]) {
      for (let r = 0, dst = 0; r < n; r++) {
        if (r === j) continue;
        for (let s = 0, col = 0; s < n; s++) {
          if (s === j) continue;
          mat[dst * c + col] = mat[r * c + s] as number;
          col++;
        }
        dst++;
      }
    }
    this.xs.splice(j, 1);
    this.ys.splice(j, 1);
    this.ids.splice(j, 1);
    this.count = n - 1;
    if (!ok) {
      this.stabilityRefreshes++;
      this.refresh();
      return;
    }
    this.afterUpdate();
  }

  private afterUpdate(): void {
    this.updatesSinceCheck++;
    if (this.updatesSinceCheck >= this.checkInterval) {
      this.updatesSinceCheck = 0;
      this.driftChecks++;
      // The O(n) α updates accumulate rounding too: recompute α = My at every check.
      this.alphaCache = null;
      const drift = this.drift();
      if (drift > Math.max(this.driftTolerance, this.driftGrowth * this.baselineDrift)) {
        this.stabilityRefreshes++;
        this.refresh();
        // Errors grew too fast for this interval (ill-conditioned K + λI): check more often.
        this.checkInterval = Math.max(1, Math.floor(this.checkInterval / 2));
      } else if (drift <= this.driftTolerance / 100) {
        // Far below the tolerance (a well-conditioned window): check less often, up to driftCheckMax.
        this.checkInterval = Math.min(this.driftCheckMax, this.checkInterval * 2);
      } else {
        this.checkInterval = Math.min(this.driftCheckEvery, this.checkInterval * 2);
      }
    }
  }

  /**
   * ‖(K + λI) M v − v‖ / ‖v‖ for a fixed sign-pattern probe v (no randomness needed: it only has to
   * excite every direction). 4n² flops.
   */
  drift(): number {
    const drift = this.probeResidual();
    this.lastDrift = drift;
    if (drift > this.maxDrift || Number.isNaN(drift)) this.maxDrift = drift;
    return Number.isNaN(drift) ? Number.POSITIVE_INFINITY : drift;
  }

  private probeResidual(): number {
    const n = this.count;
    if (n === 0) return 0;
    const c = this.capacity;
    const v = new Float64Array(n);
    for (let i = 0; i < n; i++) v[i] = ((i * 7919) % 5) - 2 + (i % 2 === 0 ? 0.5 : -0.25);
    const mv = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      let s = 0;
      for (let j = 0; j < n; j++) s += (this.minv[i * c + j] as number) * (v[j] as number);
      mv[i] = s;
    }
    let num = 0;
    let den = 0;
    for (let i = 0; i < n; i++) {
      let s = this.lambdaValue * (mv[i] as number);
      for (let j = 0; j < n; j++) s += (this.kmat[i * c + j] as number) * (mv[j] as number);
      const r = s - (v[i] as number);
      num += r * r;
      den += (v[i] as number) ** 2;
    }
    this.meter.add(4 * n * n + 4 * n);
    return Math.sqrt(num / den);
  }

  /** Recomputes M = (K + λI)⁻¹ directly by Cholesky (≈ n³ flops). */
  refresh(): void {
    const n = this.count;
    const c = this.capacity;
    this.updatesSinceCheck = 0;
    this.alphaCache = null;
    if (n === 0) return;
    const a = this.scratch;
    let jitter = 0;
    for (let attempt = 0; attempt < 6; attempt++) {
      for (let i = 0; i < n; i++) {
        for (let j = 0; j < n; j++) a[i * c + j] = this.kmat[i * c + j] as number;
        a[i * c + i] = (a[i * c + i] as number) + this.lambdaValue + jitter;
      }
      this.meter.add(choleskyFlops(n));
      if (choleskyInPlace(a, this.minv, n, c)) {
        // minv holds L in its lower triangle; invert through the scratch buffer.
        for (let i = 0; i < n; i++)
          for (let j = 0; j <= i; j++) a[i * c + j] = this.minv[i * c + j] as number;
        inverseFromCholesky(a, n, c, this.minv);
        this.meter.add((2 * n * n * n) / 3);
        this.meter.refreshes++;
        this.baselineDrift = this.probeResidual();
        return;
      }
      // Only reachable when λ is tiny relative to rounding in K: add the smallest jitter that works.
      jitter = jitter === 0 ? 1e-12 * (1 + this.lambdaValue) : jitter * 100;
    }
    throw new NonFiniteError(`K + λI is not numerically positive definite (λ = ${this.lambdaValue})`);
  }

  /** Changes λ and γ: rebuilds K from the stored statistics (n² transforms) and refreshes M. */
  setHyper(lambda: number, gamma: number): void {
    assertHyper(lambda, gamma);
    const gammaChanged = gamma !== this.gammaValue;
    this.lambdaValue = lambda;
    this.gammaValue = gamma;
    const n = this.count;
    const c = this.capacity;
    if (gammaChanged) {
      for (let i = 0; i < n; i++) {
        for (let j = 0; j <= i; j++) {
          const k = kernelFromStat(this.kernel, this.stat[i * c + j] as number, gamma);
          this.kmat[i * c + j] = k;
          this.kmat[j * c + i] = k;
        }
      }
      const transforms = (n * (n + 1)) / 2;
      this.meter.kernelTransforms += transforms;
      this.meter.add(transforms * TRANSFORM_FLOPS);
    }
    // New hyperparameters, new conditioning: drift checks start again at the base interval.
    this.checkInterval = this.driftCheckEvery;
    this.refresh();
  }

  /**
   * Upper bound on the 2-norm condition number of K + λI: Gershgorin puts every eigenvalue of K at
   * most its largest absolute row sum, and K ⪰ 0 puts every eigenvalue of K + λI at least λ. n² flops.
   */
  conditionBound(): number {
    const n = this.count;
    const c = this.capacity;
    let maxRow = 0;
    for (let i = 0; i < n; i++) {
      let s = 0;
      for (let j = 0; j < n; j++) s += Math.abs(this.kmat[i * c + j] as number);
      if (s > maxRow) maxRow = s;
    }
    this.meter.add(n * n);
    return (maxRow + this.lambdaValue) / this.lambdaValue;
  }

  /** Copies of K and M, so a rejected hyperparameter trial can be undone without refactorizing. */
  saveState(): { lambda: number; gamma: number; kmat: Float64Array; minv: Float64Array } {
    const n = this.count;
    return {
      lambda: this.lambdaValue,
      gamma: this.gammaValue,
      kmat: this.kmat.slice(0, n * this.capacity),
      minv: this.minv.slice(0, n * this.capacity),
    };
  }
  restoreState(state: { lambda: number; gamma: number; kmat: Float64Array; minv: Float64Array }): void {
    if (state.kmat.length !== this.count * this.capacity) {
      throw new OrchardError('INVALID_STATE', 'saved state belongs to a window of another size');
    }
    this.lambdaValue = state.lambda;
    this.gammaValue = state.gamma;
    this.kmat.set(state.kmat);
    this.minv.set(state.minv);
    this.alphaCache = null;
  }

  /**
   * α = M y: kept up to date in O(n) by add/remove, recomputed (2n² flops) after a refresh, a restore
   * or a drift check. Returns a copy.
   */
  alpha(): Float64Array {
    const n = this.count;
    const cached = this.alphaCache;
    if (cached !== null && cached.length === n) return cached.slice();
    const c = this.capacity;
    const out = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      let s = 0;
      for (let j = 0; j < n; j++) s += (this.minv[i * c + j] as number) * (this.ys[j] as number);
      out[i] = s;
    }
    this.meter.add(2 * n * n);
    this.alphaCache = out;
    return out.slice();
  }

  /** k(X, x)ᵀ α for a new feature vector x. */
  predict(x: ArrayLike<number>, alpha: Float64Array): number {
    this.checkPoint(x);
    const n = this.count;
    if (alpha.length !== n) throw new ShapeError(`alpha has ${alpha.length} entries, window has ${n}`);
    const keep = this.reuseKernelRows;
    const stats = keep ? new Float64Array(n) : null;
    const values = keep ? new Float64Array(n) : null;
    let s = 0;
    for (let i = 0; i < n; i++) {
      const st = pairStat(this.kernel, this.xs[i] as Float64Array, x);
      const k = kernelFromStat(this.kernel, st, this.gammaValue);
      s += k * (alpha[i] as number);
      if (stats !== null && values !== null) {
        stats[i] = st;
        values[i] = k;
      }
    }
    this.meter.kernelEvals += n;
    this.meter.kernelTransforms += n;
    this.meter.add(n * (pairStatFlops(this.kernel, this.dim) + TRANSFORM_FLOPS + 2));
    if (stats !== null && values !== null) {
      if (this.rowCache.length >= ROW_CACHE) this.rowCache.shift();
      this.rowCache.push({
        x: Float64Array.from(x),
        ids: this.ids.slice(),
        stats,
        values,
        gamma: this.gammaValue,
      });
    }
    return s;
  }

  /** Removes and returns the cached kernel row of a predicted point equal to x, if any. */
  private takeCachedRow(x: Float64Array): KernelRow | null {
    for (let r = 0; r < this.rowCache.length; r++) {
      const row = this.rowCache[r] as KernelRow;
      let same = true;
      for (let i = 0; i < x.length && same; i++) same = row.x[i] === x[i];
      if (same) {
        this.rowCache.splice(r, 1);
        return row;
      }
    }
    return null;
  }

  /** γ·∂K/∂γ for the window (n² derivative transforms). */
  logGammaDerivative(): Float64Array {
    const n = this.count;
    const c = this.capacity;
    const d = new Float64Array(n * n);
    for (let i = 0; i < n; i++) {
      for (let j = 0; j <= i; j++) {
        const v = kernelLogGammaDerivative(this.kernel, this.stat[i * c + j] as number, this.gammaValue);
        d[i * n + j] = v;
        d[j * n + i] = v;
      }
    }
    const transforms = (n * (n + 1)) / 2;
    this.meter.kernelTransforms += transforms;
    this.meter.add(transforms * TRANSFORM_FLOPS);
    return d;
  }
}
