// Public surface of consensus/ (see README.md beside this file): swarm rounds, pair schedules,
// Bradley–Terry aggregation, reputation, calibration and execution spot-checks. Pure and
// deterministic; knows nothing of libp2p. The records it reads and writes travel in the CRDT swarm
// state (crdt/: `recordRound` keys, see records.ts).

/** One weighted comparison: `first` was shown first (position A), `second` second (B). */
export interface Comparison {
  first: string
  second: string
  outcome: 'first' | 'second' | 'tie'
  /** The judge's weight (≥ 0). */
  weight: number
}

export interface BradleyTerryResult {
  /** Item ids, sorted (code-unit order). */
  items: string[]
  /** Strength of items[i]; the pseudo-item of the prior has strength 1. */
  strengths: number[]
  /** Items by strength, strongest first; equal strengths by id. */
  ranking: string[]
  iterations: number
  converged: boolean
}

/**
 * An answer in a round and the node that wrote it (for a sharded pipeline: the node that owns the
 * answer, e.g. its last stage); `coauthors` are the pipeline's other nodes. No author or coauthor
 * ever judges a pair with the answer.
 */
export interface Answer { id: string, author: string, coauthors?: string[] }

export interface JudgeCandidate { id: string, weight: number }

/** One ordered comparison a judge must make. */
export interface Assignment { judge: string, first: string, second: string }

export interface PairSchedule {
  round: string
  /** Unordered pairs (each judged in both orders). */
  pairs: Array<[string, string]>
  assignments: Assignment[]
}

export type Choice = 'first' | 'second' | 'tie'

/** A judge's verdict on one ordered comparison. */
export interface Vote { first: string, second: string, choice: Choice }

/** What a judge publishes before the commit deadline (hex SHA-256, commit-reveal.ts). */
export interface Commitment { round: string, judge: string, commitment: string }

/** What a judge publishes after it; `at` is when the round owner took it (its clock, ms). */
export interface Reveal { round: string, judge: string, votes: Vote[], salt: string, at: number }

/** A judge whose ballot (or part of it) does not count, and why. */
export interface JudgeFlag {
  judge: string
  reason: 'missing' | 'late' | 'mismatch' | 'equivocation' | 'unassigned'
  /** Votes dropped (for 'unassigned'). */
  count?: number
}

/** Everything needed to settle a round. */
export interface RoundInput {
  round: string
  answers: Answer[]
  commitments: Commitment[]
  reveals: Reveal[]
  /** Reveals with `at` beyond this are late. */
  deadline: number
  judgesPerPair?: number
  /**
   * The model the round's answers were generated with (the owner's round record names it): only
   * nodes admitted for it judge (reputation.ts admittedFor). Absent (a record from before rounds
   * named their model): every admitted node, as then.
   */
  model?: string
}

export interface RoundOutcome {
  round: string
  winner: string
  winnerAuthor?: string
  ranking: string[]
  /** [answer, strength], sorted by answer. */
  strengths: Array<[string, number]>
  /** [judge, weight its votes carried], sorted by judge. */
  weights: Array<[string, number]>
  /** Evidence each judge with accepted votes earned. */
  agreement: Map<string, { agree: number, disagree: number }>
  /**
   * Per judge: `agreement` as above, and its peer part alone, unweighted (per vote, the share of
   * the other judges of the same pair who voted alike / otherwise). Read by the coordination term
   * of the reputation update (reputation.ts); absent in hand-built outcomes.
   */
  evidence?: Map<string, JudgeEvidence>
  flags: JudgeFlag[]
}

/** One judge's evidence from one round (see RoundOutcome.evidence). */
export interface JudgeEvidence { agree: number, disagree: number, peerAgree: number, peerDisagree: number }

/** Beta evidence about one node. */
export interface NodeReputation {
  positive: number
  negative: number
  /** Passed calibration on some model (or genesis). */
  admitted: boolean
  /**
   * The models it passed calibration on (sorted, never empty), when admitted by calibration.
   * Absent on a genesis node — a founder counts as admitted for every model — and on a node
   * admitted by a calibration that named no model (the simulator's one-model swarms); absent on an
   * unadmitted node too. Read it through `admittedFor(rep, model)`.
   */
  models?: string[]
  /** Caught by a spot-check: no weight, no routing. */
  excluded: boolean
  /**
   * Decayed sums of the node's judged votes and of its deviations on them (the coordination term's
   * record of how much this judge usually deviates; reputation.ts). Absent until it judges.
   */
  votes?: number
  deviations?: number
}

export interface ReputationState {
  /** Rounds folded in so far. */
  rounds: number
  nodes: Map<string, NodeReputation>
}

export { bradleyTerry, winProbability } from './bradley-terry.ts'
export type { BradleyTerryOptions } from './bradley-terry.ts'
export { schedulePairs, assignmentsOf } from './pair-schedule.ts'
export { canonicalBallot, ballotBytes, commitBallot, newSalt, checkReveals } from './commit-reveal.ts'
export { initialReputation, reputationOf, admittedFor, betaScore, rawWeight, roundWeights, applyRound, applySpotCheck, applyCalibration, encodeReputation, DEFAULT_REPUTATION_PARAMS } from './reputation.ts'
export type { ReputationParams } from './reputation.ts'
export { settleRound, scheduleRound, eligibleJudges, roundOwner } from './round.ts'
export type { SettleOptions, ScheduleOptions } from './round.ts'
export { digestFields, seededRng, toHex, compareText } from './digest.ts'
export * from './errors.ts'
export * as consensusConstants from './constants.ts'
export { deriveLedger } from './ledger.ts'
export type { Ledger, LedgerOptions, StoredRecord } from './ledger.ts'
export { parseRecord, recordId, recordData } from './records.ts'
export type { ConsensusRecord, AnswerRecord, CommitRecord, RevealRecord, RoundRecord, SpotCheckRecord, CalibrationRecord } from './records.ts'
export { fingerprint, fingerprintBytes, fingerprintTolerance, checkFingerprint, fingerprintDistances } from './fingerprint.ts'
export type { FingerprintCheck, FingerprintMismatch, FingerprintOptions } from './fingerprint.ts'
export { sampleSpotChecks, spotCheck } from './spot-check.ts'
export type { StageTrace, SpotCheckResult } from './spot-check.ts'
export { spotCheckSampled, sampledInterval, sampledEta, samplingProbs } from './spot-check-sampled.ts'
export type { SampledCheckParams, SampledSpotCheckResult, CoinInterval, DrawParams } from './spot-check-sampled.ts'
export { calibrationTasks, greedyContinuation, knownPairs, gradeCalibration } from './calibration.ts'
export type { CalibrationTask, ChallengeOptions, KnownPair, CalibrationResult } from './calibration.ts'
export { likelihoodJudge, meanLogProb, shardLogits } from './likelihood-judge.ts'
export type { LogitsOf, LikelihoodJudgeOptions } from './likelihood-judge.ts'
export { judgePrompt, parseVerdict, llmJudge, verdictTag } from './llm-judge.ts'
export type { VerdictContext } from './llm-judge.ts'
export type { LlmJudgeOptions } from './llm-judge.ts'
export { stageChallenge, answerStageChallenge, checkStageChallenge, STAGE_CHALLENGE_ROWS } from './stage-challenge.ts'
export type { StageChallengeOptions, StageChallengeAnswer, StageChallengeInput, StageChallengeResult } from './stage-challenge.ts'
