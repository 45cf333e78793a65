// Activation fingerprints on REAL stories260K shards: an honest stage passes whatever the wire
// codec, thread count or f16/q8_0 verifier; a lazy stage (a layer skipped) and a corrupting stage
// are caught; the sampler is seeded and fair; a q4_0/f32 pair is refused rather than misjudged.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { loadModel, type Shard, type WeightDType } from '../../engine/index.ts'
import { checkFingerprint, fingerprint, fingerprintBytes, fingerprintTolerance } from '../../consensus/fingerprint.ts'
import { sampleSpotChecks, spotCheck } from '../../consensus/spot-check.ts'
import { tracedRun } from '../../consensus/sim/stage-trace.ts'
import { createRng } from '../../sharding/sim/random.ts'
import { STORIES260K, TOK512 } from '../models.ts'
import { testSeed } from '../seed.ts'

const seed = testSeed()
const shards: Shard[] = []
const load = async (start: number, end: number, dtype: WeightDType = 'f32', threads = 1): Promise<Shard> => {
  const { shard } = await loadModel(STORIES260K, { start, end, dtype, threads, tokenizer: TOK512 })
  shards.push(shard)
  return shard
}
let head: Shard, stage: Shard, lazy: Shard, tail: Shard, f16: Shard, q8: Shard, q4: Shard, threaded: Shard

beforeAll(async () => {
  head = await load(0, 2)
  stage = await load(2, 4)
  lazy = await load(2, 3)
  tail = await load(4, 5)
  f16 = await load(2, 4, 'f16')
  q8 = await load(2, 4, 'q8_0')
  q4 = await load(2, 4, 'q4_0')
  threaded = await load(2, 4, 'f32', 2)
})
afterAll(async () => { for (const s of shards) await s.close() })

const promptOf = (rng: () => number): number[] => [1, ...Array.from({ length: 4 }, () => 3 + Math.floor(rng() * 509))]
const all = (n: number): number[] => Array.from({ length: n }, (_, i) => i)

describe(`fingerprints on real shards (TEST_SEED=${seed} npx vitest run test/consensus/fingerprint.test.ts)`, () => {
  it('layout: T × (4 + 4k) bytes; a state matches its own fingerprint; values quantized within 1/32767 of the scale', () => {
    const rng = createRng(seed)
    const h = Float32Array.from({ length: 3 * 64 }, () => rng() * 2 - 1)
    const fp = fingerprint(h, 64)
    expect(fp.length).toBe(3 * fingerprintBytes())
    expect(checkFingerprint(fp, h, 64, 8, { valueTolerance: 1 / 32767 })).toEqual([])
    const moved = Float32Array.from(h)
    moved[64 + 5] += 3 // position 1 changes its top coordinate
    expect(checkFingerprint(fp, moved, 64).map((m) => m.position)).toEqual([1])
  })

  it('an honest stage passes for every codec and for f16, q8_0 and 2-thread verifiers', () => {
    const rng = createRng(seed)
    for (const codec of ['f32', 'f16', 'int8'] as const) {
      const run = tracedRun({ head, stage, tail, prompt: promptOf(rng), steps: 24, codec })
      const positions = all(29)
      for (const verifier of [stage, f16, q8, threaded]) {
        const r = spotCheck(verifier, run.trace, positions, undefined, {}, 'f32')
        expect(r.checked).toEqual(positions)
        expect(r.mismatches, `${codec} on ${verifier.dtype}/${verifier.backend.threads}`).toEqual([])
      }
    }
  })

  it('a lazy stage (runs layers 2..3 of 2..4) fails at every position; its tokens differ', () => {
    const rng = createRng(seed ^ 1)
    const prompt = promptOf(rng)
    const run = tracedRun({ head, stage: lazy, tail, prompt, steps: 24, codec: 'int8' })
    const honest = tracedRun({ head, stage, tail, prompt, steps: 24, codec: 'int8' })
    expect(run.tokens).not.toEqual(honest.tokens)
    const r = spotCheck(stage, run.trace, all(29))
    expect(r.mismatches.length).toBe(29)
    expect(Math.min(...r.mismatches.map((m) => m.valueError))).toBeGreaterThan(0.05) // ≥ 0.086 over 200 random prompts; tolerance 0.005
  })

  it('a corrupting stage (0.1 × RMS noise) is caught by a 20-position sample in each of 10 runs', () => {
    const rng = createRng(seed ^ 2)
    for (let run = 0; run < 10; run++) {
      const r = tracedRun({ head, stage, tail, prompt: promptOf(rng), steps: 40, codec: 'int8', corruption: 0.1, rng })
      const positions = sampleSpotChecks([`t${seed}`, String(run)], 45, 20)
      expect(spotCheck(stage, r.trace, positions).passed).toBe(false)
    }
  })

  it('the last stage can be fingerprinted on its logits', () => {
    const rng = createRng(seed ^ 3)
    const prompt = promptOf(rng)
    const s = tail.openSession({ maxLength: 16 })
    const h = head.openSession({ maxLength: 16 })
    const m = stage.openSession({ maxLength: 16 })
    const hidden = m.step({ hidden: h.step({ tokens: prompt }).hidden as Float32Array }).hidden as Float32Array
    const logits = s.step({ hidden }, { logits: 'all' }).logits as Float32Array
    for (const x of [s, h, m]) x.close()
    const trace = { inputs: [{ hidden }], fingerprints: [fingerprint(logits, 512)] }
    expect(spotCheck(tail, trace, all(prompt.length)).passed).toBe(true)
  })

  it('q4_0 against f32 is refused (its honest error is as large as a skipped layer); same dtype is fine', () => {
    expect(fingerprintTolerance('f32', 'q4_0')).toBeUndefined()
    expect(fingerprintTolerance('q4_0', 'q4_0')).toBe(0.005)
    expect(fingerprintTolerance('f16', 'q8_0')).toBe(0.07)
    const run = tracedRun({ head, stage, tail, prompt: promptOf(createRng(seed)), steps: 4 })
    expect(() => spotCheck(q4, run.trace, [0], undefined, {}, 'f32')).toThrow(/cannot check/)
  })

  it('the sampler is seeded, distinct, sorted, in range and covers positions evenly', () => {
    expect(sampleSpotChecks(['s', '1'], 100, 20)).toEqual(sampleSpotChecks(['s', '1'], 100, 20))
    expect(sampleSpotChecks(['s', '1'], 100, 20)).not.toEqual(sampleSpotChecks(['s', '2'], 100, 20))
    expect(sampleSpotChecks(['s'], 5, 20)).toEqual([0, 1, 2, 3, 4])
    const hits = new Array<number>(10).fill(0)
    for (let i = 0; i < 2000; i++) {
      const s = sampleSpotChecks([String(i)], 10, 3)
      expect(new Set(s).size).toBe(3)
      expect([...s].sort((a, b) => a - b)).toEqual(s)
      for (const p of s) hits[p]++
    }
    for (const h of hits) expect(h).toBeGreaterThan(500) // expected 600 each
  })
})
