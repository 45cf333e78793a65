// Adapts any Ed25519 private key object with `publicKey.raw` and `sign` (a libp2p Ed25519
// private key has both) to the EnvelopeSigner crdt/ needs, without importing libp2p.
import { ED25519_PUBLIC_KEY_BYTES } from './constants.ts'
import { InvalidRecordError } from './errors.ts'
import type { EnvelopeSigner } from './index.ts'

export interface Ed25519KeyLike {
  type?: string
  publicKey: { raw: Uint8Array }
  sign (data: Uint8Array): Uint8Array | Promise<Uint8Array>
}

export function keySigner (key: Ed25519KeyLike): EnvelopeSigner {
  if ((key.type !== undefined && key.type !== 'Ed25519') || key.publicKey.raw.length !== ED25519_PUBLIC_KEY_BYTES) {
    throw new InvalidRecordError('swarm state writers need an Ed25519 key')
  }
  return { publicKey: key.publicKey.raw, sign: (data) => key.sign(data) }
}
