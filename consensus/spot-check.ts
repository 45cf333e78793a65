// Spot-checks of sharded execution. A stage commits a fingerprint (fingerprint.ts) of its output
// at every position it computes; afterwards a seeded sampler — seeded by the session and stage,
// drawn after the fingerprints are committed, so the stage cannot know which steps are checked —
// picks positions, and another holder of the same layers replays the stage's recorded inputs in
// one batched prefill (cheaper than the decode that produced them) and compares. A mismatch is
// an evidence record (records.ts) and, once in the swarm state, a reputation penalty and
// exclusion from routing (reputation.ts applySpotCheck).
import { seededRng } from './digest.ts'
import { ConsensusInputError } from './errors.ts'
import { FINGERPRINT_INDEX_SLACK, SPOT_CHECK_DOMAIN } from './constants.ts'
import { fingerprintDistances, fingerprintTolerance, type FingerprintCheck, type FingerprintMismatch } from './fingerprint.ts'
import type { Session, Shard, StageInput, WeightDType } from '../engine/index.ts'

/** `count` distinct positions of [0, positions), sorted, drawn from a PRNG seeded by `seed`. */
export function sampleSpotChecks (seed: readonly string[], positions: number, count: number): number[] {
  if (!Number.isInteger(positions) || positions < 0 || !Number.isInteger(count) || count < 0) throw new ConsensusInputError('positions and count must be integers ≥ 0')
  const rng = seededRng([SPOT_CHECK_DOMAIN, ...seed])
  const all = Array.from({ length: positions }, (_, i) => i)
  const n = Math.min(count, positions)
  // Partial Fisher–Yates: the first n slots are a uniform sample.
  for (let i = 0; i < n; i++) {
    const j = i + Math.floor(rng() * (positions - i))
    const t = all[i]
    all[i] = all[j]
    all[j] = t
  }
  return all.slice(0, n).sort((a, b) => a - b)
}

/** What a stage was given, step by step, and the fingerprints it committed for each step. */
export interface StageTrace {
  /** Per step: token ids (first stage) or hidden states [T, dim]. */
  inputs: StageInput[]
  /** Per step: fingerprint of that step's output, T positions. */
  fingerprints: Uint8Array[]
}

export interface SpotCheckResult {
  /** Positions checked (global, over the whole trace). */
  checked: number[]
  /** Distance of every checked position, and those beyond the tolerance. */
  distances: FingerprintMismatch[]
  mismatches: FingerprintMismatch[]
  passed: boolean
}

/** A last shard's logits for every row of `inputs` (`rows` of them), replayed in one fresh session. */
export function replayLogits (shard: Shard, inputs: StageInput[], rows: number): Float32Array {
  const session: Session = shard.openSession({ maxLength: rows })
  try {
    return session.step(concatInputs(inputs), { logits: 'all' }).logits as Float32Array
  } finally {
    session.close()
  }
}

/** The rows of a trace's steps as one input (token ids, or hidden states end to end). */
export function concatInputs (inputs: StageInput[]): StageInput {
  if (inputs.length > 0 && 'tokens' in inputs[0]) {
    const tokens: number[] = []
    for (const x of inputs) {
      if (!('tokens' in x)) throw new ConsensusInputError('a trace mixes tokens and hidden states')
      for (let i = 0; i < x.tokens.length; i++) tokens.push(x.tokens[i])
    }
    return { tokens }
  }
  let n = 0
  for (const x of inputs) {
    if (!('hidden' in x)) throw new ConsensusInputError('a trace mixes tokens and hidden states')
    n += x.hidden.length
  }
  const hidden = new Float32Array(n)
  let off = 0
  for (const x of inputs) {
    const h = (x as { hidden: Float32Array }).hidden
    hidden.set(h, off)
    off += h.length
  }
  return { hidden }
}

/**
 * Replays a trace on the verifier's own shard (same layers) in one prefill over every position up
 * to the last one checked, and compares fingerprints at `positions`. The tolerance defaults to
 * fingerprintTolerance(stageDtype, verifier dtype).
 */
export function spotCheck (shard: Shard, trace: StageTrace, positions: readonly number[], topK?: number, check: FingerprintCheck = {}, stageDtype: WeightDType = shard.dtype): SpotCheckResult {
  if (trace.inputs.length !== trace.fingerprints.length) throw new ConsensusInputError('a trace needs one fingerprint per step')
  const dim = shard.isLast ? shard.config.vocabSize : shard.config.dim
  const stepOf: Array<{ step: number, row: number }> = []
  trace.inputs.forEach((x, step) => {
    const T = 'tokens' in x ? x.tokens.length : x.hidden.length / shard.config.dim
    for (let row = 0; row < T; row++) stepOf.push({ step, row })
  })
  const wanted = [...new Set(positions)].filter((p) => p >= 0 && p < stepOf.length).sort((a, b) => a - b)
  if (wanted.length === 0) return { checked: [], distances: [], mismatches: [], passed: true }
  const last = wanted[wanted.length - 1]
  const upTo = stepOf[last].step
  const session: Session = shard.openSession({ maxLength: stepOf.length })
  let out: Float32Array
  try {
    const result = session.step(concatInputs(trace.inputs.slice(0, upTo + 1)), shard.isLast ? { logits: 'all' } : {})
    out = (shard.isLast ? result.logits : result.hidden) as Float32Array
  } finally {
    session.close()
  }
  const size = trace.fingerprints[0].length / Math.max(1, stepRows(trace.inputs[0], shard.config.dim))
  const tolerance = check.valueTolerance ?? fingerprintTolerance(stageDtype, shard.dtype)
  if (tolerance === undefined) throw new ConsensusInputError(`a ${shard.dtype} verifier cannot check a ${stageDtype} stage`)
  const slack = check.indexSlack ?? FINGERPRINT_INDEX_SLACK
  const distances: FingerprintMismatch[] = []
  for (const p of wanted) {
    const { step, row } = stepOf[p]
    const claimed = trace.fingerprints[step].subarray(row * size, (row + 1) * size)
    for (const d of fingerprintDistances(claimed, out.subarray(p * dim, (p + 1) * dim), dim, topK)) distances.push({ ...d, position: p })
  }
  const mismatches = distances.filter((d) => d.missingIndices > slack || !(d.valueError <= tolerance))
  return { checked: wanted, distances, mismatches, passed: mismatches.length === 0 }
}

function stepRows (x: StageInput, dim: number): number {
  return 'tokens' in x ? x.tokens.length : x.hidden.length / dim
}

export interface TokenSpotCheckResult {
  /** Positions checked (global, over the whole trace). */
  checked: number[]
  /** Checked positions whose claimed token is not the verifier's argmax (beyond the tolerance). */
  mismatches: Array<{ position: number, claimed: number, argmax: number, margin: number }>
  passed: boolean
}

/**
 * A last stage's greedy outputs: replays `inputs` on the verifier's own last shard in one prefill
 * and checks, at each of `positions` with a known token, that `expected[position]` (the token the
 * stage sampled after that position) is the argmax of the verifier's logits — or within the
 * dtype's tolerance of it, scaled by the logits' largest magnitude, so near-ties do not convict.
 */
export function spotCheckGreedy (shard: Shard, inputs: StageInput[], expected: ReadonlyArray<number | undefined>, positions: readonly number[], stageDtype: WeightDType = shard.dtype): TokenSpotCheckResult {
  if (!shard.isLast) throw new ConsensusInputError('a token check needs a last shard')
  const V = shard.config.vocabSize
  let rows = 0
  for (const x of inputs) rows += stepRows(x, shard.config.dim)
  const wanted = [...new Set(positions)].filter((p) => p >= 0 && p < rows && expected[p] !== undefined).sort((a, b) => a - b)
  if (wanted.length === 0) return { checked: [], mismatches: [], passed: true }
  const tolerance = fingerprintTolerance(stageDtype, shard.dtype)
  if (tolerance === undefined) throw new ConsensusInputError(`a ${shard.dtype} verifier cannot check a ${stageDtype} stage`)
  const logits = replayLogits(shard, inputs, rows)
  const mismatches: TokenSpotCheckResult['mismatches'] = []
  for (const p of wanted) {
    const row = logits.subarray(p * V, (p + 1) * V)
    let argmax = 0
    let scale = 0
    for (let i = 0; i < V; i++) {
      if (row[i] > row[argmax]) argmax = i
      scale = Math.max(scale, Math.abs(row[i]))
    }
    const claimed = expected[p] as number
    const margin = claimed >= 0 && claimed < V ? row[argmax] - row[claimed] : Infinity
    if (!(margin <= tolerance * Math.max(1, scale))) mismatches.push({ position: p, claimed, argmax, margin })
  }
  return { checked: wanted, mismatches, passed: mismatches.length === 0 }
}
