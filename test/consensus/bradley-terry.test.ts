// Bradley–Terry by MM with a prior: closed forms, ties, permutation invariance, one-sided and
// disconnected graphs, bit-identical output.
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { bradleyTerry, type Comparison } from '../../consensus/index.ts'
import { testSeed } from '../seed.ts'

const seed = testSeed()
const c = (first: string, second: string, outcome: Comparison['outcome'], weight = 1): Comparison => ({ first, second, outcome, weight })
const strengthOf = (r: ReturnType<typeof bradleyTerry>, id: string): number => r.strengths[r.items.indexOf(id)]

describe(`Bradley–Terry (TEST_SEED=${seed} npx vitest run test/consensus/bradley-terry.test.ts)`, () => {
  it('two items without prior: the strength ratio is the win ratio', () => {
    const r = bradleyTerry(['a', 'b'], [c('a', 'b', 'first'), c('b', 'a', 'second'), c('a', 'b', 'first'), c('a', 'b', 'second')], { prior: 0 })
    expect(r.converged).toBe(true)
    expect(strengthOf(r, 'a') / strengthOf(r, 'b')).toBeCloseTo(3, 9)
    expect(strengthOf(r, 'a') + strengthOf(r, 'b')).toBeCloseTo(2, 12)
    expect(r.ranking).toEqual(['a', 'b'])
  })

  it('two items with prior: the stationary equations of the posterior hold', () => {
    const prior = 0.5
    const r = bradleyTerry(['a', 'b'], [c('a', 'b', 'first', 3), c('a', 'b', 'second', 1)], { prior })
    const [pa, pb] = [strengthOf(r, 'a'), strengthOf(r, 'b')]
    // W_i + prior = n_ij p_i / (p_i + p_j) + 2 prior p_i / (p_i + 1)
    expect(4 * pa / (pa + pb) + 2 * prior * pa / (pa + 1)).toBeCloseTo(3 + prior, 9)
    expect(4 * pb / (pa + pb) + 2 * prior * pb / (pb + 1)).toBeCloseTo(1 + prior, 9)
    expect(pa / pb).toBeLessThan(3) // shrunk toward equality
    expect(pa / pb).toBeGreaterThan(1)
  })

  it('three items: expected-count data recovers the true strengths (1, 2, 4) up to scale', () => {
    const p: Record<string, number> = { x: 1, y: 2, z: 4 }
    const comps: Comparison[] = []
    for (const [i, j] of [['x', 'y'], ['x', 'z'], ['y', 'z']]) {
      const n = 12
      comps.push(c(i, j, 'first', n * p[i] / (p[i] + p[j])), c(i, j, 'second', n * p[j] / (p[i] + p[j])))
    }
    const r = bradleyTerry(['z', 'x', 'y'], comps, { prior: 0 })
    expect(r.converged).toBe(true)
    expect(strengthOf(r, 'y') / strengthOf(r, 'x')).toBeCloseTo(2, 8)
    expect(strengthOf(r, 'z') / strengthOf(r, 'x')).toBeCloseTo(4, 8)
    expect(r.ranking).toEqual(['z', 'y', 'x'])
  })

  it('a balanced cycle gives equal strengths; ties count half a win to each side', () => {
    const cycle = bradleyTerry(['a', 'b', 'c'], [c('a', 'b', 'first'), c('b', 'c', 'first'), c('c', 'a', 'first')])
    expect(strengthOf(cycle, 'a')).toBeCloseTo(strengthOf(cycle, 'b'), 12)
    expect(strengthOf(cycle, 'b')).toBeCloseTo(strengthOf(cycle, 'c'), 12)
    const tie = bradleyTerry(['a', 'b'], [c('a', 'b', 'tie', 2)], { prior: 0 })
    expect(strengthOf(tie, 'a')).toBe(strengthOf(tie, 'b'))
    // one tie + one win of a = 1.5 : 0.5
    const mixed = bradleyTerry(['a', 'b'], [c('a', 'b', 'tie'), c('b', 'a', 'second')], { prior: 0 })
    expect(strengthOf(mixed, 'a') / strengthOf(mixed, 'b')).toBeCloseTo(3, 9)
  })

  it('one-sided and disconnected graphs have finite strengths with the prior', () => {
    // a won everything; d and e never met the others; f was never compared.
    const r = bradleyTerry(['a', 'b', 'c', 'd', 'e', 'f'], [c('a', 'b', 'first', 5), c('c', 'a', 'second', 5), c('d', 'e', 'first', 2)])
    expect(r.converged).toBe(true)
    for (const s of r.strengths) expect(Number.isFinite(s) && s > 0).toBe(true)
    expect(r.ranking[0]).toBe('a')
    expect(strengthOf(r, 'f')).toBe(1) // only the prior: the pseudo-item's strength
    expect(strengthOf(r, 'd')).toBeGreaterThan(1)
    expect(strengthOf(r, 'e')).toBeLessThan(1)
  })

  it('weights scale evidence: a weight-0 comparison is ignored, weight w equals w copies', () => {
    const once = bradleyTerry(['a', 'b'], [c('a', 'b', 'first', 3), c('a', 'b', 'second', 1), c('a', 'b', 'second', 0)])
    const copies = bradleyTerry(['a', 'b'], [c('a', 'b', 'first'), c('a', 'b', 'first'), c('a', 'b', 'first'), c('a', 'b', 'second')])
    expect(strengthOf(once, 'a')).toBeCloseTo(strengthOf(copies, 'a'), 12)
  })

  it('rejects unknown items, self-comparisons and negative weights', () => {
    expect(() => bradleyTerry(['a'], [c('a', 'b', 'first')])).toThrow(/unknown item/)
    expect(() => bradleyTerry(['a'], [c('a', 'a', 'first')])).toThrow(/itself/)
    expect(() => bradleyTerry(['a', 'b'], [c('a', 'b', 'first', -1)])).toThrow(/weight/)
  })

  it('bit-identical under any permutation of items and comparisons (property)', () => {
    const ids = ['a', 'b', 'c', 'd', 'e', 'f', 'g']
    const comparisonArb = fc.record({
      i: fc.integer({ min: 0, max: 6 }),
      j: fc.integer({ min: 0, max: 6 }),
      outcome: fc.constantFrom<Comparison['outcome']>('first', 'second', 'tie'),
      weight: fc.double({ min: 0, max: 3, noNaN: true })
    }).filter((x) => x.i !== x.j).map((x) => c(ids[x.i], ids[x.j], x.outcome, x.weight))
    fc.assert(fc.property(fc.array(comparisonArb, { maxLength: 60 }), fc.array(fc.nat(), { minLength: 1 }), (comps, keys) => {
      const shuffle = <T>(xs: T[]): T[] => xs.map((x, i) => ({ x, k: keys[i % keys.length] + i * 7919 % 13 })).sort((p, q) => p.k - q.k).map((p) => p.x)
      const r1 = bradleyTerry(ids, comps)
      const r2 = bradleyTerry(shuffle([...ids]), shuffle([...comps]))
      expect(r1.converged).toBe(true)
      expect(Buffer.from(new Float64Array(r2.strengths).buffer).equals(Buffer.from(new Float64Array(r1.strengths).buffer))).toBe(true)
      expect(r2.ranking).toEqual(r1.ranking)
    }), { seed, numRuns: 200 })
  })
})
