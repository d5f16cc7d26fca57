/** Key derivations shared by client and server. Labels separate the three uses of HKDF. */
import { type CryptoProvider, MASK_KEY_BYTES, utf8 } from './crypto.ts';

const SHARE_KEY_INFO = utf8('orchard/secagg/v1/share-encryption');
const PAIRWISE_MASK_INFO = utf8('orchard/secagg/v1/pairwise-mask');
const SELF_MASK_INFO = utf8('orchard/secagg/v1/self-mask');

/** The X25519 base point u = 9: x25519(sk, BASE_POINT) is the public key of sk. */
export const BASE_POINT = (() => {
  const b = new Uint8Array(32);
  b[0] = 9;
  return b;
})();

/** AES-256-GCM key for shares between two clients (symmetric in the pair; direction is in the AAD). */
export async function shareEncryptionKey(
  crypto: CryptoProvider,
  session: Uint8Array,
  ownSecret: Uint8Array,
  peerPublic: Uint8Array,
): Promise<Uint8Array> {
  return crypto.hkdfSha256(await crypto.x25519(ownSecret, peerPublic), session, SHARE_KEY_INFO, 32);
}

/** PRG seed s_{u,v} shared by a pair of clients. */
export async function pairwiseMaskKey(
  crypto: CryptoProvider,
  session: Uint8Array,
  ownSecret: Uint8Array,
  peerPublic: Uint8Array,
): Promise<Uint8Array> {
  return crypto.hkdfSha256(
    await crypto.x25519(ownSecret, peerPublic),
    session,
    PAIRWISE_MASK_INFO,
    MASK_KEY_BYTES,
  );
}

/** PRG seed of the self mask, from the 32-byte secret b_u that is Shamir-shared. */
export async function selfMaskKey(
  crypto: CryptoProvider,
  session: Uint8Array,
  seed: Uint8Array,
): Promise<Uint8Array> {
  return crypto.hkdfSha256(seed, session, SELF_MASK_INFO, MASK_KEY_BYTES);
}

/** Sign with which `owner` adds its pairwise mask with `peer`: opposite for the two ends, so they cancel. */
export function pairSign(owner: number, peer: number): 1 | -1 {
  return owner < peer ? 1 : -1;
}
