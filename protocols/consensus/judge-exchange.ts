// One owner–judge exchange of a consensus round over one stream (grammar in README.md):
//
//   owner → lp(JudgeRequest{round, prompt, answers, pairs})
//   judge → lp(JudgeCommit{status, commitment})          judge verdicts are committed, not sent
//   owner → lp(RevealRequest{round})                       only once every judge has committed
//   judge → lp(JudgeReveal{votes, salt})
//
// The judge bounds the frame before decoding, checks every pair names an answer it was sent and
// (through `accept`) that the pairs are its own assignment, and answers bad input with a status.
// Each answer carries its author's receipt (the tokens, session, first position, signature); the
// judge's `answerText` checks it and gives the text it judges (UNVERIFIED when an answer fails).
// The owner never trusts the reveal: consensus/commit-reveal.ts checks it against the commitment.
import { pbStream } from '@libp2p/utils'
import type { AbortOptions, Stream } from '@libp2p/interface'
import { commitBallot, newSalt } from '../../consensus/commit-reveal.ts'
import type { Choice as VoteChoice, Commitment, Reveal, Vote as BallotVote } from '../../consensus/index.ts'
import { Choice, JudgeCommit, JudgeRequest, JudgeReveal, RevealRequest } from './consensus.pb.js'
import { CONSENSUS_COMMIT_TIMEOUT_MS, CONSENSUS_JUDGE_TIMEOUT_MS, CONSENSUS_MAX_ANSWERS, CONSENSUS_MAX_FRAME_BYTES, CONSENSUS_MAX_PAIRS, CONSENSUS_REVEAL_TIMEOUT_MS } from './constants.ts'
import { JudgingFailedError } from './errors.ts'

export { Choice, JudgeCommit, JudgeRequest, JudgeReveal, RevealRequest }

const TO_WIRE: Record<VoteChoice, Choice> = { first: Choice.FIRST, second: Choice.SECOND, tie: Choice.TIE }
const FROM_WIRE: Record<Choice, VoteChoice> = { [Choice.FIRST]: 'first', [Choice.SECOND]: 'second', [Choice.TIE]: 'tie' }

/** An answer as a judge receives it. */
export interface JudgeCandidate {
  id: string
  text: string
  authors: string[]
  /** The author's receipt: the tokens it sampled in `session` (the first from the logits at `first`) and its signature (empty: none). */
  tokens: number[]
  session: string
  first: number
  /** The sampling the receipt binds (temperature, top-p, top-k, seed, skipped draws). */
  sampling?: { temperature: number, topP: number, topK: number, seed: number, skipDraws: number }
  receipt: Uint8Array
}

/** The judge's model: which of two answers to `prompt` is better. */
export type JudgeFn = (prompt: string, first: string, second: string, options: AbortOptions) => Promise<VoteChoice>

export interface ServeJudgingOptions extends AbortOptions {
  /** Who this judge is (its peer id text): part of the commitment. */
  judge: string
  judgeFn: JudgeFn
  /** Whether `pairs` are this judge's assignment in `round` (default: accept); `answers` as the owner sent them (id, authors). */
  accept?: (round: string, pairs: Array<{ first: string, second: string }>, answers: Array<{ id: string, authors: string[] }>) => boolean
  /**
   * The text to judge for `answer` (default: the text sent); undefined refuses the request
   * UNVERIFIED (a consensus judge: the receipt does not check or the text is not its tokens,
   * consensus/answer-receipts.ts verifiedAnswerText). Throwing declines it (FAILED).
   */
  answerText?: (request: { round: string, prompt: string }, answer: JudgeCandidate) => string | undefined | Promise<string | undefined>
  /** Called with the commitment before it is sent (phase 2: write the commit record). */
  onCommit?: (commitment: Commitment) => void | Promise<void>
  /** Called with the ballot before it is revealed (phase 2: write the reveal record). */
  onReveal?: (reveal: { round: string, votes: BallotVote[], salt: string }) => void | Promise<void>
  timeoutMs?: number
}

export type ServeJudgingResult = { status: JudgeCommit.Status | 'REVEALED' | 'CLOSED' | 'TIMEOUT', votes: number }

/** Serves one inbound judging stream. Never throws for bad input: the result names it. */
export async function serveJudging (stream: Stream, options: ServeJudgingOptions): Promise<ServeJudgingResult> {
  const deadline = AbortSignal.timeout(options.timeoutMs ?? CONSENSUS_JUDGE_TIMEOUT_MS)
  const signal = options.signal == null ? deadline : AbortSignal.any([deadline, options.signal])
  const pb = pbStream(stream, { maxDataLength: CONSENSUS_MAX_FRAME_BYTES })
  const refuse = async (status: JudgeCommit.Status): Promise<ServeJudgingResult> => {
    try {
      await pb.write({ status, commitment: '' }, JudgeCommit, { signal: AbortSignal.timeout(1000) })
      await stream.close({ signal: AbortSignal.timeout(1000) })
    } catch (err) {
      stream.abort(err instanceof Error ? err : new Error(String(err)))
    }
    return { status, votes: 0 }
  }
  let req: JudgeRequest
  try {
    req = await pb.read(JudgeRequest, { signal })
  } catch (err) {
    if (signal.aborted) { stream.abort(new Error('judging deadline')); return { status: 'TIMEOUT', votes: 0 } }
    const name = (err as Error).name
    if (name === 'InvalidDataLengthError' || name === 'InvalidDataLengthLengthError') return await refuse(JudgeCommit.Status.TOO_LARGE)
    return await refuse(JudgeCommit.Status.MALFORMED)
  }
  if (req.answers.length > CONSENSUS_MAX_ANSWERS || req.pairs.length > CONSENSUS_MAX_PAIRS) return await refuse(JudgeCommit.Status.TOO_LARGE)
  const ids = new Set(req.answers.map((a) => a.id))
  const pairs = req.pairs.map((p) => ({ first: p.first, second: p.second }))
  const keys = new Set(pairs.map((p) => `${p.first}\u0000${p.second}`))
  if (req.round === '' || pairs.length === 0 || keys.size !== pairs.length || ids.size !== req.answers.length || pairs.some((p) => p.first === p.second || !ids.has(p.first) || !ids.has(p.second))) return await refuse(JudgeCommit.Status.MALFORMED)
  if (options.accept !== undefined && !options.accept(req.round, pairs, req.answers.map((a) => ({ id: a.id, authors: a.authors })))) return await refuse(JudgeCommit.Status.REFUSED)
  const texts = new Map<string, string>()
  try {
    for (const a of req.answers) {
      const text = options.answerText === undefined ? a.text : await options.answerText({ round: req.round, prompt: req.prompt }, a)
      if (text === undefined) return await refuse(JudgeCommit.Status.UNVERIFIED)
      texts.set(a.id, text)
    }
  } catch {
    return await refuse(JudgeCommit.Status.FAILED)
  }
  const votes: BallotVote[] = []
  try {
    for (const p of pairs) votes.push({ ...p, choice: await options.judgeFn(req.prompt, texts.get(p.first) as string, texts.get(p.second) as string, { signal }) })
  } catch {
    return await refuse(JudgeCommit.Status.FAILED)
  }
  const salt = newSalt()
  const commitment = commitBallot(req.round, options.judge, votes, salt)
  try {
    await options.onCommit?.({ round: req.round, judge: options.judge, commitment })
    await pb.write({ status: JudgeCommit.Status.OK, commitment }, JudgeCommit, { signal })
    const reveal = await pb.read(RevealRequest, { signal })
    if (reveal.round !== req.round) return await refuse(JudgeCommit.Status.MALFORMED)
    await options.onReveal?.({ round: req.round, votes, salt })
    await pb.write({ votes: votes.map((v) => ({ first: v.first, second: v.second, choice: TO_WIRE[v.choice] })), salt }, JudgeReveal, { signal })
    await stream.close({ signal })
    return { status: 'REVEALED', votes: votes.length }
  } catch (err) {
    stream.abort(err instanceof Error ? err : new Error(String(err)))
    return { status: signal.aborted ? 'TIMEOUT' : 'CLOSED', votes: 0 }
  }
}

export interface JudgingRound {
  round: string
  prompt: string
  /** Answer id → text. */
  answers: ReadonlyMap<string, string>
  /** Answer id → its author's receipt (sent with the text; a consensus judge refuses an answer without one). */
  receipts?: ReadonlyMap<string, { tokens: readonly number[], session: string, first: number, sampling: { temperature: number, topP: number, topK: number, seed: number, skipDraws: number }, signature: Uint8Array }>
  /** Answer id → its author then coauthors (sent so the judge can recompute the schedule). */
  authors?: ReadonlyMap<string, readonly string[]>
  /** The schedule's assignments (consensus/pair-schedule.ts). */
  assignments: ReadonlyArray<{ judge: string, first: string, second: string }>
  /** Opens a judging stream to a judge. */
  open: (judge: string, options: AbortOptions) => Promise<Stream>
  commitTimeoutMs?: number
  revealTimeoutMs?: number
  /** The owner's clock for each reveal's `at` (default Date.now). */
  now?: () => number
}

/** What the owner collected; feed it to consensus checkReveals / settleRound. */
export interface JudgingResult {
  commitments: Commitment[]
  reveals: Reveal[]
  /** Judges that refused, failed or broke the exchange, and why. */
  failures: Array<{ judge: string, reason: string }>
}

/** Runs the commit phase with every assigned judge, then the reveal phase with those that committed. */
export async function collectJudging (r: JudgingRound, options: AbortOptions = {}): Promise<JudgingResult> {
  const now = r.now ?? Date.now
  const byJudge = new Map<string, Array<{ first: string, second: string }>>()
  for (const a of r.assignments) {
    const list = byJudge.get(a.judge) ?? []
    list.push({ first: a.first, second: a.second })
    byJudge.set(a.judge, list)
  }
  const failures: JudgingResult['failures'] = []
  const commitSignal = (): AbortSignal => AbortSignal.any([AbortSignal.timeout(r.commitTimeoutMs ?? CONSENSUS_COMMIT_TIMEOUT_MS), ...(options.signal != null ? [options.signal] : [])])
  const opened = await Promise.all([...byJudge].map(async ([judge, pairs]) => {
    let stream: Stream | undefined
    try {
      const signal = commitSignal()
      stream = await r.open(judge, { signal })
      const pb = pbStream(stream, { maxDataLength: CONSENSUS_MAX_FRAME_BYTES })
      const ids = new Set(pairs.flatMap((p) => [p.first, p.second]))
      await pb.write({ round: r.round, prompt: r.prompt, answers: [...ids].sort().map((id) => { const rc = r.receipts?.get(id); return { id, text: r.answers.get(id) ?? '', authors: [...(r.authors?.get(id) ?? [])], tokens: [...(rc?.tokens ?? [])], session: rc?.session ?? '', first: rc?.first ?? 0, receipt: Uint8Array.from(rc?.signature ?? []), ...(rc !== undefined ? { sampling: rc.sampling } : {}) } }), pairs }, JudgeRequest, { signal })
      const commit = await pb.read(JudgeCommit, { signal })
      if (commit.status !== JudgeCommit.Status.OK) throw new JudgingFailedError(`judge answered ${commit.status}`)
      return { judge, stream, pb, commitment: commit.commitment }
    } catch (err) {
      stream?.abort(err instanceof Error ? err : new Error(String(err)))
      failures.push({ judge, reason: (err as Error).message })
      return undefined
    }
  }))
  const live = opened.filter((x) => x !== undefined)
  const commitments: Commitment[] = live.map((x) => ({ round: r.round, judge: x.judge, commitment: x.commitment }))
  const reveals: Reveal[] = []
  await Promise.all(live.map(async (x) => {
    try {
      const signal = AbortSignal.any([AbortSignal.timeout(r.revealTimeoutMs ?? CONSENSUS_REVEAL_TIMEOUT_MS), ...(options.signal != null ? [options.signal] : [])])
      await x.pb.write({ round: r.round }, RevealRequest, { signal })
      const reveal = await x.pb.read(JudgeReveal, { signal })
      reveals.push({ round: r.round, judge: x.judge, votes: reveal.votes.map((v) => ({ first: v.first, second: v.second, choice: FROM_WIRE[v.choice] ?? 'tie' })), salt: reveal.salt, at: now() })
      await x.stream.close({ signal })
    } catch (err) {
      x.stream.abort(err instanceof Error ? err : new Error(String(err)))
      failures.push({ judge: x.judge, reason: `reveal: ${(err as Error).message}` })
    }
  }))
  reveals.sort((a, b) => (a.judge < b.judge ? -1 : a.judge > b.judge ? 1 : 0))
  return { commitments, reveals, failures }
}
