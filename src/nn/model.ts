import type { Rng } from '../core/rng.ts';
import type { Examples } from '../data/types.ts';

/**
 * A model is a stateless description of a computation over one flat Float32Array of parameters.
 * The parameter vector is what clients train and send, servers aggregate, and privacy/compression code
 * transforms. Implementations may keep scratch buffers internally (JS is single-threaded), but never
 * parameters.
 */
export interface Model {
  readonly name: string;
  readonly numParams: number;
  readonly numOutputs: number;
  readonly inputKind: 'dense' | 'bags';
  /** Dense feature count, or the id-space size for bag inputs. */
  readonly inputDim: number;
  /** Fresh parameters (e.g. He/Glorot initialization), deterministic for the rng state. */
  init(rng: Rng): Float32Array;
  /**
   * Mean loss over `batch`; ADDS the gradient of the mean loss w.r.t. parameters into `grad`
   * (callers zero it). When `inputGrad` is given (dense inputs only) the gradient w.r.t. the inputs
   * (n·dim) is written into it.
   */
  lossAndGrad(params: Float32Array, batch: Examples, grad: Float32Array, inputGrad?: Float32Array): number;
  /** Outputs (logits for classifiers) for every example: n·numOutputs. */
  forward(params: Float32Array, data: Examples): Float32Array;
}

export interface Evaluation {
  readonly loss: number;
  readonly accuracy: number;
  readonly n: number;
}
