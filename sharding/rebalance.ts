// Rebalancing on join, leave and crash, with hysteresis. Every node runs this over the same
// replicated membership (each member's current range included) and gets the same plan.
//
// - If the current assignment still covers every layer, joiners are slotted in where the swarm
//   is weakest (the window whose weakest layer gains most) and nobody else moves — unless a fresh
//   allocation models at least REBALANCE_MIN_GAIN more throughput.
// - If coverage is broken (a crash) or a member is leaving, the fresh allocation is the target.
// - Moves are staggered by planMoves so that no layer goes uncovered when an order avoids it;
//   a leaving member keeps serving until the wave that replaces it has landed.
// - A pinned member (`--layers a:b`) keeps its range in every target: the fresh allocation is
//   then the better of the others' own allocation beside the pins and the pins with each other
//   member added where the swarm is weakest (which fills the layers no pin covers first).
import type { AllocateOptions, Allocation, Assignment, Member, ModelManifest, Rebalance } from './index.ts'
import { allocate, estimateTokensPerS, isCovered, layerCapacity, placeReplica } from './layer-allocator.ts'
import { planMoves } from './move-plan.ts'
import { REBALANCE_MIN_GAIN } from './constants.ts'

function cmp (a: string, b: string): number { return a < b ? -1 : a > b ? 1 : 0 }

function asAllocation (assignments: Assignment[], members: Member[], L: number, options: AllocateOptions, pipelines: string[][] = []): Allocation {
  const sorted = [...assignments].sort((a, b) => cmp(a.peerId, b.peerId))
  return { assignments: sorted, pipelines, tokensPerS: estimateTokensPerS(sorted, members, L, options), covered: isCovered(sorted, L) }
}

const isPinned = (m: Member): boolean => m.pinned === true && m.current !== undefined

/**
 * The fresh allocation when some members are pinned (`staying` sorted by peer id, leavers out):
 * (a) the unpinned members' own allocation with the pinned ranges beside it as replicas, or
 * (b) the pinned ranges with each unpinned member in turn placed as a replica of its weakest
 * window (max-min, so layers no pin covers come first). Covered beats uncovered, then modelled
 * throughput; ties go to (a), whose pipelines the allocator formed.
 */
function allocateAroundPins (manifest: ModelManifest, staying: Member[], options: AllocateOptions): Allocation {
  const L = manifest.nLayers
  const pins: Assignment[] = staying.filter(isPinned).map((m) => ({ peerId: m.peerId, start: m.current!.start, end: m.current!.end }))
  const free = staying.filter((m) => !isPinned(m))
  const own = free.length > 0 ? allocate(manifest, free, options) : undefined
  const beside = asAllocation([...(own?.assignments ?? []), ...pins], staying, L, options, own?.pipelines ?? [])
  let filled = pins
  for (const m of free) filled = placeReplica(filled, staying, m.peerId, layerCapacity(manifest, m.capability, options), L, options)
  const around = asAllocation(filled, staying, L, options)
  if (beside.covered !== around.covered) return beside.covered ? beside : around
  return around.tokensPerS > beside.tokensPerS ? around : beside
}

/** The target allocation for `members` and the staggered moves to reach it. */
export function rebalance (manifest: ModelManifest, members: Member[], options: AllocateOptions & { minGain?: number } = {}): Rebalance {
  const L = manifest.nLayers
  const sorted = [...members].sort((a, b) => cmp(a.peerId, b.peerId))
  const current: Assignment[] = sorted.filter((m) => m.current !== undefined).map((m) => ({ peerId: m.peerId, start: m.current!.start, end: m.current!.end }))
  const staying = sorted.filter((m) => m.leaving !== true)
  const stayingIds = new Set(staying.map((m) => m.peerId))
  const kept = current.filter((a) => stayingIds.has(a.peerId))
  const fresh = staying.some(isPinned) ? allocateAroundPins(manifest, staying, options) : allocate(manifest, staying, options)
  const minGain = options.minGain ?? REBALANCE_MIN_GAIN

  let target = fresh
  let keptCurrent = false
  if (isCovered(kept, L)) {
    let incremental = kept
    for (const j of staying.filter((m) => m.current === undefined)) {
      const cap = layerCapacity(manifest, j.capability, options)
      if (cap > 0) incremental = placeReplica(incremental, staying, j.peerId, cap, L, options)
    }
    const inc = asAllocation(incremental, staying, L, options)
    if (fresh.tokensPerS < inc.tokensPerS * (1 + minGain)) {
      target = inc
      keptCurrent = incremental.length === kept.length && kept.length === current.length
    }
  }
  const { waves, uncovered } = planMoves(current, target.assignments, L)
  return { target, waves, kept: keptCurrent, uncoveredDuringMoves: uncovered }
}
