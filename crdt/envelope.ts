// Envelope hashing, signing and the wire codec. An envelope's hash binds the swarm, the writer,
// the sequence number, the previous hash and the update; the writer signs the hash.
import { createHash } from 'node:crypto'
import { ENVELOPE_DOMAIN, HASH_BYTES, MAX_ENVELOPE_BYTES, MAX_RUN_ENVELOPES, MAX_UPDATE_BYTES } from './constants.ts'
import { Envelope as EnvelopeCodec, ForkProof as ForkProofCodec, Run as RunCodec } from './envelope.pb.js'
import { MalformedEnvelopeError } from './errors.ts'
import type { Envelope, EnvelopeSigner, ForkProof, Run } from './index.ts'

/** The previous-hash of a writer's first envelope. */
export const GENESIS_HASH = new Uint8Array(HASH_BYTES)

const encoder = new TextEncoder()

/** SHA-256 over (domain, swarm, writer key, seq, prev, update), each length-delimited or fixed. */
export function envelopeHash (swarm: string, writer: Uint8Array, seq: number, prev: Uint8Array, update: Uint8Array): Uint8Array {
  const header = Buffer.alloc(12)
  header.writeUInt32BE(seq, 0)
  header.writeUInt32BE(update.length, 4)
  const swarmBytes = encoder.encode(swarm)
  header.writeUInt32BE(swarmBytes.length, 8)
  return createHash('sha256')
    .update(ENVELOPE_DOMAIN).update(header.subarray(8)).update(swarmBytes)
    .update(writer).update(header.subarray(0, 8)).update(prev).update(update)
    .digest()
}

/** Builds and signs the envelope that carries `update` as the writer's `seq`-th. */
export async function sealEnvelope (swarm: string, signer: EnvelopeSigner, seq: number, prev: Uint8Array, update: Uint8Array): Promise<{ envelope: Envelope, hash: Uint8Array }> {
  const writer = signer.publicKey
  const hash = envelopeHash(swarm, writer, seq, prev, update)
  const signature = await signer.sign(hash)
  return { envelope: { writer, seq, prev, update, signature }, hash }
}

/** Hashes of every envelope of a run, in order (recomputing the chain from `run.prev`). */
export function runHashes (swarm: string, run: Run): Uint8Array[] {
  const hashes: Uint8Array[] = []
  let prev = run.prev
  for (let i = 0; i < run.updates.length; i++) {
    prev = envelopeHash(swarm, run.writer, run.fromSeq + i, prev, run.updates[i])
    hashes.push(prev)
  }
  return hashes
}

export function encodeEnvelope (envelope: Envelope): Uint8Array {
  return EnvelopeCodec.encode(envelope as EnvelopeCodec)
}

/** Decodes an envelope after bounding its size; throws MalformedEnvelopeError. */
export function decodeEnvelope (bytes: Uint8Array): Envelope {
  if (bytes.length > MAX_ENVELOPE_BYTES) throw new MalformedEnvelopeError(`envelope of ${bytes.length} bytes exceeds ${MAX_ENVELOPE_BYTES}`)
  try {
    return EnvelopeCodec.decode(bytes)
  } catch (err) {
    throw new MalformedEnvelopeError('envelope does not decode', { cause: err })
  }
}

export function encodeRun (run: Run): Uint8Array {
  return RunCodec.encode(run as RunCodec)
}

/** Decodes a run, bounding the number of updates and the size of each. */
export function decodeRun (bytes: Uint8Array): Run {
  let run: Run
  try {
    run = RunCodec.decode(bytes, { limits: { updates: MAX_RUN_ENVELOPES } })
  } catch (err) {
    throw new MalformedEnvelopeError('run does not decode', { cause: err })
  }
  if (run.updates.some((u) => u.length > MAX_UPDATE_BYTES)) throw new MalformedEnvelopeError(`run carries an update over ${MAX_UPDATE_BYTES} bytes`)
  return run
}

export function encodeForkProof (proof: ForkProof): Uint8Array {
  return ForkProofCodec.encode(proof as ForkProofCodec)
}

/** Decodes a fork proof with the same bounds as a run. */
export function decodeForkProof (bytes: Uint8Array): ForkProof {
  let proof: ForkProofCodec
  try {
    proof = ForkProofCodec.decode(bytes, { limits: { a: { updates: MAX_RUN_ENVELOPES }, b: { updates: MAX_RUN_ENVELOPES } } })
  } catch (err) {
    throw new MalformedEnvelopeError('fork proof does not decode', { cause: err })
  }
  if (proof.a === undefined || proof.b === undefined) throw new MalformedEnvelopeError('fork proof needs two runs')
  return { a: proof.a, b: proof.b }
}
