// Spot-check trials on real engine shards: many generations (random-token prompts, seeded) through
// a head / audited stage / tail split, each audited by a verifier shard at `checks` positions drawn
// by the seeded sampler. Reports how often a run was flagged (detection for a cheating stage,
// false positives for an honest one) and how often cheating changed the greedy tokens.
import type { HiddenCodec, Shard } from '../../engine/index.ts'
import { createRng } from '../../sharding/sim/random.ts'
import { sampleSpotChecks, spotCheck } from '../spot-check.ts'
import { tracedRun } from './stage-trace.ts'

export interface SpotTrialOptions {
  head: Shard
  /** The shard the audited stage runs (fewer layers for a lazy stage). */
  stage: Shard
  /** The honest shard of the same range (for the honest tokens). */
  honest: Shard
  tail: Shard
  verifier: Shard
  runs: number
  promptTokens: number
  steps: number
  /** Positions checked per run. */
  checks: number
  codec?: HiddenCodec
  corruption?: number
  corruptRate?: number
  seed: number
}

export interface SpotTrialResult {
  runs: number
  /** Runs with at least one mismatch among the checked positions. */
  flagged: number
  /** Runs whose greedy tokens differ from the honest run's. */
  tokensChanged: number
  /** Largest value error seen at a checked position of any run (relative to the row's scale). */
  maxValueError: number
  /** Wall time of all runs, ms. */
  ms: number
}

export function spotTrials (o: SpotTrialOptions): SpotTrialResult {
  const rng = createRng(o.seed)
  const vocab = o.head.config.vocabSize
  let flagged = 0
  let tokensChanged = 0
  let maxValueError = 0
  const t0 = performance.now()
  for (let run = 0; run < o.runs; run++) {
    const prompt = [o.head.config.bosId]
    for (let i = 0; i < o.promptTokens; i++) prompt.push(3 + Math.floor(rng() * (vocab - 3)))
    const cheating = o.stage !== o.honest || (o.corruption ?? 0) > 0
    const r = tracedRun({
      head: o.head,
      stage: o.stage,
      tail: o.tail,
      prompt,
      steps: o.steps,
      ...(o.codec !== undefined ? { codec: o.codec } : {}),
      ...(o.corruption !== undefined ? { corruption: o.corruption, corruptRate: o.corruptRate ?? 1, rng } : {})
    })
    if (cheating) {
      const ref = tracedRun({ head: o.head, stage: o.honest, tail: o.tail, prompt, steps: o.steps, ...(o.codec !== undefined ? { codec: o.codec } : {}) })
      if (ref.tokens.some((t, i) => t !== r.tokens[i])) tokensChanged++
    }
    const total = prompt.length + o.steps
    const positions = sampleSpotChecks([`trial:${o.seed}:${run}`, 'stage'], total, o.checks)
    const check = spotCheck(o.verifier, r.trace, positions, undefined, {}, o.honest.dtype)
    for (const d of check.distances) if (d.valueError > maxValueError) maxValueError = d.valueError
    if (!check.passed) flagged++
  }
  return { runs: o.runs, flagged, tokensChanged, maxValueError, ms: performance.now() - t0 }
}
