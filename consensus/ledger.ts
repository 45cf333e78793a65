// Every node's derivation of reputation from the consensus records in the swarm state. Input: the
// CRDT's `rounds()` view ({ id, data, writer }); output: the same ReputationState bytes on every
// node that holds the same records, whatever order they arrived in. Records are parsed (bad ones
// ignored), then folded in (seq, kind, id, writer) order: calibrations and spot-checks from
// admitted, non-excluded verifiers (a failure slashes only once SPOT_FAIL_CONFIRMATIONS verifiers
// report the same case failed, outnumbering those who passed it), and rounds from admitted owners,
// each settled again from the judges' own commit and reveal records — the owner's declared winner
// is checked, not trusted.
import { SPOT_FAIL_CONFIRMATIONS } from './constants.ts'
import { compareText } from './digest.ts'
import { InvalidConsensusRecordError } from './errors.ts'
import { parseRecord, type CalibrationRecord, type RoundRecord, type SpotCheckRecord } from './records.ts'
import { applyCalibration, applyPenalty, applySpotCheck, DEFAULT_REPUTATION_PARAMS, initialReputation, reputationOf, type ReputationParams } from './reputation.ts'
import { settleRound } from './round.ts'
import type { Answer, Commitment, ReputationState, Reveal, RoundOutcome } from './index.ts'

export interface StoredRecord { id: string, data: unknown, writer: string }

export interface LedgerOptions {
  genesis?: readonly string[]
  params?: ReputationParams
  judgesPerPair?: number
  /** Distinct verifiers that must report a case failed (default SPOT_FAIL_CONFIRMATIONS). */
  spotFailConfirmations?: number
  /** Negative evidence for an owner whose declared winner or ranking differs. Default the reveal penalty. */
  ownerPenalty?: number
}

export interface Ledger {
  state: ReputationState
  outcomes: RoundOutcome[]
  /** Records that did not parse, and rounds whose owner declared a different outcome. */
  invalid: number
  ownerMismatches: string[]
}

type Event =
  | { seq: number, kind: 0, key: string, writer: string, record: CalibrationRecord }
  | { seq: number, kind: 1, key: string, writer: string, record: SpotCheckRecord }
  | { seq: number, kind: 2, key: string, writer: string, record: RoundRecord }

export function deriveLedger (records: readonly StoredRecord[], options: LedgerOptions = {}): Ledger {
  const params = options.params ?? DEFAULT_REPUTATION_PARAMS
  let invalid = 0
  const answers = new Map<string, string>() // `${round}\0${author}` → digest
  const commitments = new Map<string, Commitment[]>()
  const reveals = new Map<string, Map<string, { votes: Reveal['votes'], salt: string }>>()
  const events: Event[] = []
  for (const { id, data, writer } of records) {
    let r
    try {
      r = parseRecord(id, data)
    } catch (err) {
      if (!(err instanceof InvalidConsensusRecordError)) throw err
      invalid++
      continue
    }
    switch (r.t) {
      case 'answer': answers.set(`${r.round}\u0000${writer}`, r.digest); break
      case 'commit': {
        const list = commitments.get(r.round) ?? []
        list.push({ round: r.round, judge: writer, commitment: r.commitment })
        commitments.set(r.round, list)
        break
      }
      case 'reveal': {
        const map = reveals.get(r.round) ?? new Map()
        map.set(writer, { votes: r.votes, salt: r.salt })
        reveals.set(r.round, map)
        break
      }
      case 'calibration': events.push({ seq: r.seq, kind: 0, key: id, writer, record: r }); break
      case 'spot-check': events.push({ seq: r.seq, kind: 1, key: id, writer, record: r }); break
      case 'round':
        // A round id starts with its owner's id, so two owners can never claim one round.
        if (r.round.startsWith(`${writer}:`)) events.push({ seq: r.seq, kind: 2, key: id, writer, record: r })
        else invalid++
        break
    }
  }
  events.sort((a, b) => a.seq - b.seq || a.kind - b.kind || compareText(a.key, b.key) || compareText(a.writer, b.writer))
  let state = initialReputation(options.genesis ?? [], params)
  // Spot-check verdicts per (subject, case): who reported it failed, who passed, whether applied.
  const cases = new Map<string, { failed: Set<string>, passed: Set<string>, applied: boolean }>()
  const confirmations = options.spotFailConfirmations ?? SPOT_FAIL_CONFIRMATIONS
  const outcomes: RoundOutcome[] = []
  const ownerMismatches: string[] = []
  const trusted = (id: string): boolean => { const r = reputationOf(state, id); return r.admitted && !r.excluded }
  for (const e of events) {
    if (!trusted(e.writer)) continue
    if (e.kind === 0) {
      if (e.record.passed && e.record.tasksExact === e.record.tasks && e.record.tasks > 0) state = applyCalibration(state, e.record.subject, params)
    } else if (e.kind === 1) {
      const r = e.record
      const key = `${r.subject}\u0000${r.case}`
      const c = cases.get(key) ?? { failed: new Set<string>(), passed: new Set<string>(), applied: false }
      cases.set(key, c)
      if (e.writer === r.subject) continue
      if (r.passed && r.mismatched.length === 0) {
        if (!c.passed.has(e.writer) && !c.failed.has(e.writer)) state = applySpotCheck(state, r.subject, true, params)
        c.passed.add(e.writer)
      } else {
        c.failed.add(e.writer)
        if (!c.applied && c.failed.size >= confirmations && c.failed.size > c.passed.size) {
          c.applied = true
          state = applySpotCheck(state, r.subject, false, params)
        }
      }
    } else {
      const r = e.record
      // An author's own answer record must match; without one, the owner's attribution stands (a
      // pipeline's stages write no records: the owner received the text and hashed it).
      const roundAnswers: Answer[] = r.answers.filter(([digest, author]) => { const own = answers.get(`${r.round}\u0000${author}`); return own === undefined || own === digest })
        .map(([id, author, ...coauthors]) => ({ id, author, ...(coauthors.length > 0 ? { coauthors } : {}) }))
      if (roundAnswers.length === 0) continue
      const taken = new Map(r.reveals)
      const revealed: Reveal[] = []
      for (const [judge, x] of reveals.get(r.round) ?? []) {
        const at = taken.get(judge)
        if (at !== undefined) revealed.push({ round: r.round, judge, votes: x.votes, salt: x.salt, at })
      }
      const settled = settleRound(state, {
        round: r.round,
        answers: roundAnswers,
        commitments: commitments.get(r.round) ?? [],
        reveals: revealed,
        deadline: r.deadline,
        ...(options.judgesPerPair !== undefined ? { judgesPerPair: options.judgesPerPair } : {})
      }, { params })
      state = settled.state
      outcomes.push(settled.outcome)
      if (settled.outcome.winner !== r.winner || settled.outcome.ranking.join('\u0000') !== r.ranking.join('\u0000')) {
        ownerMismatches.push(r.round)
        state = applyPenalty(state, e.writer, options.ownerPenalty ?? params.revealPenalty)
      }
    }
  }
  return { state, outcomes, invalid, ownerMismatches }
}
