/**
 * Fast exact standard-normal sampling by the ziggurat method (Marsaglia & Tsang 2000, 128 layers),
 * written here from the published construction. About 99% of draws cost one 32-bit integer, one table
 * compare and one multiply, which is what lets the Synthetic generator draw ~2,000 normals per client in a
 * few microseconds. Randomness comes from the caller's seeded `Rng`, so results stay reproducible.
 */
import { Rng } from '../core/rng.ts';

const LAYERS = 128;
/** Start of the tail (x-coordinate of the base layer's right edge). */
const TAIL_START = 3.442619855899;
/** Area of each layer (rectangles plus, for the base, the tail). */
const LAYER_AREA = 9.91256303526217e-3;
const TWO_31 = 2147483648;

/** kn: integer acceptance thresholds; wn: int → x scale per layer; fn: density at each layer edge. */
const kn = new Int32Array(LAYERS);
const wn = new Float64Array(LAYERS);
const fn = new Float64Array(LAYERS);

(function buildTables(): void {
  let dn = TAIL_START;
  let tn = dn;
  const q = LAYER_AREA / Math.exp(-0.5 * dn * dn);
  kn[0] = Math.floor((dn / q) * TWO_31);
  kn[1] = 0;
  wn[0] = q / TWO_31;
  wn[LAYERS - 1] = dn / TWO_31;
  fn[0] = 1;
  fn[LAYERS - 1] = Math.exp(-0.5 * dn * dn);
  for (let i = LAYERS - 2; i >= 1; i--) {
    dn = Math.sqrt(-2 * Math.log(LAYER_AREA / dn + Math.exp(-0.5 * dn * dn)));
    kn[i + 1] = Math.floor((dn / tn) * TWO_31);
    tn = dn;
    fn[i] = Math.exp(-0.5 * dn * dn);
    wn[i] = dn / TWO_31;
  }
})();

/** Slow path: the wedge between rectangles, or the tail beyond TAIL_START. */
function zigguratFix(rng: UniformSource, hzIn: number, izIn: number): number {
  let hz = hzIn;
  let iz = izIn;
  for (;;) {
    const x = hz * (wn[iz] as number);
    if (iz === 0) {
      // Tail: Marsaglia's exponential rejection for x > TAIL_START.
      let t = 0;
      let y = 0;
      do {
        t = -Math.log(rng.nextOpen()) / TAIL_START;
        y = -Math.log(rng.nextOpen());
      } while (y + y < t * t);
      return hz > 0 ? TAIL_START + t : -TAIL_START - t;
    }
    const f0 = fn[iz] as number;
    if (f0 + rng.next() * ((fn[iz - 1] as number) - f0) < Math.exp(-0.5 * x * x)) return x;
    hz = rng.nextU32() | 0;
    iz = hz & (LAYERS - 1);
    if ((hz ^ (hz >> 31)) < (kn[iz] as number)) return hz * (wn[iz] as number);
  }
}

/**
 * A standard-normal stream with its own sfc32 state (same generator as core Rng), seeded from three
 * draws of an `Rng`, so it is a pure function of that Rng's state. `fill`/`fillRows` keep the generator
 * state in int32 locals for the whole loop (registers in V8): ~2 ns per normal against ~9 ns for a
 * method call per draw. `fill` and repeated `normal()` calls give different (equally distributed)
 * sequences, because fill finishes its rare slow-path draws after the loop.
 */
export class NormalStream {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(rng: Rng) {
    this.a = rng.nextU32() | 0;
    this.b = rng.nextU32() | 0;
    this.c = rng.nextU32() | 0;
    this.d = 1;
  }

  nextU32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

  next(): number {
    return this.nextU32() / 4294967296;
  }

  nextOpen(): number {
    return (this.nextU32() + 0.5) / 4294967296;
  }

  /** One N(0, 1) draw. */
  normal(): number {
    const hz = this.nextU32() | 0;
    const iz = hz & (LAYERS - 1);
    if ((hz ^ (hz >> 31)) < (kn[iz] as number)) return hz * (wn[iz] as number);
    return zigguratFix(this, hz, iz);
  }

  /**
   * Writes shift + N(0, 1) draws into out[start .. end). The fast path runs with the generator state in locals;
   * the ~1% of draws that need the wedge/tail test are queued and finished after the loop, because a
   * call inside the hot loop made V8 keep the state in memory (measured ~3x slower).
   */
  fill(out: Float64Array, start = 0, end = out.length, shift = 0): void {
    const pending = this.fillFast(out, start, end, shift);
    if (pending > 0) this.finishFill(out, shift, pending);
  }

  /**
   * The fast-path loop of `fill`; returns how many draws it queued for the slow path. The hot loop and
   * the slow-path finish are separate methods called one after the other: written as one function, V8
   * compiled the loop ~1.3x slower (measured on fillRows).
   */
  private fillFast(out: Float64Array, start: number, end: number, shift: number): number {
    // `| 0` tells the optimizer the loop state is int32 (a plain field load is typed as any number,
    // which turns every step of the generator into float64 arithmetic).
    let a = this.a | 0;
    let b = this.b | 0;
    let c = this.c | 0;
    let d = this.d | 0;
    let pending = 0;
    // Sized for the worst case before the loop: a growth check inside it costs ~2x in V8.
    const slowIndex = pendingIndexFor(end - start);
    const slowDraw = pendingDraw;
    for (let i = start; i < end; i++) {
      const t = (((a + b) | 0) + d) | 0;
      d = (d + 1) | 0;
      a = b ^ (b >>> 9);
      b = (c + (c << 3)) | 0;
      c = (c << 21) | (c >>> 11);
      c = (c + t) | 0;
      const iz = t & (LAYERS - 1);
      // t ^ (t >> 31) is |t| for t >= 0 and |t| − 1 for t < 0 and stays an int32 (Math.abs leaves the
      // int32 range at −2^31, which slows V8 down); the one extra accepted integer per layer shifts
      // probabilities by < 2^-31.
      if ((t ^ (t >> 31)) < (kn[iz] as number)) {
        out[i] = shift + t * (wn[iz] as number);
      } else {
        slowIndex[pending] = i;
        slowDraw[pending] = t;
        pending++;
      }
    }
    this.a = a;
    this.b = b;
    this.c = c;
    this.d = d;
    return pending;
  }

  /** Completes the `pending` queued draws of the last fillFast. */
  private finishFill(out: Float64Array, shift: number, pending: number): void {
    const slowIndex = pendingIndex;
    const slowDraw = pendingDraw;
    for (let p = 0; p < pending; p++) {
      const hz = slowDraw[p] as number;
      out[slowIndex[p] as number] = shift + zigguratFix(this, hz, hz & (LAYERS - 1));
    }
  }

  /**
   * Gaussian rows straight into float32 storage: out[start + r·dim + j] = mean[j] + std[j]·z for
   * count = rows·dim fresh N(0, 1) draws z, dim = mean.length. Same draw order as `fill`, without an
   * intermediate buffer.
   */
  fillRows(out: Float32Array, start: number, rows: number, mean: Float64Array, std: Float64Array): void {
    const pending = this.fillRowsFast(out, start, rows, mean, std);
    if (pending > 0) this.finishRows(out, start, mean, std, pending);
  }

  /** The fast-path loop of `fillRows` (split from the slow-path finish as in `fill`). */
  private fillRowsFast(
    out: Float32Array,
    start: number,
    rows: number,
    mean: Float64Array,
    std: Float64Array,
  ): number {
    const dim = mean.length;
    const end = start + rows * dim;
    let a = this.a | 0;
    let b = this.b | 0;
    let c = this.c | 0;
    let d = this.d | 0;
    let pending = 0;
    // Sized for the worst case before the loop: a growth check inside it costs ~2x in V8.
    const slowIndex = pendingIndexFor(end - start);
    const slowDraw = pendingDraw;
    // One flat loop with a wrapping feature index j (the same draw order as a row/feature double loop).
    let j = 0;
    for (let i = start; i < end; i++) {
      const t = (((a + b) | 0) + d) | 0;
      d = (d + 1) | 0;
      a = b ^ (b >>> 9);
      b = (c + (c << 3)) | 0;
      c = (c << 21) | (c >>> 11);
      c = (c + t) | 0;
      const iz = t & (LAYERS - 1);
      if ((t ^ (t >> 31)) < (kn[iz] as number)) {
        out[i] = (mean[j] as number) + (std[j] as number) * (t * (wn[iz] as number));
      } else {
        slowIndex[pending] = i;
        slowDraw[pending] = t;
        pending++;
      }
      j++;
      if (j === dim) j = 0;
    }
    this.a = a;
    this.b = b;
    this.c = c;
    this.d = d;
    return pending;
  }

  /** Completes the `pending` queued draws of the last fillRowsFast. */
  private finishRows(
    out: Float32Array,
    start: number,
    mean: Float64Array,
    std: Float64Array,
    pending: number,
  ): void {
    const dim = mean.length;
    const slowIndex = pendingIndex;
    const slowDraw = pendingDraw;
    for (let p = 0; p < pending; p++) {
      const hz = slowDraw[p] as number;
      const i = slowIndex[p] as number;
      const f = (i - start) % dim;
      out[i] = (mean[f] as number) + (std[f] as number) * zigguratFix(this, hz, hz & (LAYERS - 1));
    }
  }
}

/** Positions and raw draws of slow-path samples, shared by all streams (JS is single-threaded). */
let pendingIndex = new Int32Array(4096);
let pendingDraw = new Int32Array(4096);
function pendingIndexFor(count: number): Int32Array {
  if (pendingIndex.length < count) {
    pendingIndex = new Int32Array(count);
    pendingDraw = new Int32Array(count);
  }
  return pendingIndex;
}

/** Anything that yields uniform 32-bit integers and uniforms in [0, 1) and (0, 1). */
interface UniformSource {
  nextU32(): number;
  next(): number;
  nextOpen(): number;
}

/**
 * Runs both slow paths (wedge and tail) on a NormalStream once at load. Tail draws are rare (~3 in
 * 10,000), so otherwise the fill loops get optimized before the tail code has any type feedback and
 * then deoptimize on the first tail draw (seen with --trace-deopt), recompiling mid-run.
 */
(function warmSlowPaths(): void {
  const stream = new NormalStream(new Rng(0));
  for (let i = 0; i < 1000; i++) zigguratFix(stream, stream.nextU32() | 0, i % LAYERS);
})();
