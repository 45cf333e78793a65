// Answers signed by their last stage (issue 7): the ledger credits a round's win only to an author
// whose receipt (its Ed25519 signature over the tokens it sampled in a session) the round record
// carries; an owner that attributes the win to an accomplice — no receipt, a receipt signed by
// someone else, a tampered one, or one already credited in another round — credits nobody.
// Equivocation records are checked cryptographically: a valid proof slashes and excludes the
// signer, a forged one changes nothing.
import { generateKeyPairFromSeed } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { beforeAll, describe, expect, it } from 'vitest'
import { commitBallot, DEFAULT_REPUTATION_PARAMS, scheduleRound, type Answer, type Vote } from '../../consensus/index.ts'
import { deriveLedger, type StoredRecord } from '../../consensus/ledger.ts'
import { recordData, recordId, type ConsensusRecord } from '../../consensus/records.ts'
import { signedMessage, tokensHash } from '../../consensus/signed-frames.ts'
import { toHex } from '../../consensus/digest.ts'
import { receiptAnswerId } from '../../consensus/answer-receipts.ts'

interface Key { id: string, sign: (m: Uint8Array) => Promise<Uint8Array> }
let peers: Key[] = []
beforeAll(async () => {
  peers = await Promise.all(Array.from({ length: 8 }, async (_, i) => {
    const key = await generateKeyPairFromSeed('Ed25519', new Uint8Array(32).fill(40 + i))
    return { id: peerIdFromPrivateKey(key).toString(), sign: async (m: Uint8Array) => await key.sign(m) }
  }))
})

const b64 = (x: Uint8Array): string => Buffer.from(x).toString('base64')
/**
 * `by`'s receipt for `tokens` sampled in `session`, as round `n`'s record carries it; the answer id
 * is the receipt's (consensus/answer-receipts.ts) unless `id` says otherwise.
 */
async function receipt (by: Key, n: number, session: string, tokens: number[], id?: string): Promise<string[]> {
  const hash = tokensHash(tokens)
  return [id ?? receiptAnswerId(`${peers[0].id}:${n}`, session, toHex(hash)), session, '4', toHex(hash), b64(await by.sign(signedMessage('receipt', session, 4, hash)))]
}

/** One round owned by peers[0]: answers by peers[1..3] (`best`'s id: `bestId`, by default the first receipt's), every scheduled judge prefers answer `best`. */
function round (n: number, best: number, receipts: string[][], bestId = receipts[0]?.[0] ?? `a${n}x${best}`): StoredRecord[] {
  const ids = peers.map((p) => p.id)
  const owner = ids[0]
  const r = `${owner}:${n}`
  const answers: Answer[] = [1, 2, 3].map((i) => ({ id: i === best ? bestId : `a${n}x${i}`, author: ids[i] }))
  const out: Array<{ writer: string, record: ConsensusRecord }> = []
  const state = deriveLedger([], { genesis: ids }).state
  const ballots = new Map<string, Vote[]>()
  for (const a of scheduleRound(state, r, answers).assignments) {
    const winner = bestId
    const choice = a.first === winner ? 'first' : a.second === winner ? 'second' : 'tie'
    ballots.set(a.judge, [...(ballots.get(a.judge) ?? []), { first: a.first, second: a.second, choice }])
  }
  const reveals: Array<[string, number]> = []
  for (const [judge, votes] of ballots) {
    out.push({ writer: judge, record: { t: 'commit', round: r, commitment: commitBallot(r, judge, votes, 's') } })
    out.push({ writer: judge, record: { t: 'reveal', round: r, votes, salt: 's' } })
    reveals.push([judge, 10])
  }
  const winner = bestId
  const ranking = [winner, ...answers.map((a) => a.id).filter((x) => x !== winner).sort()]
  out.push({ writer: owner, record: { t: 'round', round: r, seq: n, deadline: 1000, answers: answers.map((a) => [a.id, a.author]), reveals, winner, ranking, receipts } })
  return out.map(({ writer, record }) => ({ id: recordId(record), data: recordData(record), writer }))
}

describe('wins credited only to answers signed by their last stage', () => {
  it('a valid receipt credits the author; none, another signer\'s, a tampered or a reused one credits nobody', async () => {
    const ids = peers.map((p) => p.id)
    const author = peers[2] // the chain's last stage that produced answer x2
    const positive = (records: StoredRecord[]): number => deriveLedger(records, { genesis: ids }).state.nodes.get(author.id)?.positive ?? 0
    const honest = round(1, 2, [await receipt(author, 1, 'session-1', [5, 6, 7])])
    const ledger = deriveLedger(honest, { genesis: ids })
    expect(ledger.outcomes[0].winner).toBe(receiptAnswerId(`${ids[0]}:1`, 'session-1', toHex(tokensHash([5, 6, 7]))))
    expect(ledger.unsignedWins).toEqual([])
    const credited = positive(honest)
    const none = round(1, 2, [])
    expect(deriveLedger(none, { genesis: ids }).unsignedWins).toEqual([`${ids[0]}:1`])
    expect(credited - positive(none)).toBeCloseTo(DEFAULT_REPUTATION_PARAMS.winReward, 9)
    // the owner signs the receipt itself (attributing the win to an accomplice): no credit
    expect(positive(round(1, 2, [await receipt(peers[0], 1, 'session-1', [5, 6, 7])]))).toBe(positive(none))
    // a receipt for other tokens than it signed, or for another answer of the round
    const tampered = await receipt(author, 1, 'session-1', [5, 6, 7])
    tampered[3] = toHex(tokensHash([5, 6, 8]))
    expect(positive(round(1, 2, [tampered]))).toBe(positive(none))
    expect(positive(round(1, 2, [await receipt(author, 1, 'session-1', [5, 6, 7], 'a1x1')], 'a1x2'))).toBe(positive(none))
    // a valid receipt of the author's, but the winning id is not that receipt's (the judges voted on
    // other tokens: an owner pairing an accomplice's receipt with another chain's text)
    expect(positive(round(1, 2, [await receipt(author, 1, 'session-1', [5, 6, 7], 'a1x2')]))).toBe(positive(none))
    // one session's receipt wins once: reused in a later round it credits nothing
    const twice = [...honest, ...round(2, 2, [await receipt(author, 2, 'session-1', [5, 6, 7])])]
    const l2 = deriveLedger(twice, { genesis: ids })
    expect(l2.unsignedWins).toEqual([`${ids[0]}:2`])
    const fresh = [...honest, ...round(2, 2, [await receipt(author, 2, 'session-2', [5, 6, 7])])]
    expect(deriveLedger(fresh, { genesis: ids }).unsignedWins).toEqual([])
    // requireReceipts: false keeps the owner's attribution (records from before signed answers)
    expect(deriveLedger(none, { genesis: ids, requireReceipts: false }).unsignedWins).toEqual([])
  })

  it('a valid equivocation proof slashes and excludes the signer; a forged one changes nothing', async () => {
    const ids = peers.map((p) => p.id)
    const cheat = peers[5]
    const [h1, h2] = [tokensHash([1]), tokensHash([2])].sort((a, b) => toHex(a) < toHex(b) ? -1 : 1)
    const sig = async (by: Key, h: Uint8Array): Promise<string> => b64(await by.sign(signedMessage('token', 'sess', 7, h)))
    const record = (signatures: [string, string]): StoredRecord[] => {
      const r: ConsensusRecord = { t: 'equivocation', seq: 1, signer: cheat.id, kind: 'token', session: 'sess', position: 7, contents: [toHex(h1), toHex(h2)], signatures }
      return [{ id: recordId(r), data: recordData(r), writer: ids[0] }]
    }
    const proven = deriveLedger(record([await sig(cheat, h1), await sig(cheat, h2)]), { genesis: ids })
    expect(proven.equivocators).toEqual([cheat.id])
    expect(proven.state.nodes.get(cheat.id)?.excluded).toBe(true)
    // signed by someone else: not the signer's equivocation
    const forged = deriveLedger(record([await sig(peers[6], h1), await sig(cheat, h2)]), { genesis: ids })
    expect(forged.equivocators).toEqual([])
    expect(forged.state.nodes.get(cheat.id)?.excluded).toBe(false)
  })
})
