// Proof that a writer equivocated: two runs, each authenticated by the writer's signature over
// its last hash, that claim different hashes for the same seq (a run claims the hash of every
// envelope it carries, and through `prev` the hash of the one before its first). Anyone can check
// it without trusting the sender, so one replica's detection excludes the writer everywhere.
import { equals as equalBytes } from 'uint8arrays/equals'
import { runHashes } from './envelope.ts'
import { writerIdentity } from './writer-identity.ts'
import type { ForkProof, Run, WriterIdentity } from './index.ts'

/** seq → hash, for everything a run vouches for. */
function claims (run: Run, hashes: Uint8Array[]): Map<number, Uint8Array> {
  const out = new Map<number, Uint8Array>()
  if (run.fromSeq > 1) out.set(run.fromSeq - 1, run.prev)
  hashes.forEach((h, i) => out.set(run.fromSeq + i, h))
  return out
}

/** The equivocating writer when the proof holds; undefined otherwise. */
export function verifyForkProof (swarm: string, proof: ForkProof): WriterIdentity | undefined {
  const { a, b } = proof
  if (!equalBytes(a.writer, b.writer) || a.updates.length === 0 || b.updates.length === 0 || a.fromSeq < 1 || b.fromSeq < 1) return undefined
  const identity = writerIdentity(a.writer)
  if (identity === undefined) return undefined
  const ha = runHashes(swarm, a)
  const hb = runHashes(swarm, b)
  if (!identity.verify(ha[ha.length - 1], a.signature) || !identity.verify(hb[hb.length - 1], b.signature)) return undefined
  const cb = claims(b, hb)
  for (const [seq, hash] of claims(a, ha)) {
    const other = cb.get(seq)
    if (other !== undefined && !equalBytes(other, hash)) return identity
  }
  return undefined
}
