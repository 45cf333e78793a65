// Every node's derivation of reputation from the consensus records in the swarm state. Input: the
// CRDT's `rounds()` view ({ id, data, writer }); output: the same ReputationState bytes on every
// node that holds the same records, whatever order they arrived in. Records are parsed (bad ones
// ignored), then folded in (seq, kind, id, writer) order: calibrations and spot-checks from
// non-excluded verifiers admitted for the record's model (a passed calibration admits its subject
// for that model; a failure slashes only once SPOT_FAIL_CONFIRMATIONS verifiers report the same
// case failed, outnumbering those who passed it), and rounds from admitted owners, each settled
// again from the judges' own commit and reveal records among the judges admitted for the round's
// model (the record's `model`; every admitted node for a record without one) — the owner's
// declared winner is checked, not trusted. The win goes to the winning answer's author only when the round record
// carries the author's receipt for it (its signature over the tokens it sampled in a session, each
// session crediting one answer ever): an owner cannot attribute a win to a peer that did not
// produce an answer. The receipt's content hash must also give the winning answer's id
// (consensus/answer-receipts.ts receiptAnswerId): judges voted on ids whose receipts they checked
// against the tokens they decoded, so the credited tokens are the judged ones. A win is credited
// only when it was decided — the winner strictly stronger than every other answer — so a round
// whose judges all refused (or a one-answer round) credits nobody. Equivocation records (two different frames one peer signed at one position)
// are checked cryptographically and slash the signer like a confirmed failed spot-check.
import { SPOT_FAIL_CONFIRMATIONS } from './constants.ts'
import { compareText } from './digest.ts'
import { InvalidConsensusRecordError } from './errors.ts'
import { parseRecord, type CalibrationRecord, type EquivocationRecord, type RoundRecord, type SpotCheckRecord } from './records.ts'
import { admittedFor, applyCalibration, applyPenalty, applyRound, applySpotCheck, DEFAULT_REPUTATION_PARAMS, initialReputation, reputationOf, type ReputationParams } from './reputation.ts'
import { checkEquivocation, signedMessage, verifyPeer } from './signed-frames.ts'
import { receiptAnswerId } from './answer-receipts.ts'
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
  /**
   * Credit a round's win only when its author signed a receipt for the answer (default true;
   * false: the owner's attribution stands, as before signed answers).
   */
  requireReceipts?: boolean
}

export interface Ledger {
  state: ReputationState
  outcomes: RoundOutcome[]
  /** Records that did not parse, and rounds whose owner declared a different outcome. */
  invalid: number
  ownerMismatches: string[]
  /** Rounds whose winner got no credit: no valid receipt by its author. */
  unsignedWins: string[]
  /** Rounds whose winner got no credit: not decided (no other answer, or one as strong: no judge's votes told them apart). */
  undecidedWins: string[]
  /** Peers slashed for a proven equivocation. */
  equivocators: string[]
}

type Event =
  | { seq: number, kind: 0, key: string, writer: string, record: CalibrationRecord }
  | { seq: number, kind: 1, key: string, writer: string, record: SpotCheckRecord }
  | { seq: number, kind: 2, key: string, writer: string, record: RoundRecord }
  | { seq: number, kind: 3, key: string, writer: string, record: EquivocationRecord }

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
      case 'equivocation': events.push({ seq: r.seq, kind: 3, key: id, writer, record: r }); break
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
  const unsignedWins: string[] = []
  const undecidedWins: string[] = []
  const equivocators = new Set<string>()
  // receipts already credited (author, session): a session's answer wins at most once
  const credited = new Set<string>()
  const requireReceipts = options.requireReceipts ?? true
  const trusted = (id: string): boolean => { const r = reputationOf(state, id); return r.admitted && !r.excluded }
  for (const e of events) {
    if (!trusted(e.writer)) continue
    if (e.kind === 3) {
      // a proof anyone can check: slash the signer once
      const r = e.record
      if (!equivocators.has(r.signer) && checkEquivocation(r)) {
        equivocators.add(r.signer)
        state = applySpotCheck(state, r.signer, false, params)
      }
    } else if (e.kind === 0) {
      // admission is per model: a verifier vouches only for a model it is itself admitted for
      // (it computed the references with its own copy), and admits the subject for that model
      const r = e.record
      if (admittedFor(reputationOf(state, e.writer), r.model) && r.passed && r.tasksExact === r.tasks && r.tasks > 0) state = applyCalibration(state, r.subject, params, r.model)
    } else if (e.kind === 1) {
      const r = e.record
      // a verifier replays the subject's layers with its own copy: it counts for a model it is admitted for
      if (!admittedFor(reputationOf(state, e.writer), r.model)) continue
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
        ...(r.model !== undefined ? { model: r.model } : {}),
        ...(options.judgesPerPair !== undefined ? { judgesPerPair: options.judgesPerPair } : {})
      }, { params })
      // the win is credited only to an author that signed a receipt for this answer
      const winner = roundAnswers.find((a) => a.id === settled.outcome.winner)
      const receipt = winner === undefined ? undefined : validReceipt(r, winner.id, winner.author, credited)
      const unsigned = requireReceipts && winner !== undefined && receipt === undefined
      const undecided = requireReceipts && winner !== undefined && !decided(settled.outcome)
      if (unsigned || undecided) {
        if (unsigned) unsignedWins.push(r.round)
        else undecidedWins.push(r.round)
        const uncredited = { ...settled.outcome }
        delete uncredited.winnerAuthor
        state = applyRound(state, uncredited, params)
      } else {
        state = settled.state
        if (receipt !== undefined) credited.add(receipt)
      }
      outcomes.push(settled.outcome)
      if (settled.outcome.winner !== r.winner || settled.outcome.ranking.join('\u0000') !== r.ranking.join('\u0000')) {
        ownerMismatches.push(r.round)
        state = applyPenalty(state, e.writer, options.ownerPenalty ?? params.revealPenalty)
      }
    }
  }
  return { state, outcomes, invalid, ownerMismatches, unsignedWins, undecidedWins, equivocators: [...equivocators].sort(compareText) }
}

/** Whether the round's winner is strictly stronger than every other answer (its judges told them apart). */
function decided (outcome: RoundOutcome): boolean {
  const best = outcome.strengths.find(([id]) => id === outcome.winner)?.[1]
  const others = outcome.strengths.filter(([id]) => id !== outcome.winner)
  return best !== undefined && others.length > 0 && others.every(([, s]) => s < best)
}

/** The (author, session) key of `answer`'s receipt in round `r` when it is `author`'s valid signature, not credited before. */
function validReceipt (r: RoundRecord, answer: string, author: string, credited: ReadonlySet<string>): string | undefined {
  const entry = r.receipts?.find((x) => x[0] === answer)
  if (entry === undefined || entry.length !== 5) return undefined
  const [, session, first, hash, signature] = entry
  const position = Number(first)
  const key = `${author}\u0000${session}`
  if (!Number.isSafeInteger(position) || position < 0 || !/^[0-9a-f]{64}$/.test(hash) || credited.has(key)) return undefined
  // the id the judges voted on is the one this receipt's session and tokens give
  if (answer !== receiptAnswerId(r.round, session, hash)) return undefined
  return verifyPeer(author, signedMessage('receipt', session, position, Buffer.from(hash, 'hex')), Buffer.from(signature, 'base64')) ? key : undefined
}
