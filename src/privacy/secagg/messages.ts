/**
 * Protocol parameters and the messages clients and server exchange. Messages are plain data (byte
 * arrays and numbers), so a transport can serialize them as it likes; every message names its
 * session, and every encrypted share binds session, sender and recipient in its associated data.
 */

import { secaggError } from './errors.ts';
import type { FixedPointConfig } from './fixedpoint.ts';
import { fixedPointConfig } from './fixedpoint.ts';
import type { NeighbourGraph } from './graph.ts';

export interface SecAggParams {
  /** Fresh random bytes per aggregation: binds keys, masks and ciphertexts to this run. */
  readonly sessionId: Uint8Array;
  /** Clients are numbered 0 .. graph.size − 1. */
  readonly graph: NeighbourGraph;
  /** Shamir threshold t over each client's holders (its neighbours and itself). */
  readonly threshold: number;
  /** Length of every update vector. */
  readonly dimension: number;
  readonly encoding: FixedPointConfig;
}

export interface PublicKeys {
  readonly id: number;
  /** X25519 key for share encryption (c_u^PK in Bonawitz et al.). */
  readonly encryptionKey: Uint8Array;
  /** X25519 key for pairwise masks (s_u^PK). */
  readonly maskingKey: Uint8Array;
}

/** Round 0, client → server. */
export interface AdvertiseKeys extends PublicKeys {
  readonly session: Uint8Array;
}

/** Round 0, server → client `to`: keys of its live holders (including its own). */
export interface KeyBroadcast {
  readonly session: Uint8Array;
  readonly to: number;
  readonly peers: readonly PublicKeys[];
}

export interface EncryptedShare {
  readonly from: number;
  readonly to: number;
  readonly nonce: Uint8Array;
  /** AES-256-GCM of (from, to, share of b_from, share of s_from^SK), tag appended. */
  readonly ciphertext: Uint8Array;
}

/** Round 1, client → server. */
export interface ShareKeys {
  readonly session: Uint8Array;
  readonly from: number;
  readonly shares: readonly EncryptedShare[];
}

/** Round 1, server → client `to`: the shares addressed to it by clients that completed round 1. */
export interface ForwardedShares {
  readonly session: Uint8Array;
  readonly to: number;
  readonly shares: readonly EncryptedShare[];
}

/** Round 2, client → server: y_u = x_u + PRG(b_u) + Σ_v ±PRG(s_{u,v}) mod 2^m. */
export interface MaskedInput {
  readonly session: Uint8Array;
  readonly from: number;
  readonly masked: Uint32Array;
}

/** Round 3, server → client `to`: whose self-mask share and whose key share it wants. */
export interface UnmaskRequest {
  readonly session: Uint8Array;
  readonly to: number;
  /** Clients whose masked input arrived: reveal the share of their self-mask seed b. */
  readonly survivors: readonly number[];
  /** Clients that dropped after sharing keys: reveal the share of their masking secret key. */
  readonly dropped: readonly number[];
}

export interface RevealedShare {
  /** The client whose secret this is a share of. */
  readonly of: number;
  /** Share value, SHARE_VALUE_BYTES big-endian. */
  readonly value: Uint8Array;
}

/** Round 3, client → server. */
export interface UnmaskResponse {
  readonly session: Uint8Array;
  readonly from: number;
  readonly selfMaskShares: readonly RevealedShare[];
  readonly keyShares: readonly RevealedShare[];
}

export interface SecAggResult {
  /** Decoded float sum of the survivors' clipped updates. */
  readonly sum: Float32Array;
  /** The same sum in the fixed-point domain, mod 2^m. */
  readonly encodedSum: Uint32Array;
  /** Number of clients in the sum. */
  readonly count: number;
  readonly survivors: readonly number[];
  /** Clients that shared keys but whose masked input never arrived. */
  readonly dropped: readonly number[];
}

/** The holders of a client's shares: its neighbours and itself. */
export function holdersOf(graph: NeighbourGraph, id: number): number[] {
  return [...graph.neighbours(id), id].sort((a, b) => a - b);
}

export function validateParams(params: SecAggParams): SecAggParams {
  const { graph, threshold, dimension, sessionId } = params;
  if (sessionId.length < 16) throw secaggError('INVALID_MESSAGE', 'sessionId needs at least 16 random bytes');
  if (!Number.isInteger(dimension) || dimension < 1)
    throw secaggError('INVALID_MESSAGE', `dimension must be a positive integer, got ${dimension}`);
  const holders = graph.degree + 1;
  if (!Number.isInteger(threshold) || threshold < 2 || threshold > holders)
    throw secaggError('INVALID_MESSAGE', `threshold must be an integer in [2, ${holders}], got ${threshold}`);
  // A strict majority of holders: otherwise a server could gather t shares of b_u from one half and
  // t shares of s_u^SK from the other, each half honestly answering a single request.
  if (2 * threshold <= holders)
    throw secaggError('INVALID_MESSAGE', `threshold ${threshold} must exceed half of the ${holders} holders`);
  fixedPointConfig(params.encoding);
  if (params.encoding.maxClients < graph.size)
    throw secaggError(
      'OVERFLOW',
      `encoding allows sums of ${params.encoding.maxClients} clients but the group has ${graph.size}`,
    );
  return params;
}

function u32(x: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, x);
  return b;
}

/** Associated data of the share sent from → to within a session. */
export function shareAad(session: Uint8Array, from: number, to: number): Uint8Array {
  const label = new TextEncoder().encode('orchard/secagg/v1/share');
  const out = new Uint8Array(label.length + session.length + 8);
  out.set(label);
  out.set(session, label.length);
  out.set(u32(from), label.length + session.length);
  out.set(u32(to), label.length + session.length + 4);
  return out;
}

export function encodeU32(x: number): Uint8Array {
  return u32(x);
}
