/** Examples are column-free, flat typed arrays: what models consume and what clients hold. */
export interface DenseExamples {
  readonly kind: 'dense';
  /** Number of examples. */
  readonly n: number;
  /** Features per example; `x` has n·dim entries, row-major. */
  readonly dim: number;
  readonly x: Float32Array;
  /** Class labels in [0, numClasses). */
  readonly y: Int32Array;
  /** Regression targets (n·outputs), used by MSE; absent for classification data. */
  readonly targets?: Float32Array;
}

/** Variable-length bags of feature ids (hashed n-grams, tokens) for embedding-bag text models. */
export interface BagExamples {
  readonly kind: 'bags';
  readonly n: number;
  /** Size of the id space (hash buckets or vocabulary). */
  readonly vocab: number;
  /** Example i owns ids[offsets[i] .. offsets[i+1]); offsets has n+1 entries. */
  readonly offsets: Int32Array;
  readonly ids: Int32Array;
  /** Optional per-id weights (e.g. counts, tf-idf); 1 when absent. */
  readonly weights?: Float32Array;
  readonly y: Int32Array;
}

export type Examples = DenseExamples | BagExamples;

/**
 * A federated population. Clients may be generated lazily from a seed: `client(k)` must return the same
 * data every time it is called for the same k, and must not keep all clients in memory.
 */
export interface FederatedDataset {
  readonly name: string;
  readonly numClients: number;
  readonly numClasses: number;
  /** Shape of one example: dense feature count, or the id space of bag data. */
  readonly inputKind: 'dense' | 'bags';
  readonly inputDim: number;
  /** Number of examples client k holds, without materializing its data. */
  clientSize(k: number): number;
  /** Client k's training examples. */
  client(k: number): Examples;
  /** Held-out examples for server-side evaluation. */
  testSet(): Examples;
}
