// Consensus records as they live in the CRDT swarm state. Each is plain JSON written with
// `SwarmState.recordRound(id, data)` into its writer's own namespace (key `round/<id>`), so the
// writer is authenticated by its signed envelope chain and nobody can write another's record —
// no change to crdt/ is needed. Ids (the writer is the record's author):
//   a/<round>        AnswerRecord      by an answer's author: the answer's digest
//   c/<round>        CommitRecord      by a judge: its ballot commitment
//   r/<round>        RevealRecord      by a judge: its ballot and salt
//   o/<round>        RoundRecord       by the round's owner (requester): its model, answers, reveal
//                                      arrival times, deadline, declared winner and ranking
//   e/<id>           SpotCheckRecord   by a verifier: evidence of a passed or failed spot-check of a case
//   k/<subject>/<challenge> CalibrationRecord by a verifier admitted for the record's model
//   q/<signer>/<kind>.<position>.<session> EquivocationRecord by whoever found two different frames
//                                      one peer signed at one position (checked by every ledger)
// Parsing bounds every field; a record that does not parse is ignored by every node alike.
import { MAX_BALLOT_VOTES, MAX_COAUTHORS, MAX_ROUND_ANSWERS } from './constants.ts'
import { InvalidConsensusRecordError } from './errors.ts'
import type { Choice, Vote } from './index.ts'
import type { Equivocation } from './signed-frames.ts'

export interface AnswerRecord { t: 'answer', round: string, digest: string }
export interface CommitRecord { t: 'commit', round: string, commitment: string }
export interface RevealRecord { t: 'reveal', round: string, votes: Vote[], salt: string }
export interface RoundRecord {
  t: 'round'
  round: string
  /**
   * The model (manifest id) the answers were generated with: every ledger schedules and settles
   * the round among the nodes admitted for it. Absent in records from before rounds named their
   * model: every admitted node.
   */
  model?: string
  /** Order of rounds in the reputation fold (the owner takes its highest known seq + 1). */
  seq: number
  deadline: number
  /** [answer digest, author, ...coauthors (the pipeline's other nodes)]. */
  answers: string[][]
  /** [judge, when the owner took its reveal (owner's clock, ms)]. */
  reveals: Array<[string, number]>
  winner: string
  ranking: string[]
  /**
   * Per answer, its last stage's receipt: [answer digest, session, first position, receipt content
   * hash (hex: the sampled tokens and the sampling they were drawn with,
   * protocols/inference/frame-signature.ts receiptContent), signature (base64)] — the author's
   * signature over the tokens it sampled in that session (consensus/signed-frames.ts). The ledger
   * credits a win only to an answer with a valid one.
   */
  receipts?: string[][]
}
export interface SpotCheckRecord {
  t: 'spot-check'
  id: string
  seq: number
  /**
   * What was checked (session, stage range, positions): verifiers re-checking the same trace use
   * the same case, and a failure counts only when confirmed (ledger.ts).
   */
  case: string
  subject: string
  model: string
  start: number
  end: number
  /** Positions checked, and those that did not match. */
  checked: number[]
  mismatched: number[]
  passed: boolean
}
export interface CalibrationRecord {
  t: 'calibration'
  seq: number
  subject: string
  model: string
  challenge: string
  tasks: number
  tasksExact: number
  pairs: number
  pairsRight: number
  passed: boolean
}
/** Two different frames one peer signed at one (kind, session, position): proof it equivocated (signed-frames.ts). */
export interface EquivocationRecord extends Equivocation {
  t: 'equivocation'
  seq: number
}
export type ConsensusRecord = AnswerRecord | CommitRecord | RevealRecord | RoundRecord | SpotCheckRecord | CalibrationRecord | EquivocationRecord

const MAX_ID = 128
const CHOICE_CODE: Record<Choice, string> = { first: 'A', second: 'B', tie: 'U' }
const CODE_CHOICE: Record<string, Choice> = { A: 'first', B: 'second', U: 'tie' }

/** The record id (crdt key after `round/`) a record is stored under. */
export function recordId (r: ConsensusRecord): string {
  switch (r.t) {
    case 'answer': return `a/${r.round}`
    case 'commit': return `c/${r.round}`
    case 'reveal': return `r/${r.round}`
    case 'round': return `o/${r.round}`
    case 'spot-check': return `e/${r.id}`
    case 'calibration': return `k/${r.subject}/${r.challenge}`
    case 'equivocation': return `q/${r.signer}/${r.kind}.${r.position}.${r.session}`
  }
}

/** JSON for `recordRound` (votes as compact [first, second, 'A'|'B'|'U'] triples). */
export function recordData (r: ConsensusRecord): Record<string, unknown> {
  if (r.t === 'reveal') return { t: r.t, round: r.round, votes: r.votes.map((v) => [v.first, v.second, CHOICE_CODE[v.choice]]), salt: r.salt }
  return { ...r }
}

const fail = (why: string): never => { throw new InvalidConsensusRecordError(why) }
const str = (x: unknown, what: string): string => typeof x === 'string' && x.length > 0 && x.length <= MAX_ID ? x : fail(`${what} must be a string of 1–${MAX_ID} chars`)
const num = (x: unknown, what: string): number => typeof x === 'number' && Number.isFinite(x) ? x : fail(`${what} must be a finite number`)
const nat = (x: unknown, what: string): number => Number.isSafeInteger(x) && (x as number) >= 0 ? x as number : fail(`${what} must be an integer ≥ 0`)
const bool = (x: unknown, what: string): boolean => typeof x === 'boolean' ? x : fail(`${what} must be a boolean`)
const list = (x: unknown, max: number, what: string): unknown[] => Array.isArray(x) && x.length <= max ? x : fail(`${what} must be a list of at most ${max}`)

/** Parses `data` stored under `id`; throws InvalidConsensusRecordError when it is not a record. */
export function parseRecord (id: string, data: unknown): ConsensusRecord {
  if (typeof data !== 'object' || data === null || Array.isArray(data)) fail('record must be an object')
  const d = data as Record<string, unknown>
  let r: ConsensusRecord
  switch (d.t) {
    case 'answer': r = { t: 'answer', round: str(d.round, 'round'), digest: str(d.digest, 'digest') }; break
    case 'commit': r = { t: 'commit', round: str(d.round, 'round'), commitment: str(d.commitment, 'commitment') }; break
    case 'reveal': r = {
      t: 'reveal',
      round: str(d.round, 'round'),
      salt: str(d.salt, 'salt'),
      votes: list(d.votes, MAX_BALLOT_VOTES, 'votes').map((v) => {
        const [first, second, code] = list(v, 3, 'vote')
        const choice = CODE_CHOICE[code as string] ?? fail('vote choice must be A, B or U')
        return { first: str(first, 'first'), second: str(second, 'second'), choice }
      })
    }; break
    case 'round': r = {
      t: 'round',
      round: str(d.round, 'round'),
      ...(d.model === undefined ? {} : { model: str(d.model, 'model') }),
      seq: nat(d.seq, 'seq'),
      deadline: num(d.deadline, 'deadline'),
      answers: list(d.answers, MAX_ROUND_ANSWERS, 'answers').map((a) => {
        const entry = list(a, 2 + MAX_COAUTHORS, 'answer').map((x) => str(x, 'answer digest or author'))
        return entry.length >= 2 ? entry : fail('an answer needs a digest and an author')
      }),
      reveals: list(d.reveals, MAX_BALLOT_VOTES, 'reveals').map((a) => { const [x, y] = list(a, 2, 'reveal'); return [str(x, 'judge'), num(y, 'at')] as [string, number] }),
      winner: str(d.winner, 'winner'),
      ranking: list(d.ranking, MAX_ROUND_ANSWERS, 'ranking').map((x) => str(x, 'ranking entry')),
      ...(d.receipts === undefined ? {} : { receipts: list(d.receipts, MAX_ROUND_ANSWERS, 'receipts').map((x) => list(x, 5, 'receipt').map((y) => str(y, 'receipt field'))) })
    }; break
    case 'spot-check': r = {
      t: 'spot-check',
      id: str(d.id, 'id'),
      seq: nat(d.seq, 'seq'),
      case: str(d.case, 'case'),
      subject: str(d.subject, 'subject'),
      model: str(d.model, 'model'),
      start: nat(d.start, 'start'),
      end: nat(d.end, 'end'),
      checked: list(d.checked, 4096, 'checked').map((x) => nat(x, 'position')),
      mismatched: list(d.mismatched, 4096, 'mismatched').map((x) => nat(x, 'position')),
      passed: bool(d.passed, 'passed')
    }; break
    case 'calibration': r = {
      t: 'calibration',
      seq: nat(d.seq, 'seq'),
      subject: str(d.subject, 'subject'),
      model: str(d.model, 'model'),
      challenge: str(d.challenge, 'challenge'),
      tasks: nat(d.tasks, 'tasks'),
      tasksExact: nat(d.tasksExact, 'tasksExact'),
      pairs: nat(d.pairs, 'pairs'),
      pairsRight: nat(d.pairsRight, 'pairsRight'),
      passed: bool(d.passed, 'passed')
    }; break
    case 'equivocation': {
      const kind = d.kind === 'step' || d.kind === 'token' || d.kind === 'receipt' ? d.kind : fail('kind must be step, token or receipt')
      // a signature field may carry a batch proof (consensus/signed-frames.ts): ≤ 584 bytes, 780 base64 chars
      const sigPair = (x: unknown): [string, string] => { const [a, b] = list(x, 2, 'signatures').map((y) => typeof y === 'string' && y.length > 0 && y.length <= 780 ? y : fail('signatures must be two strings of 1–780 chars')); return a !== undefined && b !== undefined ? [a, b] : fail('signatures must be two strings') }
      const pair = (x: unknown, what: string): [string, string] => { const [a, b] = list(x, 2, what).map((y) => str(y, what)); return a !== undefined && b !== undefined ? [a, b] : fail(`${what} must be two strings`) }
      r = { t: 'equivocation', seq: nat(d.seq, 'seq'), signer: str(d.signer, 'signer'), kind, session: str(d.session, 'session'), position: nat(d.position, 'position'), contents: pair(d.contents, 'contents'), signatures: sigPair(d.signatures) }
      break
    }
    default: return fail(`unknown record type ${JSON.stringify(d.t)}`)
  }
  if (recordId(r) !== id) fail(`record of type ${r.t} stored under ${id}, expected ${recordId(r)}`)
  return r
}
