// Rebalancing on join, leave and crash, with hysteresis. Every node runs this over the same
// replicated membership (each member's current range included) and gets the same plan.
//
// - If the current assignment still covers every layer, joiners are slotted in where the swarm
//   is weakest (the window whose weakest layer gains most) and nobody else moves — unless a fresh
//   allocation models at least REBALANCE_MIN_GAIN more throughput.
// - If coverage is broken (a crash) or a member is leaving, the fresh allocation is the target.
// - Moves are staggered by planMoves so that no layer goes uncovered when an order avoids it;
//   a leaving member keeps serving until the wave that replaces it has landed.
import type { AllocateOptions, Allocation, Assignment, Member, ModelManifest, Rebalance } from './index.ts'
import { allocate, estimateTokensPerS, isCovered, layerCapacity, placeReplica } from './layer-allocator.ts'
import { planMoves } from './move-plan.ts'
import { REBALANCE_MIN_GAIN } from './constants.ts'

function cmp (a: string, b: string): number { return a < b ? -1 : a > b ? 1 : 0 }

function asAllocation (assignments: Assignment[], members: Member[], L: number, options: AllocateOptions): Allocation {
  const sorted = [...assignments].sort((a, b) => cmp(a.peerId, b.peerId))
  return { assignments: sorted, pipelines: [], tokensPerS: estimateTokensPerS(sorted, members, L, options), covered: isCovered(sorted, L) }
}

/** The target allocation for `members` and the staggered moves to reach it. */
export function rebalance (manifest: ModelManifest, members: Member[], options: AllocateOptions & { minGain?: number } = {}): Rebalance {
  const L = manifest.nLayers
  const sorted = [...members].sort((a, b) => cmp(a.peerId, b.peerId))
  const current: Assignment[] = sorted.filter((m) => m.current !== undefined).map((m) => ({ peerId: m.peerId, start: m.current!.start, end: m.current!.end }))
  const staying = sorted.filter((m) => m.leaving !== true)
  const stayingIds = new Set(staying.map((m) => m.peerId))
  const kept = current.filter((a) => stayingIds.has(a.peerId))
  const fresh = allocate(manifest, staying, options)
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
