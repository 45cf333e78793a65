// Presence beacons: hashing, signing and the wire codec. A beacon says "writer W is online at
// `at`, and its chain has reached `seq`/`head`"; the swarm name is hashed in, so a beacon cannot
// be replayed into another swarm. Beacons never enter the envelope log or the Yjs document.
import { createHash } from 'node:crypto'
import { BEACON_DOMAIN, ED25519_PUBLIC_KEY_BYTES, ED25519_SIGNATURE_BYTES, HASH_BYTES, MAX_BEACON_BYTES } from './constants.ts'
import { Beacon as BeaconCodec } from './beacon.pb.js'
import { MalformedEnvelopeError } from './errors.ts'
import type { Beacon, EnvelopeSigner } from './index.ts'

const encoder = new TextEncoder()

/** SHA-256 over (domain, swarm, writer key, at, seq, head), each length-delimited or fixed. */
export function beaconHash (swarm: string, writer: Uint8Array, at: number, seq: number, head: Uint8Array): Uint8Array {
  const swarmBytes = encoder.encode(swarm)
  const header = Buffer.alloc(16)
  header.writeUInt32BE(swarmBytes.length, 0)
  header.writeBigUInt64BE(BigInt(at), 4)
  header.writeUInt32BE(seq, 12)
  return createHash('sha256')
    .update(BEACON_DOMAIN).update(header.subarray(0, 4)).update(swarmBytes)
    .update(writer).update(header.subarray(4)).update(head)
    .digest()
}

/** Builds and signs a beacon. */
export async function sealBeacon (swarm: string, signer: EnvelopeSigner, at: number, seq: number, head: Uint8Array): Promise<Beacon> {
  const writer = signer.publicKey
  const signature = await signer.sign(beaconHash(swarm, writer, at, seq, head))
  return { writer, at, seq, head, signature }
}

export function encodeBeacon (beacon: Beacon): Uint8Array {
  return BeaconCodec.encode(beacon as BeaconCodec)
}

/** Decodes a beacon after bounding its size; throws MalformedEnvelopeError. */
export function decodeBeacon (bytes: Uint8Array): Beacon {
  if (bytes.length > MAX_BEACON_BYTES) throw new MalformedEnvelopeError(`beacon of ${bytes.length} bytes exceeds ${MAX_BEACON_BYTES}`)
  let decoded: BeaconCodec
  try {
    decoded = BeaconCodec.decode(bytes)
  } catch (err) {
    throw new MalformedEnvelopeError('beacon does not decode', { cause: err })
  }
  if (decoded.writer.length !== ED25519_PUBLIC_KEY_BYTES || decoded.head.length !== HASH_BYTES || decoded.signature.length !== ED25519_SIGNATURE_BYTES) {
    throw new MalformedEnvelopeError('beacon fields have the wrong lengths')
  }
  if (!Number.isSafeInteger(decoded.at)) throw new MalformedEnvelopeError('beacon timestamp out of range')
  return { writer: decoded.writer, at: decoded.at, seq: decoded.seq, head: decoded.head, signature: decoded.signature }
}
