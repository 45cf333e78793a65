// From the replicated swarm state to a chain of stages: which models are offered, who serves
// which layers, and the router's pick (sharding/routeRequest) over those nodes. Interim: the
// failover work of issue 6 adds a shared route helper in protocols/inference/; this file moves
// to it once it lands.
import type { NodeRecord } from '../crdt/index.ts'
import type { ChainHop } from '../protocols/index.ts'
import { CLIENT, ShardUnavailableError, chainCost, routeRequest } from '../sharding/index.ts'
import type { Assignment, ModelManifest, RouteGraph, RouteNode } from '../sharding/index.ts'
import { NoRouteError } from './errors.ts'

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

const RTT_PREFIX = 'rttMs:'
/** Assumed for links nobody measured (the client's own links are never published). */
const DEFAULT_RTT_MS = 1
const DEFAULT_BANDWIDTH = 100e6
/** The stage service's default session cap (protocols/inference/constants.ts). */
const DEFAULT_SLOTS = 64
const ROUTES_TO_RANK = 8

function positive (x: unknown): x is number { return typeof x === 'number' && Number.isFinite(x) && x > 0 }

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

/** The router's graph for one model: its serving nodes with their published figures. */
export function routeGraph (state: SwarmReader, model: ModelInfo): RouteGraph {
  const records = state.nodes()
  const nodes: RouteNode[] = model.nodes.map((n) => {
    const c = records.get(n.peerId)?.capabilities ?? {}
    const decode = positive(c.decodeLayerMs) ? c.decodeLayerMs : 1
    return { peerId: n.peerId, start: n.start, end: n.end, decodeLayerMs: decode, prefillLayerMsPerToken: positive(c.prefillLayerMsPerToken) ? c.prefillLayerMsPerToken : decode, load: 0, slots: DEFAULT_SLOTS }
  })
  const said = (from: string, to: string): number | undefined => {
    const v = records.get(from)?.capabilities[`${RTT_PREFIX}${to}`]
    return typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : undefined
  }
  return {
    nLayers: model.manifest.nLayers,
    nodes,
    hiddenBytesPerToken: model.manifest.dim * 4,
    rttMs: (a, b) => {
      if (a === CLIENT || b === CLIENT) return DEFAULT_RTT_MS
      const x = said(a, b)
      const y = said(b, a)
      return x !== undefined && y !== undefined ? (x + y) / 2 : x ?? y ?? DEFAULT_RTT_MS
    },
    bandwidthBytesPerS: (a) => {
      const v = records.get(a)?.capabilities.bandwidthBytesPerS
      return positive(v) ? v : DEFAULT_BANDWIDTH
    }
  }
}

/** A hop serving exactly a node's whole published range (stages refuse any other range). */
function exact (model: ModelInfo, hops: Assignment[]): boolean {
  return hops.every((h) => model.nodes.some((n) => n.peerId === h.peerId && n.start === h.start && n.end === h.end))
}

/** Chains of whole published ranges tiling [0, L), cheapest first (depth-first; small swarms). */
function exactChains (model: ModelInfo, exclude: ReadonlySet<string>, limit: number): Assignment[][] {
  const out: Assignment[][] = []
  const walk = (at: number, hops: Assignment[]): void => {
    if (out.length >= limit) return
    if (at === model.manifest.nLayers) { out.push(hops); return }
    for (const n of model.nodes) {
      if (n.start !== at || exclude.has(n.peerId) || hops.some((h) => h.peerId === n.peerId)) continue
      walk(n.end, [...hops, { peerId: n.peerId, start: n.start, end: n.end }])
    }
  }
  walk(0, [])
  return out
}

/**
 * The chain for one request: the router's ranked routes over the serving nodes, keeping the
 * first whose hops are whole published ranges; else the cheapest such chain by the router's cost
 * model. NoRouteError when nothing tiles the layers.
 */
export function pickChain (state: SwarmReader, model: ModelInfo, request: { promptTokens: number, genTokens: number }, options: { exclude?: ReadonlySet<string>, rng?: () => number } = {}): ChainHop[] {
  const exclude = options.exclude ?? new Set<string>()
  const graph = routeGraph(state, model)
  try {
    const routes = routeRequest(graph, request, { exclude, alternatives: ROUTES_TO_RANK, ...(options.rng !== undefined ? { rng: options.rng } : {}) })
    const route = routes.find((r) => exact(model, r.hops))
    if (route !== undefined) return route.hops.map((h) => ({ peer: h.peerId, start: h.start, end: h.end }))
  } catch (err) {
    if (!(err instanceof ShardUnavailableError)) throw err
  }
  const chains = exactChains(model, exclude, ROUTES_TO_RANK * 4)
  if (chains.length === 0) throw new NoRouteError(`no chain of online nodes serves every layer of model ${model.id.slice(0, 12)} (coverage ${model.coverage.join(',')})`)
  const best = chains.map((hops) => ({ hops, cost: chainCost(graph, request, hops).costMs })).sort((a, b) => a.cost - b.cost)[0]
  return best.hops.map((h) => ({ peer: h.peerId, start: h.start, end: h.end }))
}

/** A replacement for a dead hop: another online node serving exactly that range. */
export function replacementHop (model: ModelInfo, hop: ChainHop, exclude: ReadonlySet<string>): ChainHop | undefined {
  const n = model.nodes.find((x) => x.start === hop.start && x.end === hop.end && !exclude.has(x.peerId) && x.peerId !== hop.peer.toString())
  return n === undefined ? undefined : { peer: n.peerId, start: n.start, end: n.end }
}
