// Staggered rebalancing: orders the moves from the current assignment to a target so that no
// layer that is served now (and by the target) goes unserved while nodes reload. A moving node
// serves nothing until its new range is loaded. Moves run in waves; a wave starts when the
// previous one has landed. For up to MOVE_PLAN_EXACT_LIMIT moves every order is searched, so a
// layer is uncovered only when no order of moves avoids it; beyond that a greedy packing is used.
import type { Assignment, LayerRange, Move } from './index.ts'
import { MOVE_PLAN_EXACT_LIMIT } from './constants.ts'

function cmp (a: string, b: string): number { return a < b ? -1 : a > b ? 1 : 0 }

function add (count: Int32Array, r: LayerRange | null | undefined, d: number): void {
  if (r == null) return
  for (let l = Math.max(0, r.start); l < Math.min(count.length, r.end); l++) count[l] += d
}

/** Layers in `required` with no server in `count`. */
function holes (count: Int32Array, required: Uint8Array): number[] {
  const out: number[] = []
  for (let l = 0; l < count.length; l++) if (required[l] === 1 && count[l] <= 0) out.push(l)
  return out
}

/**
 * Waves of moves from `current` to `target` (both lists of assignments; a peer missing from
 * `target` drops its layers, a peer missing from `current` joins). Returns the waves and the
 * layers that had to go uncovered (empty when an order avoiding it exists, up to the exact limit).
 */
export function planMoves (current: Assignment[], target: Assignment[], nLayers: number): { waves: Move[][], uncovered: number[] } {
  const cur = new Map(current.map((a) => [a.peerId, a]))
  const tgt = new Map(target.map((a) => [a.peerId, a]))
  const moves: Move[] = []
  for (const id of [...new Set([...cur.keys(), ...tgt.keys()])].sort(cmp)) {
    const from = cur.get(id)
    const to = tgt.get(id)
    if (from !== undefined && to !== undefined && from.start === to.start && from.end === to.end) continue
    moves.push({ peerId: id, ...(from !== undefined ? { from: { start: from.start, end: from.end } } : {}), to: to !== undefined ? { start: to.start, end: to.end } : null })
  }
  // joins first (they only add coverage), drops last (they only remove it)
  const rank = (m: Move): number => (m.from === undefined ? 0 : m.to === null ? 2 : 1)
  moves.sort((a, b) => rank(a) - rank(b) || cmp(a.peerId, b.peerId))
  // required: layers served now and by the target
  const now = new Int32Array(nLayers)
  for (const a of current) add(now, a, 1)
  const then = new Int32Array(nLayers)
  for (const a of target) add(then, a, 1)
  const required = new Uint8Array(nLayers)
  for (let l = 0; l < nLayers; l++) required[l] = now[l] > 0 && then[l] > 0 ? 1 : 0

  const order = moves.length <= MOVE_PLAN_EXACT_LIMIT ? exactOrder(moves, now, required) : undefined
  return order !== undefined ? pack(order, now, required) : greedy(moves, now, required)
}

/** A sequence of single moves that never opens a hole, by depth-first search with memo. */
function exactOrder (moves: Move[], now: Int32Array, required: Uint8Array): Move[] | undefined {
  const n = moves.length
  const dead = new Set<number>()
  const count = Int32Array.from(now)
  const path: number[] = []
  const dfs = (done: number): boolean => {
    if (done === (1 << n) - 1) return true
    if (dead.has(done)) return false
    for (let i = 0; i < n; i++) {
      if ((done & (1 << i)) !== 0) continue
      add(count, moves[i].from, -1)
      const ok = holes(count, required).length === 0
      add(count, moves[i].to, 1)
      if (ok) {
        path.push(i)
        if (dfs(done | (1 << i))) return true
        path.pop()
      }
      add(count, moves[i].to, -1)
      add(count, moves[i].from, 1)
    }
    dead.add(done)
    return false
  }
  return dfs(0) ? path.map((i) => moves[i]) : undefined
}

/** Packs a safe sequence into waves: each wave takes the longest prefix safe to run at once. */
function pack (order: Move[], now: Int32Array, required: Uint8Array): { waves: Move[][], uncovered: number[] } {
  const waves: Move[][] = []
  const count = Int32Array.from(now)
  let i = 0
  while (i < order.length) {
    const wave: Move[] = []
    while (i < order.length) {
      add(count, order[i].from, -1)
      if (wave.length > 0 && holes(count, required).length > 0) { add(count, order[i].from, 1); break }
      wave.push(order[i++])
    }
    for (const m of wave) add(count, m.to, 1)
    waves.push(wave)
  }
  return { waves, uncovered: [] }
}

/** Greedy waves for large plans; when stuck, the move opening the fewest holes goes alone. */
function greedy (moves: Move[], now: Int32Array, required: Uint8Array): { waves: Move[][], uncovered: number[] } {
  const waves: Move[][] = []
  const uncovered = new Set<number>()
  const count = Int32Array.from(now)
  let pending = [...moves]
  while (pending.length > 0) {
    const wave: Move[] = []
    const rest: Move[] = []
    for (const m of pending) {
      add(count, m.from, -1)
      if (holes(count, required).length === 0) wave.push(m)
      else { add(count, m.from, 1); rest.push(m) }
    }
    if (wave.length === 0) {
      let best = 0
      let bestHoles: number[] | undefined
      for (let i = 0; i < rest.length; i++) {
        add(count, rest[i].from, -1)
        const h = holes(count, required)
        add(count, rest[i].from, 1)
        if (bestHoles === undefined || h.length < bestHoles.length) { best = i; bestHoles = h }
      }
      for (const l of bestHoles ?? []) uncovered.add(l)
      add(count, rest[best].from, -1)
      wave.push(rest.splice(best, 1)[0])
    }
    for (const m of wave) add(count, m.to, 1)
    waves.push(wave)
    pending = rest
  }
  return { waves, uncovered: [...uncovered].sort((a, b) => a - b) }
}

/** What a node sees of a plan when it is about to give up layers (node/allocation.ts builds it). */
export interface PlanView {
  waves: Move[][]
  /** Layers the plan cannot keep covered (planMoves' `uncovered`). */
  uncovered: number[]
  /** What each member's record says it serves (the plan starts here). */
  served: Assignment[]
  /** This node's answer: every member's target. */
  target: Assignment[]
  /** The target each member publishes for itself (its own answer; a pinned node: what it serves). */
  published: Assignment[]
}

/** May the node stop serving these layers now? If not, why: its move waits for a wave, or layers lack a holder. */
export type GiveUpVerdict = { ok: true } | { ok: false, reason: 'later-wave' } | { ok: false, reason: 'no-holder', layers: number[] }

function sameRange (a: LayerRange | undefined, b: LayerRange | undefined): boolean {
  return a === undefined ? b === undefined : b !== undefined && a.start === b.start && a.end === b.end
}

/**
 * Whether `peerId` may stop serving `layers` now (a drain, or switching to its new range), judged
 * on a plan computed just now. Its move must be in wave 0 (or the plan has none for it), and each
 * given-up layer the target still needs must keep a holder: another member that serves it, does
 * not move before this move lands (no move, or a later wave) and publishes itself the target this
 * plan gives it — so it is not about to leave by a plan of its own (targets changed on its side:
 * new RTTs, a join, a leave). A layer the plan itself cannot keep covered (`uncovered`, e.g. a swap
 * under tight memory) and that nobody holds through this wave needs no holder. planMoves puts a
 * move in wave 0 only when such holders exist, so on an agreed plan this adds only the agreement.
 */
export function mayGiveUp (plan: PlanView, peerId: string, layers: readonly number[]): GiveUpVerdict {
  const waveOf = (id: string): number => plan.waves.findIndex((wave) => wave.some((m) => m.peerId === id))
  if (waveOf(peerId) > 0) return { ok: false, reason: 'later-wave' }
  const rangeOf = (list: Assignment[], id: string): Assignment | undefined => list.find((a) => a.peerId === id)
  const missing: number[] = []
  for (const l of layers) {
    if (!plan.target.some((a) => a.start <= l && l < a.end)) continue // the target drops it anyway
    const stay = plan.served.filter((a) => a.peerId !== peerId && a.start <= l && l < a.end && waveOf(a.peerId) !== 0)
    if (stay.some((a) => sameRange(rangeOf(plan.target, a.peerId), rangeOf(plan.published, a.peerId)))) continue
    if (stay.length === 0 && plan.uncovered.includes(l)) continue // no order avoids this hole
    missing.push(l)
  }
  return missing.length === 0 ? { ok: true } : { ok: false, reason: 'no-holder', layers: missing }
}
