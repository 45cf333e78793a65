// Properties of the deterministic allocator over random memberships: every assignment is a
// valid range within the node's memory, coverage whenever capacity allows, and the same answer
// for the same membership in any order.
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { allocate, isCovered, layerCapacity, waterFill } from '../../sharding/index.ts'
import { testSeed } from '../seed.ts'
import { fakeRtt, membersArb, memoryFor, smallManifest } from './helpers.ts'

const seed = testSeed()
const runs = process.env.SHARDING_LONG === '1' ? 1000 : 100

describe(`layer allocator (TEST_SEED=${seed} npx vitest run test/sharding/layer-allocator.test.ts)`, () => {
  it('assignments are valid ranges that fit in memory, and cover every layer when capacity allows', () => {
    fc.assert(fc.property(fc.integer({ min: 1, max: 24 }).chain((L) => fc.tuple(fc.constant(L), membersArb(smallManifest(L)), fc.boolean())), ([L, members, withRtt]) => {
      const m = smallManifest(L)
      const a = allocate(m, members, withRtt ? { rttMs: fakeRtt } : {})
      const byId = new Map(members.map((x) => [x.peerId, x]))
      const seen = new Set<string>()
      for (const x of a.assignments) {
        expect(seen.has(x.peerId)).toBe(false)
        seen.add(x.peerId)
        expect(x.start).toBeGreaterThanOrEqual(0)
        expect(x.end).toBeLessThanOrEqual(L)
        expect(x.end).toBeGreaterThan(x.start)
        expect(x.end - x.start).toBeLessThanOrEqual(layerCapacity(m, byId.get(x.peerId)!.capability)) // memory invariant
      }
      const total = members.reduce((s, x) => s + layerCapacity(m, x.capability), 0)
      expect(a.covered).toBe(isCovered(a.assignments, L))
      if (total >= L) expect(a.covered).toBe(true)
      for (const p of a.pipelines) for (const id of p) expect(seen.has(id)).toBe(true)
    }), { seed, numRuns: runs })
  })

  it('the same membership in shuffled order gives the same allocation', () => {
    fc.assert(fc.property(fc.integer({ min: 1, max: 24 }).chain((L) => fc.tuple(fc.constant(L), membersArb(smallManifest(L)))), fc.array(fc.nat()), ([L, members], order) => {
      const m = smallManifest(L)
      const shuffled = members.map((x, i) => ({ x, k: order[i % Math.max(1, order.length)] ?? 0, i })).sort((p, q) => p.k - q.k || q.i - p.i).map((p) => p.x)
      expect(JSON.stringify(allocate(m, shuffled, { rttMs: fakeRtt }))).toBe(JSON.stringify(allocate(m, members, { rttMs: fakeRtt })))
    }), { seed, numRuns: runs })
  })

  it('water-filling gives layers in proportion to speed, within capacity', () => {
    expect(waterFill([100, 100], [1, 3], 40)).toEqual([30, 10])
    expect(waterFill([5, 100], [1, 3], 40)).toEqual([5, 35])
    fc.assert(fc.property(fc.array(fc.tuple(fc.nat(30), fc.double({ min: 0.01, max: 10, noNaN: true })), { minLength: 1, maxLength: 8 }), fc.integer({ min: 1, max: 80 }), (nodes, total) => {
      const counts = waterFill(nodes.map((n) => n[0]), nodes.map((n) => n[1]), total)
      counts.forEach((c, i) => { expect(c).toBeGreaterThanOrEqual(0); expect(c).toBeLessThanOrEqual(nodes[i][0]) })
      expect(counts.reduce((a, c) => a + c, 0)).toBe(Math.min(total, nodes.reduce((a, n) => a + n[0], 0)))
    }), { seed, numRuns: runs })
  })

  it('a node that holds the model alone serves it alone; faster nodes get more layers', () => {
    const m = smallManifest(12)
    const big = { peerId: 'big', capability: { decodeLayerMs: 1, prefillLayerMsPerToken: 0.1, memoryBytes: 1e12 } }
    expect(allocate(m, [big]).assignments).toEqual([{ peerId: 'big', start: 0, end: 12 }])
    const fast = { peerId: 'fast', capability: { decodeLayerMs: 1, prefillLayerMsPerToken: 0.1, memoryBytes: 1e12 } }
    const slow = { peerId: 'slow', capability: { decodeLayerMs: 3, prefillLayerMsPerToken: 0.3, memoryBytes: 1e12 } }
    const a = allocate(m, [{ ...fast, capability: { ...fast.capability, memoryBytes: memoryFor(m, 9) } }, { ...slow, capability: { ...slow.capability, memoryBytes: memoryFor(m, 9) } }])
    const f = a.assignments.find((x) => x.peerId === 'fast')!
    const s = a.assignments.find((x) => x.peerId === 'slow')!
    expect(f.end - f.start).toBeGreaterThan(s.end - s.start)
    expect(a.covered).toBe(true)
  })

  it('rejects a duplicated peer or an invalid capability with AllocationInputError', () => {
    const m = smallManifest(4)
    const p = { peerId: 'a', capability: { decodeLayerMs: 1, prefillLayerMsPerToken: 1, memoryBytes: 1e12 } }
    expect(() => allocate(m, [p, p])).toThrow(expect.objectContaining({ name: 'AllocationInputError' }))
    expect(() => allocate(m, [{ ...p, capability: { ...p.capability, decodeLayerMs: Number.NaN } }])).toThrow(expect.objectContaining({ name: 'AllocationInputError' }))
  })
})
