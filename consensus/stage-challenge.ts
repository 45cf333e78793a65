// Calibration as proof of capability for a node that serves a layer range (issue 7): the
// calibrator derives challenge inputs from a fresh challenge id and the candidate's id (so they
// cannot be precomputed) — token ids for a first stage, seeded hidden states otherwise — runs its
// own copy of the same layers on them, and checks the candidate's outputs: the exact greedy token
// per row for a last stage, else the candidate's hidden states against its own by fingerprint,
// within the dtype-aware tolerance (fingerprint.ts). A lazy stage (skipped layers) or a corrupting
// one fails; an honest one of the same dtype passes.
import type { Shard, StageInput, WeightDType } from '../engine/index.ts'
import { seededRng } from './digest.ts'
import { ConsensusInputError } from './errors.ts'
import { checkFingerprint, fingerprint, fingerprintTolerance } from './fingerprint.ts'

const STAGE_CHALLENGE_DOMAIN = 'mycelium/consensus/stage-challenge/1'
/** Rows (positions) of one stage challenge. */
export const STAGE_CHALLENGE_ROWS = 8

export interface StageChallengeOptions {
  challenge: string
  candidate: string
  /** The candidate's layers. */
  start: number
  end: number
  dim: number
  vocab: number
  rows?: number
}

/** A stage challenge's input (a StageInput). */
export type StageChallengeInput = { tokens: number[] } | { hidden: Float32Array }

/** The challenge input: tokens (BOS then random ids ≥ 3) for a first stage, else seeded N(0, 1) hidden rows. */
export function stageChallenge (options: StageChallengeOptions): StageChallengeInput {
  const rows = options.rows ?? STAGE_CHALLENGE_ROWS
  if (!(options.end > options.start) || rows < 1 || options.vocab < 4) throw new ConsensusInputError('bad stage challenge')
  const rng = seededRng([STAGE_CHALLENGE_DOMAIN, options.challenge, options.candidate, `${options.start}:${options.end}`])
  if (options.start === 0) return { tokens: [1, ...Array.from({ length: rows - 1 }, () => 3 + Math.floor(rng() * (options.vocab - 3)))] }
  const hidden = new Float32Array(rows * options.dim)
  for (let i = 0; i < hidden.length; i += 2) { // Box–Muller
    const u = Math.max(rng(), 1e-12)
    const v = rng()
    const r = Math.sqrt(-2 * Math.log(u))
    hidden[i] = r * Math.cos(2 * Math.PI * v)
    if (i + 1 < hidden.length) hidden[i + 1] = r * Math.sin(2 * Math.PI * v)
  }
  return { hidden }
}

/** What a stage answers: greedy tokens per row (a last stage), else its output hidden states. */
export type StageChallengeAnswer = { tokens: number[] } | { hidden: Float32Array }

/** Runs `shard` (fresh session) on a challenge input: what an honest candidate answers. */
export function answerStageChallenge (shard: Shard, input: StageInput): StageChallengeAnswer {
  const session = shard.openSession({ maxLength: 'tokens' in input ? input.tokens.length : input.hidden.length / shard.config.dim })
  try {
    const out = session.step(input, shard.isLast ? { logits: 'all' } : {})
    if (!shard.isLast) return { hidden: Float32Array.from(out.hidden as Float32Array) }
    const logits = out.logits as Float32Array
    const V = shard.config.vocabSize
    const tokens: number[] = []
    for (let r = 0; r < logits.length / V; r++) {
      let best = 0
      for (let j = 1; j < V; j++) if (logits[r * V + j] > logits[r * V + best]) best = j
      tokens.push(best)
    }
    return { tokens }
  } finally {
    session.close()
  }
}

export interface StageChallengeResult { passed: boolean, rows: number, rowsExact: number, reason?: string }

/**
 * Checks a candidate's answer with the verifier's own shard of the same layers: exact tokens for a
 * last stage; otherwise every row's fingerprint within the tolerance for the stage's dtype.
 */
export function checkStageChallenge (shard: Shard, input: StageInput, answer: StageChallengeAnswer | undefined, stageDtype: WeightDType = shard.dtype): StageChallengeResult {
  const rows = 'tokens' in input ? input.tokens.length : input.hidden.length / shard.config.dim
  if (answer === undefined) return { passed: false, rows, rowsExact: 0, reason: 'no answer' }
  const own = answerStageChallenge(shard, input)
  if ('tokens' in own) {
    if (!('tokens' in answer) || answer.tokens.length !== rows) return { passed: false, rows, rowsExact: 0, reason: 'wrong shape' }
    const exact = own.tokens.filter((t, i) => answer.tokens[i] === t).length
    return { passed: exact === rows, rows, rowsExact: exact, ...(exact === rows ? {} : { reason: 'greedy tokens differ' }) }
  }
  const dim = shard.config.dim
  if (!('hidden' in answer) || answer.hidden.length !== rows * dim) return { passed: false, rows, rowsExact: 0, reason: 'wrong shape' }
  const tolerance = fingerprintTolerance(stageDtype, shard.dtype)
  if (tolerance === undefined) throw new ConsensusInputError(`a ${shard.dtype} verifier cannot check a ${stageDtype} stage`)
  const mismatches = checkFingerprint(fingerprint(answer.hidden, dim), own.hidden, dim, undefined, { valueTolerance: tolerance })
  const bad = new Set(mismatches.map((m) => m.position)).size
  return { passed: bad === 0, rows, rowsExact: rows - bad, ...(bad === 0 ? {} : { reason: 'hidden states differ' }) }
}
