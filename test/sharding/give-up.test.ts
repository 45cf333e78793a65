// mayGiveUp (sharding/move-plan.ts): the check a `--layers auto` node makes, on a fresh plan,
// right before it stops serving layers. Examples, then properties: on a plan every member agrees
// on (each publishes the target computed for it) the check never holds a wave-0 move — it adds
// no deadlock to planMoves — and nodes that move whenever it says yes reach the target without a
// hole the plan did not call unavoidable.
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import type { Assignment, PlanView } from '../../sharding/index.ts'
import { mayGiveUp, planMoves } from '../../sharding/index.ts'
import { testSeed } from '../seed.ts'

const seed = testSeed()
const L = 6
const a = (peerId: string, start: number, end: number): Assignment => ({ peerId, start, end })
const layers = (x: { start: number, end: number }): number[] => Array.from({ length: x.end - x.start }, (_, i) => x.start + i)

function view (served: Assignment[], target: Assignment[], published: Assignment[] = target): PlanView {
  return { ...planMoves(served, target, L), served, target, published }
}

describe('mayGiveUp', () => {
  it('a holder that keeps the layer and says so lets a wave-0 move go', () => {
    const v = view([a('me', 0, 2), a('p', 0, 2), a('q', 2, 6)], [a('me', 2, 6), a('p', 0, 2), a('q', 2, 6)])
    expect(mayGiveUp(v, 'me', [0, 1])).toEqual({ ok: true })
  })

  it('a holder that publishes another target (its own answer moves it) is no holder', () => {
    const served = [a('me', 0, 2), a('p', 0, 2), a('q', 2, 6)]
    const v = view(served, [a('me', 2, 6), a('p', 0, 2), a('q', 2, 6)], [a('me', 2, 6), a('p', 2, 6), a('q', 2, 6)])
    expect(mayGiveUp(v, 'me', [0, 1])).toEqual({ ok: false, reason: 'no-holder', layers: [0, 1] })
  })

  it('a move in a later wave waits', () => {
    // q must take [0, 2) before me leaves it
    const v = view([a('me', 0, 2), a('q', 2, 6), a('p', 2, 6)], [a('me', 2, 6), a('q', 0, 2), a('p', 2, 6)])
    expect(mayGiveUp(v, 'me', [0, 1])).toEqual({ ok: false, reason: 'later-wave' })
    expect(mayGiveUp(v, 'q', [2, 3, 4, 5])).toEqual({ ok: true })
  })

  it('a server that moves in the same wave holds nothing', () => {
    // me and p both leave [0, 2) for q; planMoves never puts both in wave 0 before q landed, but
    // a hand-made plan that does must not let me count on p
    const target = [a('me', 2, 6), a('p', 2, 6), a('q', 0, 2)]
    const v: PlanView = { waves: [[{ peerId: 'me', from: { start: 0, end: 2 }, to: { start: 2, end: 6 } }, { peerId: 'p', from: { start: 0, end: 2 }, to: { start: 2, end: 6 } }], [{ peerId: 'q', to: { start: 0, end: 2 } }]], uncovered: [], served: [a('me', 0, 2), a('p', 0, 2)], target, published: target }
    expect(mayGiveUp(v, 'me', [0, 1])).toEqual({ ok: false, reason: 'no-holder', layers: [0, 1] })
  })

  it('a layer the target no longer needs, or one the plan cannot keep covered, needs no holder', () => {
    // me leaves; the target (not covered: nobody left for [3, 6)) keeps only [0, 3), which p holds
    expect(mayGiveUp(view([a('me', 0, 6), a('p', 0, 3)], [a('p', 0, 3)]), 'me', [0, 1, 2, 3, 4, 5])).toEqual({ ok: true })
    // a swap with no room beside: no order keeps every layer
    const swap = view([a('me', 0, 3), a('p', 3, 6)], [a('me', 3, 6), a('p', 0, 3)])
    expect(swap.uncovered.length).toBeGreaterThan(0)
    const first = swap.waves[0][0].peerId
    const from = first === 'me' ? [0, 1, 2] : [3, 4, 5]
    expect(mayGiveUp(swap, first, from)).toEqual({ ok: true })
  })

  it(`on agreed plans: never holds a wave-0 move, and following it reaches the target with no avoidable hole (seed ${seed}; TEST_SEED=${seed} npx vitest run test/sharding/give-up.test.ts)`, () => {
    const rangeArb = fc.tuple(fc.nat(L - 1), fc.integer({ min: 1, max: L })).map(([s, n]) => ({ start: s, end: Math.min(L, s + n) }))
    const caseArb = fc.array(fc.tuple(fc.option(rangeArb, { nil: undefined }), fc.option(rangeArb, { nil: undefined })), { minLength: 1, maxLength: 6 })
      .map((pairs) => ({
        served: pairs.flatMap(([c], i) => (c !== undefined ? [a(`p${i}`, c.start, c.end)] : [])),
        target: pairs.flatMap(([, t], i) => (t !== undefined ? [a(`p${i}`, t.start, t.end)] : []))
      }))
    fc.assert(fc.property(caseArb, ({ served: start, target }) => {
      let served = start
      for (let step = 0; step < 2 * (start.length + target.length) + 2; step++) {
        const v = view(served, target)
        if (v.waves.length === 0) return true
        // every wave-0 move may go (drain semantics: it gives up its whole range)
        for (const m of v.waves[0]) expect(mayGiveUp(v, m.peerId, m.from === undefined ? [] : layers(m.from))).toEqual({ ok: true })
        // while they move they serve nothing: a layer needed now and by the target goes dark only if the plan said so
        const moving = new Set(v.waves[0].map((m) => m.peerId))
        const during = served.filter((x) => !moving.has(x.peerId))
        for (let l = 0; l < L; l++) {
          const needed = served.some((x) => x.start <= l && l < x.end) && target.some((x) => x.start <= l && l < x.end)
          if (needed && !during.some((x) => x.start <= l && l < x.end)) expect(v.uncovered).toContain(l)
        }
        // they land
        served = [...during, ...v.waves[0].flatMap((m) => (m.to === null ? [] : [a(m.peerId, m.to.start, m.to.end)]))]
      }
      throw new Error('the moves did not finish')
    }), { seed, numRuns: 200 })
  })
})
