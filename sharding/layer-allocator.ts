// The deterministic layer allocator every node runs over the replicated membership (no
// coordinator). Inputs are sorted by peer id first and every float is computed in that order,
// so every node derives identical assignments.
//
//   1. capacity: how many layers fit in a node's memory next to a KV-cache reserve;
//   2. pipelines: nodes that hold the whole model serve alone; the rest are grouped fast with
//      fast and near with near (by measured RTT) until each group can hold every layer;
//   3. leftovers (too few to complete another pipeline) become replicas of the layers where
//      the swarm is weakest (the router mixes ranges, so a replica adds capacity there);
//   4. stage order inside a pipeline minimizes the summed hop RTT;
//   5. water-filling: each stage gets layers in proportion to its measured speed under load
//      (t_i = loadedLayerMs: decode and prefill times both count; n_i = min(c_i, λ / t_i),
//      Σ n_i = L), so stage times are equal.
import type { Allocation, AllocateOptions, Assignment, LayerRange, Member, ModelManifest, NodeCapability } from './index.ts'
import { AllocationInputError } from './errors.ts'
import { DEFAULT_RTT_MS, KV_RESERVE_TOKENS, MEMORY_OVERHEAD_FRACTION, STAGE_ORDER_EXACT_LIMIT, WORKLOAD_BATCH, WORKLOAD_GEN_TOKENS, WORKLOAD_PROMPT_TOKENS } from './constants.ts'

const NEAR_MS = 40 // peers within this many ms of the nearest count as equally near
const ATTACH_LATENCY_SLACK = 0.15 // a leftover may slow its pipeline's tokens by this much

/** Layers of `manifest` that fit in a node's memory next to its KV reserve (≤ nLayers). */
export function layerCapacity (manifest: ModelManifest, capability: NodeCapability, options: AllocateOptions = {}): number {
  const perLayer = manifest.layerBytes[options.dtype ?? 'q4_0'] + (options.kvReserveTokens ?? KV_RESERVE_TOKENS) * manifest.kvBytesPerTokenPerLayer
  const usable = capability.memoryBytes * (1 - MEMORY_OVERHEAD_FRACTION)
  return Math.max(0, Math.min(manifest.nLayers, Math.floor(usable / perLayer)))
}

/**
 * Per-layer ms of one generated token under load: a decode step's weight read shared by a batch
 * of B sessions, each session's own compute, and its share of prompt prefill:
 * t_dec / B + t_pre · ((B − 1) / B + P / G). Decode-bound machines (Apple, CPUs) and
 * compute-bound ones (GPUs) are ranked by what they deliver when the swarm is busy.
 */
export function loadedLayerMs (capability: NodeCapability, options: AllocateOptions = {}): number {
  const w = options.workload ?? { promptTokens: WORKLOAD_PROMPT_TOKENS, genTokens: WORKLOAD_GEN_TOKENS, batch: WORKLOAD_BATCH }
  return capability.decodeLayerMs / w.batch + capability.prefillLayerMsPerToken * ((w.batch - 1) / w.batch + w.promptTokens / w.genTokens)
}

/**
 * Splits `total` layers over stages with capacities `caps` and per-layer times `times` so that
 * stage times n_i·t_i are as equal as capacity allows: n_i = min(c_i, λ/t_i), found by
 * bisection on λ, then integerized by floors plus largest remainders (ties to the lower index).
 * Returns counts summing to min(total, Σ caps).
 */
export function waterFill (caps: number[], times: number[], total: number): number[] {
  const sumCap = caps.reduce((a, c) => a + c, 0)
  const target = Math.min(total, sumCap)
  const filled = (lambda: number): number => caps.reduce((a, c, i) => a + Math.min(c, lambda / times[i]), 0)
  let lo = 0
  let hi = 1
  while (filled(hi) < target && hi < 1e30) hi *= 2
  for (let it = 0; it < 100; it++) {
    const mid = (lo + hi) / 2
    if (filled(mid) >= target) hi = mid
    else lo = mid
  }
  const exact = caps.map((c, i) => Math.min(c, hi / times[i]))
  const counts = exact.map((x) => Math.floor(x))
  let left = target - counts.reduce((a, n) => a + n, 0)
  const order = exact.map((x, i) => ({ i, r: x - Math.floor(x) })).sort((a, b) => b.r - a.r || a.i - b.i)
  while (left > 0) {
    let gave = false
    for (const { i } of order) {
      if (left === 0) break
      if (counts[i] < caps[i]) { counts[i]++; left--; gave = true }
    }
    if (!gave) break
  }
  return counts
}

/** Whether the ranges cover every layer in [0, nLayers). */
export function isCovered (ranges: LayerRange[], nLayers: number): boolean {
  const cover = new Uint8Array(nLayers)
  for (const r of ranges) for (let l = Math.max(0, r.start); l < Math.min(nLayers, r.end); l++) cover[l] = 1
  return cover.every((c) => c === 1)
}

/**
 * Modelled throughput under load (tokens/s): the weakest layer's summed service rate, Σ over
 * nodes covering it of 1000 / (layers_i · loadedLayerMs_i). 0 when a layer is uncovered.
 */
export function estimateTokensPerS (assignments: Assignment[], members: Member[], nLayers: number, options: AllocateOptions = {}): number {
  const t = new Map(members.map((m) => [m.peerId, loadedLayerMs(m.capability, options)]))
  const rate = new Float64Array(nLayers)
  for (const a of [...assignments].sort((x, y) => cmp(x.peerId, y.peerId))) {
    const ms = t.get(a.peerId)
    if (ms === undefined || a.end <= a.start) continue
    const r = 1000 / ((a.end - a.start) * ms)
    for (let l = a.start; l < a.end; l++) rate[l] += r
  }
  let min = Infinity
  for (let l = 0; l < nLayers; l++) min = Math.min(min, rate[l])
  return nLayers === 0 ? 0 : min
}

function cmp (a: string, b: string): number { return a < b ? -1 : a > b ? 1 : 0 }

interface Node { peerId: string, cap: number, t: number, dec: number }

function rttOf (options: AllocateOptions, a: string, b: string): number {
  return options.rttMs?.(a, b) ?? options.rttMs?.(b, a) ?? DEFAULT_RTT_MS
}

/** Stage order minimizing Σ hop RTT: every permutation for small groups, else nearest-neighbour. */
function orderStages (group: Node[], options: AllocateOptions): Node[] {
  if (group.length <= 2 || options.rttMs === undefined) return group
  const pathCost = (p: Node[]): number => p.reduce((a, n, i) => (i === 0 ? 0 : a + rttOf(options, p[i - 1].peerId, n.peerId)), 0)
  if (group.length <= STAGE_ORDER_EXACT_LIMIT) {
    let best = group
    let bestCost = pathCost(group)
    const permute = (prefix: Node[], rest: Node[]): void => {
      if (rest.length === 0) {
        const c = pathCost(prefix)
        if (c < bestCost) { best = prefix; bestCost = c }
        return
      }
      for (let i = 0; i < rest.length; i++) permute([...prefix, rest[i]], [...rest.slice(0, i), ...rest.slice(i + 1)])
    }
    permute([], group)
    return best
  }
  const out = [group[0]]
  const rest = group.slice(1)
  while (rest.length > 0) {
    const last = out[out.length - 1].peerId
    let bi = 0
    for (let i = 1; i < rest.length; i++) if (rttOf(options, last, rest[i].peerId) < rttOf(options, last, rest[bi].peerId)) bi = i
    out.push(rest.splice(bi, 1)[0])
  }
  return out
}

/** Stage time (ms per token at batch one) of a water-filled group, and its layer counts. */
function fill (group: Node[], L: number): { counts: number[], stageMs: number } {
  const counts = waterFill(group.map((n) => n.cap), group.map((n) => n.t), L)
  let stageMs = 0
  for (let i = 0; i < group.length; i++) stageMs = Math.max(stageMs, counts[i] * group[i].t)
  return { counts, stageMs }
}

function validate (manifest: ModelManifest, members: Member[]): void {
  if (!(manifest.nLayers > 0)) throw new AllocationInputError(`manifest has ${manifest.nLayers} layers`)
  const seen = new Set<string>()
  for (const m of members) {
    if (seen.has(m.peerId)) throw new AllocationInputError(`peer ${m.peerId} appears twice`)
    seen.add(m.peerId)
    const c = m.capability
    if (!(c.decodeLayerMs > 0) || !(c.prefillLayerMsPerToken > 0) || !(c.memoryBytes >= 0)) throw new AllocationInputError(`peer ${m.peerId} has an invalid capability`)
  }
}

/**
 * Forms pipelines fast-with-fast and near-with-near: the fastest unassigned node seeds a
 * pipeline, which grows by the fastest unassigned node among those within NEAR_MS of the
 * pipeline's nearest RTT, until it can hold every layer. A node that holds the model alone is a
 * pipeline by itself. Slow nodes end up together (the router uses them when fast chains are
 * busy) instead of adding a stage and a hop to every fast chain.
 */
function formGroups (nodes: Node[], L: number, options: AllocateOptions): { groups: Node[][], leftovers: Node[] } {
  const unassigned = [...nodes].sort((a, b) => a.t - b.t || cmp(a.peerId, b.peerId)) // fastest first
  let remaining = unassigned.reduce((a, n) => a + n.cap, 0)
  const groups: Node[][] = []
  while (remaining >= L && unassigned.length > 0) {
    const group = [unassigned.shift() as Node]
    let cap = group[0].cap
    while (cap < L) {
      const dist = unassigned.map((n) => Math.min(...group.map((g) => rttOf(options, g.peerId, n.peerId))))
      const nearest = Math.min(...dist)
      const bi = dist.findIndex((d) => d <= nearest + NEAR_MS) // unassigned is in speed order
      const n = unassigned.splice(bi, 1)[0]
      group.push(n)
      cap += n.cap
    }
    groups.push(group)
    remaining = unassigned.reduce((a, n) => a + n.cap, 0)
  }
  return { groups, leftovers: unassigned }
}

/** Per-layer service rates (tokens/s) of `assignments`, Σ 1000 / (layers_i · t_i), in peer order. */
function layerRates (assignments: Assignment[], members: Member[], L: number, options: AllocateOptions): Float64Array {
  const t = new Map(members.map((m) => [m.peerId, loadedLayerMs(m.capability, options)]))
  const rate = new Float64Array(L)
  for (const a of [...assignments].sort((x, y) => cmp(x.peerId, y.peerId))) {
    const ms = t.get(a.peerId)
    if (ms === undefined || a.end <= a.start) continue
    for (let l = a.start; l < a.end; l++) rate[l] += 1000 / ((a.end - a.start) * ms)
  }
  return rate
}

/** Whether ascending-sorted `a` beats `b` in max-min order (larger weakest layer, then next). */
function lexGreater (a: Float64Array, b: Float64Array): boolean {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i] > b[i]
  return false
}

/**
 * Adds `peerId` as a replica of the window of `cap` layers that leaves the per-layer rates best
 * in max-min order (weakest layer first, then the next weakest; ties to the lowest start). Used
 * for leftovers and for joiners between rebalances.
 */
export function placeReplica (assignments: Assignment[], members: Member[], peerId: string, cap: number, L: number, options: AllocateOptions = {}): Assignment[] {
  const m = members.find((x) => x.peerId === peerId)
  if (m === undefined || cap <= 0) return assignments
  const base = layerRates(assignments, members, L, options)
  const r = 1000 / (cap * loadedLayerMs(m.capability, options))
  let best = -1
  let bestKey: Float64Array | undefined
  for (let s = 0; s + cap <= L; s++) {
    const key = Float64Array.from(base)
    for (let l = s; l < s + cap; l++) key[l] += r
    key.sort()
    if (bestKey === undefined || lexGreater(key, bestKey)) { best = s; bestKey = key }
  }
  return best < 0 ? assignments : [...assignments, { peerId, start: best, end: best + cap }]
}

/** The allocation for `members` (any order: they are sorted by peer id first). */
export function allocate (manifest: ModelManifest, members: Member[], options: AllocateOptions = {}): Allocation {
  validate(manifest, members)
  const L = manifest.nLayers
  const sorted = members.filter((m) => m.leaving !== true).sort((a, b) => cmp(a.peerId, b.peerId))
  const nodes: Node[] = sorted.map((m) => ({ peerId: m.peerId, cap: layerCapacity(manifest, m.capability, options), t: loadedLayerMs(m.capability, options), dec: m.capability.decodeLayerMs })).filter((n) => n.cap > 0)
  const formed = formGroups(nodes, L, options)
  const groups = formed.groups.length > 0 ? formed.groups : formed.leftovers.length > 0 ? [formed.leftovers] : [] // partial coverage
  const layouts = new Map<string, { assignments: Assignment[], pipeline: string[], latencyMs: number }>()
  const layout = (g: Node[]): { assignments: Assignment[], pipeline: string[], latencyMs: number } => {
    const key = g.map((n) => n.peerId).join('\n')
    const hit = layouts.get(key)
    if (hit !== undefined) return hit
    const ordered = orderStages(g, options)
    const { counts } = fill(ordered, L)
    const out = { assignments: [] as Assignment[], pipeline: [] as string[], latencyMs: 0 }
    let start = 0
    for (let i = 0; i < ordered.length; i++) {
      if (counts[i] === 0) continue
      out.assignments.push({ peerId: ordered[i].peerId, start, end: start + counts[i] })
      if (out.pipeline.length > 0) out.latencyMs += rttOf(options, out.pipeline[out.pipeline.length - 1], ordered[i].peerId)
      out.pipeline.push(ordered[i].peerId)
      out.latencyMs += counts[i] * ordered[i].dec
      start += counts[i]
    }
    layouts.set(key, out)
    return out
  }
  let replicas: Assignment[] = []
  const all = (gs: Node[][], reps: Assignment[]): Assignment[] => [...gs.flatMap((g) => layout(g).assignments), ...reps]
  if (formed.groups.length > 0) {
    // leftovers (too few to complete a pipeline): join the pipeline where they raise modelled
    // throughput most without slowing its tokens by more than ATTACH_LATENCY_SLACK, or
    // replicate the weakest layers (the router mixes ranges) — whichever models better
    for (const n of formed.leftovers) {
      let bestScore = -1
      let bestGroups = groups
      let bestReplicas = replicas
      for (let g = 0; g < groups.length; g++) {
        const joined = [...groups[g], n]
        if (layout(joined).latencyMs > layout(groups[g]).latencyMs * (1 + ATTACH_LATENCY_SLACK)) continue
        const gs = groups.map((x, i) => (i === g ? joined : x))
        const score = estimateTokensPerS(all(gs, replicas), sorted, L, options)
        if (score > bestScore) { bestScore = score; bestGroups = gs; bestReplicas = replicas }
      }
      const reps = placeReplica(all(groups, replicas), sorted, n.peerId, n.cap, L, options).slice(all(groups, []).length)
      const score = estimateTokensPerS(all(groups, reps), sorted, L, options)
      if (score > bestScore) { bestGroups = groups; bestReplicas = reps }
      groups.splice(0, groups.length, ...bestGroups)
      replicas = bestReplicas
    }
  }
  const assignments = all(groups, replicas)
  const pipelines = groups.map((g) => layout(g).pipeline)
  assignments.sort((a, b) => cmp(a.peerId, b.peerId))
  return { assignments, pipelines, tokensPerS: estimateTokensPerS(assignments, sorted, L, options), covered: isCovered(assignments, L) }
}
