// The swarm's layer allocation for our model, derived from the replicated swarm state: every
// node runs the same deterministic allocator (sharding/) over the same records and so gets the
// same answer; each one then publishes only its own part (`layers` in its node record — each
// writer writes only its own namespace). Nothing here is stored as a shared value.
//
// Membership: online writers whose record offers the same model (manifest id) in the same dtype
// with valid measured figures, sorted by peer id. A `--layers auto` node publishes two ranges:
// `layers` is what it SERVES (loaded and answering: routing and the staggered waves read it) and
// the `layersTarget` capability ("start:end", "" for none) is the allocator's range for it. Current
// ranges for rebalancing (hysteresis: rebalance keeps a covering assignment) are the targets, so a
// half-done move is never "kept" as if it were the goal; the waves are planned from the served
// ranges to the target, so a wave starts only once the one before it really landed. A record
// without `layersTarget` (a pinned `--layers a:b` node) counts its `layers` as both, and is
// pinned: rebalancing keeps it there and plans the others around it. RTTs: what the
// members publish about each other (`rttMs:<peer>` capabilities, the mean when both sides
// measured) — never this node's own probe table, which other nodes cannot see.
import type { Logger } from 'pino'
import type { NodeRecord, SwarmState } from '../crdt/index.ts'
import { allocate, planMoves, rebalance } from '../sharding/index.ts'
import type { Allocation, Assignment, LayerRange, Member, ModelManifest, Move } from '../sharding/index.ts'
import type { WeightDType } from '../engine/index.ts'
import { ALLOCATION_DEBOUNCE_MS, ALLOCATION_INTERVAL_MS, RTT_CAPABILITY_PREFIX } from './constants.ts'
import type { NodeRecordPublisher } from './node-record.ts'

/** One allocation pass, as `{"cmd":"allocation"}` shows it. */
export interface AllocationView {
  model: string
  dtype: WeightDType
  nLayers: number
  /** Peer ids of the members, sorted. */
  members: string[]
  assignments: Assignment[]
  pipelines: string[][]
  tokensPerS: number
  covered: boolean
  /** 'allocate' when no member had a range yet, else 'rebalance' (kept: hysteresis held). */
  mode: 'allocate' | 'rebalance'
  kept: boolean
  /** The staggered moves from the served ranges to this allocation (the serving path follows them). */
  waves: Move[][]
  /** Layers no order of those moves keeps covered (planMoves' `uncovered`; empty as a rule). */
  uncovered: number[]
  /** What each member's record says it serves (the waves start here). */
  served: Assignment[]
  /** The target each member publishes itself (`layersTarget`; a pinned node: what it serves). */
  published: Assignment[]
  /** Members pinned to what they serve (`--layers a:b`: no `layersTarget`), sorted; never moved. */
  pinned: string[]
  /** This node's range, or null when the allocation gives it none. */
  self: LayerRange | null
  computedAt: number
}

function positive (x: unknown): x is number { return typeof x === 'number' && Number.isFinite(x) && x > 0 }

/** The capability naming the allocator's range for a `--layers auto` node ("start:end", "" for none). */
export const LAYERS_TARGET_CAPABILITY = 'layersTarget'

/** "start:end" for a range, "" for none (the `layersTarget` capability's text). */
export function targetText (range: LayerRange | null): string {
  return range === null ? '' : `${range.start}:${range.end}`
}

function validRange (r: { start: number, end: number }, nLayers: number): boolean {
  return Number.isInteger(r.start) && Number.isInteger(r.end) && r.start >= 0 && r.start < r.end && r.end <= nLayers
}

/** The range a record serves for the model (its `layers` entry), if any. */
export function servedFromRecord (rec: NodeRecord | undefined, manifest: ModelManifest): LayerRange | undefined {
  const range = rec?.layers.find((l) => l.model === manifest.id && validRange(l, manifest.nLayers))
  return range === undefined ? undefined : { start: range.start, end: range.end }
}

/** The allocator's range a record names (`layersTarget`): null for none, undefined when not published or malformed. */
export function targetFromRecord (rec: NodeRecord | undefined, manifest: ModelManifest): LayerRange | null | undefined {
  const t = rec?.capabilities[LAYERS_TARGET_CAPABILITY]
  if (typeof t !== 'string') return undefined
  if (t === '') return null
  const m = /^(\d{1,6}):(\d{1,6})$/.exec(t)
  if (m === null) return undefined
  const r = { start: Number(m[1]), end: Number(m[2]) }
  return validRange(r, manifest.nLayers) ? r : undefined
}

/** The members offering `model` in `dtype`, sorted by peer id, with their published ranges. */
export function membersFromRecords (nodes: ReadonlyMap<string, NodeRecord>, online: readonly string[], manifest: ModelManifest, dtype: WeightDType): Member[] {
  const out: Member[] = []
  for (const peerId of [...new Set(online)].sort()) {
    const rec = nodes.get(peerId)
    const c = rec?.capabilities
    if (c === undefined || c.model !== manifest.id || c.dtype !== dtype) continue
    if (!positive(c.decodeLayerMs) || !positive(c.prefillLayerMsPerToken) || typeof c.memoryBytes !== 'number' || !(c.memoryBytes >= 0)) continue
    // the target when published (null: none), else what it serves
    const target = targetFromRecord(rec, manifest)
    const range = target === undefined ? servedFromRecord(rec, manifest) : target ?? undefined
    out.push({
      peerId,
      capability: {
        decodeLayerMs: c.decodeLayerMs,
        prefillLayerMsPerToken: c.prefillLayerMsPerToken,
        memoryBytes: c.memoryBytes,
        ...(positive(c.bandwidthBytesPerS) ? { bandwidthBytesPerS: c.bandwidthBytesPerS } : {})
      },
      ...(range !== undefined ? { current: { start: range.start, end: range.end } } : {}),
      // no target published: it does not follow the allocator (`--layers a:b`), so it stays put
      ...(target === undefined && range !== undefined ? { pinned: true } : {})
    })
  }
  return out
}

/** RTT between two members from their published measurements (mean of both sides when both measured). */
export function rttFromRecords (nodes: ReadonlyMap<string, NodeRecord>): (a: string, b: string) => number | undefined {
  const said = (from: string, to: string): number | undefined => {
    const v = nodes.get(from)?.capabilities[`${RTT_CAPABILITY_PREFIX}${to}`]
    return typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : undefined
  }
  return (a, b) => {
    const x = said(a, b)
    const y = said(b, a)
    return x !== undefined && y !== undefined ? (x + y) / 2 : x ?? y
  }
}

/** The allocation every node derives from these records (a pure function of its inputs). */
export function computeAllocation (manifest: ModelManifest, dtype: WeightDType, nodes: ReadonlyMap<string, NodeRecord>, online: readonly string[], self: string, now: number): AllocationView {
  const members = membersFromRecords(nodes, online, manifest, dtype)
  const options = { dtype, rttMs: rttFromRecords(nodes) }
  let allocation: Allocation
  let mode: AllocationView['mode'] = 'allocate'
  let kept = false
  let waves: Move[][] = []
  let uncovered: number[] = []
  const served = members.flatMap((m) => {
    const r = servedFromRecord(nodes.get(m.peerId), manifest)
    return r === undefined ? [] : [{ peerId: m.peerId, ...r }]
  })
  if (members.length === 0) {
    allocation = { assignments: [], pipelines: [], tokensPerS: 0, covered: false }
  } else if (members.every((m) => m.current === undefined)) {
    allocation = allocate(manifest, members, options)
  } else {
    const plan = rebalance(manifest, members, options)
    allocation = plan.target
    mode = 'rebalance'
    kept = plan.kept
    // from what the members serve now (not their targets) to the target: a move waits for the
    // moves before it to have really landed
    const moves = planMoves(served, allocation.assignments, manifest.nLayers)
    waves = moves.waves
    uncovered = moves.uncovered
  }
  const mine = allocation.assignments.find((a) => a.peerId === self)
  return {
    model: manifest.id,
    dtype,
    nLayers: manifest.nLayers,
    members: members.map((m) => m.peerId),
    assignments: allocation.assignments,
    pipelines: allocation.pipelines,
    tokensPerS: allocation.tokensPerS,
    covered: allocation.covered,
    mode,
    kept,
    waves,
    uncovered,
    served,
    published: members.flatMap((m) => (m.current === undefined ? [] : [{ peerId: m.peerId, ...m.current }])),
    pinned: members.filter((m) => m.pinned === true).map((m) => m.peerId),
    self: mine === undefined ? null : { start: mine.start, end: mine.end },
    computedAt: now
  }
}

export interface Allocator {
  current: () => AllocationView | undefined
  /** Runs a pass now (tests, the control socket). */
  refresh: () => AllocationView
  stop: () => void
}

/**
 * Recomputes on every swarm-state change (debounced) and on a timer, publishes this node's range
 * in its node record when it changes, and logs an `allocation` event when the assignment does.
 */
export function startAllocator (init: {
  state: SwarmState
  self: string
  manifest: ModelManifest
  dtype: WeightDType
  record: NodeRecordPublisher
  log: Logger
  beforePass?: () => void
  /** `--layers a:b`: the record says that range (and no target). */
  pinned?: { start: number, end: number }
  /**
   * The range this node serves now (`--layers auto`: the serving path loads the allocator's
   * range, then says so and calls `refresh`). Given: the record's `layers` is this and the
   * allocator's range goes in the `layersTarget` capability. Without it the allocator's range is
   * published as served at once (the waves then collapse after one pass).
   */
  served?: () => LayerRange | null
}): Allocator {
  const { state, self, manifest, dtype, record, log } = init
  let view: AllocationView | undefined
  let published = ''
  let logged = ''
  let debounce: ReturnType<typeof setTimeout> | undefined

  const pass = (): AllocationView => {
    init.beforePass?.()
    // Our own record as we are writing it (the replica has it once the write is applied; while
    // our writes wait for peers' copy of our chain, this keeps us in our own membership).
    const nodes = new Map(state.nodes())
    nodes.set(self, record.current())
    const next = computeAllocation(manifest, dtype, nodes, [...state.online(), self], self, Date.now())
    view = next
    const text = JSON.stringify(next.assignments)
    if (text !== logged) {
      logged = text
      log.info({ event: 'allocation', model: manifest.id, dtype, members: next.members.length, covered: next.covered, mode: next.mode, kept: next.kept, tokensPerS: next.tokensPerS, self: next.self, assignments: next.assignments }, 'layer allocation changed')
    }
    // `--layers a:b` pins what this node serves: the record says that range, not the allocator's
    // (clients route from records, and a stage answers only the range it loaded)
    const range = init.pinned ?? (init.served !== undefined ? init.served() : next.self)
    const target = init.pinned === undefined && init.served !== undefined ? targetText(next.self) : undefined
    const mine = JSON.stringify([range, target])
    if (mine !== published) {
      published = mine
      record.setLayers(range === null ? [] : [{ model: manifest.id, start: range.start, end: range.end }], target)
    }
    return next
  }
  const schedule = (): void => {
    if (debounce !== undefined) return
    debounce = setTimeout(() => { debounce = undefined; pass() }, ALLOCATION_DEBOUNCE_MS)
  }
  const unsubscribe = state.onChange(schedule)
  const timer = setInterval(pass, ALLOCATION_INTERVAL_MS)
  pass()
  return {
    current: () => view,
    refresh: pass,
    stop: () => {
      unsubscribe()
      clearInterval(timer)
      if (debounce !== undefined) clearTimeout(debounce)
    }
  }
}
