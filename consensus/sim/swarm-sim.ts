// A seeded swarm simulator for consensus rounds (no LLM): questions with four options, answers
// from nodes with a hidden accuracy (correct, or a wrong option) and a latent quality, judges
// with an accuracy and a position bias, and adversaries. Every round runs the real code: the
// reputation-weighted schedule, commitments and reveals (SHA-256), the reveal check, Bradley–Terry
// and the reputation update. Ours routes requests by reputation (so excluded or distrusted nodes
// stop answering); the baselines draw answerers uniformly and see the same answers: majority vote
// over the options, unweighted Bradley–Terry (uniform schedule and weights, same commit–reveal),
// reputation-weighted Bradley–Terry on that same pool ('pooled': the aggregation alone), and the
// best single node (the node with the highest hidden accuracy answering alone).
// Camouflaged nodes are honest in 90% of rounds and attack together (as a ring) in the other 10%;
// 'camouflaged-solo' nodes each defect on their own in 10% of rounds (inverted votes, a wrong
// answer), the variant no synchronisation signal can see.
import { commitBallot } from '../commit-reveal.ts'
import { applyCalibration, betaScore, DEFAULT_REPUTATION_PARAMS, initialReputation, rawWeight, reputationOf, roundWeights, type ReputationParams } from '../reputation.ts'
import { JUDGES_PER_PAIR, SCHEDULE_WEIGHT_FLOOR } from '../constants.ts'
import { eligibleJudges, scheduleRound, settleRound } from '../round.ts'
import { createRng, normal } from '../../sharding/sim/random.ts'
import type { Answer, Choice, Commitment, ReputationState, Reveal, Vote } from '../index.ts'

export type AdversaryKind = 'none' | 'random' | 'inverted' | 'always-a' | 'self-promoting' | 'colluding' | 'sybil' | 'camouflaged' | 'camouflaged-solo' | 'copy-cat'
export const ADVERSARY_KINDS: readonly AdversaryKind[] = ['random', 'inverted', 'always-a', 'self-promoting', 'colluding', 'sybil', 'camouflaged', 'camouflaged-solo', 'copy-cat']

export interface SimOptions {
  seed: number
  /** Nodes at the end of the run, adversaries included. */
  nodes: number
  adversary: AdversaryKind
  /** Share of `nodes` that are adversaries. */
  fraction: number
  rounds: number
  answersPerRound: number
  judgesPerPair?: number
  /** false: votes are published in the clear, so a copy-cat copies what it sees. */
  commitReveal?: boolean
  /** Rounds whose accuracy is not counted in `steadyAccuracy` (reputation warm-up). */
  warmup?: number
  /**
   * Rounds the swarm runs before the measured ones (not counted), default 30. Adversaries are
   * identities that join through calibration when the measured rounds start (a Sybil wave a third
   * of the way in) — unless `founding`, where they are founding (genesis) members with the same
   * standing as honest nodes and attack from the first history round.
   */
  history?: number
  founding?: boolean
  /**
   * Adversaries answer as their kind does but judge like honest nodes: the reference run that
   * isolates the effect of adversarial judging from that of a worse answer pool.
   */
  honestJudging?: boolean
  /** Reputation parameters (default DEFAULT_REPUTATION_PARAMS). */
  params?: ReputationParams
  /** Measures consensus time (schedule + reveal check + BT + reputation) per round. */
  timing?: boolean
}

interface SimNode {
  id: string
  kind: 'honest' | AdversaryKind
  answerAccuracy: number
  judgeAccuracy: number
  positionBias: number
  /** Round it appears (Sybil wave), and the round its calibration passes. */
  joins: number
}

interface SimAnswer { id: string, author: SimNode, option: number, quality: number, ring: boolean }

export interface MethodResult {
  /** Winner correct, over all rounds, and over rounds after the warm-up. */
  accuracy: number
  steadyAccuracy: number
  /** ROC-AUC of reputation (Beta score) honest vs malicious at the end; NaN without both. */
  auc: number
  /** Per-round consensus ms (only with timing). */
  ms: number[]
}

export interface SimResult {
  /** Reputation-routed answers, reputation-weighted Bradley–Terry. */
  ours: MethodResult
  /** Reputation-weighted Bradley–Terry over the baselines' (uniformly drawn) answers. */
  pooled: MethodResult
  unweighted: MethodResult
  majority: MethodResult
  best: MethodResult
  /** A winner is correct whenever any answer is: the ceiling for every answer-picking method. */
  oracle: MethodResult
  /**
   * Reputation AUC (ours) after each round since the last adversary joined: index 49 is "after 50
   * rounds" (founding adversaries: counted from round 0, history rounds included).
   */
  aucByRound: number[]
  /**
   * Camouflaged adversaries: the AUC a detector TOLD which rounds were attack rounds would reach
   * after 50 rounds, scoring every node (ours) by its share of outcome-agreeing evidence in those
   * rounds only — an upper bound for any signal built on agreement — and how many adversaries left
   * any footprint (a vote or an answer) in an attack round within those 50 rounds. NaN otherwise.
   */
  attackOracleAuc: number
  footprint: { adversaries: number, withFootprint: number }
  /** Honest nodes' judging weight (ours, uncapped rawWeight) and Beta score at the end. */
  honest: { weights: number[], scores: number[] }
}

const OPTIONS = 4
type Method = 'ours' | 'pooled' | 'unweighted'
const METHODS: readonly Method[] = ['ours', 'pooled', 'unweighted']
const RING_OPTION = 1

/** ROC-AUC of scores: P(honest score > malicious score), ties half. */
export function rocAuc (honest: readonly number[], malicious: readonly number[]): number {
  if (honest.length === 0 || malicious.length === 0) return NaN
  let wins = 0
  for (const h of honest) for (const m of malicious) wins += h > m ? 1 : h === m ? 0.5 : 0
  return wins / (honest.length * malicious.length)
}

export function runSwarm (o: SimOptions): SimResult {
  const rng = createRng(o.seed)
  const judgesPerPair = o.judgesPerPair ?? JUDGES_PER_PAIR
  const commitReveal = o.commitReveal ?? true
  const warmup = o.warmup ?? 0
  const history = o.history ?? 30
  const params = o.params ?? DEFAULT_REPUTATION_PARAMS
  const nBad = o.adversary === 'none' ? 0 : Math.round(o.nodes * o.fraction)
  const nodes: SimNode[] = []
  for (let i = 0; i < o.nodes; i++) {
    const bad = i >= o.nodes - nBad
    const kind = bad ? o.adversary : 'honest'
    nodes.push({
      id: `n${String(i).padStart(3, '0')}`,
      kind,
      answerAccuracy: bad && kind !== 'camouflaged' && kind !== 'camouflaged-solo' ? 0.1 + 0.2 * rng() : 0.3 + 0.4 * rng(),
      judgeAccuracy: 0.65 + 0.25 * rng(),
      positionBias: 0.15 * rng(),
      joins: !bad || o.founding === true ? 0 : kind === 'sybil' ? history + Math.floor(o.rounds / 3) : history
    })
  }
  const genesis = nodes.filter((n) => n.joins === 0).map((n) => n.id)
  const best = nodes.filter((n) => n.kind === 'honest').reduce((a, b) => (b.answerAccuracy > a.answerAccuracy ? b : a))
  const states: Record<Method, ReputationState> = { ours: initialReputation(genesis, params), pooled: initialReputation(genesis, params), unweighted: initialReputation(genesis, params) }
  const correct = { ours: [] as boolean[], pooled: [] as boolean[], unweighted: [] as boolean[], majority: [] as boolean[], best: [] as boolean[], oracle: [] as boolean[] }
  const ms: number[] = []
  const aucByRound: number[] = []
  const isBad = (n: SimNode): boolean => n.kind !== 'honest'
  const lastJoin = Math.max(0, ...nodes.filter(isBad).map((n) => n.joins))
  // Attack-round evidence per judge (ours) and who left a footprint in an attack round.
  const attackEvidence = new Map<string, { agree: number, disagree: number }>()
  const marked = new Set<string>()
  for (let round = 0; round < history + o.rounds; round++) {
    const measured = round >= history
    const roundId = `sim:${o.seed}:${round}`
    for (const n of nodes) {
      // A joining identity passes calibration as it appears (it runs the model): admitted, near-zero weight.
      if (n.joins > 0 && round === n.joins) for (const m of METHODS) states[m] = applyCalibration(states[m], n.id, params)
    }
    const active = nodes.filter((n) => n.joins <= round)
    // Camouflaged nodes attack together in 10% of rounds.
    const attacking = rng() < 0.1
    // Solo camouflaged nodes each defect on their own in 10% of rounds (own PRNG: the shared draws
    // of every other kind stay as they were).
    const soloRng = createRng((o.seed ^ Math.imul(round + 1, 0x85ebca6b) ^ 0x27d4eb2f) >>> 0)
    const defecting = new Set(active.filter((n) => n.kind === 'camouflaged-solo' && soloRng() < 0.1).map((n) => n.id))
    const ringNow = (n: SimNode): boolean => n.kind === 'colluding' || n.kind === 'sybil' || (n.kind === 'camouflaged' && attacking)
    // Answers from k distinct authors: drawn uniformly for the baselines, and routed by reputation
    // (the same floored weights as judging; unadmitted and excluded nodes get no requests) for ours.
    const draw = (weightOf: (n: SimNode) => number): SimAnswer[] => {
      const pool = active.filter((n) => weightOf(n) > 0)
      const answers: SimAnswer[] = []
      for (let k = 0; k < o.answersPerRound && pool.length > 0; k++) {
        let total = 0
        for (const n of pool) total += weightOf(n)
        let x = rng() * total
        let pick = pool.length - 1
        for (let i = 0; i < pool.length; i++) { x -= weightOf(pool[i]); if (x < 0) { pick = i; break } }
        const author = pool.splice(pick, 1)[0]
        const ring = ringNow(author)
        const right = !ring && !defecting.has(author.id) && rng() < author.answerAccuracy
        const option = right ? 0 : ring ? RING_OPTION : 1 + Math.floor(rng() * (OPTIONS - 1))
        answers.push({ id: `${roundId}:a${k}`, author, option, quality: (right ? 1 : 0) + 0.3 * normal(rng), ring })
      }
      return answers
    }
    const uniform = draw(() => 1)
    const routingWeights = roundWeights(states.ours, eligibleJudges(states.ours), params)
    const routed = draw((n) => routingWeights.has(n.id) ? Math.max(routingWeights.get(n.id) as number, SCHEDULE_WEIGHT_FLOOR) : 0)
    // Majority vote over options (ties broken at random) and the best single node.
    const counts = new Array<number>(OPTIONS).fill(0)
    for (const a of uniform) counts[a.option]++
    const top = Math.max(...counts)
    const leaders = counts.map((c, i) => (c === top ? i : -1)).filter((i) => i >= 0)
    const majorityRight = leaders[Math.floor(rng() * leaders.length)] === 0
    const bestRight = rng() < best.answerAccuracy
    if (measured) {
      correct.majority.push(majorityRight)
      correct.best.push(bestRight)
      correct.oracle.push(uniform.some((a) => a.option === 0))
    }
    const bySim = new Map(nodes.map((n) => [n.id, n]))
    for (const method of METHODS) {
      const answers = method === 'ours' ? routed : uniform
      const byId = new Map(answers.map((a) => [a.id, a]))
      const voteRng = createRng((o.seed ^ Math.imul(round + 1, 0x9e3779b1) ^ Math.imul(METHODS.indexOf(method) + 1, 0x5bd1e995)) >>> 0)
      const t0 = performance.now()
      const input = buildRound(states[method], params, method, roundId, answers, byId, bySim, voteRng, judgesPerPair, commitReveal, ringNow, defecting, o.honestJudging === true)
      const settled = settleRound(states[method], input.round, { params, ...(method === 'unweighted' ? { weighting: 'uniform' as const } : {}) })
      if (o.timing === true && method === 'ours' && measured) ms.push(performance.now() - t0 - input.generationMs)
      states[method] = settled.state
      if (measured) correct[method].push(byId.get(settled.outcome.winner)?.option === 0)
      if (method === 'ours' && attacking && round >= lastJoin && round < lastJoin + 50) {
        for (const [judge, e] of settled.outcome.evidence ?? []) {
          const t = attackEvidence.get(judge) ?? { agree: 0, disagree: 0 }
          attackEvidence.set(judge, { agree: t.agree + e.agree, disagree: t.disagree + e.disagree })
          marked.add(judge)
        }
        for (const a of answers) marked.add(a.author.id)
      }
    }
    if (round < lastJoin) continue
    const scores = (bad: boolean): number[] => active.filter((n) => isBad(n) === bad).map((n) => betaScore(reputationOf(states.ours, n.id)))
    aucByRound.push(rocAuc(scores(false), scores(true)))
  }
  const summarize = (xs: boolean[], auc: number, times: number[] = []): MethodResult => {
    const steady = xs.slice(warmup)
    return { accuracy: xs.filter(Boolean).length / xs.length, steadyAccuracy: steady.length > 0 ? steady.filter(Boolean).length / steady.length : NaN, auc, ms: times }
  }
  const finalAuc = (m: Method): number => {
    const s = (bad: boolean): number[] => nodes.filter((n) => isBad(n) === bad).map((n) => betaScore(reputationOf(states[m], n.id)))
    return rocAuc(s(false), s(true))
  }
  return {
    ours: summarize(correct.ours, finalAuc('ours'), ms),
    pooled: summarize(correct.pooled, finalAuc('pooled')),
    unweighted: summarize(correct.unweighted, finalAuc('unweighted')),
    majority: summarize(correct.majority, NaN),
    best: summarize(correct.best, NaN),
    oracle: summarize(correct.oracle, NaN),
    aucByRound,
    honest: {
      weights: nodes.filter((n) => !isBad(n)).map((n) => rawWeight(reputationOf(states.ours, n.id), params)),
      scores: nodes.filter((n) => !isBad(n)).map((n) => betaScore(reputationOf(states.ours, n.id)))
    },
    ...attackOracle(nodes, attackEvidence, marked, o.adversary === 'camouflaged')
  }
}

function attackOracle (nodes: readonly SimNode[], evidence: ReadonlyMap<string, { agree: number, disagree: number }>, marked: ReadonlySet<string>, applies: boolean): Pick<SimResult, 'attackOracleAuc' | 'footprint'> {
  const bad = nodes.filter((n) => n.kind !== 'honest')
  if (!applies) return { attackOracleAuc: NaN, footprint: { adversaries: bad.length, withFootprint: NaN } }
  // Agreement share in attack rounds; a node without attack-round votes scores as the prior (0.5).
  const score = (n: SimNode): number => { const e = evidence.get(n.id); return e === undefined ? 0.5 : (e.agree + 1) / (e.agree + e.disagree + 2) }
  return {
    attackOracleAuc: rocAuc(nodes.filter((n) => n.kind === 'honest').map(score), bad.map(score)),
    footprint: { adversaries: bad.length, withFootprint: bad.filter((n) => marked.has(n.id)).length }
  }
}

/** What an honest judge with this accuracy and bias says about (first, second). */
function honestChoice (judge: SimNode, first: SimAnswer, second: SimAnswer, rng: () => number): Choice {
  if (rng() < judge.positionBias) return 'first'
  const firstRight = first.option === 0
  const secondRight = second.option === 0
  if (firstRight !== secondRight) return (rng() < judge.judgeAccuracy) === firstRight ? 'first' : 'second'
  const u = rng()
  if (u < 0.2) return 'tie'
  return (u < 0.8) === (first.quality > second.quality) ? 'first' : 'second'
}

const flip = (c: Choice): Choice => (c === 'first' ? 'second' : c === 'second' ? 'first' : 'tie')

function buildRound (state: ReputationState, params: ReputationParams, method: Method, roundId: string, answers: SimAnswer[], byId: Map<string, SimAnswer>, nodes: Map<string, SimNode>, rng: () => number, judgesPerPair: number, commitReveal: boolean, ringNow: (n: SimNode) => boolean, defecting: ReadonlySet<string>, honestJudging: boolean): { round: Parameters<typeof settleRound>[1], generationMs: number } {
  // The schedule is the one settleRound will derive (same state, same round id).
  const g0 = performance.now()
  const list: Answer[] = answers.map((a) => ({ id: a.id, author: a.author.id }))
  const schedule = scheduleRound(state, roundId, list, judgesPerPair, { params, ...(method === 'unweighted' ? { weighting: 'uniform' as const } : {}) })
  const ballots = new Map<string, Vote[]>()
  const honestOpinion = new Map<string, Choice>() // `${judge}\0${first}\0${second}` → what an honest judge said (copy-cat source)
  // One decision per (judge, unordered pair) seen from each order: position bias applies per order.
  for (const a of schedule.assignments) {
    const node = nodes.get(a.judge) as SimNode
    const judge = honestJudging ? { ...node, kind: 'honest' as const } : node
    const first = byId.get(a.first) as SimAnswer
    const second = byId.get(a.second) as SimAnswer
    let choice: Choice
    const honest = honestChoice(judge, first, second, rng)
    if (judge.kind === 'honest' || judge.kind === 'self-promoting' || (judge.kind === 'camouflaged' && !ringNow(judge)) || (judge.kind === 'camouflaged-solo' && !defecting.has(judge.id))) choice = honest
    else if (judge.kind === 'random' || judge.kind === 'copy-cat') choice = rng() < 0.5 ? 'first' : 'second'
    else if (judge.kind === 'inverted' || judge.kind === 'camouflaged-solo') choice = flip(honest)
    else if (judge.kind === 'always-a') choice = 'first'
    else {
      // Ring: push ring answers, otherwise vote against the better answer.
      if (first.ring !== second.ring) choice = first.ring ? 'first' : 'second'
      else choice = first.ring ? (rng() < 0.5 ? 'first' : 'second') : flip(honest)
    }
    if (judge.kind === 'honest') honestOpinion.set(`${a.first}\u0000${a.second}`, honest)
    const votes = ballots.get(a.judge) ?? []
    votes.push({ first: a.first, second: a.second, choice })
    ballots.set(a.judge, votes)
  }
  const commitments: Commitment[] = []
  const reveals: Reveal[] = []
  const deadline = 1000
  for (const [judgeId, votes] of ballots) {
    const node = nodes.get(judgeId) as SimNode
    const judge = honestJudging ? { ...node, kind: 'honest' as const } : node
    const salt = Math.floor(rng() * 2 ** 32).toString(16).padStart(8, '0') + Math.floor(rng() * 2 ** 32).toString(16).padStart(8, '0')
    const commitment = commitBallot(roundId, judgeId, votes, salt)
    commitments.push({ round: roundId, judge: judgeId, commitment })
    let revealed = votes
    if (judge.kind === 'copy-cat') {
      // Copies the honest verdicts it sees on its pairs. With commit–reveal it only sees them after
      // committing, so the copied ballot does not match its commitment (rejected, stake lost);
      // without, it "commits" to the copy.
      const copied = votes.map((v) => ({ ...v, choice: honestOpinion.get(`${v.first}\u0000${v.second}`) ?? v.choice }))
      revealed = copied
      if (!commitReveal) commitments[commitments.length - 1] = { round: roundId, judge: judgeId, commitment: commitBallot(roundId, judgeId, copied, salt) }
    }
    if (judge.kind === 'self-promoting') {
      // Slips in votes for its own answers: never assigned (own answers are excluded), so dropped and penalized.
      const own = answers.filter((a) => a.author.id === judgeId)
      for (const mine of own) {
        const other = answers.find((a) => a.author.id !== judgeId)
        if (other !== undefined && !revealed.some((v) => v.first === mine.id && v.second === other.id)) revealed = [...revealed, { first: mine.id, second: other.id, choice: 'first' }]
      }
      commitments[commitments.length - 1] = { round: roundId, judge: judgeId, commitment: commitBallot(roundId, judgeId, revealed, salt) }
    }
    reveals.push({ round: roundId, judge: judgeId, votes: revealed, salt, at: 500 })
  }
  const generationMs = performance.now() - g0
  return { round: { round: roundId, answers: list, commitments, reveals, deadline, judgesPerPair }, generationMs }
}
