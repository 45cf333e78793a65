// Spot-checks of a last stage that SAMPLED its tokens (temperature > 0). The engine's sampler
// (engine/sampler.ts) is deterministic given (temperature, top-p, top-k, seed, coins drawn
// already): one PRNG coin per sampled token, then the token whose CDF interval holds the coin. A
// verifier holding the same layers replays the stage's inputs, replays the coins from the seed,
// and accepts a claimed token iff the coin falls inside that token's CDF interval under its OWN
// probabilities — widened so that any honest stage whose logits differ from the verifier's by at
// most the dtype tolerance is never convicted (derivation: README.md, "Sampled last stages").
import { ConsensusInputError } from './errors.ts'
import { SAMPLED_COIN_SLACK } from './constants.ts'
import { fingerprintTolerance } from './fingerprint.ts'
import { replayLogits } from './spot-check.ts'
import { createRng, softmax } from '../engine/index.ts'
import type { Shard, StageInput, WeightDType } from '../engine/index.ts'

/** The sampling a last stage was asked for (the session's Open.sampling) and where its coins start. */
export interface SampledCheckParams {
  /** > 0 (a greedy stage is checked by spotCheckGreedy). */
  temperature: number
  /** Nucleus threshold; 0 or 1 disables it (as the stage service and createSampler do). */
  topP: number
  /** 0 disables it; so does any k ≥ the vocabulary. */
  topK: number
  /** The sampler's PRNG seed (an integer in [0, 2^53), or a bigint). */
  seed: number | bigint
  /**
   * The token at index t ≥ promptLength of the sequence (the token sampled after position
   * t - 1) drew coin number skipDraws + t - promptLength of the seed's PRNG. With the round's
   * prompt length, skipDraws is 0 even across failovers (a replacement last stage is opened with
   * skip_draws = tokens generated so far); with a replacement session's own prefix length, pass
   * its skip_draws.
   */
  promptLength: number
  skipDraws?: number
}

/** The coin interval [lo, hi) in which a claimed token is accepted; empty when lo ≥ hi. */
export interface CoinInterval { lo: number, hi: number }

export interface SampledSpotCheckResult {
  /** Positions checked (global, over the whole trace). */
  checked: number[]
  /** Checked positions whose coin lies outside the claimed token's widened interval. */
  mismatches: Array<{ position: number, claimed: number, coin: number, lo: number, hi: number }>
  passed: boolean
}

/** Draw parameters of one row: what the sampler does after dividing by the temperature. */
export interface DrawParams { temperature: number, topP: number, topK: number }

function stepRows (x: StageInput, dim: number): number {
  return 'tokens' in x ? x.tokens.length : x.hidden.length / dim
}

/** A last stage's inputs must be hidden states, whole rows of `dim`. */
function checkHidden (inputs: StageInput[], dim: number): void {
  let n = 0
  for (const x of inputs) {
    if (!('hidden' in x)) throw new ConsensusInputError('a last stage\'s inputs must be hidden states (a one-stage pipeline is checked by its whole-model replay)')
    n += x.hidden.length
  }
  if (n % dim !== 0) throw new ConsensusInputError(`hidden states of ${n} values are not rows of ${dim}`)
}

/** The probabilities the engine's sampler draws from: logits / temperature (f32), softmax. */
export function samplingProbs (logits: Float32Array, temperature: number): Float32Array {
  const probs = new Float32Array(logits.length)
  for (let i = 0; i < logits.length; i++) probs[i] = logits[i] / temperature
  softmax(probs, probs.length)
  return probs
}

/**
 * How far an honest stage's log-odds may be from the verifier's, given the verifier's logits
 * `row`: each logit within delta = tolerance × max(1, max |logit|) of the stage's (the scale
 * spotCheckGreedy uses), so each logit / temperature within delta / temperature, and the log of
 * any ratio of two masses (two tokens, a set against its complement) within 2 delta / temperature.
 */
export function sampledEta (row: Float32Array, temperature: number, tolerance: number): number {
  let scale = 0
  for (let i = 0; i < row.length; i++) scale = Math.max(scale, Math.abs(row[i]))
  return 2 * tolerance * Math.max(1, scale) / temperature
}

/**
 * The coin interval of `claimed` under the probabilities `probs` (samplingProbs of the verifier's
 * logits) for an honest stage whose log-odds may differ from these by at most `eta` (for any
 * two disjoint sets of tokens, |Δ log(mass ratio)| ≤ eta; sampledEta). eta = 0 gives the engine sampler's exact interval (ties aside): the
 * sampler returns `claimed` iff its coin lies in [lo, hi). The interval is widened only by `eta`,
 * never by the coin slack (the caller adds it).
 */
export function sampledInterval (probs: Float32Array, claimed: number, params: DrawParams, eta: number): CoinInterval {
  const V = probs.length
  if (!Number.isInteger(claimed) || claimed < 0 || claimed >= V) return { lo: 1, hi: 0 }
  const up = Math.exp(eta)
  // bounds on the stage's mass of a FIXED set whose verifier mass is m: its odds m / (1 - m) move
  // by a factor e^±eta at most (the set's logits up by eta / 2, the others down by eta / 2); m is
  // clamped to [0, 1] first (f32 probabilities may sum to 1 + 1e-7)
  const massLo = (m: number): number => { const x = Math.min(1, Math.max(0, m)); return x / (x + (1 - x) * up) }
  const massHi = (m: number): number => { const x = Math.min(1, Math.max(0, m)); return x * up / (x * up + 1 - x) }
  const pk = probs[claimed]
  const pkLo = massLo(pk)
  const pkHi = massHi(pk)
  const topK = params.topK > 0 && params.topK < V ? params.topK : 0
  const topP = params.topP > 0 && params.topP < 1 ? params.topP : 1
  if (topK === 0 && topP === 1) {
    // sampleMult: index order, no renormalization; the rounding fallback returns the last index
    let before = 0
    for (let i = 0; i < claimed; i++) before += probs[i]
    return { lo: massLo(before), hi: claimed === V - 1 ? 1 : massHi(before + pk) }
  }
  // sorted draws: the tokens ahead of `claimed` are those with a larger probability (lower index
  // on ties); the ratio of two probabilities moves by a factor e^±eta at most, so for the stage a
  // token is surely ahead when its ratio exceeds e^eta, perhaps ahead when it is not surely behind
  let sure = 0
  let surely = 0
  let maybe = 0
  for (let j = 0; j < V; j++) {
    if (j === claimed) continue
    const p = probs[j]
    if (p > pk * up || (eta === 0 && p === pk && j < claimed)) { sure += p; surely++ }
    if (p * up > pk || (p * up === pk && j < claimed)) maybe += p
  }
  const beforeLo = massLo(sure)
  const beforeHi = massHi(maybe)
  // prefix masses of the verifier's order: the stage's top-m mass is within massLo/massHi of it
  const m = topK > 0 ? topK : V
  const sorted = Float32Array.from(probs).sort().reverse().subarray(0, m)
  let W = 0
  for (const p of sorted) W += p
  let WLo = 1
  let WHi = 1
  if (topK > 0) {
    if (surely >= topK) return { lo: 1, hi: 0 } // never among the stage's top k
    WLo = massLo(W)
    WHi = massHi(W)
  } else if (pkHi < (1 - topP) / (V - 1)) {
    return { lo: 1, hi: 0 } // below llama2.c's candidate cutoff for every honest stage
  }
  // the nucleus: the shortest sorted prefix whose mass exceeds P (P = topP × W; without top-p it
  // is all of the top k). Without a cut by top-k the candidates always exceed topP, so Z > P.
  let ZLo: number
  let ZHi: number
  if (topP === 1) {
    ZLo = WLo
    ZHi = WHi
  } else {
    const PLo = topP * WLo
    const PHi = topP * WHi
    if (beforeLo > PHi) return { lo: 1, hi: 0 } // the cut comes before the claimed token
    // the verifier's nucleus: Y = mass before its last token (≤ P), Zv = with it (> P)
    let Y = 0
    let Zv = Number.NaN
    for (const p of sorted) {
      if (Y + p > topP * W) { Zv = Y + p; break }
      Y += p
    }
    ZLo = Math.max(PLo, beforeLo + pkLo)
    ZHi = Math.min(WHi, PHi + pkHi)
    if (!Number.isNaN(Zv)) {
      // a stage prefix of the verifier nucleus' size already exceeds P: its nucleus is no longer
      if (massLo(Zv) > PHi) ZHi = Math.min(ZHi, massHi(Zv))
      // a stage prefix one shorter cannot exceed P: its nucleus is no shorter
      if (massHi(Y) <= PLo) ZLo = Math.max(ZLo, massLo(Zv))
    }
  }
  return { lo: beforeLo / ZHi, hi: Math.min(1, (beforeHi + pkHi) / ZLo) }
}

/**
 * A last stage's SAMPLED outputs: replays `inputs` (the hidden states its predecessor sent) on the
 * verifier's own last shard in one prefill, replays the sampler's coins from `sampling.seed`, and
 * checks, at each of `positions` with a known token, that the coin of `expected[position]` (the
 * token the stage sampled after that position) lies in that token's CDF interval under the
 * verifier's probabilities, widened for an honest stage of `stageDtype` (logits within
 * fingerprintTolerance × max(1, max |logit|) of the verifier's) and by SAMPLED_COIN_SLACK.
 * Passed iff no checked position falls outside (as spotCheckGreedy).
 */
export function spotCheckSampled (shard: Shard, inputs: StageInput[], expected: ReadonlyArray<number | undefined>, positions: readonly number[], sampling: SampledCheckParams, stageDtype: WeightDType = shard.dtype): SampledSpotCheckResult {
  if (!shard.isLast) throw new ConsensusInputError('a token check needs a last shard')
  const { temperature, topP, topK, seed, promptLength } = sampling
  const skipDraws = sampling.skipDraws ?? 0
  if (!(temperature > 0) || !Number.isFinite(temperature)) throw new ConsensusInputError(`a sampled check needs a temperature > 0, got ${temperature}`)
  if (!(topP >= 0 && topP <= 1)) throw new ConsensusInputError(`topP must be in [0, 1], got ${topP}`)
  if (!Number.isInteger(topK) || topK < 0) throw new ConsensusInputError(`topK must be an integer ≥ 0, got ${topK}`)
  if (!Number.isInteger(skipDraws) || skipDraws < 0) throw new ConsensusInputError(`skipDraws must be an integer ≥ 0, got ${skipDraws}`)
  if (!Number.isInteger(promptLength) || promptLength < 1) throw new ConsensusInputError(`promptLength must be an integer ≥ 1, got ${promptLength}`)
  // the prefix holds the prompt (≥ 1 token) and the tokens drawn before it: never more draws than that
  if (skipDraws >= promptLength) throw new ConsensusInputError(`skipDraws ${skipDraws} exceeds the tokens before position ${promptLength}`)
  if (typeof seed === 'number' ? !(Number.isSafeInteger(seed) && seed >= 0) : seed < 0n) throw new ConsensusInputError(`seed must be an integer in [0, 2^53), got ${seed}`)
  const V = shard.config.vocabSize
  const dim = shard.config.dim
  let rows = 0
  for (const x of inputs) rows += stepRows(x, dim)
  // a position's token drew a coin only when it follows the prompt
  const wanted = [...new Set(positions)].filter((p) => Number.isInteger(p) && p >= 0 && p < rows && p + 1 >= promptLength && expected[p] !== undefined).sort((a, b) => a - b)
  if (wanted.length === 0) return { checked: [], mismatches: [], passed: true }
  const tolerance = fingerprintTolerance(stageDtype, shard.dtype)
  if (tolerance === undefined) throw new ConsensusInputError(`a ${shard.dtype} verifier cannot check a ${stageDtype} stage`)
  checkHidden(inputs, dim)
  const logits = replayLogits(shard, inputs, rows)
  // the coins, in draw order, up to the last one checked
  const coinOf = (p: number): number => skipDraws + p + 1 - promptLength
  const random = createRng(seed)
  const coins = Array.from({ length: coinOf(wanted[wanted.length - 1]) + 1 }, () => random())
  const draw: DrawParams = { temperature, topP, topK }
  const mismatches: SampledSpotCheckResult['mismatches'] = []
  for (const p of wanted) {
    const row = logits.subarray(p * V, (p + 1) * V)
    const claimed = expected[p] as number
    const { lo, hi } = sampledInterval(samplingProbs(row, temperature), claimed, draw, sampledEta(row, temperature, tolerance))
    const coin = coins[coinOf(p)]
    if (!(coin >= lo - SAMPLED_COIN_SLACK && coin < hi + SAMPLED_COIN_SLACK && lo < hi)) mismatches.push({ position: p, claimed, coin, lo, hi })
  }
  return { checked: wanted, mismatches, passed: mismatches.length === 0 }
}
