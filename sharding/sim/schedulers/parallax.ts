// Parallax, from ../shared/research/anchors-serving.md §2.2 (scheduling/layer_allocation.py,
// request_routing.py, node.py; production wiring: allocator 'dp', router 'rr'):
// - capacity = floor((0.5 · memory − embedding on the first stage − LM head on the last) /
//   layer bytes), from the static table (memory as the spec sheet says);
// - phase 1a: for k = 1 … min(N, Σcap // L), s*(k) = the fewest stages that build k pipelines from
//   the standby nodes in standby order (DP over open residuals); pick k maximizing k² / s*(k).
//   The DP is exact up to DP_STATE_LIMIT memo states; beyond that we use Parallax's own
//   GreedyLayerAllocator (largest nodes first, close a pipeline with the smallest node that fits);
// - phase 1b: water-filling inside a pipeline by the table's TFLOPS, stage order = capacity desc;
// - joins wait in standby until the standby pool can form a whole pipeline; a leave (heartbeat
//   timeout 30 s) detaches its pipeline to standby; no complete pipeline left → re-bootstrap;
// - routing 'rr': round-robin over registered pipelines, skipping not-ready and overloaded ones
//   (current requests ≥ KV budget (0.3 · memory) / (max sequence · KV per token));
//   'dp': min over chains of Σ per-layer latency (not × layers) + RTT;
// - no mid-stream recovery: a request is retried only before its first token.
import type { Assignment, Move } from '../../index.ts'
import { waterFill } from '../../layer-allocator.ts'
import type { NodeView, Scheduler, SwarmView } from '../index.ts'

const PARAM_MEM_RATIO = 0.5
const KV_MEM_RATIO = 0.3
/** max_sequence_length: the longest context the scenarios produce (2048 prompt + 512 generated). */
const MAX_SEQUENCE_TOKENS = 2560
const MAX_PARAM_MEM_RATIO = 0.7 // with KV_MEM_RATIO, all of memory
const HEARTBEAT_TIMEOUT_MS = 30_000
const DP_STATE_LIMIT = 200_000
const LOAD_LATENCY_MS = 50 // + 0.05 s · load fraction in the per-layer latency
const BYTES_PER_PARAM = { q4_0: 0.5625, q8_0: 1.0625, f16: 2 }

interface Cap { id: string, cap: number, capFirst: number, capLast: number, tflops: number }

function capacities (view: SwarmView, nodes: NodeView[], dtype: 'q4_0' | 'q8_0' | 'f16', ratio: number): Cap[] {
  const m = view.manifest
  const lb = m.layerBytes[dtype]
  const embed = (m.embeddingBytes / 4) * BYTES_PER_PARAM[dtype]
  const head = (m.headBytes / 4) * BYTES_PER_PARAM[dtype]
  return nodes.map((n) => {
    const budget = ratio * n.nominal.memoryBytes
    return { id: n.id, cap: Math.max(0, Math.floor(budget / lb)), capFirst: Math.max(0, Math.floor((budget - embed) / lb)), capLast: Math.max(0, Math.floor((budget - head) / lb)), tflops: n.nominal.tflops }
  }).filter((c) => c.cap > 0)
}

/** Fewest stages building exactly k pipelines from `caps` in order, or undefined (∞ / budget). */
function dpPipelines (caps: Cap[], L: number, k: number): Cap[][] | undefined {
  const N = caps.length
  const suffix = new Array<number>(N + 1).fill(0)
  for (let i = N - 1; i >= 0; i--) suffix[i] = suffix[i + 1] + caps[i].cap
  const memo = new Map<string, { cost: number, choice: number }>() // choice: -2 skip, -1 open, j ≥ 0 append to open j
  let budget = DP_STATE_LIMIT
  const solve = (i: number, open: number[], finished: number): number => {
    if (finished === k && open.length === 0) return 0
    if (i === N || finished + open.length > k) return Infinity
    const need = open.reduce((a, r) => a + r, 0) + (k - finished - open.length) * L
    if (suffix[i] < need) return Infinity
    const key = `${i}|${open.join(',')}|${finished}`
    const hit = memo.get(key)
    if (hit !== undefined) return hit.cost
    if (--budget < 0) throw new RangeError('dp budget')
    let best = solve(i + 1, open, finished)
    let choice = -2
    const c = caps[i]
    const seen = new Set<number>()
    for (let j = 0; j < open.length; j++) {
      if (seen.has(open[j])) continue
      seen.add(open[j])
      const left = Math.max(1, open[j] - c.cap) // the LM head may not fit where the layers would
      const closes = open[j] - c.capLast <= 0
      const next = open.filter((_, x) => x !== j)
      const cost = 1 + (closes ? solve(i + 1, next, finished + 1) : solve(i + 1, [...next, left].sort((a, b) => a - b), finished))
      if (cost < best) { best = cost; choice = j }
    }
    if (finished + open.length < k && c.capFirst > 0) {
      const left = L - c.capFirst
      const cost = 1 + (left <= 0 ? solve(i + 1, open, finished + 1) : solve(i + 1, [...open, left].sort((a, b) => a - b), finished))
      if (cost < best) { best = cost; choice = -1 }
    }
    memo.set(key, { cost: best, choice })
    return best
  }
  let total: number
  try { total = solve(0, [], 0) } catch (err) {
    if (err instanceof RangeError) return undefined
    throw err
  }
  if (!(total < Infinity)) return []
  // backtrack: open pipelines are identified by residual; rebuild membership alongside
  const pipelines: Cap[][] = []
  let open: Array<{ r: number, members: Cap[] }> = []
  let finished = 0
  for (let i = 0; i < N && !(finished === k && open.length === 0); i++) {
    const residuals = open.map((o) => o.r).sort((a, b) => a - b)
    const e = memo.get(`${i}|${residuals.join(',')}|${finished}`)
    if (e === undefined || e.choice === -2) continue
    const c = caps[i]
    if (e.choice === -1) {
      const left = L - c.capFirst
      if (left <= 0) { pipelines.push([c]); finished++ } else open.push({ r: left, members: [c] })
      continue
    }
    const r = residuals[e.choice]
    const idx = open.findIndex((o) => o.r === r)
    const o = open[idx]
    open = open.filter((_, x) => x !== idx)
    if (r - c.capLast <= 0) { pipelines.push([...o.members, c]); finished++ } else open.push({ r: Math.max(1, r - c.cap), members: [...o.members, c] })
  }
  return pipelines
}

/** GreedyLayerAllocator: largest first; close with the smallest node that completes the pipeline. */
function greedyPipelines (caps: Cap[], L: number): Cap[][] {
  const rest = [...caps].sort((a, b) => b.cap - a.cap || (a.id < b.id ? -1 : 1))
  const out: Cap[][] = []
  while (rest.reduce((a, c) => a + c.cap, 0) >= L) {
    const p: Cap[] = []
    let r = L
    while (r > 0 && rest.length > 0) {
      let fit = -1
      for (let i = rest.length - 1; i >= 0; i--) if (rest[i].cap >= r) { fit = i; break }
      const take = fit >= 0 ? fit : 0
      p.push(rest[take])
      r -= rest[take].cap
      rest.splice(take, 1)
    }
    if (r > 0) break
    out.push(p)
  }
  return out
}

/** Phase 1a + 1b over `standby`: pipelines with their layer ranges. */
function allocateFromStandby (view: SwarmView, standby: NodeView[], dtype: 'q4_0' | 'q8_0' | 'f16', ratio: number): Assignment[][] {
  const L = view.manifest.nLayers
  const caps = capacities(view, standby, dtype, ratio)
  const maxK = Math.min(caps.length, Math.floor(caps.reduce((a, c) => a + c.cap, 0) / L))
  let best: Cap[][] = []
  let bestScore = 0
  for (let k = 1; k <= maxK; k++) {
    const p = dpPipelines(caps, L, k)
    if (p === undefined) { best = greedyPipelines(caps, L); break }
    if (p.length !== k) continue
    const stages = p.reduce((a, x) => a + x.length, 0)
    const score = (k * k) / stages
    if (score > bestScore) { best = p; bestScore = score }
  }
  return best.map((p) => {
    const ordered = [...p].sort((a, b) => b.cap - a.cap || (a.id < b.id ? -1 : 1))
    const counts = waterFill(ordered.map((c, i) => (i === 0 ? c.capFirst : i === ordered.length - 1 ? c.capLast : c.cap)), ordered.map((c) => 1 / c.tflops), L)
    let start = 0
    const out: Assignment[] = []
    ordered.forEach((c, i) => { if (counts[i] > 0) { out.push({ peerId: c.id, start, end: start + counts[i] }); start += counts[i] } })
    return out
  })
}

export function parallaxScheduler (options: { dtype?: 'q4_0' | 'q8_0' | 'f16', router?: 'rr' | 'dp', maxSequenceTokens?: number } = {}): Scheduler {
  const dtype = options.dtype ?? 'q4_0'
  const router = options.router ?? 'rr'
  let pipelines: Assignment[][] = []
  let rr = 0
  let ratio = PARAM_MEM_RATIO
  const maxRequests = (view: SwarmView, n: NodeView, layers: number): number =>
    Math.floor((Math.min(KV_MEM_RATIO, 1 - ratio) * n.nominal.memoryBytes) / ((options.maxSequenceTokens ?? MAX_SEQUENCE_TOKENS) * view.manifest.kvBytesPerTokenPerLayer * layers))

  const movesFor = (view: SwarmView, formed: Assignment[][]): Move[] => {
    const moves: Move[] = []
    for (const p of formed) for (const a of p) moves.push({ peerId: a.peerId, to: { start: a.start, end: a.end } })
    return moves
  }

  return {
    name: router === 'rr' ? 'parallax' : 'parallax-dp',
    recovery: 'restart',
    crashDetectMs: HEARTBEAT_TIMEOUT_MS,
    loadRefreshMs: 0, // a central scheduler counts requests itself
    servesWhileLeaving: false,
    kvBytesFactor: 0.5, // SGLang/vLLM/MLX KV cache in f16
    tickMs: 0,
    plan (view, event) {
      const alive = new Set(view.nodes.filter((n) => !n.leaving).map((n) => n.id))
      if (event.type === 'leave' || event.type === 'crash') {
        pipelines = pipelines.filter((p) => p.every((a) => alive.has(a.peerId)))
      }
      if (event.type === 'landed' || event.type === 'tick') return undefined
      if (pipelines.length === 0) {
        // bootstrap / re-bootstrap: every node re-allocated
        // bootstrap / re-bootstrap: every node re-allocated. Where the default parameter share
        // cannot hold one pipeline, the operator raises it (--param-mem-ratio); we do that for it
        const all = view.nodes.filter((n) => !n.leaving)
        for (ratio = PARAM_MEM_RATIO; ratio <= MAX_PARAM_MEM_RATIO + 1e-9; ratio += 0.05) {
          pipelines = allocateFromStandby(view, all, dtype, ratio)
          if (pipelines.length > 0) break
        }
        ratio = Math.min(ratio, MAX_PARAM_MEM_RATIO)
        return [movesFor(view, pipelines)]
      }
      const used = new Set(pipelines.flat().map((a) => a.peerId))
      const standby = view.nodes.filter((n) => !n.leaving && !used.has(n.id))
      const formed = allocateFromStandby(view, standby, dtype, ratio)
      if (formed.length === 0) return undefined
      pipelines = [...pipelines, ...formed]
      return [movesFor(view, formed)]
    },
    route (view, request, exclude) {
      const byId = new Map(view.nodes.map((n) => [n.id, n]))
      const usable = (p: Assignment[]): boolean => p.every((a) => {
        const n = byId.get(a.peerId)
        return n !== undefined && n.serving && !exclude.has(a.peerId) && n.range?.start === a.start && n.range?.end === a.end && n.load < maxRequests(view, n, a.end - a.start)
      })
      if (router === 'rr') {
        for (let i = 0; i < pipelines.length; i++) {
          const p = pipelines[(rr + i) % pipelines.length]
          if (usable(p)) { rr = (rr + i + 1) % pipelines.length; return p }
        }
        return undefined
      }
      // DynamicProgrammingRouting over the registered nodes: edge j → i iff end_j == start_i
      const cands = pipelines.flat().filter((a) => usable([a])).sort((a, b) => a.start - b.start || (a.peerId < b.peerId ? -1 : 1))
      const lat = (a: Assignment): number => {
        const n = byId.get(a.peerId) as NodeView
        const alpha = Math.min(1, n.measured.prefillLayerMsPerToken / n.measured.decodeLayerMs)
        return n.measured.decodeLayerMs * (1 + alpha * Math.max(0, n.load - 1)) + LOAD_LATENCY_MS * n.load / Math.max(1, maxRequests(view, n, a.end - a.start))
      }
      const dist = new Map<Assignment, { d: number, prev?: Assignment }>()
      for (const a of cands) {
        let best: { d: number, prev?: Assignment } = { d: a.start === 0 ? lat(a) : Infinity }
        for (const [p, v] of dist) if (p.end === a.start && v.d + view.rttMs(p.peerId, a.peerId) + lat(a) < best.d) best = { d: v.d + view.rttMs(p.peerId, a.peerId) + lat(a), prev: p }
        dist.set(a, best)
      }
      let end: Assignment | undefined
      for (const [a, v] of dist) if (a.end === view.manifest.nLayers && v.d < Infinity && (end === undefined || v.d < (dist.get(end) as { d: number }).d)) end = a
      if (end === undefined) return undefined
      const hops: Assignment[] = []
      for (let a: Assignment | undefined = end; a !== undefined; a = dist.get(a)?.prev) hops.unshift(a)
      return hops
    }
  }
}
