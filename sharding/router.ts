// Per-request routing: a chain of nodes covering [0, L) with the least complete cost, decode
// and prefill costed separately:
//
//   hop (prev → node i, entering at layer b, running [b, end_i)):
//     decode  = rtt/2 + bytes/bandwidth + (end_i − b) · max(t_dec_i · (1 + α_i · min(load_i, slots_i)), step_i)
//     prefill = rtt/2 + P · bytes/bandwidth + (end_i − b) · P · t_pre_i + queue_i
//   step_i = the node's measured recent time per layer a decode token spent there (if published)
//   queue_i = 0 while load_i < slots_i, else the wait for a slot: (load − slots + 1) · session / slots
//   request cost = prefill + G · decode  (plus the last hop back to the client)
//
// α_i, the decode cost of one more session in the batch, defaults to t_pre/t_dec (a batched
// token costs about what a prefill token does). A hop may enter a node mid-range but always runs
// to the node's end, as in Petals' graph, so the chain is a path in a DAG ordered by end layer
// and dynamic programming over it is exact (up to ROUTE_BEAM predecessors per entry layer).
// Alternatives are node-disjoint (failover must not share the failed node). Choice, when the client gives latency targets: among routes predicted
// to meet them, power of two choices within ROUTE_SPREAD_SLACK of the cheapest; when none can,
// the cheapest route with no queue (overflow goes to idle capacity instead of lengthening the
// queue in front of the routes that can still meet targets), else the cheapest — or, with
// admission 'defer', SwarmBusyError: the client retries later rather than slow everyone down.
// Without targets: power of two choices among all routes within the slack.
import type { Assignment, RouteGraph, RouteNode, RouteRequest, Route } from './index.ts'
import { CLIENT } from './index.ts'
import { ShardUnavailableError, SwarmBusyError } from './errors.ts'
import { DEFAULT_SESSION_MS, ROUTE_ALTERNATIVES, ROUTE_BEAM, ROUTE_SPREAD_SLACK } from './constants.ts'

const TOKEN_ID_BYTES = 4

export interface RouteOptions {
  /** Uniform [0, 1) PRNG for load spreading; without it the cheapest route is always first. */
  rng?: () => number
  /** Peers not to use (banned after a failure). */
  exclude?: ReadonlySet<string>
  /** How many ranked routes to return; default ROUTE_ALTERNATIVES. */
  alternatives?: number
  /**
   * With latency targets, when no route can meet them: 'queue' (default) returns the cheapest
   * unqueued route, else the cheapest; 'defer' throws SwarmBusyError so the client backs off and
   * retries instead of slowing down the sessions already running (a 429, decided client-side).
   */
  admission?: 'queue' | 'defer'
}

interface HopCost { prefillMs: number, decodeMs: number }

/** The link part of a hop: half the RTT plus the bytes over the bottleneck bandwidth. */
function linkCost (g: RouteGraph, req: RouteRequest, prev: string, n: RouteNode): HopCost {
  const rttHalf = g.rttMs(prev, n.peerId) / 2
  const perToken = prev === CLIENT ? TOKEN_ID_BYTES : g.hiddenBytesPerToken
  const bw = g.bandwidthBytesPerS(prev, n.peerId)
  const sendMs = (bytes: number): number => (bw > 0 ? (bytes / bw) * 1000 : Infinity)
  return { decodeMs: rttHalf + sendMs(perToken), prefillMs: rttHalf + sendMs(perToken * req.promptTokens) }
}

/** The node part of a hop entering at layer `entry`: compute under load, and the queue. */
function nodeCost (req: RouteRequest, n: RouteNode, entry: number): HopCost {
  const layers = n.end - entry
  const alpha = n.batchSlowdown ?? Math.min(1, n.prefillLayerMsPerToken / n.decodeLayerMs)
  const session = req.sessionMs ?? DEFAULT_SESSION_MS
  const queue = n.load >= n.slots ? ((n.load - n.slots + 1) * (n.sessionMs ?? session)) / Math.max(1, n.slots) : 0
  return {
    decodeMs: layers * Math.max(n.decodeLayerMs * (1 + alpha * Math.min(n.load, n.slots)), n.stepLayerMs ?? 0),
    prefillMs: layers * req.promptTokens * n.prefillLayerMsPerToken + queue
  }
}

function hopCost (g: RouteGraph, req: RouteRequest, prev: string, n: RouteNode, entry: number): HopCost {
  const l = linkCost(g, req, prev, n)
  const c = nodeCost(req, n, entry)
  return { decodeMs: l.decodeMs + c.decodeMs, prefillMs: l.prefillMs + c.prefillMs }
}

function backCost (g: RouteGraph, last: string): number {
  return g.rttMs(last, CLIENT) / 2
}

/** The modelled cost of a given chain (hops in order, each [start, end) on its node). */
export function chainCost (g: RouteGraph, req: RouteRequest, hops: Assignment[]): Route {
  const byId = new Map(g.nodes.map((n) => [n.peerId, n]))
  let prefillMs = 0
  let decodeMs = 0
  let prev = CLIENT
  for (const h of hops) {
    const n = byId.get(h.peerId)
    if (n === undefined) throw new ShardUnavailableError(`unknown peer ${h.peerId}`)
    const c = hopCost(g, req, prev, n, h.start)
    prefillMs += c.prefillMs
    decodeMs += c.decodeMs
    prev = h.peerId
  }
  const back = backCost(g, prev)
  prefillMs += back
  decodeMs += back
  return { hops, prefillMs, decodeMs, costMs: prefillMs + req.genTokens * decodeMs }
}

/** Every valid chain (for tests and tiny graphs): hop i+1 enters where hop i ends. */
export function allChains (g: RouteGraph, exclude: ReadonlySet<string> = new Set()): Assignment[][] {
  const out: Assignment[][] = []
  const walk = (at: number, hops: Assignment[]): void => {
    if (at === g.nLayers) { out.push(hops); return }
    for (const n of g.nodes) {
      if (exclude.has(n.peerId) || n.start > at || n.end <= at) continue
      walk(n.end, [...hops, { peerId: n.peerId, start: at, end: n.end }])
    }
  }
  walk(0, [])
  return out
}

function cmp (a: string, b: string): number { return a < b ? -1 : a > b ? 1 : 0 }

/** The cheapest chain avoiding `exclude`, by dynamic programming over nodes ordered by end. */
function cheapest (g: RouteGraph, req: RouteRequest, exclude: ReadonlySet<string>): Route | undefined {
  const nodes = g.nodes.filter((n) => !exclude.has(n.peerId) && n.end > n.start)
    .sort((a, b) => a.end - b.end || a.start - b.start || cmp(a.peerId, b.peerId))
  const best: Array<{ cost: number, prefill: number, decode: number, prev: number, entry: number }> = []
  const byEnd = new Map<number, number[]>() // end layer → node indices by ascending cost
  for (let i = 0; i < nodes.length; i++) {
    const n = nodes[i]
    let b = { cost: Infinity, prefill: 0, decode: 0, prev: -1, entry: 0 }
    if (n.start === 0) {
      const c = hopCost(g, req, CLIENT, n, 0)
      b = { cost: c.prefillMs + req.genTokens * c.decodeMs, prefill: c.prefillMs, decode: c.decodeMs, prev: -1, entry: 0 }
    }
    // predecessors end inside [start, end); per entry layer they are kept sorted by cost, and
    // since a link costs ≥ 0, the scan stops once cost + this node's part cannot win. Only the
    // ROUTE_BEAM cheapest per entry layer are tried (exact whenever no layer has more)
    for (let e = n.start; e < n.end; e++) {
      const bucket = byEnd.get(e)
      if (bucket === undefined) continue
      const own = nodeCost(req, n, e)
      const floor = own.prefillMs + req.genTokens * own.decodeMs
      for (let k = 0; k < Math.min(bucket.length, ROUTE_BEAM); k++) {
        const j = bucket[k]
        if (best[j].cost + floor >= b.cost) break
        const c = hopCost(g, req, nodes[j].peerId, n, e)
        const cost = best[j].cost + c.prefillMs + req.genTokens * c.decodeMs
        if (cost < b.cost) b = { cost, prefill: best[j].prefill + c.prefillMs, decode: best[j].decode + c.decodeMs, prev: j, entry: e }
      }
    }
    best.push(b)
    if (b.cost < Infinity) {
      const bucket = byEnd.get(n.end) ?? []
      let at = bucket.length
      while (at > 0 && best[bucket[at - 1]].cost > b.cost) at--
      bucket.splice(at, 0, i)
      byEnd.set(n.end, bucket)
    }
  }
  let end = -1
  let endCost = Infinity
  for (let i = 0; i < nodes.length; i++) {
    if (nodes[i].end !== g.nLayers || !(best[i].cost < Infinity)) continue
    const back = backCost(g, nodes[i].peerId)
    const total = best[i].cost + back * (1 + req.genTokens)
    if (total < endCost) { end = i; endCost = total }
  }
  if (end < 0) return undefined
  const hops: Assignment[] = []
  for (let i = end; i >= 0; i = best[i].prev) hops.unshift({ peerId: nodes[i].peerId, start: best[i].entry, end: nodes[i].end })
  const back = backCost(g, nodes[end].peerId)
  return { hops, prefillMs: best[end].prefill + back, decodeMs: best[end].decode + back, costMs: endCost }
}

/**
 * Ranked routes for one request: node-disjoint alternatives, cheapest first; with `rng`, the
 * first is chosen by power of two choices among those within ROUTE_SPREAD_SLACK of the cheapest.
 * Throws ShardUnavailableError when no chain covers every layer.
 */
export function routeRequest (g: RouteGraph, req: RouteRequest, options: RouteOptions = {}): Route[] {
  const exclude = new Set(options.exclude ?? [])
  const want = options.alternatives ?? ROUTE_ALTERNATIVES
  const routes: Route[] = []
  while (routes.length < want) {
    const r = cheapest(g, req, exclude)
    if (r === undefined) break
    routes.push(r)
    for (const h of r.hops) exclude.add(h.peerId)
  }
  if (routes.length === 0) throw new ShardUnavailableError(`no chain of live nodes covers layers [0, ${g.nLayers})`)
  let pick: Route | undefined
  const targeted = req.maxTtftMs !== undefined || req.maxTokenMs !== undefined
  if (targeted) {
    const meets = routes.filter((r) => r.prefillMs <= (req.maxTtftMs ?? Infinity) && r.decodeMs <= (req.maxTokenMs ?? Infinity))
    if (meets.length > 0) pick = spread(meets, options.rng)
    else {
      const nodes = new Map(g.nodes.map((n) => [n.peerId, n]))
      if (options.admission === 'defer') throw new SwarmBusyError('no route meets the latency targets now')
      pick = routes.find((r) => r.hops.every((h) => { const n = nodes.get(h.peerId); return n !== undefined && n.load < n.slots }))
    }
  } else pick = spread(routes, options.rng)
  return pick === undefined ? routes : [pick, ...routes.filter((r) => r !== pick)]
}

/** Power of two choices among the routes within ROUTE_SPREAD_SLACK of the cheapest (ranked). */
function spread (ranked: Route[], rng?: () => number): Route {
  const near = ranked.filter((r) => r.costMs <= ranked[0].costMs * (1 + ROUTE_SPREAD_SLACK))
  if (rng === undefined || near.length < 2) return ranked[0]
  const a = Math.floor(rng() * near.length)
  let b = Math.floor(rng() * (near.length - 1))
  if (b >= a) b++
  return near[a].costMs <= near[b].costMs ? near[a] : near[b]
}
