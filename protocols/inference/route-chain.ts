// Chains of stages from the replicated swarm state: the router (sharding/routeRequest) over the
// node records of online members that serve the model, and failover replacements re-routed from
// the same views with the failed peers excluded.
//
//   const router = chainRouter(state, { model: { id, nLayers }, self: client.peerId.toString() })
//   runInference(open, protocol, { chain: router.route(), …, failover: { replace: router.replace } })
//
// A stage serves exactly the range it loaded (OpenSession must name it), so a chain must enter
// every node at its start. The router may enter a node mid-range (Petals' graph): when its pick
// does, the cheapest exact tiling is found by dynamic programming over nodes with the router's
// own cost model (`chainCost`).
import type { NodeRecord } from '../../crdt/index.ts'
import { chainCost, CLIENT, DEFAULT_RTT_MS, routeRequest, ShardUnavailableError } from '../../sharding/index.ts'
import type { Assignment, Route, RouteGraph, RouteNode, RouteRequest } from '../../sharding/index.ts'
import type { ChainHop } from './client.ts'
import { INFERENCE_MAX_SESSIONS, ROUTE_DEFAULT_BANDWIDTH_BYTES_PER_S, ROUTE_DEFAULT_GEN_TOKENS, ROUTE_DEFAULT_HIDDEN_BYTES, ROUTE_DEFAULT_PROMPT_TOKENS, ROUTE_RTT_CAPABILITY_PREFIX } from './constants.ts'

/** The part of the swarm state's views routing reads (crdt's SwarmViews / SwarmState / SwarmReplica). */
export interface RouteViews {
  nodes: () => ReadonlyMap<string, NodeRecord>
  online: () => string[]
}

export interface ChainRouterOptions {
  /** Manifest id of the model and its layer count. */
  model: { id: string, nLayers: number }
  /** Weight dtype the stages must publish (default: any). */
  dtype?: string
  /** Hidden-state bytes per token on the wire, after the codec (default ROUTE_DEFAULT_HIDDEN_BYTES). */
  hiddenBytesPerToken?: number
  /** The request's shape for the cost model (defaults in constants.ts). */
  request?: RouteRequest
  /** Peer id of the client when it is a swarm member (its published RTTs then count). */
  self?: string
  /** Uniform [0, 1) PRNG for the router's load spreading (default: always the cheapest). */
  rng?: () => number
  /** Peers never to use. */
  exclude?: Iterable<string>
}

export interface ChainRouter {
  /** A chain covering every layer from the current views (throws ShardUnavailableError). */
  route: () => ChainHop[]
  /**
   * For `failover.replace`: excludes `hop.peer` from now on and re-routes `[hop.start, hop.end)`
   * from the current views: one or more hops tiling that span; when no nodes tile it (the other
   * replicas split the layers differently), a whole new chain; undefined when none exists.
   */
  replace: (hop: ChainHop, index: number) => Promise<ChainHop[] | undefined>
  /** Peers excluded so far (the initial ones and every replaced hop). */
  readonly excluded: ReadonlySet<string>
}

function positive (x: unknown): x is number { return typeof x === 'number' && Number.isFinite(x) && x > 0 }

/**
 * The router's graph for one model from the views: one node per online member whose record
 * offers the model (and dtype) with measured figures and publishes a range of it. Load (`load`,
 * `slots`, `stepLayerMs` capabilities, merged in by the daemon's load view) when present, else
 * the node counts as idle with INFERENCE_MAX_SESSIONS slots.
 */
export function routeGraphFromViews (views: RouteViews, options: ChainRouterOptions): RouteGraph {
  const { id, nLayers } = options.model
  const records = views.nodes()
  const nodes: RouteNode[] = []
  for (const peerId of [...new Set(views.online())].sort()) {
    const rec = records.get(peerId)
    const c = rec?.capabilities
    if (c === undefined || c.model !== id || (options.dtype !== undefined && c.dtype !== options.dtype)) continue
    if (!positive(c.decodeLayerMs) || !positive(c.prefillLayerMsPerToken)) continue
    const range = rec?.layers.find((l) => l.model === id && Number.isInteger(l.start) && Number.isInteger(l.end) && l.start >= 0 && l.start < l.end && l.end <= nLayers)
    if (range === undefined) continue
    // live load when the views carry it (node/load-beacon.ts merges it into the capabilities), else idle
    const load = typeof c.load === 'number' && Number.isInteger(c.load) && c.load >= 0 ? c.load : 0
    const slots = typeof c.slots === 'number' && Number.isInteger(c.slots) && c.slots > 0 ? c.slots : INFERENCE_MAX_SESSIONS
    nodes.push({ peerId, start: range.start, end: range.end, decodeLayerMs: c.decodeLayerMs, prefillLayerMsPerToken: c.prefillLayerMsPerToken, load, slots, ...(positive(c.stepLayerMs) ? { stepLayerMs: c.stepLayerMs } : {}) })
  }
  const said = (from: string, to: string): number | undefined => {
    const v = records.get(from)?.capabilities[`${ROUTE_RTT_CAPABILITY_PREFIX}${to}`]
    return typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : undefined
  }
  const peerOf = (x: string): string | undefined => (x === CLIENT ? options.self : x)
  return {
    nLayers,
    nodes,
    hiddenBytesPerToken: options.hiddenBytesPerToken ?? ROUTE_DEFAULT_HIDDEN_BYTES,
    rttMs: (a, b) => {
      const pa = peerOf(a)
      const pb = peerOf(b)
      if (pa === undefined || pb === undefined) return DEFAULT_RTT_MS
      const x = said(pa, pb)
      const y = said(pb, pa)
      return x !== undefined && y !== undefined ? (x + y) / 2 : x ?? y ?? DEFAULT_RTT_MS
    },
    bandwidthBytesPerS: (a, b) => {
      const from = records.get(peerOf(a) ?? '')?.capabilities.bandwidthBytesPerS
      const to = records.get(peerOf(b) ?? '')?.capabilities.bandwidthBytesPerS
      const known = [from, to].filter(positive)
      return known.length > 0 ? Math.min(...known) : ROUTE_DEFAULT_BANDWIDTH_BYTES_PER_S
    }
  }
}

/** True when every hop enters its node at the node's first layer (what a stage can serve). */
function exact (g: RouteGraph, hops: Assignment[]): boolean {
  return hops.every((h) => g.nodes.some((n) => n.peerId === h.peerId && n.start === h.start && n.end === h.end))
}

/**
 * The cheapest chain of whole nodes tiling [start, end) avoiding `exclude`, costed by the
 * router's model as the complete chain `before ++ span ++ after` (so the links to the
 * neighbours count). Nodes ordered by start; best[i] = cheapest span prefix ending with node i.
 */
function cheapestExact (g: RouteGraph, req: RouteRequest, start: number, end: number, exclude: ReadonlySet<string>, before: Assignment[], after: Assignment[]): Assignment[] | undefined {
  const nodes = g.nodes.filter((n) => !exclude.has(n.peerId) && n.start >= start && n.end <= end)
    .sort((a, b) => a.start - b.start || a.end - b.end || (a.peerId < b.peerId ? -1 : a.peerId > b.peerId ? 1 : 0))
  // chainCost over a graph of just the chain's nodes: O(chain length) per call, not O(nodes)
  const byId = new Map(g.nodes.map((n) => [n.peerId, n]))
  const costOf = (hops: Assignment[]): number => chainCost({ ...g, nodes: hops.flatMap((h) => byId.get(h.peerId) ?? []) }, req, hops).costMs
  const cost = (hops: Assignment[]): number => costOf([...before, ...hops])
  const best: Array<{ hops: Assignment[], cost: number } | undefined> = []
  for (let i = 0; i < nodes.length; i++) {
    const n = nodes[i]
    const hop = { peerId: n.peerId, start: n.start, end: n.end }
    let b: { hops: Assignment[], cost: number } | undefined
    if (n.start === start) b = { hops: [hop], cost: cost([hop]) }
    for (let j = 0; j < i; j++) {
      const p = best[j]
      if (p === undefined || nodes[j].end !== n.start) continue
      const hops = [...p.hops, hop]
      const c = cost(hops)
      if (b === undefined || c < b.cost) b = { hops, cost: c }
    }
    best.push(b)
  }
  let pick: Assignment[] | undefined
  let pickCost = Infinity
  for (let i = 0; i < nodes.length; i++) {
    const b = best[i]
    if (b === undefined || nodes[i].end !== end) continue
    const c = costOf([...before, ...b.hops, ...after])
    if (c < pickCost) { pick = b.hops; pickCost = c }
  }
  return pick
}

/**
 * Routes [start, end): the router's pick over the nodes inside the span (shifted to start at 0)
 * when it enters every node at its start; else the cheapest exact tiling.
 * A sub-span is costed as the router costs a whole request (from and back to the client), unless
 * `before` / `after` name the chain's hops around it.
 */
export function routeSpan (g: RouteGraph, req: RouteRequest, start: number, end: number, options: { exclude?: ReadonlySet<string>, rng?: () => number, before?: Assignment[], after?: Assignment[] } = {}): Assignment[] | undefined {
  const exclude = options.exclude ?? new Set<string>()
  const inside = g.nodes.filter((n) => n.start >= start && n.end <= end)
  const sub: RouteGraph = { ...g, nLayers: end - start, nodes: inside.map((n) => ({ ...n, start: n.start - start, end: n.end - start })) }
  let routes: Route[] = []
  try {
    routes = routeRequest(sub, req, { exclude, ...(options.rng !== undefined ? { rng: options.rng } : {}) })
  } catch (err) {
    if (!(err instanceof ShardUnavailableError)) throw err
  }
  // the router's pick is the cheapest route (or one within its spread of it): when it enters every
  // node at its start it is also the cheapest exact one. Its alternatives are node-disjoint, not
  // the next cheapest, so an exact alternative may be dearer than an exact chain sharing nodes
  // with the pick: then the exact search decides
  const pick = routes[0]?.hops.map((h) => ({ ...h, start: h.start + start, end: h.end + start }))
  if (pick !== undefined && exact(g, pick)) return pick
  return cheapestExact(g, req, start, end, exclude, options.before ?? [], options.after ?? [])
}

/** Chains from `views` for `options.model`, and failover replacements from the same views. */
export function chainRouter (views: RouteViews, options: ChainRouterOptions): ChainRouter {
  const excluded = new Set(options.exclude ?? [])
  const req: RouteRequest = options.request ?? { promptTokens: ROUTE_DEFAULT_PROMPT_TOKENS, genTokens: ROUTE_DEFAULT_GEN_TOKENS }
  const toChain = (hops: Assignment[]): ChainHop[] => hops.map((h) => ({ peer: h.peerId, start: h.start, end: h.end }))
  return {
    excluded,
    route: () => {
      const g = routeGraphFromViews(views, options)
      const hops = routeSpan(g, req, 0, g.nLayers, { exclude: excluded, ...(options.rng !== undefined ? { rng: options.rng } : {}) })
      if (hops === undefined) throw new ShardUnavailableError(`no chain of online stages serves every layer of ${options.model.id.slice(0, 12)}`)
      return toChain(hops)
    },
    replace: async (hop) => {
      excluded.add(hop.peer.toString())
      const g = routeGraphFromViews(views, options)
      const rng = options.rng !== undefined ? { rng: options.rng } : {}
      const hops = routeSpan(g, req, hop.start, hop.end, { exclude: excluded, ...rng }) ?? routeSpan(g, req, 0, g.nLayers, { exclude: excluded, ...rng })
      return hops === undefined ? undefined : toChain(hops)
    }
  }
}
