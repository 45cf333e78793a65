// Stage input as a hostile peer might send it: random token ids (negative, fractional, huge,
// NaN), hidden states of random lengths with NaN / ±Infinity, steps past the session's length.
// Every bad step is a named engine error, and a session that refused a step still produces
// exactly the output of a session that never saw it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { openLlama2c } from '../../engine/formats/llama2c.ts'
import type { Shard, StageInput } from '../../engine/index.ts'
import { loadShard } from '../../engine/shard.ts'
import { STORIES260K } from '../models.ts'
import { seededRandom, testSeed } from '../seed.ts'

const seed = testSeed()
const NAMED = ['ShapeError', 'ShardConfigError', 'SessionLimitError']

describe(`hostile stage input (TEST_SEED=${seed})`, () => {
  let first: Shard
  let middle: Shard
  beforeAll(async () => {
    const source = await openLlama2c(STORIES260K)
    first = await loadShard(source, { start: 0, end: 2 })
    middle = await loadShard(source, { start: 2, end: 4 })
  })
  afterAll(async () => {
    await first.close()
    await middle.close()
  })

  it('refuses every bad step with a named error and keeps its state', () => {
    const rand = seededRandom(seed)
    const pick = <T>(xs: T[]): T => xs[Math.floor(rand() * xs.length)]
    const badToken = (): number => pick([-1, 512, 1e12, 0.5, Number.NaN, Number.POSITIVE_INFINITY, -0.0001])
    const victim = { first: first.openSession({ maxLength: 40 }), middle: middle.openSession({ maxLength: 40 }) }
    const clean = { first: first.openSession({ maxLength: 40 }), middle: middle.openSession({ maxLength: 40 }) }
    let refused = 0
    for (let i = 0; i < 400; i++) {
      const stage = rand() < 0.5 ? 'first' : 'middle'
      let input: StageInput
      if (stage === 'first') {
        const n = Math.floor(rand() * 6)
        input = rand() < 0.3 ? { hidden: new Float32Array(64) } : { tokens: Array.from({ length: n }, () => rand() < 0.8 ? badToken() : 5) }
      } else {
        const len = pick([0, 1, 63, 65, 64 * 3 + 1, 64 * 50])
        const h = new Float32Array(len).map(() => rand() - 0.5)
        if (len > 0 && rand() < 0.7) h[Math.floor(rand() * len)] = pick([Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY])
        input = rand() < 0.2 ? { tokens: [1] } : { hidden: h }
      }
      const before = victim[stage].position
      try {
        victim[stage].step(input)
        // A step that was valid after all: mirror it on the clean session.
        clean[stage].step(input)
      } catch (err) {
        refused++
        expect(NAMED, `step ${i}: ${(err as Error).name}: ${(err as Error).message}`).toContain((err as Error).name)
        expect(victim[stage].position).toBe(before)
      }
    }
    expect(refused).toBeGreaterThan(300)
    // Both sessions continue identically.
    const tokens = [1, 403, 407]
    expect(victim.first.position).toBe(clean.first.position)
    if (victim.first.position + 3 <= 40) {
      expect(victim.first.step({ tokens }).hidden).toEqual(clean.first.step({ tokens }).hidden)
    }
    const h = new Float32Array(64 * 2).map((_, k) => Math.sin(k))
    if (victim.middle.position + 2 <= 40) {
      expect(victim.middle.step({ hidden: h }).hidden).toEqual(clean.middle.step({ hidden: h }).hidden)
    }
  })
})
