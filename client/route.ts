// What the replicated swarm state says about models: which are offered (published manifests),
// who serves which layers of each, and the per-layer coverage. Chains come from the shared router
// (protocols/inference/route-chain.ts).
import type { NodeRecord } from '../crdt/index.ts'
import type { ModelManifest } from '../sharding/index.ts'

/** The reads the client needs from a replicated swarm document (crdt's SwarmState has them). */
export interface SwarmReader {
  nodes: () => ReadonlyMap<string, NodeRecord>
  online: () => string[]
  manifests: () => Array<{ id: string, data: unknown, publisher: string }>
  onChange: (listener: () => void) => () => void
}

/** A node serving a layer range of a model, as its record says. */
export interface ServingNode {
  peerId: string
  start: number
  end: number
  addresses: string[]
}

/** A model offered in the swarm. */
export interface ModelInfo {
  /** Manifest id (hex sha-256): what requests name. */
  id: string
  manifest: ModelManifest
  /** Online nodes serving part of it. */
  nodes: ServingNode[]
  /** Per layer, how many online nodes serve it. */
  coverage: number[]
  /** Every layer is served by someone. */
  covered: boolean
}

function isManifest (x: unknown): x is ModelManifest {
  const m = x as Partial<ModelManifest> | null
  return m !== null && typeof m === 'object' && typeof m.id === 'string' && Number.isInteger(m.nLayers) && (m.nLayers ?? 0) > 0 &&
    Number.isInteger(m.vocabSize) && Number.isInteger(m.seqLen) && Number.isInteger(m.dim)
}

/** Every model with a published manifest, with its online serving nodes (sorted by id). */
export function listModels (state: SwarmReader, online: readonly string[] = state.online()): ModelInfo[] {
  const manifests = new Map<string, ModelManifest>()
  for (const m of state.manifests()) if (isManifest(m.data) && m.data.id === m.id && !manifests.has(m.id)) manifests.set(m.id, m.data)
  const records = state.nodes()
  const out: ModelInfo[] = []
  for (const [id, manifest] of [...manifests].sort(([a], [b]) => a.localeCompare(b))) {
    const nodes: ServingNode[] = []
    for (const peerId of [...new Set(online)].sort()) {
      const rec = records.get(peerId)
      for (const l of rec?.layers ?? []) {
        if (l.model !== id || !Number.isInteger(l.start) || !Number.isInteger(l.end) || l.start < 0 || l.start >= l.end || l.end > manifest.nLayers) continue
        nodes.push({ peerId, start: l.start, end: l.end, addresses: rec?.addresses ?? [] })
      }
    }
    const coverage = new Array<number>(manifest.nLayers).fill(0)
    for (const n of nodes) for (let i = n.start; i < n.end; i++) coverage[i]++
    out.push({ id, manifest, nodes, coverage, covered: coverage.every((c) => c > 0) })
  }
  return out
}
