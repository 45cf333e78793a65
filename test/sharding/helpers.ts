// Shared arbitraries for the sharding tests: small manifests and random memberships whose
// capacities range from nothing to the whole model.
import fc from 'fast-check'
import type { Member, ModelManifest } from '../../sharding/index.ts'
import { layerCapacity, manifestFromConfig } from '../../sharding/index.ts'

/** A Llama-shaped manifest with `layers` layers (sizes of a small real architecture). */
export function smallManifest (layers: number): ModelManifest {
  return manifestFromConfig({ architecture: 'llama', dim: 512, hiddenDim: 1536, nLayers: layers, nHeads: 8, nKvHeads: 4, headSize: 64, vocabSize: 1000, seqLen: 2048, ropeTheta: 10000, normEps: 1e-5, tiedEmbeddings: true, qkvBias: false, bosId: 1, eosId: 2 })
}

/** Bytes of memory that give a node exactly `layers` layers of `m` (capped at the model). */
export function memoryFor (m: ModelManifest, layers: number): number {
  let lo = 0
  let hi = 1e13
  for (let i = 0; i < 80; i++) {
    const mid = (lo + hi) / 2
    if (layerCapacity(m, { decodeLayerMs: 1, prefillLayerMsPerToken: 1, memoryBytes: mid }) >= layers) hi = mid
    else lo = mid
  }
  return Math.ceil(hi)
}

export const memberArb = (m: ModelManifest): fc.Arbitrary<Member> => fc.record({
  id: fc.integer({ min: 0, max: 10_000 }),
  layers: fc.integer({ min: 0, max: m.nLayers + 2 }),
  decode: fc.double({ min: 0.05, max: 20, noNaN: true }),
  prefill: fc.double({ min: 0.001, max: 5, noNaN: true })
}).map(({ id, layers, decode, prefill }) => ({ peerId: `p${id}`, capability: { decodeLayerMs: decode, prefillLayerMsPerToken: prefill, memoryBytes: memoryFor(m, layers) } }))

/** Members with distinct peer ids. */
export const membersArb = (m: ModelManifest, max = 12): fc.Arbitrary<Member[]> =>
  fc.uniqueArray(memberArb(m), { minLength: 1, maxLength: max, selector: (x) => x.peerId })

/** A pseudo-RTT between two peer ids (symmetric, deterministic). */
export function fakeRtt (a: string, b: string): number {
  if (a === b) return 0
  const [x, y] = a < b ? [a, b] : [b, a]
  let h = 2166136261
  for (const c of `${x}|${y}`) h = Math.imul(h ^ c.charCodeAt(0), 16777619)
  return 5 + ((h >>> 0) % 200)
}
