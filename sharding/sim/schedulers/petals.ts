// Petals, from ../shared/research/anchors-serving.md §2.1 (petals server/block_selection.py,
// server/throughput.py, client/routing/sequence_manager.py):
// - num_blocks = floor((memory − autograd reserve) / (block bytes + KV for 16 384 tokens));
// - throughput = min(forward_rps / ((num_blocks + 1) / 2), network_rps), network_rps =
//   min(up, down) bits/s / (hidden · 16);
// - a joining server waits U(0, 10) s, then takes the window whose sorted per-block throughput
//   vector is lexicographically smallest (servers summed in peer-id order);
// - every U(0, 120) s each server runs should_choose_other_blocks: remove itself, re-place, simulate
//   everyone re-placing (shuffled) until nobody moves, and move if initial / new < 0.75;
// - records of crashed servers linger until their DHT entry expires (update period 60 s → 60–120 s);
// - clients route with Dijkstra on min latency: rtt/2 + 18 ms per server entered, 1 / inference_rps
//   per block, +10 s where the advertised cache cannot hold the session; no load term;
// - a failed span is re-routed and its history replayed.
import type { Assignment, Move } from '../../index.ts'
import type { NodeView, Scheduler, SwarmView } from '../index.ts'

const ATTN_CACHE_TOKENS = 16_384
const AUTOGRAD_RESERVE_BYTES = 2 * 2 ** 30 // × hidden / 14336
const JOIN_DELAY_MAX_MS = 10_000 // 2 · mean_block_selection_delay (5 s)
const BALANCE_CHECK_MAX_MS = 120_000 // 2 · mean_balance_check_period (60 s)
const BALANCE_QUALITY = 0.75
const EPS = 1e-3
const SERIALIZATION_MS = 18
const CACHE_PENALTY_MS = 10_000
const UPDATE_PERIOD_MS = 60_000
const MAX_SIMULATION_ROUNDS = 20

interface Server { id: string, start: number, end: number, throughput: number }

function numBlocks (view: SwarmView, n: NodeView, bytesPerLayer: number): number {
  const m = view.manifest
  const kvPerBlock = (2 * m.dim * ATTN_CACHE_TOKENS / (m.nHeads / m.nKvHeads)) * 2
  const reserve = AUTOGRAD_RESERVE_BYTES * m.dim / 14336
  return Math.max(0, Math.min(m.nLayers, Math.floor((n.measured.memoryBytes - reserve) / (bytesPerLayer + kvPerBlock))))
}

function throughputOf (view: SwarmView, n: NodeView, blocks: number): number {
  const forwardRps = 1000 / n.measured.prefillLayerMsPerToken
  const networkRps = (Math.min(n.upMbps, n.downMbps) * 1e6) / (view.manifest.dim * 16)
  return Math.min(forwardRps / ((blocks + 1) / 2), networkRps)
}

/** Per-block summed throughput, servers added in peer-id order. */
function blockThroughput (servers: Server[], L: number): Float64Array {
  const t = new Float64Array(L)
  for (const s of [...servers].sort((a, b) => (a.id < b.id ? -1 : 1))) for (let b = s.start; b < s.end; b++) t[b] += s.throughput
  return t
}

/**
 * choose_best_blocks: the start whose sorted window vector is lexicographically smallest (ties
 * to the lowest start). The window's sorted values slide along with one removal and one insertion.
 */
function chooseStart (t: Float64Array, n: number): number {
  if (n >= t.length) return 0
  const win = Float64Array.from(t.subarray(0, n)).sort()
  const best = Float64Array.from(win)
  let bestStart = 0
  for (let i = 1; i + n <= t.length; i++) {
    // drop t[i - 1], insert t[i + n - 1], keeping `win` sorted
    let at = lowerBound(win, t[i - 1])
    win.copyWithin(at, at + 1)
    const x = t[i + n - 1]
    at = lowerBound(win.subarray(0, n - 1), x)
    win.copyWithin(at + 1, at, n - 1)
    win[at] = x
    for (let k = 0; k < n; k++) {
      if (win[k] === best[k]) continue
      if (win[k] < best[k]) { best.set(win); bestStart = i }
      break
    }
  }
  return bestStart
}

function lowerBound (a: Float64Array, x: number): number {
  let lo = 0
  let hi = a.length
  while (lo < hi) {
    const mid = (lo + hi) >> 1
    if (a[mid] < x) lo = mid + 1
    else hi = mid
  }
  return lo
}

export function petalsScheduler (options: { dtype?: 'q4_0' | 'q8_0' | 'f16' } = {}): Scheduler {
  const dtype = options.dtype ?? 'q4_0'
  const pendingJoins = new Map<string, number>() // id → time it picks its blocks
  const nextCheck = new Map<string, number>()

  const servers = (view: SwarmView): Server[] => view.nodes.filter((n) => n.range !== undefined && !n.leaving).map((n) => {
    const r = n.range as { start: number, end: number }
    return { id: n.id, start: r.start, end: r.end, throughput: throughputOf(view, n, r.end - r.start) }
  })

  const place = (view: SwarmView, n: NodeView, others: Server[]): Server | undefined => {
    const blocks = numBlocks(view, n, view.manifest.layerBytes[dtype])
    if (blocks === 0) return undefined
    const start = chooseStart(blockThroughput(others, view.manifest.nLayers), blocks)
    return { id: n.id, start, end: start + blocks, throughput: throughputOf(view, n, blocks) }
  }

  /** should_choose_other_blocks for server `self`. */
  const shouldMove = (view: SwarmView, self: NodeView, all: Server[]): Server | undefined => {
    const L = view.manifest.nLayers
    const me = all.find((s) => s.id === self.id)
    if (me === undefined) return undefined
    const t = blockThroughput(all, L)
    const initial = Math.min(...t)
    const others = all.filter((s) => s.id !== self.id)
    const without = blockThroughput(others, L)
    for (let b = me.start; b < me.end; b++) without[b] = t[b] - me.throughput * (1 + EPS)
    if (initial > 0 && without.some((x) => x <= 0)) return undefined // would disconnect the swarm
    const start = chooseStart(without, me.end - me.start)
    if (start === me.start) return undefined
    // simulate everyone re-placing greedily until nobody moves
    const sim = [...others, { ...me, start, end: start + (me.end - me.start) }].sort((a, b) => (a.id < b.id ? -1 : 1))
    const tt = blockThroughput(sim, L)
    for (let round = 0; round < MAX_SIMULATION_ROUNDS; round++) {
      let moved = false
      const order = [...sim]
      for (let i = order.length - 1; i > 0; i--) { const j = Math.floor(view.rng() * (i + 1)); [order[i], order[j]] = [order[j], order[i]] }
      for (const s of order) {
        for (let x = s.start; x < s.end; x++) tt[x] -= s.throughput
        const len = s.end - s.start
        const st = chooseStart(tt, len)
        if (st !== s.start) { s.start = st; s.end = st + len; moved = true }
        for (let x = s.start; x < s.end; x++) tt[x] += s.throughput
      }
      if (!moved) break
    }
    const after = Math.min(...tt)
    return initial / after < BALANCE_QUALITY - EPS ? { ...me, start, end: start + (me.end - me.start) } : undefined
  }

  return {
    name: 'petals',
    recovery: 'replay',
    crashDetectMs: 1.5 * UPDATE_PERIOD_MS, // DHT expiry: uniform over 60–120 s after the last announce
    loadRefreshMs: UPDATE_PERIOD_MS, // cache_tokens_left is announced every update period
    servesWhileLeaving: false,
    kvBytesFactor: 0.5, // PyTorch attention cache in f16
    tickMs: 1000,
    plan (view, event) {
      const moves: Move[] = []
      if (event.type === 'init') {
        // servers start one after another, each seeing those already announced (JOINING)
        let placed: Server[] = []
        for (const n of view.nodes) {
          const s = place(view, n, placed)
          if (s === undefined) continue
          placed = [...placed, s]
          moves.push({ peerId: n.id, to: { start: s.start, end: s.end } })
          nextCheck.set(n.id, view.now + view.rng() * BALANCE_CHECK_MAX_MS)
        }
        return [moves]
      }
      if (event.type === 'join') pendingJoins.set(event.id, view.now + view.rng() * JOIN_DELAY_MAX_MS)
      if (event.type !== 'tick') return undefined
      for (const [id, at] of [...pendingJoins].sort((a, b) => a[1] - b[1])) {
        if (at > view.now) continue
        pendingJoins.delete(id)
        const n = view.nodes.find((x) => x.id === id)
        if (n === undefined || n.leaving) continue
        const s = place(view, n, servers(view))
        if (s === undefined) continue
        moves.push({ peerId: id, to: { start: s.start, end: s.end } })
        nextCheck.set(id, view.now + view.rng() * BALANCE_CHECK_MAX_MS)
      }
      if (moves.length > 0) return [moves] // a join's choice lands before anyone rebalances
      for (const n of view.nodes) {
        const at = nextCheck.get(n.id)
        if (at === undefined || at > view.now || n.leaving || !n.serving) continue
        nextCheck.set(n.id, view.now + view.rng() * BALANCE_CHECK_MAX_MS)
        const to = shouldMove(view, n, servers(view))
        if (to !== undefined) return [[{ peerId: n.id, to: { start: to.start, end: to.end } }]]
      }
      return undefined
    },
    route (view, request, exclude) {
      const m = view.manifest
      const L = m.nLayers
      const live = view.nodes.filter((n) => n.serving && n.range !== undefined && !exclude.has(n.id))
        .sort((a, b) => (a.range as Assignment).end - (b.range as Assignment).end || (a.id < b.id ? -1 : 1))
      const rtt = (a: string, b: string): number => Math.min(5000, view.rttMs(a, b))
      const penalty = (n: NodeView, layers: number): number =>
        (request.promptTokens + request.genTokens) * layers * m.kvBytesPerTokenPerLayer > n.freeKvBytes ? CACHE_PENALTY_MS : 0
      const dist: number[] = []
      const prev: number[] = []
      const entry: number[] = []
      for (let i = 0; i < live.length; i++) {
        const r = live[i].range as { start: number, end: number }
        dist.push(Infinity); prev.push(-1); entry.push(0)
        if (r.start === 0) {
          dist[i] = rtt(request.client, live[i].id) / 2 + SERIALIZATION_MS + penalty(live[i], r.end) + r.end * live[i].measured.decodeLayerMs
        }
        for (let j = 0; j < i; j++) {
          const pe = (live[j].range as { end: number }).end
          if (!(dist[j] < Infinity) || pe < r.start || pe >= r.end) continue
          const d = dist[j] + rtt(live[j].id, live[i].id) / 2 + SERIALIZATION_MS + penalty(live[i], r.end - pe) + (r.end - pe) * live[i].measured.decodeLayerMs
          if (d < dist[i]) { dist[i] = d; prev[i] = j; entry[i] = pe }
        }
      }
      let end = -1
      let best = Infinity
      for (let i = 0; i < live.length; i++) {
        if ((live[i].range as { end: number }).end !== L) continue
        const d = dist[i] + rtt(live[i].id, request.client) / 2
        if (d < best) { best = d; end = i }
      }
      if (end < 0) return undefined
      const hops: Assignment[] = []
      for (let i = end; i >= 0; i = prev[i]) hops.unshift({ peerId: live[i].id, start: entry[i], end: (live[i].range as { end: number }).end })
      return hops
    }
  }
}
