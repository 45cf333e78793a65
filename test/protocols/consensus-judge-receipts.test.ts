// Issue 7: the text judged is the text the last stage signed. Answers travel to judges with their
// author's receipt (tokens, session, first position, Ed25519 signature); the answer id is the
// receipt's (consensus/answer-receipts.ts). Judges (in-process libp2p nodes, the daemon's check:
// verifiedAnswerText with the real stories260K tokenizer) judge their own decoding of the signed
// tokens. An owner that pairs an accomplice's valid receipt with another chain's text, or a receipt
// with other tokens, or an id that is not the receipt's, is refused UNVERIFIED by every judge, so
// nobody votes; the round record it writes anyway credits nobody in any ledger. An honest round is
// judged and its winner's author credited.
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { generateKeyPairFromSeed } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id'
import { tcp } from '@libp2p/tcp'
import { createLibp2p, type Libp2p } from 'libp2p'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { decodeAnswer, receiptAnswerId } from '../../consensus/answer-receipts.ts'
import { answerReceiptProblem, verifiedAnswerText } from '../../protocols/consensus/answer-check.ts'
import { DEFAULT_REPUTATION_PARAMS, scheduleRound, settleRound, type Answer, type Choice as VoteChoice } from '../../consensus/index.ts'
import { deriveLedger, type StoredRecord } from '../../consensus/ledger.ts'
import { recordData, recordId, type ConsensusRecord } from '../../consensus/records.ts'
import { toHex } from '../../consensus/digest.ts'
import { openModel, openTokenizer, type Tokenizer } from '../../engine/index.ts'
import { collectJudging, type JudgingResult } from '../../protocols/consensus/judge-exchange.ts'
import { ConsensusJudgeService, consensusJudgeProtocol, consensusJudgeService } from '../../protocols/consensus/judge-service.ts'
import { frameSigner, receiptContent, receiptMessage, receiptSampling, type FrameSigner, type ReceiptSampling } from '../../protocols/inference/frame-signature.ts'
import { STORIES260K } from '../models.ts'

const SWARM = 'receipts'
const PROMPT = 'Once upon a time'
const FIRST = 5 // the receipts' first sampled position (the prompt's last)
const SAMPLING: ReceiptSampling = receiptSampling({ temperature: 0.4, topP: 0.9, topK: 0, seed: 7 })
type Node = Libp2p<{ judge: ConsensusJudgeService }>
const nodes: Array<Libp2p<Record<string, unknown>>> = []
let tokenizer: Tokenizer
let owner: Libp2p
let judges: Node[] = []
/** The texts each judge's model was asked about. */
const judged: string[] = []
let authors: FrameSigner[] = []

const longer = async (_prompt: string, a: string, b: string): Promise<VoteChoice> => { judged.push(a, b); return a.length > b.length ? 'first' : a.length < b.length ? 'second' : 'tie' }

beforeAll(async () => {
  tokenizer = await openTokenizer(await openModel(STORIES260K))
  const make = async (judge: boolean): Promise<Libp2p<Record<string, unknown>>> => {
    const n = await createLibp2p({
      addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
      transports: [tcp()],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()],
      services: (judge ? { judge: consensusJudgeService({ swarm: SWARM, judgeFn: longer, answerText: ({ round, prompt }, a) => verifiedAnswerText(tokenizer, round, prompt, { ...a, author: a.authors[0] ?? '' }) }) } : {}) as { judge: ReturnType<typeof consensusJudgeService> }
    })
    nodes.push(n as unknown as Libp2p<Record<string, unknown>>)
    return n as unknown as Libp2p<Record<string, unknown>>
  }
  owner = await make(false)
  judges = [await make(true), await make(true)] as unknown as Node[]
  for (const j of judges) await owner.dial(j.getMultiaddrs()[0])
  // three last stages: two honest authors and the owner's accomplice
  authors = await Promise.all([61, 62, 63].map(async (s) => {
    const key = await generateKeyPairFromSeed('Ed25519', new Uint8Array(32).fill(s))
    return frameSigner(key, peerIdFromPrivateKey(key).toString()) as FrameSigner
  }))
})
afterAll(async () => { for (const n of nodes) await n.stop() })

interface Signed { id: string, author: string, tokens: number[], session: string, sampling: ReceiptSampling, text: string, signature: Uint8Array }

/** `by`'s answer in `round`: the tokens of `words`, signed as its receipt of `session`. */
function answer (round: string, by: FrameSigner, session: string, words: string): Signed {
  const tokens = tokenizer.encode(words)
  const p = tokenizer.encode(PROMPT, { bos: true })
  return { id: receiptAnswerId(round, session, toHex(receiptContent(tokens, SAMPLING))), author: by.peer, tokens, session, sampling: SAMPLING, text: decodeAnswer(tokenizer, p[p.length - 1], tokens), signature: by.sign(receiptMessage(session, FIRST, tokens, SAMPLING)) }
}

/** Runs the judging of `sent` (what the owner sends: id, author, text and receipt per answer) with the scheduled judges. */
async function judge (round: string, sent: Signed[]): Promise<{ result: JudgingResult, answers: Answer[] }> {
  const genesis = [owner.peerId.toString(), ...judges.map((j) => j.peerId.toString())]
  const answers: Answer[] = sent.map((a) => ({ id: a.id, author: a.author }))
  const schedule = scheduleRound(deriveLedger([], { genesis }).state, round, answers)
  const result = await collectJudging({
    round,
    prompt: PROMPT,
    answers: new Map(sent.map((a) => [a.id, a.text])),
    receipts: new Map(sent.map((a) => [a.id, { tokens: a.tokens, session: a.session, first: FIRST, sampling: a.sampling, signature: a.signature }])),
    authors: new Map(sent.map((a) => [a.id, [a.author]])),
    assignments: schedule.assignments,
    open: async (j, o) => await owner.dialProtocol(peerIdFromString(j), consensusJudgeProtocol(SWARM), o)
  })
  return { result, answers }
}

/** The records an owner writes for the round (every judge's commit and reveal, the round record) and what a ledger derives. */
function ledgerOf (round: string, n: number, answers: Answer[], result: JudgingResult, receipts: Signed[]): ReturnType<typeof deriveLedger> {
  const genesis = [owner.peerId.toString(), ...judges.map((j) => j.peerId.toString())]
  const out: StoredRecord[] = []
  const put = (writer: string, r: ConsensusRecord): void => { out.push({ id: recordId(r), data: recordData(r), writer }) }
  for (const c of result.commitments) put(c.judge, { t: 'commit', round, commitment: c.commitment })
  for (const r of result.reveals) put(r.judge, { t: 'reveal', round, votes: r.votes, salt: r.salt })
  const settled = settleRound(deriveLedger([], { genesis }).state, { round, answers, commitments: result.commitments, reveals: result.reveals, deadline: Date.now() + 60_000 })
  put(owner.peerId.toString(), {
    t: 'round',
    round,
    seq: n,
    deadline: Date.now() + 60_000,
    answers: answers.map((a) => [a.id, a.author]),
    reveals: result.reveals.map((r) => [r.judge, r.at]),
    winner: settled.outcome.winner,
    ranking: settled.outcome.ranking,
    receipts: receipts.map((a) => [a.id, a.session, String(FIRST), toHex(receiptContent(a.tokens, a.sampling)), Buffer.from(a.signature).toString('base64')])
  })
  return deriveLedger(out, { genesis })
}

describe('judges judge the text the last stage signed (issue 7)', () => {
  it('honest receipts: judged as their own decoding, the winner\'s author credited', async () => {
    const round = `${owner.peerId.toString()}:honest`
    const [a, b] = [answer(round, authors[0], 's-a', ' the little cat sat on the mat and smiled.'), answer(round, authors[1], 's-b', ' a dog.')]
    judged.length = 0
    const { result, answers } = await judge(round, [a, b])
    expect(result.failures).toEqual([])
    expect(result.reveals).toHaveLength(judges.length)
    expect(new Set(judged)).toEqual(new Set([a.text, b.text]))
    const ledger = ledgerOf(round, 1, answers, result, [a, b])
    expect(ledger.outcomes[0].winner).toBe(a.id)
    expect([ledger.unsignedWins, ledger.undecidedWins]).toEqual([[], []])
    const positive = ledger.state.nodes.get(authors[0].peer)?.positive ?? 0
    expect(positive).toBeGreaterThanOrEqual(DEFAULT_REPUTATION_PARAMS.winReward)
  })

  it('an owner that swaps texts between receipts, or tokens, sampling or ids under a receipt, is refused UNVERIFIED by every judge and credits nobody', async () => {
    const base = `${owner.peerId.toString()}:swap`
    const pair = (round: string): [Signed, Signed] => [answer(round, authors[0], 's-a', ' the little cat sat on the mat and smiled.'), answer(round, authors[2], 's-c', ' a dog.')]
    const cases: Array<[string, (good: Signed, accomplice: Signed) => Signed[]]> = [
      // the accomplice's valid receipt with the good chain's text (and the other way round)
      ['text swapped', (good, accomplice) => [{ ...accomplice, text: good.text }, { ...good, text: accomplice.text }]],
      // the good chain's tokens and text under the accomplice's receipt (its signature is over other tokens)
      ['tokens swapped', (good, accomplice) => [{ ...accomplice, tokens: good.tokens, text: good.text }, good]],
      // the accomplice's receipt, tokens and text under an id that is not the receipt's
      ['id not the receipt\'s', (good, accomplice) => [{ ...accomplice, id: 'f'.repeat(16) }, good]],
      // the accomplice's receipt claimed for another seed than it signed
      ['sampling changed', (good, accomplice) => [{ ...accomplice, sampling: { ...SAMPLING, seed: 8 } }, good]],
      // the good answer claimed for the accomplice (a receipt it did not sign)
      ['author swapped', (good, accomplice) => [{ ...good, author: accomplice.author }, accomplice]]
    ]
    for (const [what, make] of cases) {
      const round = `${base}-${what.replaceAll(' ', '-').replaceAll('\'', '')}`
      const [good, accomplice] = pair(round)
      // unchanged, the same two answers are judged
      judged.length = 0
      const fair = await judge(round, [good, accomplice])
      expect(fair.result.failures, what).toEqual([])
      expect(fair.result.commitments.length, what).toBe(judges.length)
      judged.length = 0
      const { result } = await judge(round, make(good, accomplice))
      expect(result.commitments, what).toEqual([])
      expect(result.failures.length, what).toBe(judges.length)
      for (const f of result.failures) expect(f.reason, what).toBe('judge answered UNVERIFIED')
      expect(judged, what).toEqual([]) // no judge's model saw the texts
    }
    // the round record the owner writes anyway (valid receipts, no votes): the win is undecided and
    // credits nobody in any ledger
    const round = `${base}-record`
    const [good, accomplice] = pair(round)
    const sent = [{ ...accomplice, text: good.text }, { ...good, text: accomplice.text }]
    const { result, answers } = await judge(round, sent)
    expect(result.commitments).toEqual([])
    const ledger = ledgerOf(round, 2, answers, result, sent)
    expect(ledger.unsignedWins).toEqual([])
    expect(ledger.undecidedWins).toEqual([round])
    for (const a of authors) expect(ledger.state.nodes.get(a.peer)?.positive ?? 0).toBe(0)
  })

  it('answerReceiptProblem names what does not check', () => {
    const round = 'r:1'
    const a = answer(round, authors[0], 's', ' hello.')
    const check = (x: Partial<Signed>): string | undefined => answerReceiptProblem(round, { ...a, ...x, first: FIRST, receipt: (x.signature ?? a.signature) })
    expect(check({})).toBeUndefined()
    expect(check({ signature: new Uint8Array(0) })).toBe('no receipt')
    expect(check({ id: 'x' })).toBe('id is not the receipt\'s')
    expect(check({ author: authors[1].peer })).toBe('receipt not signed by the author')
    expect(answerReceiptProblem(round, { ...a, first: FIRST + 1, receipt: a.signature })).toBe('receipt not signed by the author')
    // a judge whose decoding differs from the text sent refuses it
    expect(verifiedAnswerText(tokenizer, round, PROMPT, { ...a, first: FIRST, receipt: a.signature })).toBe(a.text)
    expect(verifiedAnswerText(tokenizer, round, PROMPT, { ...a, text: `${a.text}!`, first: FIRST, receipt: a.signature })).toBeUndefined()
  })
})
