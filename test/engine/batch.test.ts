// shard.stepBatch: steps of several sessions in one pass (decode steps of one position, prefill
// chunks of up to maxBatch) must give, for every session, bitwise the floats of stepping that
// session alone (session.step), on first, middle, last and whole-model shards, f32 and quantized
// weights, sessions at mixed positions, batches of 1 to more than the shard's maxBatch rows (packed
// into several passes). Bad batches are named errors that change no session.
import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { openLlama2c } from '../../engine/formats/llama2c.ts'
import type { ModelSource, Session, Shard, ShardOptions, StageInput, StageOutput } from '../../engine/index.ts'
import { loadShard } from '../../engine/shard.ts'
import { STORIES260K } from '../models.ts'
import { seededRandom, testSeed } from '../seed.ts'

const seed = testSeed()
const MAX_BATCH = 4
const MAX_LENGTH = 32

interface Config { name: string, options: ShardOptions }
const CONFIGS: Config[] = [
  { name: 'whole model f32', options: { start: 0, end: 5 } },
  { name: 'first [0, 2) f32', options: { start: 0, end: 2 } },
  { name: 'middle [2, 4) q8_0', options: { start: 2, end: 4, dtype: 'q8_0' } },
  { name: 'last [4, 5) f32, 2 threads', options: { start: 4, end: 5, threads: 2 } },
  { name: 'last [3, 5) q4_0', options: { start: 3, end: 5, dtype: 'q4_0' } },
  { name: 'middle [1, 3) f16', options: { start: 1, end: 3, dtype: 'f16' } },
  { name: 'whole model, reference backend', options: { start: 0, end: 5, backend: 'reference' } }
]

function bits (out: StageOutput): Uint8Array {
  const f = (out.hidden ?? out.logits) as Float32Array
  return new Uint8Array(f.buffer, f.byteOffset, f.byteLength)
}

describe(`shard.stepBatch equals session.step (TEST_SEED=${seed})`, () => {
  let source: ModelSource
  const shards = new Map<string, Shard>()
  beforeAll(async () => {
    source = await openLlama2c(STORIES260K)
    for (const c of CONFIGS) shards.set(c.name, await loadShard(source, { ...c.options, maxBatch: MAX_BATCH }))
  })
  afterAll(async () => {
    for (const s of shards.values()) await s.close()
  })

  for (const c of CONFIGS) {
    it(`${c.name}: batches of 1..${MAX_BATCH + 3} sessions at mixed positions, decode steps and prefill chunks`, () => {
      const shard = shards.get(c.name) as Shard
      const dim = shard.config.dim
      fc.assert(fc.property(
        fc.integer({ min: 1, max: MAX_BATCH + 3 }), // sessions
        fc.array(fc.integer({ min: 0, max: 6 }), { minLength: MAX_BATCH + 3, maxLength: MAX_BATCH + 3 }), // prefill lengths
        fc.array(fc.array(fc.nat(), { maxLength: MAX_BATCH + 3 }), { minLength: 1, maxLength: 5 }), // rounds: who steps
        fc.array(fc.constantFrom(1, 1, 1, 1, 2, 3, MAX_BATCH), { minLength: MAX_BATCH + 3, maxLength: MAX_BATCH + 3 }), // positions per step
        fc.integer(),
        (n, prefill, rounds, widths, inputSeed) => {
          const rand = seededRandom(inputSeed >>> 0)
          const input = (T: number): StageInput => shard.isFirst
            ? { tokens: Array.from({ length: T }, () => Math.floor(rand() * shard.config.vocabSize)) }
            : { hidden: Float32Array.from({ length: T * dim }, () => (rand() - 0.5) * 4) }
          const pairs: Array<{ batched: Session, alone: Session }> = []
          try {
            for (let i = 0; i < n; i++) {
              const pair = { batched: shard.openSession({ maxLength: MAX_LENGTH }), alone: shard.openSession({ maxLength: MAX_LENGTH }) }
              pairs.push(pair)
              if (prefill[i] > 0) {
                const x = input(prefill[i])
                pair.batched.step(x)
                pair.alone.step(x)
              }
            }
            for (const round of rounds) {
              // a subset of the sessions, in the round's order, each once
              const who = [...new Set(round.map((r) => r % n))]
              if (who.length === 0) continue
              const inputs = who.map((i) => input(widths[(i + rounds.indexOf(round)) % widths.length]))
              const outs = shard.stepBatch(who.map((i, b) => ({ session: pairs[i].batched, input: inputs[b], position: pairs[i].batched.position })))
              expect(outs).toHaveLength(who.length)
              for (const [b, i] of who.entries()) {
                const want = pairs[i].alone.step(inputs[b])
                const x = inputs[b]
                const T = 'tokens' in x ? x.tokens.length : x.hidden.length / dim
                expect(outs[b].hidden?.length ?? outs[b].logits?.length).toBe(shard.isLast ? shard.config.vocabSize : T * dim)
                expect(Buffer.from(bits(outs[b])).equals(Buffer.from(bits(want))), `session ${i} at ${pairs[i].alone.position - 1}`).toBe(true)
                expect(pairs[i].batched.position).toBe(pairs[i].alone.position)
              }
            }
          } finally {
            for (const p of pairs) { p.batched.close(); p.alone.close() }
          }
        }
      ), { seed, numRuns: 12 })
    })
  }

  it('refuses bad batches with a named error and changes no session', () => {
    const last = shards.get('last [4, 5) f32, 2 threads') as Shard
    const whole = shards.get('whole model f32') as Shard
    const dim = last.config.dim
    const h = (): Float32Array => new Float32Array(dim).fill(0.25)
    const a = last.openSession({ maxLength: 3 })
    const b = last.openSession({ maxLength: 3 })
    const twinA = last.openSession({ maxLength: 3 })
    const twinB = last.openSession({ maxLength: 3 })
    const closed = last.openSession()
    closed.close()
    const foreign = whole.openSession()
    const bad: Array<[string, () => unknown]> = [
      ['ShardConfigError', () => last.stepBatch([{ session: a, input: { hidden: h() } }, { session: foreign, input: { hidden: h() } }])],
      ['ShardConfigError', () => last.stepBatch([{ session: a, input: { hidden: h() } }, { session: {} as Session, input: { hidden: h() } }])],
      ['SessionLimitError', () => last.stepBatch([{ session: a, input: { hidden: h() } }, { session: closed, input: { hidden: h() } }])],
      ['SessionLimitError', () => last.stepBatch([{ session: a, input: { hidden: h() } }, { session: b, input: { hidden: h() } }, { session: a, input: { hidden: h() } }])],
      ['ShapeError', () => last.stepBatch([{ session: a, input: { hidden: h() } }, { session: b, input: { hidden: new Float32Array((MAX_BATCH + 1) * dim) } }])],
      ['SessionLimitError', () => last.stepBatch([{ session: a, input: { hidden: h() } }, { session: b, input: { hidden: new Float32Array(4 * dim) } }])],
      ['ShapeError', () => last.stepBatch([{ session: a, input: { hidden: new Float32Array(dim + 1) } }])],
      ['ShapeError', () => last.stepBatch([{ session: a, input: { hidden: h().fill(Number.NaN, 3, 4) } }])],
      ['ShardConfigError', () => last.stepBatch([{ session: a, input: { hidden: h() } }, { session: b, input: { tokens: [1] } }])],
      ['ShardConfigError', () => whole.stepBatch([{ session: foreign, input: { hidden: h() } }])],
      ['ShapeError', () => whole.stepBatch([{ session: foreign, input: { tokens: [] } }])],
      ['ShapeError', () => whole.stepBatch([{ session: foreign, input: { tokens: [512] } }])],
      ['SessionLimitError', () => last.stepBatch([{ session: a, input: { hidden: h() } }, { session: b, input: { hidden: h() }, position: 1 }])],
      ['ShapeError', () => last.stepBatch('nope' as never)]
    ]
    for (const [name, run] of bad) {
      expect(run).toThrow(expect.objectContaining({ name }) as Error)
      expect([a.position, b.position, foreign.position]).toEqual([0, 0, 0])
    }
    expect(last.stepBatch([])).toEqual([])
    // the sessions run on as if nothing had happened, to their maximum length
    for (let i = 0; i < 3; i++) {
      const outs = last.stepBatch([{ session: b, input: { hidden: h() } }, { session: a, input: { hidden: h() } }])
      expect(Buffer.from(bits(outs[0])).equals(Buffer.from(bits(twinB.step({ hidden: h() }))))).toBe(true)
      expect(Buffer.from(bits(outs[1])).equals(Buffer.from(bits(twinA.step({ hidden: h() }))))).toBe(true)
    }
    expect(() => last.stepBatch([{ session: a, input: { hidden: h() } }])).toThrow(expect.objectContaining({ name: 'SessionLimitError' }) as Error)
    for (const s of [a, b, twinA, twinB, foreign]) s.close()
  })
})
