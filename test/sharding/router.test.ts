// The router's cheapest chain equals brute force over every chain on small graphs; its
// alternatives are node-disjoint; load spreading and latency targets steer the choice.
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import type { RouteGraph, RouteNode } from '../../sharding/index.ts'
import { allChains, chainCost, CLIENT, routeRequest } from '../../sharding/index.ts'
import { seededRandom, testSeed } from '../seed.ts'
import { fakeRtt } from './helpers.ts'

const seed = testSeed()
const runs = process.env.SHARDING_LONG === '1' ? 1000 : 150

const L = 6
const nodeArb: fc.Arbitrary<RouteNode> = fc.record({
  id: fc.integer({ min: 0, max: 99 }),
  start: fc.nat(L - 1),
  len: fc.integer({ min: 1, max: L }),
  decodeLayerMs: fc.double({ min: 0.1, max: 50, noNaN: true }),
  prefillLayerMsPerToken: fc.double({ min: 0.01, max: 5, noNaN: true }),
  load: fc.nat(12),
  slots: fc.integer({ min: 1, max: 10 })
}).map(({ id, start, len, ...rest }) => ({ peerId: `p${id}`, start, end: Math.min(L, start + len), ...rest }))

const graphArb: fc.Arbitrary<RouteGraph> = fc.uniqueArray(nodeArb, { minLength: 1, maxLength: 7, selector: (n) => n.peerId }).map((nodes) => ({
  nLayers: L,
  nodes,
  hiddenBytesPerToken: 4096,
  rttMs: (a, b) => (a === CLIENT || b === CLIENT ? 20 : fakeRtt(a, b)),
  bandwidthBytesPerS: (a, b) => 1e6 + (fakeRtt(a, b) % 7) * 1e6
}))
const reqArb = fc.record({ promptTokens: fc.integer({ min: 1, max: 500 }), genTokens: fc.integer({ min: 1, max: 300 }) })

describe(`router (TEST_SEED=${seed} npx vitest run test/sharding/router.test.ts)`, () => {
  it('the cheapest route equals brute force over every chain', () => {
    fc.assert(fc.property(graphArb, reqArb, (g, req) => {
      const chains = allChains(g)
      if (chains.length === 0) {
        expect(() => routeRequest(g, req)).toThrow(expect.objectContaining({ name: 'ShardUnavailableError' }))
        return
      }
      const brute = Math.min(...chains.map((c) => chainCost(g, req, c).costMs))
      const [best] = routeRequest(g, req)
      expect(best.costMs).toBeCloseTo(brute, 6)
      expect(chainCost(g, req, best.hops).costMs).toBeCloseTo(best.costMs, 6)
      expect(best.hops[0].start).toBe(0)
      expect(best.hops[best.hops.length - 1].end).toBe(L)
      for (let i = 1; i < best.hops.length; i++) expect(best.hops[i].start).toBe(best.hops[i - 1].end)
    }), { seed, numRuns: runs })
  })

  it('alternatives are node-disjoint and ranked by cost; excluded peers are never used', () => {
    fc.assert(fc.property(graphArb, reqArb, fc.nat(99), (g, req, banned) => {
      const exclude = new Set([`p${banned}`])
      if (allChains(g, exclude).length === 0) return
      const routes = routeRequest(g, req, { exclude })
      const used = new Set<string>()
      for (const r of routes) {
        for (const h of r.hops) {
          expect(exclude.has(h.peerId)).toBe(false)
          expect(used.has(h.peerId)).toBe(false)
          used.add(h.peerId)
        }
      }
      for (let i = 1; i < routes.length; i++) expect(routes[i].costMs).toBeGreaterThanOrEqual(routes[i - 1].costMs)
    }), { seed, numRuns: runs })
  })

  it('spreads requests over equally good routes (power of two choices), deterministically per seed', () => {
    const nodes: RouteNode[] = ['a', 'b', 'c', 'd'].map((id) => ({ peerId: id, start: 0, end: L, decodeLayerMs: 1, prefillLayerMsPerToken: 0.1, load: 0, slots: 8 }))
    const g: RouteGraph = { nLayers: L, nodes, hiddenBytesPerToken: 4096, rttMs: () => 10, bandwidthBytesPerS: () => 1e7 }
    const pick = (s: number): string[] => {
      const rng = seededRandom(s)
      return Array.from({ length: 40 }, () => routeRequest(g, { promptTokens: 10, genTokens: 10 }, { rng })[0].hops[0].peerId)
    }
    expect(new Set(pick(seed)).size).toBeGreaterThan(1)
    expect(pick(seed)).toEqual(pick(seed))
    expect(new Set(Array.from({ length: 10 }, () => routeRequest(g, { promptTokens: 10, genTokens: 10 })[0].hops[0].peerId)).size).toBe(1)
  })

  it('a queue raises a route\'s cost; with latency targets, overflow goes to an idle route', () => {
    const fast: RouteNode = { peerId: 'fast', start: 0, end: L, decodeLayerMs: 1, prefillLayerMsPerToken: 0.1, load: 40, slots: 8, sessionMs: 60_000 }
    const slow: RouteNode = { peerId: 'slow', start: 0, end: L, decodeLayerMs: 30, prefillLayerMsPerToken: 3, load: 0, slots: 8 }
    const g: RouteGraph = { nLayers: L, nodes: [fast, slow], hiddenBytesPerToken: 4096, rttMs: () => 10, bandwidthBytesPerS: () => 1e7 }
    const req = { promptTokens: 100, genTokens: 50 }
    const free = routeRequest({ ...g, nodes: [{ ...fast, load: 0 }, slow] }, req)[0]
    const queued = routeRequest(g, req)
    expect(queued.find((r) => r.hops[0].peerId === 'fast')!.prefillMs).toBeGreaterThan(free.prefillMs + 60_000)
    const targeted = routeRequest(g, { ...req, maxTtftMs: 5_000, maxTokenMs: 100 })[0]
    expect(targeted.hops[0].peerId).toBe('slow')
    // admission 'defer': nothing can meet the targets → back off instead of queueing
    expect(() => routeRequest(g, { ...req, maxTtftMs: 5_000, maxTokenMs: 100 }, { admission: 'defer' })).toThrow(expect.objectContaining({ name: 'SwarmBusyError' }))
    expect(routeRequest(g, { ...req, maxTtftMs: 600_000, maxTokenMs: 10_000 }, { admission: 'defer' })[0].costMs).toBeGreaterThan(0)
  })

  it('a measured decode time slower than the model raises the decode cost', () => {
    const n: RouteNode = { peerId: 'a', start: 0, end: L, decodeLayerMs: 1, prefillLayerMsPerToken: 0.1, load: 0, slots: 8 }
    const g: RouteGraph = { nLayers: L, nodes: [n], hiddenBytesPerToken: 4096, rttMs: () => 0, bandwidthBytesPerS: () => 1e9 }
    const req = { promptTokens: 10, genTokens: 10 }
    const base = routeRequest(g, req)[0].decodeMs
    expect(routeRequest({ ...g, nodes: [{ ...n, stepLayerMs: 5 }] }, req)[0].decodeMs).toBeCloseTo(base + 4 * L, 6)
  })
})
