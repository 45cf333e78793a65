// A writer of the swarm document is an Ed25519 key. Everything the acceptance rules need is
// derived from the raw public key: the peer id (libp2p's text form, so records line up with the
// mesh), the namespace `ns:<peerId>`, and the Yjs clientID that all of its structs must carry.
import { createHash, createPublicKey, verify, type KeyObject } from 'node:crypto'
import { publicKeyFromRaw } from '@libp2p/crypto/keys'
import { CLIENT_ID_DOMAIN, ED25519_PUBLIC_KEY_BYTES, ED25519_SIGNATURE_BYTES, NAMESPACE_PREFIX } from './constants.ts'
import type { WriterIdentity } from './index.ts'

// DER prefix of an Ed25519 SubjectPublicKeyInfo; the raw 32-byte key follows it.
const SPKI_ED25519_PREFIX = Uint8Array.from([0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00])

/**
 * A 53-bit clientID (safe integer, never 0) from SHA-256 of the public key. 53 bits keep a
 * chosen-key collision with a victim's clientID out of reach (≈2^53 key generations).
 */
export function clientIdOf (publicKey: Uint8Array): number {
  const digest = createHash('sha256').update(CLIENT_ID_DOMAIN).update(publicKey).digest()
  const id = Number(digest.readBigUInt64BE(0) >> 11n)
  return id === 0 ? 1 : id
}

/** Namespace (top-level Y.Map name) owned by a peer. */
export function namespaceOf (peerId: string): string {
  return `${NAMESPACE_PREFIX}${peerId}`
}

/** Derives a writer's identity; undefined when the bytes are not an Ed25519 public key. */
export function writerIdentity (publicKey: Uint8Array): WriterIdentity | undefined {
  if (publicKey.length !== ED25519_PUBLIC_KEY_BYTES) return undefined
  let peerId: string
  let key: KeyObject
  try {
    peerId = publicKeyFromRaw(publicKey).toString()
    key = createPublicKey({ key: Buffer.concat([SPKI_ED25519_PREFIX, publicKey]), format: 'der', type: 'spki' })
  } catch {
    return undefined
  }
  return {
    publicKey: Uint8Array.from(publicKey),
    peerId,
    clientId: clientIdOf(publicKey),
    namespace: namespaceOf(peerId),
    verify: (data, signature) => signature.length === ED25519_SIGNATURE_BYTES && verify(null, data, key, signature)
  }
}
