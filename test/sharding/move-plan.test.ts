// Staggered moves: when some order of single moves keeps every currently served layer covered,
// the planner's waves do too (checked against a search over every order on small cases).
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import type { Assignment, Move } from '../../sharding/index.ts'
import { planMoves } from '../../sharding/index.ts'
import { testSeed } from '../seed.ts'

const seed = testSeed()
const runs = process.env.SHARDING_LONG === '1' ? 1000 : 150

const L = 8
const rangeArb = fc.tuple(fc.nat(L - 1), fc.integer({ min: 1, max: L })).map(([s, n]) => ({ start: s, end: Math.min(L, s + n) }))
const caseArb = fc.array(fc.tuple(fc.option(rangeArb, { nil: undefined }), fc.option(rangeArb, { nil: undefined })), { minLength: 1, maxLength: 7 })
  .map((pairs) => ({
    current: pairs.flatMap(([c], i) => (c !== undefined ? [{ peerId: `p${i}`, ...c }] : [])),
    target: pairs.flatMap(([, t], i) => (t !== undefined ? [{ peerId: `p${i}`, ...t }] : []))
  }))

function count (as: Array<{ start: number, end: number }>): number[] {
  const c = new Array<number>(L).fill(0)
  for (const a of as) for (let l = a.start; l < a.end; l++) c[l]++
  return c
}

/** Layers served now and by the target: the ones that must never go dark. */
function required (current: Assignment[], target: Assignment[]): boolean[] {
  const a = count(current)
  const b = count(target)
  return a.map((x, l) => x > 0 && b[l] > 0)
}

function moves (current: Assignment[], target: Assignment[]): Move[] {
  const ids = [...new Set([...current, ...target].map((a) => a.peerId))]
  return ids.flatMap((id) => {
    const f = current.find((a) => a.peerId === id)
    const t = target.find((a) => a.peerId === id)
    if (f !== undefined && t !== undefined && f.start === t.start && f.end === t.end) return []
    return [{ peerId: id, ...(f !== undefined ? { from: f } : {}), to: t ?? null }]
  })
}

/** Brute force: does some order of single moves keep the required layers covered? */
function someSafeOrder (ms: Move[], current: Assignment[], req: boolean[]): boolean {
  const serving = (done: Set<number>, moving: number): Array<{ start: number, end: number }> => {
    const out: Array<{ start: number, end: number }> = []
    ms.forEach((m, i) => {
      if (i === moving) return
      if (done.has(i)) { if (m.to !== null) out.push(m.to) } else if (m.from !== undefined) out.push(m.from)
    })
    const movingIds = new Set(ms.map((m) => m.peerId))
    for (const a of current) if (!movingIds.has(a.peerId)) out.push(a)
    return out
  }
  const dfs = (done: Set<number>): boolean => {
    if (done.size === ms.length) return true
    for (let i = 0; i < ms.length; i++) {
      if (done.has(i)) continue
      const c = count(serving(done, i))
      if (req.every((r, l) => !r || c[l] > 0) && dfs(new Set([...done, i]))) return true
    }
    return false
  }
  return dfs(new Set())
}

describe(`move planner (TEST_SEED=${seed} npx vitest run test/sharding/move-plan.test.ts)`, () => {
  it('never uncovers a layer when an order of moves avoids it, and ends at the target', () => {
    fc.assert(fc.property(caseArb, ({ current, target }) => {
      const plan = planMoves(current, target, L)
      const ms = moves(current, target)
      const req = required(current, target)
      if (someSafeOrder(ms, current, req)) expect(plan.uncovered).toEqual([])
      // replay the waves: during each wave the wave's nodes serve nothing
      const state = new Map(current.map((a) => [a.peerId, { start: a.start, end: a.end }]))
      const applied = new Set<string>()
      for (const wave of plan.waves) {
        const during = [...state].filter(([id]) => !wave.some((m) => m.peerId === id)).map(([, r]) => r)
        const c = count(during)
        if (plan.uncovered.length === 0) req.forEach((r, l) => { if (r) expect(c[l]).toBeGreaterThan(0) })
        for (const m of wave) {
          applied.add(m.peerId)
          if (m.to === null) state.delete(m.peerId)
          else state.set(m.peerId, m.to)
        }
      }
      expect(applied.size).toBe(ms.length)
      expect([...state].map(([id, r]) => ({ peerId: id, ...r })).sort((a, b) => (a.peerId < b.peerId ? -1 : 1))).toEqual([...target].sort((a, b) => (a.peerId < b.peerId ? -1 : 1)))
    }), { seed, numRuns: runs })
  })

  it('a swap of two halves with no spare node must go uncovered; with a spare it need not', () => {
    const current = [{ peerId: 'a', start: 0, end: 4 }, { peerId: 'b', start: 4, end: 8 }]
    const target = [{ peerId: 'a', start: 4, end: 8 }, { peerId: 'b', start: 0, end: 4 }]
    expect(planMoves(current, target, 8).uncovered.length).toBeGreaterThan(0)
    const spare = [...current, { peerId: 'c', start: 0, end: 8 }]
    const plan = planMoves(spare, [...target, { peerId: 'c', start: 0, end: 8 }], 8)
    expect(plan.uncovered).toEqual([])
    expect(plan.waves.length).toBe(1) // the spare serves every layer while both halves reload
  })
})
