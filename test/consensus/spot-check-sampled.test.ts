// Spot-checks of SAMPLED last stages (temperature > 0) on REAL stories260K shards: the verifier
// replays the stage's inputs and the sampler's coins, and a claimed token must have the coin in
// its CDF interval, widened for the dtype tolerance. Honest stages (f32, f16, q8_0 against an f32
// verifier and the reverse, many seeds / temperatures / top-p / top-k) are never convicted — not
// even for a coin anywhere in their own interval —; substituted tokens, another seed, greedy
// tokens claimed as sampled ones and a replacement that ignores skip_draws are caught.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createRng, createSampler, loadModel, type Shard, type StageInput, type WeightDType } from '../../engine/index.ts'
import { fingerprintTolerance } from '../../consensus/fingerprint.ts'
import { SAMPLED_COIN_SLACK } from '../../consensus/constants.ts'
import { sampledEta, sampledInterval, samplingProbs, spotCheckSampled, type DrawParams, type SampledCheckParams } from '../../consensus/spot-check-sampled.ts'
import { STORIES260K, TOK512 } from '../models.ts'
import { seededRandom, testSeed } from '../seed.ts'

const seed = testSeed()
const shards: Shard[] = []
const load = async (start: number, end: number, dtype: WeightDType = 'f32'): Promise<Shard> => {
  const { shard } = await loadModel(STORIES260K, { start, end, dtype, tokenizer: TOK512 })
  shards.push(shard)
  return shard
}
let head: Shard
const last: Partial<Record<WeightDType, Shard>> = {}
const lastOf = (dtype: WeightDType): Shard => last[dtype] as Shard

beforeAll(async () => {
  head = await load(0, 3)
  const n = head.config.nLayers
  for (const dtype of ['f32', 'f16', 'q8_0', 'q4_0'] as const) last[dtype] = await load(3, n, dtype)
})
afterAll(async () => { for (const s of shards) await s.close() })

interface Run {
  /** Prompt + generated. */
  tokens: number[]
  /** What the last stage received, step by step (the predecessor's sent states). */
  inputs: StageInput[]
  /** The last stage's own logits for each generated token. */
  rows: Float32Array[]
}

/**
 * A head → last-stage pipeline as the stage service runs it: a prefill of the prompt, then one
 * token per step, each picked by `pick` from the last stage's logits of that step.
 */
function generate (stage: Shard, prompt: number[], steps: number, pick: (logits: Float32Array) => number): Run {
  const V = stage.config.vocabSize
  const hs = head.openSession({ maxLength: 256 })
  const ls = stage.openSession({ maxLength: 256 })
  const tokens = [...prompt]
  const inputs: StageInput[] = []
  const rows: Float32Array[] = []
  let input = prompt
  try {
    for (let i = 0; i < steps; i++) {
      const hidden = hs.step({ tokens: input }).hidden as Float32Array
      inputs.push({ hidden })
      const logits = ls.step({ hidden }).logits as Float32Array
      const row = logits.slice(logits.length - V)
      rows.push(row)
      const token = pick(row)
      tokens.push(token)
      input = [token]
    }
  } finally {
    hs.close()
    ls.close()
  }
  return { tokens, inputs, rows }
}

/** expected[p] = the token sampled after position p (known for p + 1 ≥ the prompt's length). */
const expectedOf = (tokens: number[], promptLength: number): Array<number | undefined> =>
  Array.from({ length: tokens.length - 1 }, (_, p) => p + 1 >= promptLength ? tokens[p + 1] : undefined)
const generatedPositions = (tokens: number[], promptLength: number): number[] =>
  Array.from({ length: tokens.length - promptLength }, (_, i) => promptLength - 1 + i)

/** The verifier's logits for every position of a run's inputs (one prefill, as the check does). */
function verifierLogits (verifier: Shard, inputs: StageInput[]): Float32Array {
  let n = 0
  for (const x of inputs) n += (x as { hidden: Float32Array }).hidden.length
  const hidden = new Float32Array(n)
  let off = 0
  for (const x of inputs) { hidden.set((x as { hidden: Float32Array }).hidden, off); off += (x as { hidden: Float32Array }).hidden.length }
  const s = verifier.openSession({ maxLength: 256 })
  try {
    return s.step({ hidden }, { logits: 'all' }).logits as Float32Array
  } finally {
    s.close()
  }
}

const SAMPLINGS: DrawParams[] = [
  { temperature: 1, topP: 1, topK: 0 },
  { temperature: 0.8, topP: 0.9, topK: 0 },
  { temperature: 0.5, topP: 0.5, topK: 0 },
  { temperature: 1.3, topP: 1, topK: 40 },
  { temperature: 1, topP: 0.9, topK: 5 },
  { temperature: 0.8, topP: 0.95, topK: 0 },
  { temperature: 2, topP: 1, topK: 0 },
  { temperature: 0.3, topP: 0, topK: 0 }
]
const PAIRS: Array<[WeightDType, WeightDType]> = [['f32', 'f32'], ['f16', 'f32'], ['q8_0', 'f32'], ['f32', 'f16'], ['f32', 'q8_0']]
const promptOf = (random: () => number): number[] => [1, ...Array.from({ length: 4 }, () => 3 + Math.floor(random() * 509))]
const seedOf = (random: () => number): number => Math.floor(random() * 2 ** 48)

describe(`sampled last stages on real shards (TEST_SEED=${seed} npx vitest run test/consensus/spot-check-sampled.test.ts)`, () => {
  it('eta = 0 reproduces the engine sampler: the drawn token\'s interval holds the coin, no other token\'s does', () => {
    const random = seededRandom(seed)
    for (let trial = 0; trial < 1000; trial++) {
      const V = [2, 5, 32, 512][trial % 4]
      const spread = [0.5, 3, 10, 30][Math.floor(random() * 4)]
      const logits = Float32Array.from({ length: V }, () => (random() * 2 - 1) * spread)
      const params = { temperature: [0.3, 0.8, 1, 1.5][Math.floor(random() * 4)], topP: [1, 0, 0.9, 0.5, 0.95][Math.floor(random() * 5)], topK: [0, 0, 1, 3, 40, 600][Math.floor(random() * 6)] }
      const s = seedOf(random)
      const token = createSampler({ ...params, seed: s }).sample(logits)
      const coin = createRng(s)()
      const probs = samplingProbs(logits, params.temperature)
      const holders: number[] = []
      for (let k = 0; k < V; k++) {
        const { lo, hi } = sampledInterval(probs, k, params, 0)
        if (coin >= lo && coin < hi) holders.push(k)
      }
      expect(holders, JSON.stringify({ trial, params, V, coin })).toEqual([token])
    }
  })

  it('the margin is a bound: logits moved by up to delta in the worst patterns (±delta, a prefix up and the rest down, the likeliest up) keep every interval inside the widened one', () => {
    const random = seededRandom(seed ^ 0xb0d)
    let intervals = 0
    for (let trial = 0; trial < 600; trial++) {
      const V = [5, 32, 512][trial % 3]
      const spread = [1, 5, 20][Math.floor(random() * 3)]
      const z = Float32Array.from({ length: V }, () => (random() * 2 - 1) * spread)
      const draw = SAMPLINGS[Math.floor(random() * SAMPLINGS.length)]
      const delta = [0.01, 0.1, 0.5][Math.floor(random() * 3)]
      const cut = Math.floor(random() * V)
      const order = Array.from(z.keys()).sort((a, b) => z[b] - z[a])
      const top = new Set(order.slice(0, 1 + Math.floor(random() * 3)))
      const pattern = [
        (): number => (random() * 2 - 1) * delta,
        (): number => (random() < 0.5 ? -delta : delta),
        (i: number): number => (i < cut ? delta : -delta),
        (i: number): number => (top.has(i) ? delta : -delta),
        (i: number): number => (top.has(i) ? -delta : delta)
      ][trial % 5]
      // the stage's logits: within delta of the verifier's, as f32 (the f32 rounding is the slack's)
      const stage = Float32Array.from(z, (x, i) => x + pattern(i) * 0.999)
      const eta = 2 * delta / draw.temperature
      const own = samplingProbs(stage, draw.temperature)
      const wide = samplingProbs(z, draw.temperature)
      const tokens = V <= 32 ? Array.from(own.keys()) : Array.from(own.keys()).sort((a, b) => own[b] - own[a]).slice(0, 8)
      for (const k of tokens) {
        const exact = sampledInterval(own, k, draw, 0)
        if (!(exact.lo < exact.hi && exact.lo < 1)) continue
        const w = sampledInterval(wide, k, draw, eta)
        const label = JSON.stringify({ trial, V, draw, delta, k, exact, w })
        expect(w.lo - SAMPLED_COIN_SLACK, label).toBeLessThanOrEqual(exact.lo)
        expect(w.hi + SAMPLED_COIN_SLACK, label).toBeGreaterThanOrEqual(Math.min(1, exact.hi))
        intervals++
      }
    }
    expect(intervals).toBeGreaterThan(3000)
  })

  it('honest stages pass: f32, f16 and q8_0 against f32 and the reverse, a sweep of seeds and sampling settings; any coin in the stage\'s own interval is accepted', () => {
    const random = seededRandom(seed)
    let positions = 0
    let boundaries = 0
    const stats = { random: [0, 0], resampled: [0, 0] }
    const byPair: Record<string, { random: number[], resampled: number[] }> = {}
    for (const [stageDtype, verifierDtype] of PAIRS) {
      const stage = lastOf(stageDtype)
      const verifier = lastOf(verifierDtype)
      const tolerance = fingerprintTolerance(stageDtype, verifierDtype) as number
      const pair = byPair[`${stageDtype}/${verifierDtype}`] = { random: [0, 0], resampled: [0, 0] }
      for (const draw of SAMPLINGS) {
        for (let rep = 0; rep < 2; rep++) {
          const prompt = promptOf(random)
          const sampling: SampledCheckParams = { ...draw, seed: seedOf(random), promptLength: prompt.length }
          const sampler = createSampler(sampling)
          const run = generate(stage, prompt, 24, (row) => sampler.sample(row))
          const wanted = generatedPositions(run.tokens, prompt.length)
          const r = spotCheckSampled(verifier, run.inputs, expectedOf(run.tokens, prompt.length), wanted, sampling, stageDtype)
          expect(r.checked).toEqual(wanted)
          expect(r.mismatches, `${stageDtype} stage / ${verifierDtype} verifier ${JSON.stringify(sampling)}`).toEqual([])
          positions += r.checked.length
          // stronger: for the stage's likeliest tokens, the stage's exact interval (whatever coin
          // came) lies inside the verifier's widened one — an honest stage passes for ANY coin
          const V = verifier.config.vocabSize
          const all = verifierLogits(verifier, run.inputs)
          for (const [i, p] of wanted.entries()) {
            const row = all.subarray(p * V, (p + 1) * V)
            const wide = samplingProbs(row, draw.temperature)
            const eta = sampledEta(row, draw.temperature, tolerance)
            const own = samplingProbs(run.rows[i], draw.temperature)
            const likeliest = Array.from(own.keys()).sort((a, b) => own[b] - own[a]).slice(0, 8)
            for (const k of likeliest) {
              const exact = sampledInterval(own, k, draw, 0)
              if (!(exact.lo < exact.hi && exact.lo < 1)) continue // never drawn (a coin is < 1)
              const w = sampledInterval(wide, k, draw, eta)
              expect(w.lo - SAMPLED_COIN_SLACK, `token ${k} at ${p}`).toBeLessThanOrEqual(exact.lo)
              expect(w.hi + SAMPLED_COIN_SLACK, `token ${k} at ${p}`).toBeGreaterThanOrEqual(exact.hi)
              boundaries++
            }
            // what a substituting stage gets through: a uniformly random other token, and a token
            // drawn from the same distribution with another coin (when it differs)
            const coin = createRng(sampling.seed)
            for (let c = 0; c < i; c++) coin()
            const c0 = coin()
            const honest = run.tokens[p + 1]
            const other = (honest + 1 + Math.floor(random() * (V - 1))) % V
            const pass = (k: number): boolean => { const w = sampledInterval(wide, k, draw, eta); return w.lo < w.hi && c0 >= w.lo - SAMPLED_COIN_SLACK && c0 < w.hi + SAMPLED_COIN_SLACK }
            pair.random[0] += pass(other) ? 1 : 0
            pair.random[1]++
            const resampled = createSampler({ ...draw, seed: seedOf(random) }).sample(row)
            if (resampled !== honest) {
              pair.resampled[0] += pass(resampled) ? 1 : 0
              pair.resampled[1]++
            }
          }
        }
      }
      stats.random[0] += pair.random[0]
      stats.random[1] += pair.random[1]
      stats.resampled[0] += pair.resampled[0]
      stats.resampled[1] += pair.resampled[1]
    }
    expect(positions).toBe(PAIRS.length * SAMPLINGS.length * 2 * 24)
    expect(boundaries).toBeGreaterThan(positions)
    const pct = ([a, b]: number[]): string => `${a}/${b} = ${(100 * a / Math.max(1, b)).toFixed(1)}%`
    console.log(`sampled spot-checks: ${positions} honest positions, 0 convicted; ${boundaries} stage intervals inside the widened ones; let through — random substitute ${pct(stats.random)}, resampled substitute ${pct(stats.resampled)}; by stage/verifier: ${Object.entries(byPair).map(([k, v]) => `${k} random ${pct(v.random)} resampled ${pct(v.resampled)}`).join('; ')}`)
    // a random substitute almost never lands on the coin; a plausible one (resampled) often is
    // caught too — these fractions set how many positions an audit needs (README.md)
    expect(stats.random[0] / stats.random[1]).toBeLessThan(0.1)
    expect(stats.resampled[0] / stats.resampled[1]).toBeLessThan(0.6)
  })

  // per run, the fewest positions caught (measured over 150 seeded runs each: replaced ≥ 11 / 28 / 12,
  // other seed ≥ 12 / 15 / 8, greedy ≥ 5 / 10 / 4); the floors below leave a wide margin
  const CHEATS: Array<{ pair: [WeightDType, WeightDType], draw: DrawParams, steps: number, floor: { replaced: number, seed: number, greedy: number } }> = [
    { pair: ['f32', 'f32'], draw: { temperature: 1, topP: 1, topK: 0 }, steps: 40, floor: { replaced: 8, seed: 5, greedy: 2 } },
    { pair: ['f16', 'f32'], draw: { temperature: 0.8, topP: 0.9, topK: 0 }, steps: 90, floor: { replaced: 20, seed: 4, greedy: 2 } },
    // a q8_0 stage against an f32 verifier: its honest logits move by up to 0.03 of their scale,
    // so plausible substitutes are caught far less often (at T ≤ 0.8 greedy tokens pass)
    { pair: ['q8_0', 'f32'], draw: { temperature: 1, topP: 1, topK: 0 }, steps: 60, floor: { replaced: 8, seed: 3, greedy: 1 } }
  ]
  it('a stage that replaces every third token, samples with another seed or greedily while claiming a temperature fails', () => {
    const random = seededRandom(seed ^ 0x5eed)
    const V = lastOf('f32').config.vocabSize
    for (const { pair: [stageDtype, verifierDtype], draw, steps, floor } of CHEATS) {
      const stage = lastOf(stageDtype)
      const verifier = lastOf(verifierDtype)
      const prompt = promptOf(random)
      const sampling: SampledCheckParams = { ...draw, seed: seedOf(random), promptLength: prompt.length }
      const label = `${stageDtype} stage / ${verifierDtype} verifier ${JSON.stringify(sampling)}`
      const check = (run: Run): ReturnType<typeof spotCheckSampled> =>
        spotCheckSampled(verifier, run.inputs, expectedOf(run.tokens, prompt.length), generatedPositions(run.tokens, prompt.length), sampling, stageDtype)
      // every third token replaced by another one (the stage's next steps see the replaced token)
      const honestSampler = createSampler(sampling)
      let i = 0
      const bad = check(generate(stage, prompt, steps, (row) => {
        const t = honestSampler.sample(row)
        return i++ % 3 === 1 ? (t + 1 + Math.floor(random() * (V - 1))) % V : t
      }))
      expect(bad.passed, `${label}: replaced`).toBe(false)
      expect(bad.mismatches.length, `${label}: replaced`).toBeGreaterThanOrEqual(floor.replaced)
      // another seed
      const otherSeed = createSampler({ ...sampling, seed: Number(sampling.seed) + 1 })
      const seeded = check(generate(stage, prompt, steps, (row) => otherSeed.sample(row)))
      expect(seeded.passed, `${label}: other seed`).toBe(false)
      expect(seeded.mismatches.length, `${label}: other seed`).toBeGreaterThanOrEqual(floor.seed)
      // greedy tokens claimed as sampled ones
      const greedy = createSampler({ temperature: 0 })
      const lazy = check(generate(stage, prompt, steps, (row) => greedy.sample(row)))
      expect(lazy.passed, `${label}: greedy`).toBe(false)
      expect(lazy.mismatches.length, `${label}: greedy`).toBeGreaterThanOrEqual(floor.greedy)
      // and the honest run of the same settings passes
      const fair = createSampler(sampling)
      expect(check(generate(stage, prompt, steps, (row) => fair.sample(row))).mismatches, `${label}: honest`).toEqual([])
    }
  })

  it('failover: a replacement opened with skip_draws continues the coins and passes either way it is described; one that restarts the PRNG fails', () => {
    const random = seededRandom(seed ^ 0xfa11)
    const stage = lastOf('f16')
    const verifier = lastOf('f32')
    const V = stage.config.vocabSize
    const prompt = promptOf(random)
    const sampling: SampledCheckParams = { temperature: 1, topP: 0.95, topK: 0, seed: seedOf(random), promptLength: prompt.length }
    const g = 12
    // the first last stage generates g tokens, then fails
    const first = createSampler(sampling)
    const before = generate(stage, prompt, g, (row) => first.sample(row))
    const replay = (skip: boolean): Run => {
      // the replacement: a prefill of everything so far (the head replays it), a sampler that
      // skips the draws already made as the stage service does, then one token per step
      const sampler = createSampler(sampling)
      if (skip) for (let i = 0; i < g; i++) sampler.sample(new Float32Array(1))
      const hs = head.openSession({ maxLength: 256 })
      const ls = stage.openSession({ maxLength: 256 })
      const tokens = [...before.tokens]
      const inputs: StageInput[] = []
      let input = tokens
      try {
        for (let i = 0; i < 16; i++) {
          const hidden = hs.step({ tokens: input }).hidden as Float32Array
          inputs.push({ hidden })
          const logits = ls.step({ hidden }).logits as Float32Array
          const token = sampler.sample(logits.slice(logits.length - V))
          tokens.push(token)
          input = [token]
        }
      } finally {
        hs.close()
        ls.close()
      }
      return { tokens, inputs, rows: [] }
    }
    const resumed = replay(true)
    // the replacement's own view: its prefix (prompt + g tokens) and skip_draws = g
    const own: SampledCheckParams = { ...sampling, promptLength: before.tokens.length, skipDraws: g }
    const ownWanted = generatedPositions(resumed.tokens, own.promptLength)
    const a = spotCheckSampled(verifier, resumed.inputs, expectedOf(resumed.tokens, own.promptLength), ownWanted, own, 'f16')
    expect(a.checked).toEqual(ownWanted)
    expect(a.passed).toBe(true)
    // the round's view: the original prompt, no skip — the coins are numbered from the prompt
    const roundWanted = generatedPositions(resumed.tokens, prompt.length)
    const b = spotCheckSampled(verifier, resumed.inputs, expectedOf(resumed.tokens, prompt.length), roundWanted, sampling, 'f16')
    expect(b.checked.length).toBe(g + 16)
    expect(b.passed).toBe(true)
    // a replacement that ignored skip_draws (drew the first coins again)
    const restarted = replay(false)
    const c = spotCheckSampled(verifier, restarted.inputs, expectedOf(restarted.tokens, own.promptLength), generatedPositions(restarted.tokens, own.promptLength), own, 'f16')
    expect(c.passed).toBe(false)
    // skip_draws beyond the prefix is malformed
    expect(() => spotCheckSampled(verifier, resumed.inputs, expectedOf(resumed.tokens, 3), [5], { ...sampling, promptLength: 3, skipDraws: 3 })).toThrow(expect.objectContaining({ name: 'ConsensusInputError' }))
  })

  it('refuses what it cannot check; ignores prompt positions; a token outside the vocabulary is a mismatch', () => {
    const random = seededRandom(seed ^ 0xbad)
    const verifier = lastOf('f32')
    const prompt = promptOf(random)
    const sampling: SampledCheckParams = { temperature: 0.8, topP: 1, topK: 0, seed: 7, promptLength: prompt.length }
    const sampler = createSampler(sampling)
    const run = generate(verifier, prompt, 8, (row) => sampler.sample(row))
    const expected = expectedOf(run.tokens, prompt.length)
    const wrong = (params: Partial<SampledCheckParams>): unknown => {
      try { spotCheckSampled(verifier, run.inputs, expected, [6], { ...sampling, ...params }); return undefined } catch (err) { return (err as Error).name }
    }
    expect(wrong({ temperature: 0 })).toBe('ConsensusInputError')
    expect(wrong({ topP: 1.5 })).toBe('ConsensusInputError')
    expect(wrong({ topK: -1 })).toBe('ConsensusInputError')
    expect(wrong({ seed: -1 })).toBe('ConsensusInputError')
    expect(wrong({ promptLength: 0 })).toBe('ConsensusInputError')
    expect(() => spotCheckSampled(verifier, run.inputs, expected, [6], sampling, 'q4_0')).toThrow(expect.objectContaining({ name: 'ConsensusInputError' }))
    expect(() => spotCheckSampled(head, run.inputs, expected, [6], sampling)).toThrow(expect.objectContaining({ name: 'ConsensusInputError' }))
    // prompt positions have no coin; an empty selection passes vacuously
    expect(spotCheckSampled(verifier, run.inputs, expected, [0, 1, 2], sampling)).toEqual({ checked: [], mismatches: [], passed: true })
    const outside = [...expected]
    outside[prompt.length + 1] = 100000
    const r = spotCheckSampled(verifier, run.inputs, outside, generatedPositions(run.tokens, prompt.length), sampling)
    expect(r.mismatches.map((m) => m.position)).toEqual([prompt.length + 1])
  })
})
