// Pair schedules: both orders by the same judges, a judge never judges its own answers, ≈ 3n
// ordered comparisons per judge slot, weight-0 never judges, same round id → same schedule.
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { schedulePairs, type Answer } from '../../consensus/index.ts'
import { testSeed } from '../seed.ts'

const seed = testSeed()
const answersOf = (n: number, authors: number): Answer[] => Array.from({ length: n }, (_, i) => ({ id: `ans${i}`, author: `node${i % authors}` }))
const judgesOf = (n: number): Array<{ id: string, weight: number }> => Array.from({ length: n }, (_, i) => ({ id: `node${i}`, weight: 1 + (i % 3) }))

describe(`pair schedule (TEST_SEED=${seed} npx vitest run test/consensus/pair-schedule.test.ts)`, () => {
  it('every pair is judged in both orders by the same judges, never by an author of either answer', () => {
    fc.assert(fc.property(fc.integer({ min: 2, max: 32 }), fc.integer({ min: 1, max: 40 }), fc.integer({ min: 1, max: 48 }), fc.integer({ min: 1, max: 5 }), fc.string(), (n, authors, judges, perPair, round) => {
      const answers = answersOf(n, authors)
      const s = schedulePairs({ round, answers, judges: judgesOf(judges), judgesPerPair: perPair })
      const author = new Map(answers.map((a) => [a.id, a.author]))
      const seen = new Set(s.assignments.map((a) => `${a.judge}|${a.first}|${a.second}`))
      expect(seen.size).toBe(s.assignments.length) // no duplicate assignment
      for (const a of s.assignments) {
        expect(a.judge).not.toBe(author.get(a.first))
        expect(a.judge).not.toBe(author.get(a.second))
        expect(a.first).not.toBe(a.second)
        expect(seen.has(`${a.judge}|${a.second}|${a.first}`)).toBe(true)
      }
      // Ring pairs: every answer is in at least one pair (two when n ≥ 3); ≈ 1.5n pairs.
      const degree = new Map<string, number>()
      for (const [a, b] of s.pairs) for (const x of [a, b]) degree.set(x, (degree.get(x) ?? 0) + 1)
      for (const a of answers) expect(degree.get(a.id) ?? 0).toBeGreaterThanOrEqual(n >= 3 ? 2 : 1)
      expect(s.pairs.length).toBeLessThanOrEqual(Math.ceil(1.5 * n))
      // Each pair gets min(perPair, eligible judges) judges.
      for (const [a, b] of s.pairs) {
        const eligible = judgesOf(judges).filter((j) => j.id !== author.get(a) && j.id !== author.get(b)).length
        expect(s.assignments.filter((x) => x.first === a && x.second === b).length).toBe(Math.min(perPair, eligible))
      }
    }), { seed, numRuns: 150 })
  })

  it('no node of the pipeline that produced an answer (author or coauthor) judges it', () => {
    fc.assert(fc.property(fc.integer({ min: 2, max: 16 }), fc.array(fc.array(fc.integer({ min: 0, max: 29 }), { maxLength: 4 }), { minLength: 16, maxLength: 16 }), (n, chains) => {
      const answers = Array.from({ length: n }, (_, i) => ({ id: `ans${i}`, author: `node${i}`, coauthors: chains[i].map((c) => `node${c}`) }))
      const s = schedulePairs({ round: 'r', answers, judges: judgesOf(30), judgesPerPair: 5 })
      const crew = new Map(answers.map((a) => [a.id, new Set([a.author, ...a.coauthors])]))
      for (const a of s.assignments) {
        expect(crew.get(a.first)?.has(a.judge)).toBe(false)
        expect(crew.get(a.second)?.has(a.judge)).toBe(false)
      }
    }), { seed, numRuns: 100 })
  })

  it('about 3n ordered comparisons per judge slot', () => {
    const s = schedulePairs({ round: 'r', answers: answersOf(32, 32), judges: judgesOf(64), judgesPerPair: 1 })
    expect(s.assignments.length).toBe(96)
  })

  it('is a function of the round id: same inputs in any order give the same schedule, another round another', () => {
    const answers = answersOf(10, 10)
    const judges = judgesOf(20)
    const a = schedulePairs({ round: 'swarm:7', answers, judges })
    const b = schedulePairs({ round: 'swarm:7', answers: [...answers].reverse(), judges: [...judges].reverse() })
    const c = schedulePairs({ round: 'swarm:8', answers, judges })
    expect(JSON.stringify(b)).toBe(JSON.stringify(a))
    expect(JSON.stringify(c.assignments)).not.toBe(JSON.stringify(a.assignments))
  })

  it('judges of weight 0 never judge; heavier judges judge more', () => {
    const judges = Array.from({ length: 30 }, (_, i) => ({ id: `j${i}`, weight: i < 10 ? 0 : i < 20 ? 1 : 9 }))
    const counts = new Map<string, number>()
    for (let r = 0; r < 40; r++) {
      for (const a of schedulePairs({ round: `r${r}`, answers: answersOf(8, 8), judges }).assignments) counts.set(a.judge, (counts.get(a.judge) ?? 0) + 1)
    }
    let light = 0
    let heavy = 0
    for (const [id, n] of counts) {
      const i = Number(id.slice(1))
      expect(i).toBeGreaterThanOrEqual(10)
      if (i < 20) light += n
      else heavy += n
    }
    expect(heavy).toBeGreaterThan(2 * light)
  })

  it('rejects an answer listed twice', () => {
    expect(() => schedulePairs({ round: 'r', answers: [{ id: 'a', author: 'x' }, { id: 'a', author: 'y' }], judges: judgesOf(3) })).toThrow(/twice/)
  })
})
