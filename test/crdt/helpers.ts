// Shared helpers of the crdt tests: deterministic Ed25519 keys from a seeded PRNG, and states.
import { generateKeyPairFromSeed } from '@libp2p/crypto/keys'
import type { Ed25519PrivateKey } from '@libp2p/interface'
import { keySigner, SwarmState, type Envelope, type SwarmStateInit } from '../../crdt/index.ts'

export const SWARM = 'test-swarm'

/** An Ed25519 key whose 32-byte seed comes from `random`. */
export async function seededKey (random: () => number): Promise<Ed25519PrivateKey> {
  const seed = new Uint8Array(32)
  for (let i = 0; i < seed.length; i++) seed[i] = Math.floor(random() * 256)
  return generateKeyPairFromSeed('Ed25519', seed)
}

export async function makeState (random: () => number, init: Partial<SwarmStateInit> = {}): Promise<SwarmState> {
  const key = await seededKey(random)
  return new SwarmState({ swarm: SWARM, signer: keySigner(key), ...init })
}

/** Collects the envelopes a state signs. */
export function capture (state: SwarmState): Envelope[] {
  const out: Envelope[] = []
  state.onEnvelope((e) => out.push(e))
  return out
}

/** Full anti-entropy in both directions between two in-memory states (no network). */
export function syncPair (a: SwarmState, b: SwarmState, maxBytes = 1 << 20): number {
  let bytes = 0
  for (const [from, to] of [[a, b], [b, a]] as const) {
    for (let more = true; more;) {
      const reply = from.runsFor(to.heads(), maxBytes)
      for (const run of reply.runs) {
        bytes += run.updates.reduce((n, u) => n + u.length, 0)
        to.receiveRun(run, from.peerId)
      }
      more = reply.more && reply.runs.length > 0
    }
  }
  return bytes
}
