// Reputation: Beta evidence per node (Jøsang & Ismail's Beta reputation) with a forgetting factor,
// turned into a judging weight by a lower-confidence transform and capped per round. Every node
// derives it identically by folding the same signed records in the same order (reputation-log.ts);
// nothing here reads a clock or a PRNG. Why this model and not EigenTrust: README.md.
import { CALIBRATION_REWARD, COORDINATION_EVIDENCE, COORDINATION_PRIOR_VOTES, COORDINATION_Z2, PEER_EVIDENCE, REPUTATION_CONFIDENCE, REPUTATION_DECAY, REPUTATION_MAX_SHARE, REVEAL_PENALTY, SPOT_FAIL_PENALTY, SPOT_PASS_REWARD, UNASSIGNED_PENALTY, WIN_REWARD } from './constants.ts'
import { compareText } from './digest.ts'
import type { JudgeEvidence, JudgeFlag, NodeReputation, ReputationState, RoundOutcome } from './index.ts'

export interface ReputationParams {
  decay: number
  peerEvidence: number
  confidence: number
  maxShare: number
  revealPenalty: number
  unassignedPenalty: number
  winReward: number
  spotPassReward: number
  spotFailPenalty: number
  calibrationReward: number
  /** Weight of the coordination term (see coordinate()); 0 turns it off. */
  coordination: number
  /** Square of the z-score a round's excess deviation must reach for the term to apply. */
  coordinationZ2: number
}

export const DEFAULT_REPUTATION_PARAMS: Readonly<ReputationParams> = Object.freeze({
  decay: REPUTATION_DECAY,
  peerEvidence: PEER_EVIDENCE,
  confidence: REPUTATION_CONFIDENCE,
  maxShare: REPUTATION_MAX_SHARE,
  revealPenalty: REVEAL_PENALTY,
  unassignedPenalty: UNASSIGNED_PENALTY,
  winReward: WIN_REWARD,
  spotPassReward: SPOT_PASS_REWARD,
  spotFailPenalty: SPOT_FAIL_PENALTY,
  calibrationReward: CALIBRATION_REWARD,
  coordination: COORDINATION_EVIDENCE,
  coordinationZ2: COORDINATION_Z2
})

const FRESH: NodeReputation = Object.freeze({ positive: 0, negative: 0, admitted: false, excluded: false })

/** A state where `genesis` (the swarm's founding identities) are admitted as if calibrated. */
export function initialReputation (genesis: readonly string[] = [], params: ReputationParams = DEFAULT_REPUTATION_PARAMS): ReputationState {
  const nodes = new Map<string, NodeReputation>()
  for (const id of [...genesis].sort(compareText)) nodes.set(id, { positive: params.calibrationReward, negative: 0, admitted: true, excluded: false })
  return { rounds: 0, nodes }
}

export function reputationOf (state: ReputationState, id: string): NodeReputation {
  return state.nodes.get(id) ?? FRESH
}

/**
 * Whether `rep` is admitted for `model`: a genesis node (no `models`) for every model, a calibrated
 * one for the models it passed calibration on. Without `model`, admitted for any (records and
 * callers from before rounds named their model). Exclusion is separate (global).
 */
export function admittedFor (rep: NodeReputation | undefined, model?: string): boolean {
  if (rep?.admitted !== true) return false
  return model === undefined || rep.models === undefined || rep.models.includes(model)
}

/** Beta expectation of good behaviour, (α) / (α + β) with α = positive + 1, β = negative + 1. */
export function betaScore (rep: NodeReputation): number {
  return (rep.positive + 1) / (rep.positive + rep.negative + 2)
}

/**
 * Judging weight before the cap: 0 unless admitted and not excluded; else
 * max(0, positive − negative) / (positive + negative + confidence) — a node needs both a good
 * record and enough of it, so a fresh calibrated identity starts near 0 and a random or inverted
 * judge (positive ≤ negative) stays at 0.
 */
export function rawWeight (rep: NodeReputation, params: ReputationParams = DEFAULT_REPUTATION_PARAMS): number {
  if (!rep.admitted || rep.excluded) return 0
  const margin = rep.positive - rep.negative
  return margin > 0 ? margin / (rep.positive + rep.negative + params.confidence) : 0
}

/**
 * Weights of a round's judges (sorted by id): raw weights clipped so that none exceeds `maxShare`
 * of the round's total. If every raw weight is 0 (a young swarm) admitted judges count equally.
 */
export function roundWeights (state: ReputationState, judges: readonly string[], params: ReputationParams = DEFAULT_REPUTATION_PARAMS): Map<string, number> {
  const ids = [...new Set(judges)].sort(compareText)
  const raw = ids.map((id) => rawWeight(reputationOf(state, id), params))
  let total = 0
  for (const w of raw) total += w
  if (total === 0) {
    for (let i = 0; i < ids.length; i++) {
      const rep = reputationOf(state, ids[i])
      raw[i] = rep.admitted && !rep.excluded ? 1 : 0
      total += raw[i]
    }
  }
  const cap = params.maxShare * total
  // A cap only binds when at least 1 / maxShare judges share the weight.
  const weights = new Map<string, number>()
  for (let i = 0; i < ids.length; i++) weights.set(ids[i], ids.length * params.maxShare >= 1 && raw[i] > cap ? cap : raw[i])
  return weights
}

function edit (nodes: Map<string, NodeReputation>, id: string, positive: number, negative: number): void {
  const rep = nodes.get(id) ?? FRESH
  nodes.set(id, { ...rep, positive: rep.positive + positive, negative: rep.negative + negative })
}

function decayed (state: ReputationState, params: ReputationParams): Map<string, NodeReputation> {
  const nodes = new Map<string, NodeReputation>()
  for (const [id, rep] of state.nodes) nodes.set(id, { ...rep, positive: rep.positive * params.decay, negative: rep.negative * params.decay, ...(rep.votes !== undefined ? { votes: rep.votes * params.decay, deviations: (rep.deviations ?? 0) * params.decay } : {}) })
  return nodes
}

/**
 * Folds one settled round into the state: decay, then per accepted vote evidence of agreement
 * with the consensus (weighted by how decided the consensus is on that pair: |2P − 1|), the
 * winner's author rewarded, flagged judges penalized by their stake.
 */
export function applyRound (state: ReputationState, outcome: RoundOutcome, params: ReputationParams = DEFAULT_REPUTATION_PARAMS): ReputationState {
  const nodes = decayed(state, params)
  for (const [judge, { agree, disagree }] of outcome.agreement) edit(nodes, judge, agree, disagree)
  if (outcome.evidence !== undefined) coordinate(nodes, outcome.evidence, params)
  if (outcome.winnerAuthor !== undefined) edit(nodes, outcome.winnerAuthor, params.winReward, 0)
  for (const flag of outcome.flags) edit(nodes, flag.judge, 0, penalty(flag, params))
  return { rounds: state.rounds + 1, nodes }
}

/**
 * The coordination term: what a camouflaged coalition does that an honest but weak judge never
 * does is deviate *together*, in the same rounds. Per judge, its deviation this round — the share
 * of the other judges of the same pair who voted otherwise, summed over its votes (weight-free, so
 * a coalition that captured the outcome cannot turn it against the honest majority) — beyond what
 * its own record predicts (`deviations / votes`, decayed like evidence, shrunk towards the round's
 * level by COORDINATION_PRIOR_VOTES pseudo-votes). Per round, c = the judges' summed excess over
 * their votes: ≈ 0 when everyone deviates as usual (honest errors are independent), positive when
 * a group deviates at once; it counts only when it stands out of the noise of that many votes
 * (z ≥ 2, COORDINATION_Z2). Then each judge gets `coordination × c × excess` as negative
 * evidence (positive evidence when its excess is negative: it held to the pair's majority while
 * others broke away). Only + − × ÷ over judges in sorted order; state: two numbers per node.
 */
function coordinate (nodes: Map<string, NodeReputation>, evidence: ReadonlyMap<string, JudgeEvidence>, params: ReputationParams): void {
  const judges = [...evidence.keys()].sort(compareText)
  const d: number[] = []
  const n: number[] = []
  let sumD = 0
  let sumN = 0
  for (const judge of judges) {
    const e = evidence.get(judge) as JudgeEvidence
    d.push(e.peerDisagree)
    n.push(e.peerAgree + e.peerDisagree)
    sumD += e.peerDisagree
    sumN += e.peerAgree + e.peerDisagree
  }
  if (sumN === 0) return
  const level = sumD / sumN
  const excess: number[] = []
  let sumX = 0
  for (let i = 0; i < judges.length; i++) {
    const rep = nodes.get(judges[i]) ?? FRESH
    const expected = ((rep.deviations ?? 0) + COORDINATION_PRIOR_VOTES * level) / ((rep.votes ?? 0) + COORDINATION_PRIOR_VOTES)
    excess.push(d[i] - expected * n[i])
    sumX += excess[i]
  }
  // Only a round whose excess stands out of the binomial noise of its sumN votes counts:
  // c > 0 and c² · sumN ≥ z² · level · (1 − level) (z = 2; no square root needed).
  const excessShare = sumX / sumN
  const c = excessShare > 0 && excessShare * excessShare * sumN >= params.coordinationZ2 * level * (1 - level) ? excessShare : 0
  for (let i = 0; i < judges.length; i++) {
    const rep = nodes.get(judges[i]) ?? FRESH
    const k = c > 0 ? params.coordination * c * excess[i] : 0
    nodes.set(judges[i], {
      ...rep,
      positive: k < 0 ? rep.positive - k : rep.positive,
      negative: k > 0 ? rep.negative + k : rep.negative,
      votes: (rep.votes ?? 0) + n[i],
      deviations: (rep.deviations ?? 0) + d[i]
    })
  }
}

function penalty (flag: JudgeFlag, params: ReputationParams): number {
  return flag.reason === 'unassigned' ? params.unassignedPenalty * (flag.count ?? 1) : params.revealPenalty
}

/** A spot-check outcome about `subject`: a pass adds evidence, a failure slashes and excludes. */
export function applySpotCheck (state: ReputationState, subject: string, passed: boolean, params: ReputationParams = DEFAULT_REPUTATION_PARAMS): ReputationState {
  const nodes = new Map(state.nodes)
  if (passed) edit(nodes, subject, params.spotPassReward, 0)
  else {
    edit(nodes, subject, 0, params.spotFailPenalty)
    nodes.set(subject, { ...(nodes.get(subject) as NodeReputation), excluded: true })
  }
  return { rounds: state.rounds, nodes }
}

/**
 * Admits `subject` for `model` after a passed calibration on it (no effect on an excluded node).
 * The reward comes once per identity (its first admission; reputation is per identity, not per
 * model). Without `model` it is admitted for every model, like a founder (the simulator's
 * one-model swarms; the ledger always passes the calibration record's model). A founder, or a node
 * already admitted for every model, stays so.
 */
export function applyCalibration (state: ReputationState, subject: string, params: ReputationParams = DEFAULT_REPUTATION_PARAMS, model?: string): ReputationState {
  const rep = state.nodes.get(subject) ?? FRESH
  if (rep.excluded) return state
  const every = model === undefined || (rep.admitted && rep.models === undefined)
  const models = every ? undefined : [...new Set([...(rep.models ?? []), model])].sort(compareText)
  const next: NodeReputation = { ...rep, admitted: true, positive: rep.positive + (rep.admitted ? 0 : params.calibrationReward) }
  if (models === undefined) delete next.models
  else next.models = models
  const nodes = new Map(state.nodes)
  nodes.set(subject, next)
  return { rounds: state.rounds, nodes }
}

/**
 * Canonical bytes of a state (sorted), for cross-node determinism checks. Per node (by id): the id
 * (UTF-8), then 36 bytes — positive, negative (f64), admitted, excluded (u8), votes, deviations
 * (f64), the number of models it is admitted for (u16; 0 with admitted = every model) — then each
 * model (sorted) as u16 byte length + UTF-8.
 */
export function encodeReputation (state: ReputationState): Uint8Array {
  const ids = [...state.nodes.keys()].sort(compareText)
  const buf = new ArrayBuffer(8 + ids.length * 36)
  const view = new DataView(buf)
  view.setFloat64(0, state.rounds)
  const parts: Uint8Array[] = [new Uint8Array(buf, 0, 8)]
  let off = 8
  const enc = new TextEncoder()
  for (const id of ids) {
    const rep = state.nodes.get(id) as NodeReputation
    const models = rep.models ?? []
    view.setFloat64(off, rep.positive)
    view.setFloat64(off + 8, rep.negative)
    view.setUint8(off + 16, rep.admitted ? 1 : 0)
    view.setUint8(off + 17, rep.excluded ? 1 : 0)
    view.setFloat64(off + 18, rep.votes ?? 0)
    view.setFloat64(off + 26, rep.deviations ?? 0)
    view.setUint16(off + 34, models.length)
    parts.push(enc.encode(id), new Uint8Array(buf, off, 36))
    for (const m of models) {
      const bytes = enc.encode(m)
      const len = new Uint8Array(2)
      new DataView(len.buffer).setUint16(0, bytes.length)
      parts.push(len, bytes)
    }
    off += 36
  }
  return Buffer.concat(parts)
}

/** Negative evidence against `subject` (an owner whose declared outcome is not the recomputed one). */
export function applyPenalty (state: ReputationState, subject: string, amount: number): ReputationState {
  const nodes = new Map(state.nodes)
  edit(nodes, subject, 0, amount)
  return { rounds: state.rounds, nodes }
}
