// Issue 7 on real daemons: the text judged is the text the last stage signed. Three whole-model
// daemons judge (d0 genesis; d1, d2 calibrated). A round owner — an in-process light libp2p peer
// that replicates the swarm state (as connect() does), derives the same ledger and so the same
// schedule as the judges — sends each scheduled daemon judge its pairs of two answers carrying
// their authors' receipts (tokens, session, sampling, Ed25519 signature by in-test author keys).
// Honest, the daemons commit and reveal. With the texts swapped between the receipts (an
// accomplice's valid receipt paired with the better chain's text), with tokens under a receipt
// that did not sign them, or with an id that is not the receipt's, every daemon judge answers
// UNVERIFIED (node/consensus-judge.ts answerText → protocols/consensus/answer-check.ts).
import { generateKeyPairFromSeed } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p, type Libp2p, type Libp2pOptions, type ServiceFactoryMap } from 'libp2p'
import type { PeerDiscovery } from '@libp2p/interface'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { decodeAnswer, receiptAnswerId } from '../../consensus/answer-receipts.ts'
import { toHex } from '../../consensus/digest.ts'
import { deriveLedger, scheduleRound, type Answer } from '../../consensus/index.ts'
import { openModel, openTokenizer, type Tokenizer } from '../../engine/index.ts'
import { collectJudging, consensusJudgeProtocol, swarmStack, swarmSync, type SwarmSync } from '../../protocols/index.ts'
import { frameSigner, receiptContent, receiptMessage, receiptSampling, type FrameSigner } from '../../protocols/inference/frame-signature.ts'
import { STORIES260K } from '../models.ts'
import { testSeed } from '../seed.ts'
import { cleanupDaemons, pollUntil, readyRecord, scratch, startDaemon, tcpAddr, type Started } from './daemons.ts'

const SWARM = 'judge-swap'
const PROMPT = 'Once upon a time'
const FIRST = 4
const SAMPLING = receiptSampling({ temperature: 0.5, topP: 1, topK: 0, seed: 3 })
const seed = testSeed()
const daemons: Started[] = []
let ids: string[] = []
let light: Libp2p<{ swarmSync: SwarmSync }>
let tokenizer: Tokenizer
let authors: FrameSigner[] = []

beforeAll(async () => {
  const start = async (extra: string[] = []): Promise<Started> => await startDaemon(scratch('mycelium-swap-'), ['--swarm', SWARM, '--model', STORIES260K, '--layers', '0:5', '--threads', '1', ...(daemons.length > 0 ? ['--bootstrap', tcpAddr(daemons[0])] : []), ...extra], 'serving')
  daemons.push(await start())
  daemons.push(...await Promise.all([start(), start()]))
  ids = daemons.map((d) => readyRecord(d).peerId as string)
  tokenizer = await openTokenizer(await openModel(STORIES260K))
  const stack = swarmStack({ swarm: SWARM, bootstrap: [tcpAddr(daemons[0])], dhtClientMode: true })
  light = await createLibp2p<{ swarmSync: SwarmSync }>({
    addresses: { listen: [] },
    transports: stack.transports,
    connectionEncrypters: stack.connectionEncrypters,
    streamMuxers: stack.streamMuxers,
    connectionGater: stack.connectionGater,
    peerDiscovery: stack.peerDiscovery as unknown as Libp2pOptions['peerDiscovery'] & Array<(components: never) => PeerDiscovery>,
    services: { ...stack.services, swarmSync: swarmSync({ swarm: SWARM, heartbeatIntervalMs: 0 }) } as unknown as ServiceFactoryMap<{ swarmSync: SwarmSync }>
  })
  await light.dial(multiaddr(tcpAddr(daemons[0])))
  authors = await Promise.all([71, 72].map(async (s) => {
    const key = await generateKeyPairFromSeed('Ed25519', new Uint8Array(32).fill(s))
    return frameSigner(key, peerIdFromPrivateKey(key).toString()) as FrameSigner
  }))
}, 60_000)
afterAll(async () => {
  await light?.stop()
  cleanupDaemons()
})

interface Signed { id: string, author: string, tokens: number[], session: string, text: string, signature: Uint8Array }
function answer (round: string, by: FrameSigner, session: string, words: string): Signed {
  const tokens = tokenizer.encode(words)
  const p = tokenizer.encode(PROMPT, { bos: true })
  return { id: receiptAnswerId(round, session, toHex(receiptContent(tokens, SAMPLING))), author: by.peer, tokens, session, text: decodeAnswer(tokenizer, p[p.length - 1], tokens), signature: by.sign(receiptMessage(session, FIRST, tokens, SAMPLING)) }
}

/** The ledger the light peer's replica derives (genesis = d0, as the daemons bootstrapped from it). */
const ledger = (): ReturnType<typeof deriveLedger> => deriveLedger(light.services.swarmSync.state.rounds().map((r) => ({ id: r.id, data: r.data, writer: r.writer })), { genesis: [ids[0]] })

async function judge (round: string, sent: Signed[]): Promise<Awaited<ReturnType<typeof collectJudging>>> {
  const answers: Answer[] = sent.map((a) => ({ id: a.id, author: a.author }))
  return await collectJudging({
    round,
    prompt: PROMPT,
    answers: new Map(sent.map((a) => [a.id, a.text])),
    receipts: new Map(sent.map((a) => [a.id, { tokens: a.tokens, session: a.session, first: FIRST, sampling: SAMPLING, signature: a.signature }])),
    authors: new Map(sent.map((a) => [a.id, [a.author]])),
    assignments: scheduleRound(ledger().state, round, answers).assignments,
    open: async (j, o) => {
      // the addresses the judge's record publishes (as the SDK's client does)
      const addrs = light.services.swarmSync.state.nodes().get(j)?.addresses ?? []
      if (addrs.length > 0) await light.peerStore.merge(peerIdFromString(j), { multiaddrs: addrs.map((a) => multiaddr(a)) })
      return await light.dialProtocol(peerIdFromString(j), consensusJudgeProtocol(SWARM), o)
    }
  })
}

describe(`daemon judges refuse answers whose text is not what the receipt signed (issue 7, TEST_SEED=${seed})`, () => {
  it('honest receipts are judged; swapped texts, tokens or ids are refused UNVERIFIED by every daemon judge', async () => {
    const owner = light.peerId.toString()
    // the replica derives what every daemon's ledger does: d1 and d2 calibrated and admitted
    await pollUntil('the light replica to admit d0, d1, d2', async () => ids.every((id) => ledger().state.nodes.get(id)?.admitted === true) ? true : undefined, 40_000, 200)
    const honestRound = `${owner}:honest-${seed}`
    const honest = await pollUntil('an honest round the daemon judges accept (their ledgers caught up)', async () => {
      const r = await judge(honestRound, [answer(honestRound, authors[0], 's-a', ' the little cat sat on the mat and smiled.'), answer(honestRound, authors[1], 's-c', ' a dog.')])
      return r.failures.length === 0 ? r : undefined
    }, 20_000, 500)
    expect(honest.commitments.length).toBeGreaterThan(0)
    expect(honest.reveals.length).toBe(honest.commitments.length)
    for (const c of honest.commitments) expect(ids).toContain(c.judge)
    const cases: Array<[string, (good: Signed, accomplice: Signed) => Signed[]]> = [
      ['text-swapped', (good, accomplice) => [{ ...accomplice, text: good.text }, { ...good, text: accomplice.text }]],
      ['tokens-swapped', (good, accomplice) => [{ ...accomplice, tokens: good.tokens, text: good.text }, good]],
      ['id-not-the-receipts', (good, accomplice) => [{ ...accomplice, id: 'e'.repeat(16) }, good]]
    ]
    for (const [what, make] of cases) {
      const round = `${owner}:${what}-${seed}`
      const r = await judge(round, make(answer(round, authors[0], 's-a', ' the little cat sat on the mat and smiled.'), answer(round, authors[1], 's-c', ' a dog.')))
      expect(r.commitments, what).toEqual([])
      expect(r.failures.length, what).toBeGreaterThan(0)
      for (const f of r.failures) expect(f.reason, what).toBe('judge answered UNVERIFIED')
    }
  }, 90_000)
})
