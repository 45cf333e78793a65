// Settling a round: schedule from the reputation at the round's start, commit–reveal check,
// reputation-weighted Bradley–Terry over the accepted votes, and the evidence each judge earns.
// A pure function of (reputation state, round input): every node computes the same bytes.
import { bradleyTerry } from './bradley-terry.ts'
import { checkReveals } from './commit-reveal.ts'
import { SCHEDULE_WEIGHT_FLOOR } from './constants.ts'
import { compareText } from './digest.ts'
import { ConsensusInputError } from './errors.ts'
import { schedulePairs } from './pair-schedule.ts'
import { admittedFor, applyRound, DEFAULT_REPUTATION_PARAMS, reputationOf, roundWeights, type ReputationParams } from './reputation.ts'
import type { Answer, Comparison, JudgeEvidence, PairSchedule, ReputationState, RoundInput, RoundOutcome, Vote } from './index.ts'

export interface SettleOptions {
  params?: ReputationParams
  /** 'uniform' ignores reputation (every admitted judge weighs 1): the unweighted baseline. */
  weighting?: 'reputation' | 'uniform'
  /** Bradley–Terry prior (default BT_PRIOR). */
  prior?: number
}

/** Scheduling options: SettleOptions and the round's model. */
export interface ScheduleOptions extends SettleOptions {
  /** Only nodes admitted for this model judge (admittedFor); absent: every admitted node. */
  model?: string
}

/**
 * Nodes admitted for `model` (genesis: every model; others: the models they passed calibration
 * on) and not excluded, sorted: who may judge a round on it. Without `model`, every admitted node.
 */
export function eligibleJudges (state: ReputationState, model?: string): string[] {
  return [...state.nodes].filter(([, r]) => admittedFor(r, model) && !r.excluded).map(([id]) => id).sort(compareText)
}

/** The owner named by a round id `<owner>:<rest>`, if any. */
export function roundOwner (round: string): string | undefined {
  const colon = round.indexOf(':')
  return colon > 0 ? round.slice(0, colon) : undefined
}

/**
 * The round's schedule, drawn with reputation weights (floored for admitted judges) among the
 * nodes admitted for the round's model (`options.model`). The round's owner does not judge: it
 * chose the answerers.
 */
export function scheduleRound (state: ReputationState, round: string, answers: readonly Answer[], judgesPerPair?: number, options: ScheduleOptions = {}): PairSchedule {
  const params = options.params ?? DEFAULT_REPUTATION_PARAMS
  const owner = roundOwner(round)
  const weights = roundWeights(state, eligibleJudges(state, options.model).filter((id) => id !== owner), params)
  const judges = [...weights].map(([id, w]) => ({ id, weight: options.weighting === 'uniform' ? 1 : Math.max(w, SCHEDULE_WEIGHT_FLOOR) }))
  return schedulePairs({ round, answers, judges, ...(judgesPerPair !== undefined ? { judgesPerPair } : {}) })
}

/** An unordered pair's key (sorted ids). */
function pairKey (v: Vote): string {
  return v.first < v.second ? `${v.first}\u0000${v.second}` : `${v.second}\u0000${v.first}`
}

/** A vote as the score of the pair's smaller id: 1 it won, 0 it lost, 0.5 a tie. */
function orientedScore (v: Vote): number {
  if (v.choice === 'tie') return 0.5
  return (v.choice === 'first') === (v.first < v.second) ? 1 : 0
}

/** Every accepted vote per unordered pair, in judge order (accepted is sorted by judge). */
function peerScores (accepted: ReadonlyMap<string, Vote[]>): Map<string, Array<{ judge: string, score: number }>> {
  const out = new Map<string, Array<{ judge: string, score: number }>>()
  for (const [judge, votes] of accepted) {
    for (const v of votes) {
      const key = pairKey(v)
      const list = out.get(key) ?? []
      list.push({ judge, score: orientedScore(v) })
      out.set(key, list)
    }
  }
  return out
}

export interface SettledRound {
  schedule: PairSchedule
  outcome: RoundOutcome
  state: ReputationState
}

export function settleRound (state: ReputationState, input: RoundInput, options: SettleOptions = {}): SettledRound {
  const params = options.params ?? DEFAULT_REPUTATION_PARAMS
  if (input.answers.length === 0) throw new ConsensusInputError(`round ${input.round} has no answers`)
  // judges admitted for the round's model only (input.model, from the owner's signed round record)
  const schedule = scheduleRound(state, input.round, input.answers, input.judgesPerPair, { ...options, ...(input.model !== undefined ? { model: input.model } : {}) })
  const { accepted, flags } = checkReveals(schedule, input.commitments, input.reveals, input.deadline)
  const judges = [...accepted.keys()]
  const weights = options.weighting === 'uniform'
    ? new Map(judges.map((j) => [j, admittedFor(reputationOf(state, j), input.model) ? 1 : 0]))
    : roundWeights(state, judges, params)
  const comparisons: Comparison[] = []
  for (const [judge, votes] of accepted) {
    const weight = weights.get(judge) ?? 0
    if (weight > 0) for (const v of votes) comparisons.push({ first: v.first, second: v.second, outcome: v.choice, weight })
  }
  const items = input.answers.map((a) => a.id)
  const bt = bradleyTerry(items, comparisons, options.prior !== undefined ? { prior: options.prior } : {})
  const strength = new Map(bt.items.map((id, i) => [id, bt.strengths[i]]))
  // Evidence per judge, per vote: agreement with the outcome, weighted by how decided the outcome
  // is on that pair (|2P − 1|), plus params.peerEvidence × the share of the other judges of the same pair
  // who voted alike. The outcome term is sharp but depends on the current weights, so a coalition
  // that wins the first rounds of a young swarm would earn the weight that keeps it winning; the
  // peer term does not depend on weights, so an honest majority of judges keeps earning evidence.
  // `evidence` keeps the peer part apart (unweighted) for the coordination term (reputation.ts).
  const peers = peerScores(accepted)
  const agreement = new Map<string, { agree: number, disagree: number }>()
  const parts = new Map<string, JudgeEvidence>()
  for (const [judge, votes] of accepted) {
    let agree = 0
    let disagree = 0
    let peerAgree = 0
    let peerDisagree = 0
    for (const v of votes) {
      const pf = strength.get(v.first) as number
      const ps = strength.get(v.second) as number
      const decided = pf > ps ? (pf - ps) / (pf + ps) : (ps - pf) / (pf + ps)
      if (v.choice === 'tie') { agree += decided * 0.5; disagree += decided * 0.5 } else if ((v.choice === 'first') === (pf > ps) && pf !== ps) agree += decided
      else disagree += decided
      const others = peers.get(pairKey(v)) ?? []
      let alike = 0
      let n = 0
      let alikeWeighted = 0
      let weightOfOthers = 0
      const mine = orientedScore(v)
      for (const o of others) {
        if (o.judge === judge) continue
        const same = o.score > mine ? 1 - (o.score - mine) : 1 - (mine - o.score)
        alike += same
        n++
        const w = weights.get(o.judge) ?? 0
        alikeWeighted += w * same
        weightOfOthers += w
      }
      if (n > 0) {
        agree += params.peerEvidence * alike / n
        disagree += params.peerEvidence * (n - alike) / n
        // The coordination term's peer part: the other judges counted by their weight (a bloc of
        // fresh identities is no majority), all alike when none has weight yet.
        const share = weightOfOthers > 0 ? alikeWeighted / weightOfOthers : alike / n
        peerAgree += share
        peerDisagree += 1 - share
      }
    }
    parts.set(judge, { agree, disagree, peerAgree, peerDisagree })
    agreement.set(judge, { agree, disagree })
  }
  const winner = bt.ranking[0]
  const winnerAuthor = input.answers.find((a) => a.id === winner)?.author
  const outcome: RoundOutcome = {
    round: input.round,
    winner,
    ...(winnerAuthor !== undefined ? { winnerAuthor } : {}),
    ranking: bt.ranking,
    strengths: bt.items.map((id, i) => [id, bt.strengths[i]]),
    weights: [...weights].sort((a, b) => compareText(a[0], b[0])),
    agreement,
    evidence: parts,
    flags
  }
  return { schedule, outcome, state: applyRound(state, outcome, params) }
}
