// The discrete-event swarm simulator. One event loop over virtual milliseconds; all randomness
// from the scenario's seed (the world: machines, arrivals, churn — drawn up front so every
// scheduler faces the same ones) and a separate seeded stream for the scheduler.
//
// One file on purpose (longer than the house ~300 lines): the event handlers are closures over
// one shared state (nodes, requests, waves, coverage, the view); split apart they would pass
// that state around and be harder to read top to bottom.
//
// Model (README.md has the full list of assumptions):
// - A node serves one contiguous range. Work reaching it queues; when idle it runs everything
//   queued as one batch iteration, prefill chunked to PREFILL_CHUNK_TOKENS per iteration: decode items cost t_dec · (maxLayers + α · (Σ layers − maxLayers)),
//   prefill items tokens · layers · t_pre (α = t_pre / t_dec: a batched token costs a prefill
//   token). A session holds KV (tokens · kvBytes · layers) on each hop from admission to its end;
//   a node admits only while its free memory (after weights) holds it, else the work waits.
// - Each generated token crosses client → hop 1 → … → hop k → client; a hop costs RTT/2 +
//   bytes / min(upload, download). Links are not shared (no contention).
// - A moving node serves nothing until its new range is loaded (bytes / disk bandwidth + 2 s);
//   sessions on it fail. A crash fails its sessions; clients notice after FAIL_DETECT_MS and
//   recover as the scheduler says (replay history to a new chain, or restart / give up).
import type { Assignment, Move } from '../index.ts'
import type { Hardware, NodeView, Scenario, Scheduler, SchedulerEvent, SimRequest, SimResult, SwarmView } from './index.ts'
import { EventQueue } from './event-queue.ts'
import { hardwareRttMs, nodeSpeed } from './hardware.ts'
import { createRng, exponential, logNormal, normal } from './random.ts'
import { createMetrics } from './metrics.ts'

const FAIL_DETECT_MS = 1000 // a client notices a dead hop (stream reset / keep-alive)
const RETRY_MS = 1000 // wait before routing again when nothing is available
const LOAD_OVERHEAD_MS = 2000 // process start-up on top of reading weights
const LEAVE_GRACE_MS = 60_000 // a gracefully leaving node is gone after this
const MAX_RESTARTS = 10 // Parallax's HTTP layer retries a request this often before streaming
const MEASURE_NOISE = 0.03 // relative error of a node's self-measurement
const CLIENT_MBPS = 100
const SESSION_EWMA = 0.1 // smoothing of a node's mean session duration
const STEP_EWMA = 0.5 // smoothing of a node's published decode time, per report
/** Prefill tokens per batch iteration (chunked prefill, as SGLang/vLLM/llama.cpp servers do). */
const PREFILL_CHUNK_TOKENS = 256

interface Hop { node: SimNode, start: number, end: number, pending: number, admitted: boolean, kvBytes: number, admittedAt: number }

interface Req {
  sim: SimRequest
  arrival: number
  region: number
  accessMs: number
  hops: Hop[]
  epoch: number
  generated: number
  firstTokenAt?: number
  lastTokenAt?: number
  state: 'routing' | 'running' | 'done' | 'failed'
  exclude: Set<string>
  restarts: number
}

interface Item { req: Req, epoch: number, hop: number, tokens: number, left?: number, at?: number }

interface SimNode {
  id: string
  hw: Hardware
  tDec: number
  tPre: number
  view: NodeView
  alive: boolean
  detectedDead: boolean
  leaving: boolean
  accepts: boolean
  range?: { start: number, end: number }
  state: 'idle' | 'loading' | 'serving'
  loadToken: number
  loadWave: number
  kvUsed: number
  reqs: Set<Req>
  admitted: number
  waiting: Item[]
  queue: Item[]
  busy: boolean
  batchToken: number
  busyMs: number
  stepLayerMs: number
  sojournSum: number
  sojournCount: number
  maxBatch: number
}

/** Runs `scheduler` through `scenario`; the same scenario and seed give the same result. */
export function simulate (scenario: Scenario, scheduler: Scheduler, options: { detail?: boolean } = {}): SimResult {
  const world = createRng(scenario.seed)
  const schedRng = createRng((scenario.seed ^ 0x5bd1e995) >>> 0)
  const q = new EventQueue()
  // the scheduler's system holds KV in its own dtype; everything below sees that manifest
  const m = { ...scenario.manifest, kvBytesPerTokenPerLayer: scenario.manifest.kvBytesPerTokenPerLayer * scheduler.kvBytesFactor }
  const L = m.nLayers
  const layerBytes = m.layerBytes[scenario.dtype]
  const hiddenBytesPerToken = m.dim * 2 // f16 hidden states on the wire, for every scheduler
  const metrics = createMetrics(scenario)
  const nodes = new Map<string, SimNode>()
  const clients = new Map<string, { region: number, accessMs: number }>()
  let nodeSeq = 0
  let moves = 0

  // ---- machines and the network ----
  const makeNode = (hw: Hardware): SimNode => {
    const id = `n${String(nodeSeq++).padStart(4, '0')}`
    const s = nodeSpeed(hw, m, scenario.dtype)
    const noise = (): number => 1 + MEASURE_NOISE * normal(world)
    const view: NodeView = {
      id,
      measured: { decodeLayerMs: s.decodeLayerMs * noise(), prefillLayerMsPerToken: s.prefillLayerMsPerToken * noise(), memoryBytes: hw.memoryBytes, bandwidthBytesPerS: (hw.upMbps * 1e6) / 8 },
      nominal: { tflops: hw.nominalTflops, bandwidthGBs: hw.nominalBandwidthGBs, memoryBytes: hw.memoryBytes },
      serving: false,
      leaving: false,
      load: 0,
      queued: 0,
      meanSessionMs: 0,
      stepLayerMs: 0,
      freeKvBytes: 0,
      upMbps: hw.upMbps,
      downMbps: hw.downMbps
    }
    return { id, hw, tDec: s.decodeLayerMs, tPre: s.prefillLayerMsPerToken, view, alive: true, detectedDead: false, leaving: false, accepts: true, state: 'idle', loadToken: 0, loadWave: -1, kvUsed: 0, reqs: new Set(), admitted: 0, waiting: [], queue: [], busy: false, batchToken: 0, busyMs: 0, stepLayerMs: 0, sojournSum: 0, sojournCount: 0, maxBatch: 0 }
  }
  const where = (id: string): { region: number, accessMs: number } => nodes.get(id)?.hw ?? clients.get(id) ?? { region: 0, accessMs: 10 }
  const rttMs = (a: string, b: string): number => hardwareRttMs(where(a), where(b))
  const upMbps = (id: string): number => nodes.get(id)?.hw.upMbps ?? CLIENT_MBPS
  const downMbps = (id: string): number => nodes.get(id)?.hw.downMbps ?? CLIENT_MBPS
  const bandwidthBytesPerS = (a: string, b: string): number => (Math.min(upMbps(a), downMbps(b)) * 1e6) / 8
  const sendMs = (a: string, b: string, bytes: number): number => rttMs(a, b) / 2 + (bytes / bandwidthBytesPerS(a, b)) * 1000
  const kvCapacity = (n: SimNode): number => (n.range === undefined ? 0 : n.hw.memoryBytes - (n.range.end - n.range.start) * layerBytes)

  // ---- the scheduler's view ----
  let view: SwarmView | undefined
  const dirty = (): void => { view = undefined }
  const advertise = (n: SimNode): void => {
    n.view.load = n.admitted + n.waiting.length // sessions running plus sessions waiting for KV
    n.view.queued = n.waiting.length
    // the mean over the decode tokens since the last report, smoothed; none → the figure fades
    n.stepLayerMs = n.sojournCount > 0 ? n.stepLayerMs + STEP_EWMA * (n.sojournSum / n.sojournCount - n.stepLayerMs) : n.stepLayerMs * 0.5
    n.sojournSum = 0
    n.sojournCount = 0
    n.view.stepLayerMs = n.stepLayerMs
    n.view.freeKvBytes = Math.max(0, kvCapacity(n) - n.kvUsed)
  }
  const getView = (): SwarmView => {
    if (view !== undefined) return view
    const list: NodeView[] = []
    for (const n of [...nodes.values()].sort((a, b) => (a.id < b.id ? -1 : 1))) {
      if (n.detectedDead || (!n.alive && n.leaving)) continue // gone, as far as the scheduler knows
      n.view.range = n.range
      n.view.serving = n.alive ? n.state === 'serving' && n.accepts : n.state === 'serving' // a crash not yet noticed still looks served
      n.view.leaving = n.leaving
      if (scheduler.loadRefreshMs === 0) advertise(n)
      list.push(n.view)
    }
    view = { now: q.now, manifest: m, nodes: list, rttMs, bandwidthBytesPerS, hiddenBytesPerToken, rng: schedRng, slo: { ttftMs: scenario.sloTtftMs, tokenMs: scenario.sloTokenMs } }
    return view
  }
  const notify = (event: SchedulerEvent): void => {
    const waves = scheduler.plan(getView(), event)
    if (waves !== undefined) applyPlan(waves)
  }

  // ---- coverage ----
  let uncoveredSince: number | undefined
  const coverage = (): void => {
    const cover = new Uint8Array(L)
    for (const n of nodes.values()) {
      if (!n.alive || !n.accepts || n.state !== 'serving' || n.range === undefined) continue
      for (let l = n.range.start; l < n.range.end; l++) cover[l] = 1
    }
    const covered = cover.every((c) => c === 1)
    if (!covered && uncoveredSince === undefined) uncoveredSince = q.now
    if (covered && uncoveredSince !== undefined) { metrics.uncovered(uncoveredSince, q.now); uncoveredSince = undefined }
    dirty()
  }

  // ---- moves ----
  let waves: Move[][] = []
  let waveToken = 0
  let wavePending = 0
  const applyPlan = (plan: Move[][]): void => {
    waves = plan.map((w) => [...w])
    waveToken++
    wavePending = 0
    startWave()
  }
  const startWave = (): void => {
    while (waves.length > 0 && wavePending === 0) {
      const wave = waves.shift() as Move[]
      const token = waveToken
      for (const mv of wave) {
        const n = nodes.get(mv.peerId)
        if (n === undefined || !n.alive) continue
        if (mv.to === null) {
          if (n.leaving) { n.accepts = false; maybeDepart(n) } else { failAll(n); n.range = undefined; n.state = 'idle' }
          continue
        }
        if (n.range !== undefined && n.range.start === mv.to.start && n.range.end === mv.to.end && n.state !== 'idle') continue
        failAll(n)
        moves++
        n.range = { start: mv.to.start, end: mv.to.end }
        n.state = 'loading'
        n.kvUsed = 0
        n.admitted = 0
        const lt = ++n.loadToken
        n.loadWave = token
        wavePending++
        const ms = ((mv.to.end - mv.to.start) * layerBytes) / (n.hw.diskGBs * 1e9) * 1000 + LOAD_OVERHEAD_MS
        q.after(ms, () => {
          if (!n.alive || n.loadToken !== lt) return
          n.state = 'serving'
          advertise(n)
          coverage()
          if (token === waveToken && --wavePending === 0) { notify({ type: 'landed' }); startWave() }
        })
      }
      coverage()
    }
  }
  const nodeGone = (n: SimNode): void => {
    // a node in the current wave that dies never lands: do not wait for it
    if (n.state === 'loading' && n.loadWave === waveToken && wavePending > 0) { n.loadToken++; if (--wavePending === 0) startWave() }
  }

  // ---- requests ----
  const release = (req: Req, keep?: Set<Hop>): void => {
    for (const h of req.hops) {
      if (keep?.has(h) === true) continue
      h.node.reqs.delete(req)
      if (h.admitted) {
        h.node.kvUsed -= h.kvBytes
        h.node.admitted--
        h.admitted = false
        const v = h.node.view
        const d = q.now - h.admittedAt
        v.meanSessionMs = v.meanSessionMs === 0 ? d : v.meanSessionMs + SESSION_EWMA * (d - v.meanSessionMs)
        admitWaiting(h.node)
      }
      maybeDepart(h.node)
    }
  }
  const finish = (req: Req, state: 'done' | 'failed'): void => {
    req.state = state
    req.epoch++
    release(req)
    req.hops = []
    clients.delete(req.sim.client)
    if (state === 'failed') metrics.failed(req)
    else metrics.completed(req)
  }
  const route = (req: Req): void => {
    if (req.state === 'done' || req.state === 'failed') return
    const chain = scheduler.route(getView(), req.sim, req.exclude)
    if (chain === undefined || chain.length === 0) { q.after(RETRY_MS, () => route(req)); return }
    const same = (h: Hop, a: Assignment): boolean => h.node.id === a.peerId && h.start === a.start && h.end === a.end && h.admitted
    const keep = new Set(req.hops.filter((h) => chain.some((a) => same(h, a))))
    release(req, keep)
    const hops: Hop[] = chain.map((a: Assignment) => {
      const reuse = [...keep].find((h) => same(h, a))
      if (reuse !== undefined) return reuse
      const n = nodes.get(a.peerId) as SimNode
      n.reqs.add(req)
      return { node: n, start: a.start, end: a.end, pending: req.sim.promptTokens + req.generated, admitted: false, admittedAt: 0, kvBytes: (req.sim.promptTokens + req.sim.genTokens) * m.kvBytesPerTokenPerLayer * (a.end - a.start) }
    })
    req.hops = hops
    req.state = 'running'
    sendTo(req, 0, req.sim.client)
  }
  const fail = (req: Req, n: SimNode): void => {
    if (req.state !== 'running') return
    for (const h of req.hops) {
      if (h.node !== n) continue
      n.reqs.delete(req)
      if (h.admitted) { n.kvUsed -= h.kvBytes; n.admitted--; h.admitted = false }
    }
    req.epoch++
    req.exclude.add(n.id)
    req.state = 'routing'
    q.after(FAIL_DETECT_MS, () => {
      if (req.state !== 'routing') return
      if (scheduler.recovery === 'restart') {
        if (req.generated > 0 || req.restarts >= MAX_RESTARTS) { finish(req, 'failed'); return }
        req.restarts++
        release(req)
        req.hops = []
      }
      route(req)
    })
  }
  const failAll = (n: SimNode): void => {
    for (const req of [...n.reqs]) fail(req, n)
    n.waiting = []
    n.queue = []
    n.busy = false
    n.batchToken++
  }
  const sendTo = (req: Req, hop: number, from: string): void => {
    const h = req.hops[hop]
    const tokens = h.pending > 0 ? h.pending : 1
    const bytes = tokens * (hop === 0 ? 4 : hiddenBytesPerToken)
    const item: Item = { req, epoch: req.epoch, hop, tokens }
    q.after(sendMs(from, h.node.id, bytes), () => arrive(h.node, item))
  }
  const arrive = (n: SimNode, item: Item): void => {
    const req = item.req
    if (item.epoch !== req.epoch) return
    const h = req.hops[item.hop]
    if (!n.alive || n.state !== 'serving' || n.range === undefined || n.range.start > h.start || n.range.end !== h.end) { fail(req, n); return }
    if (!h.admitted) {
      if (!n.accepts) { fail(req, n); return }
      if (h.kvBytes > kvCapacity(n)) { fail(req, n); return }
      if (n.waiting.length > 0 || n.kvUsed + h.kvBytes > kvCapacity(n)) { n.waiting.push(item); return }
      admit(n, h)
    }
    enqueue(n, item)
  }
  const admit = (n: SimNode, h: Hop): void => {
    h.admitted = true
    h.admittedAt = q.now
    n.kvUsed += h.kvBytes
    n.admitted++
    if (scheduler.loadRefreshMs === 0) dirty()
  }
  const admitWaiting = (n: SimNode): void => {
    if (scheduler.loadRefreshMs === 0) dirty()
    while (n.waiting.length > 0) {
      const item = n.waiting[0]
      if (item.epoch !== item.req.epoch) { n.waiting.shift(); continue }
      const h = item.req.hops[item.hop]
      if (n.kvUsed + h.kvBytes > kvCapacity(n)) break
      n.waiting.shift()
      admit(n, h)
      enqueue(n, item)
    }
  }
  const enqueue = (n: SimNode, item: Item): void => {
    item.at = q.now
    n.queue.push(item)
    if (!n.busy) runBatch(n)
  }
  const runBatch = (n: SimNode): void => {
    const live = n.queue.filter((it) => it.epoch === it.req.epoch)
    if (live.length === 0) { n.queue = []; n.busy = false; return }
    n.busy = true
    const alpha = Math.min(1, n.tPre / n.tDec)
    let maxL = 0
    let sumL = 0
    let prefill = 0
    let budget = PREFILL_CHUNK_TOKENS
    const batch: Item[] = [] // items that finish this iteration
    const rest: Item[] = [] // prefills with tokens left for later iterations
    for (const it of live) {
      const h = it.req.hops[it.hop]
      const layers = h.end - h.start
      if (it.tokens === 1) { maxL = Math.max(maxL, layers); sumL += layers; batch.push(it); continue }
      const take = Math.min(budget, it.left ?? it.tokens)
      budget -= take
      prefill += take * layers * n.tPre
      it.left = (it.left ?? it.tokens) - take
      if (it.left === 0) batch.push(it); else rest.push(it)
    }
    n.queue = rest
    const ms = (maxL > 0 ? n.tDec * (maxL + alpha * (sumL - maxL)) : 0) + prefill
    if (q.now >= scenario.warmupMs) n.busyMs += ms
    n.maxBatch = Math.max(n.maxBatch, batch.length + rest.length)
    const token = ++n.batchToken
    q.after(ms, () => {
      if (!n.alive || n.batchToken !== token) return
      let sojourn = 0 // Σ per-layer time decode tokens of this batch spent here
      let decoded = 0
      for (const it of batch) {
        if (it.epoch !== it.req.epoch) continue
        const req = it.req
        const h = req.hops[it.hop]
        if (it.tokens === 1) { sojourn += (q.now - (it.at ?? q.now)) / (h.end - h.start); decoded++ }
        h.pending = 0
        if (it.hop + 1 < req.hops.length) sendTo(req, it.hop + 1, n.id)
        else {
          const epoch = req.epoch
          q.after(sendMs(n.id, req.sim.client, 4), () => { if (req.epoch === epoch) deliverToken(req) })
        }
      }
      n.sojournSum += sojourn
      n.sojournCount += decoded
      runBatch(n)
    })
  }
  const deliverToken = (req: Req): void => {
    const now = q.now
    req.generated++
    if (req.firstTokenAt === undefined) req.firstTokenAt = now
    else if (req.lastTokenAt !== undefined) metrics.gap(req, now - req.lastTokenAt, now)
    metrics.token(req, now)
    req.lastTokenAt = now
    if (req.generated >= req.sim.genTokens) { finish(req, 'done'); return }
    sendTo(req, 0, req.sim.client)
  }

  // ---- churn ----
  const maybeDepart = (n: SimNode): void => {
    if (n.alive && n.leaving && !n.accepts && n.reqs.size === 0) depart(n)
  }
  const depart = (n: SimNode): void => {
    if (!n.alive) return
    nodeGone(n)
    n.alive = false
    failAll(n)
    coverage()
  }
  const join = (hw: Hardware, lifetime: number, crash: boolean): void => {
    const n = makeNode(hw)
    nodes.set(n.id, n)
    dirty()
    if (scenario.meanLifetimeMs > 0) q.after(lifetime, () => (crash ? crashNode(n) : leave(n)))
    notify({ type: 'join', id: n.id })
  }
  const crashNode = (n: SimNode): void => {
    if (!n.alive) return
    depart(n)
    q.after(scheduler.crashDetectMs, () => { n.detectedDead = true; dirty(); notify({ type: 'crash', id: n.id }) })
  }
  const leave = (n: SimNode): void => {
    if (!n.alive) return
    n.leaving = true
    if (!scheduler.servesWhileLeaving) n.accepts = false
    coverage()
    notify({ type: 'leave', id: n.id })
    maybeDepart(n)
    q.after(LEAVE_GRACE_MS, () => depart(n))
  }

  // ---- the world, drawn up front ----
  const initial = scenario.hardware.map((hw) => ({ hw, lifetime: exponential(world, scenario.meanLifetimeMs || 1), crash: world() < scenario.crashShare }))
  const joins: Array<{ t: number, hw: Hardware, lifetime: number, crash: boolean }> = []
  if (scenario.joinsPerS > 0) {
    for (let t = exponential(world, 1000 / scenario.joinsPerS); t < scenario.durationMs; t += exponential(world, 1000 / scenario.joinsPerS)) {
      joins.push({ t, hw: scenario.joinMix(world), lifetime: exponential(world, scenario.meanLifetimeMs), crash: world() < scenario.crashShare })
    }
  }
  const arrivals: Array<{ t: number, P: number, G: number, region: number, accessMs: number }> = []
  for (let t = exponential(world, 1000 / scenario.requestsPerS); t < scenario.durationMs; t += exponential(world, 1000 / scenario.requestsPerS)) {
    const p = scenario.prompt
    const g = scenario.generation
    arrivals.push({
      t,
      P: Math.round(logNormal(world, p.median, p.sigma, p.min, p.max)),
      G: Math.round(logNormal(world, g.median, g.sigma, g.min, g.max)),
      region: scenario.clientRegions[Math.floor(world() * scenario.clientRegions.length)],
      accessMs: scenario.clientAccessMs
    })
  }

  for (const x of initial) {
    const n = makeNode(x.hw)
    nodes.set(n.id, n)
    if (scenario.meanLifetimeMs > 0) q.at(x.lifetime, () => (x.crash ? crashNode(n) : leave(n)))
  }
  coverage()
  notify({ type: 'init' })
  for (const j of joins) q.at(j.t, () => join(j.hw, j.lifetime, j.crash))
  arrivals.forEach((a, i) => {
    q.at(a.t, () => {
      const client = `c${i}`
      clients.set(client, { region: a.region, accessMs: a.accessMs })
      const req: Req = { sim: { id: i, client, arrivedAt: a.t, promptTokens: a.P, genTokens: a.G }, arrival: a.t, region: a.region, accessMs: a.accessMs, hops: [], epoch: 0, generated: 0, state: 'routing', exclude: new Set(), restarts: 0 }
      metrics.arrived(req)
      route(req)
    })
  })
  if (scheduler.loadRefreshMs > 0) {
    const refresh = (): void => { for (const n of nodes.values()) advertise(n); dirty(); q.after(scheduler.loadRefreshMs, refresh) }
    q.at(0, refresh)
  }
  if (scheduler.tickMs > 0) {
    const tick = (): void => { notify({ type: 'tick' }); q.after(scheduler.tickMs, tick) }
    q.at(scheduler.tickMs, tick)
  }
  q.run(scenario.durationMs)
  if (uncoveredSince !== undefined) metrics.uncovered(uncoveredSince, scenario.durationMs)
  const result = metrics.result(scheduler.name, moves, q.processed)
  if (options.detail === true) {
    const windowMs = scenario.durationMs - scenario.warmupMs
    result.nodes = [...nodes.values()].map((n) => ({ id: n.id, model: n.hw.model, range: n.range, alive: n.alive, busyShare: n.busyMs / windowMs, maxBatch: n.maxBatch, admitted: n.admitted, waiting: n.waiting.length }))
  }
  return result
}

export type { Req as SimRequestState }
