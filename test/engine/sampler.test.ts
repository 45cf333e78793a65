// Sampling: greedy is argmax (first on ties), the PRNG is llama2.c's xorshift*, the same seed gives
// the same draws, top-k / top-p only ever return allowed tokens, and bad options are rejected.
import { describe, expect, it } from 'vitest'
import { createRng, createSampler } from '../../engine/sampler.ts'
import { seededRandom, testSeed } from '../seed.ts'

const seed = testSeed()

describe(`sampler (TEST_SEED=${seed})`, () => {
  const rand = seededRandom(seed)
  const logits = Float32Array.from({ length: 50 }, () => rand() * 8)

  it('greedy picks the first maximum', () => {
    expect(createSampler().sample(Float32Array.of(1, 3, 3, 2))).toBe(1)
  })

  it('the PRNG is llama2.c\'s xorshift* (first draws for seed 42)', () => {
    // Printed by run.c's random_f32 (copied into a C file, gcc -O2), seed 42, %.9g.
    const fromC = [0.339085221, 0.782255828, 0.790136993, 0.944042623, 0.764393628]
    const rng = createRng(42)
    for (const v of fromC) expect(rng()).toBe(Math.fround(v))
  })

  it('the same seed gives the same tokens; another seed, other tokens', () => {
    const draw = (s: number) => { const sm = createSampler({ temperature: 1, seed: s }); return Array.from({ length: 40 }, () => sm.sample(logits)) }
    expect(draw(7)).toEqual(draw(7))
    expect(draw(7)).not.toEqual(draw(8))
  })

  it('top-k only returns the k most likely tokens', () => {
    const top3 = Array.from(logits.keys()).sort((a, b) => logits[b] - logits[a]).slice(0, 3)
    const sm = createSampler({ temperature: 1.5, topK: 3, seed })
    for (let i = 0; i < 200; i++) expect(top3).toContain(sm.sample(logits))
  })

  it('top-p keeps the smallest set whose mass exceeds p', () => {
    const sm = createSampler({ temperature: 1, topP: 0.5, seed })
    // Two tokens hold 0.6 + 0.3 of the mass: p = 0.5 keeps only the first.
    const l = Float32Array.from([Math.log(0.6), Math.log(0.3), Math.log(0.1)])
    for (let i = 0; i < 100; i++) expect(sm.sample(l)).toBe(0)
  })

  it('rejects invalid options', () => {
    expect(() => createSampler({ temperature: -1 })).toThrow(RangeError)
    expect(() => createSampler({ topP: 1.5 })).toThrow(RangeError)
    expect(() => createSampler({ topK: 1.5 })).toThrow(RangeError)
  })
})
