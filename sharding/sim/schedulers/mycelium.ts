// Ours: the deterministic allocator + staggered rebalancing (sharding/rebalance.ts) and the
// complete-cost router with power of two choices (sharding/router.ts), fed by measured
// capability, probe RTTs, load gossiped every LOAD_GOSSIP_MS, and the client's latency targets
// (each request states the scenario's SLO).
import type { Member, RouteGraph, RouteNode } from '../../index.ts'
import { CLIENT } from '../../index.ts'
import { rebalance } from '../../rebalance.ts'
import { routeRequest } from '../../router.ts'
import type { Scheduler, SwarmView } from '../index.ts'

const LOAD_GOSSIP_MS = 2000 // load and free KV travel in the replicated swarm state
const CRASH_DETECT_MS = 30_000 // presence expiry, taken equal to Parallax's heartbeat timeout
const ROUTE_CANDIDATES = 3 // node-disjoint routes ranked per request
// Admission compares a predicted mean per-token time with the per-request target; admitting right
// at the target tips the sessions after it over, so on-time requests need 80 % of it (chosen from
// the stress runs of seeds 1–3), late ones 50 %.
const ADMIT_HEADROOM = 0.8
const LATE_HEADROOM = 0.5
const CHECK_MS = 60_000 // periodic rebalance check (hysteresis decides whether anything moves)

export function myceliumScheduler (options: { dtype?: 'q4_0' | 'q8_0' | 'f16' } = {}): Scheduler {
  const dtype = options.dtype ?? 'q4_0'
  return {
    name: 'mycelium',
    recovery: 'replay',
    crashDetectMs: CRASH_DETECT_MS,
    loadRefreshMs: LOAD_GOSSIP_MS,
    servesWhileLeaving: true,
    kvBytesFactor: 1, // our engine holds KV in f32
    tickMs: CHECK_MS,
    plan (view: SwarmView, event) {
      if (event.type === 'landed') return undefined
      const members: Member[] = view.nodes.map((n) => ({
        peerId: n.id,
        capability: n.measured,
        ...(n.range !== undefined ? { current: n.range } : {}),
        ...(n.leaving ? { leaving: true } : {})
      }))
      const r = rebalance(view.manifest, members, { dtype, rttMs: view.rttMs })
      const moves = r.waves.reduce((a, w) => a + w.length, 0)
      return moves === 0 ? undefined : r.waves
    },
    route (view, request, exclude) {
      const m = view.manifest
      const nodes: RouteNode[] = []
      for (const n of view.nodes) {
        if (!n.serving || n.range === undefined) continue
        const layers = n.range.end - n.range.start
        const sessionKv = (request.promptTokens + request.genTokens) * m.kvBytesPerTokenPerLayer * layers
        nodes.push({ peerId: n.id, start: n.range.start, end: n.range.end, decodeLayerMs: n.measured.decodeLayerMs, prefillLayerMsPerToken: n.measured.prefillLayerMsPerToken, load: n.load, slots: n.queued > 0 ? n.load - n.queued : n.load + Math.floor(n.freeKvBytes / sessionKv), ...(n.meanSessionMs > 0 ? { sessionMs: n.meanSessionMs } : {}), ...(n.stepLayerMs > 0 ? { stepLayerMs: n.stepLayerMs } : {}) })
      }
      const id = (x: string): string => (x === CLIENT ? request.client : x)
      const graph: RouteGraph = {
        nLayers: m.nLayers,
        nodes,
        hiddenBytesPerToken: view.hiddenBytesPerToken,
        rttMs: (a, b) => view.rttMs(id(a), id(b)),
        bandwidthBytesPerS: (a, b) => view.bandwidthBytesPerS(id(a), id(b))
      }
      // the client states its targets: time to first token (what is left of it) and per token.
      // While no route can meet them it backs off and retries (admission 'defer') instead of
      // slowing down the sessions already running; once late (its SLO is lost) it yields: it
      // needs LATE_HEADROOM of the per-token target, so on-time requests get the capacity first
      const left = view.slo.ttftMs - (view.now - request.arrivedAt)
      const targets = left > 0 ? { maxTtftMs: left, maxTokenMs: view.slo.tokenMs * ADMIT_HEADROOM } : { maxTokenMs: view.slo.tokenMs * LATE_HEADROOM }
      try {
        return routeRequest(graph, { promptTokens: request.promptTokens, genTokens: request.genTokens, ...targets }, { rng: view.rng, exclude, alternatives: ROUTE_CANDIDATES, admission: 'defer' })[0].hops
      } catch (err) {
        const name = (err as Error).name
        if (name === 'ShardUnavailableError' || name === 'SwarmBusyError') return undefined
        throw err
      }
    }
  }
}
