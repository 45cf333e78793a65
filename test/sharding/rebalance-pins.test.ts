// Pinned members (`--layers a:b`) never move: rebalance keeps each at its range in every target,
// plans no move for it, and covers the rest of the model with the other members around it.
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import type { Member } from '../../sharding/index.ts'
import { allocate, rebalance } from '../../sharding/index.ts'
import { memberArb, memoryFor, smallManifest } from './helpers.ts'
import { testSeed } from '../seed.ts'

const m = smallManifest(16)
const seed = testSeed()
const node = (id: string, layers: number, decodeLayerMs = 1): Member => ({ peerId: id, capability: { decodeLayerMs, prefillLayerMsPerToken: decodeLayerMs / 10, memoryBytes: memoryFor(m, layers) } })

describe('rebalance with pinned members', () => {
  it('a joiner fills the layers a pin leaves open instead of moving the pin', () => {
    // an allocation that ignores the pin puts p elsewhere (a pipeline a [0, 8) → p [8, 16))
    const p: Member = { ...node('p', 16), current: { start: 0, end: 8 }, pinned: true }
    const a = node('a', 8)
    expect(allocate(m, [p, a]).assignments.find((x) => x.peerId === 'p')).not.toEqual({ peerId: 'p', start: 0, end: 8 })
    const r = rebalance(m, [p, a])
    expect(r.target.assignments).toEqual([{ peerId: 'a', start: 8, end: 16 }, { peerId: 'p', start: 0, end: 8 }])
    expect(r.target.covered).toBe(true)
    expect(r.waves.flat().map((x) => x.peerId)).toEqual(['a'])
  })

  it('only pins: the target is what they serve, and nothing moves', () => {
    const pins = [{ ...node('x', 4), current: { start: 0, end: 5 }, pinned: true }, { ...node('y', 16), current: { start: 3, end: 16 }, pinned: true }]
    const r = rebalance(m, pins)
    expect(r.target.assignments).toEqual([{ peerId: 'x', start: 0, end: 5 }, { peerId: 'y', start: 3, end: 16 }])
    expect(r.waves).toEqual([])
  })

  it(`on random swarms: pins keep their ranges, never move, and the model stays covered whenever the others could cover it alone (seed ${seed}; TEST_SEED=${seed} npx vitest run test/sharding/rebalance-pins.test.ts)`, () => {
    const rangeArb = fc.integer({ min: 0, max: m.nLayers - 1 }).chain((start) => fc.integer({ min: start + 1, max: m.nLayers }).map((end) => ({ start, end })))
    const memberCase = fc.record({ member: memberArb(m), role: fc.constantFrom('pinned', 'placed', 'new'), range: rangeArb })
    const caseArb = fc.uniqueArray(memberCase, { minLength: 1, maxLength: 10, selector: (x) => x.member.peerId })
    fc.assert(fc.property(caseArb, (cases) => {
      const members: Member[] = cases.map(({ member, role, range }) => (role === 'new' ? member : { ...member, current: range, ...(role === 'pinned' ? { pinned: true } : {}) }))
      const r = rebalance(m, members)
      const pins = members.filter((x) => x.pinned === true)
      for (const pin of pins) {
        expect(r.target.assignments.filter((x) => x.peerId === pin.peerId)).toEqual([{ peerId: pin.peerId, ...pin.current }])
        expect(r.waves.flat().some((x) => x.peerId === pin.peerId)).toBe(false)
      }
      const free = members.filter((x) => x.pinned !== true)
      if (free.length > 0 && allocate(m, free).covered) expect(r.target.covered).toBe(true)
      // every node derives the same plan from the same members in any order
      expect(JSON.stringify(rebalance(m, [...members].reverse()))).toBe(JSON.stringify(r))
    }), { seed, numRuns: 150 })
  })
})
