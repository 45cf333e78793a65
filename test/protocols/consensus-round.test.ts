// A whole consensus round in one process over real libp2p nodes and the real stories260K model:
// three answers — two from honest whole-model generation, one from a sharded pipeline whose middle
// stage corrupts its hidden states — judged by four nodes running the likelihood judge over
// /mycelium/<swarm>/consensus-judge/1.0.0 with commit–reveal; the corrupted answer ranks last;
// two judges, who also hold layers 2–4, spot-check the corrupting stage and catch it; every node
// that folds the records (answers, commitments, reveals, round, evidence) derives the same
// reputation, in which the corrupting stage is excluded.
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { peerIdFromString } from '@libp2p/peer-id'
import { tcp } from '@libp2p/tcp'
import { createLibp2p, type Libp2p } from 'libp2p'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createSampler, generate, loadModel, sessionStepper, type Shard, type Tokenizer } from '../../engine/index.ts'
import { deriveLedger, encodeReputation, initialReputation, meanLogProb, recordData, recordId, sampleSpotChecks, scheduleRound, settleRound, shardLogits, spotCheck, type Answer, type ConsensusRecord, type StoredRecord } from '../../consensus/index.ts'
import { digestFields, toHex } from '../../consensus/digest.ts'
import { tracedRun } from '../../consensus/sim/stage-trace.ts'
import { collectJudging } from '../../protocols/consensus/judge-exchange.ts'
import { ConsensusJudgeService, consensusJudgeProtocol, consensusJudgeService } from '../../protocols/consensus/judge-service.ts'
import { createRng } from '../../sharding/sim/random.ts'
import { STORIES260K, TOK512 } from '../models.ts'

const SWARM = 'test'
const PROTOCOL = consensusJudgeProtocol(SWARM)
const shards: Shard[] = []
const nodes: Libp2p[] = []
let whole: Shard, head: Shard, stage: Shard, tail: Shard
let tokenizer: Tokenizer

beforeAll(async () => {
  const load = async (start: number, end: number): Promise<Shard> => {
    const m = await loadModel(STORIES260K, { start, end, tokenizer: TOK512 })
    tokenizer = m.tokenizer
    shards.push(m.shard)
    return m.shard
  }
  whole = await load(0, 5)
  head = await load(0, 2)
  stage = await load(2, 4)
  tail = await load(4, 5)
})
afterAll(async () => {
  for (const n of nodes) await n.stop()
  for (const s of shards) await s.close()
})

async function judgeNode (): Promise<Libp2p<{ judge: ConsensusJudgeService }>> {
  const logitsOf = shardLogits(whole)
  const n = await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: {
      judge: consensusJudgeService({
        swarm: SWARM,
        // The likelihood judge on the node's whole-model shard.
        judgeFn: async (prompt, first, second) => {
          const p = tokenizer.encode(prompt, { bos: true })
          const a = meanLogProb(logitsOf, 512, p, tokenizer.encode(first))
          const b = meanLogProb(logitsOf, 512, p, tokenizer.encode(second))
          return a > b ? 'first' : b > a ? 'second' : 'tie'
        }
      })
    }
  })
  nodes.push(n as unknown as Libp2p)
  return n
}

async function sampled (prompt: number[], seed: number): Promise<number[]> {
  const session = whole.openSession({ maxLength: 128 })
  const out: number[] = []
  try {
    for await (const e of generate(sessionStepper(session), { prompt, steps: prompt.length + 40, sampler: createSampler({ temperature: 0.4, seed }), bosId: 1 })) {
      if (e.type === 'token' && !e.forced) out.push(e.id)
    }
  } finally {
    session.close()
  }
  return out
}

describe('a consensus round end to end (libp2p judges, real model, corrupting stage)', () => {
  it('the corrupted answer loses, the spot-check catches its stage, and the ledger excludes it', async () => {
    const owner = await createLibp2p({ addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] }, transports: [tcp()], connectionEncrypters: [noise()], streamMuxers: [yamux()] })
    nodes.push(owner)
    const judges = [await judgeNode(), await judgeNode(), await judgeNode(), await judgeNode()]
    for (const j of judges) await owner.dial(j.getMultiaddrs()[0])
    const ownerId = owner.peerId.toString()
    const judgeIds = judges.map((j) => j.peerId.toString())
    const genesis = [ownerId, ...judgeIds]

    // Answers: two honest (sampled, different seeds), one from a pipeline whose stage 2–4 adds noise.
    const promptText = 'Once upon a time, there was a little girl'
    const prompt = tokenizer.encode(promptText, { bos: true })
    const corrupt = tracedRun({ head, stage, tail, prompt, steps: 40, corruption: 1, rng: createRng(1) })
    const texts = [await sampled(prompt, 1), await sampled(prompt, 2), corrupt.tokens].map((t) => tokenizer.decode(t))
    const authors = [['honest-a'], ['honest-b'], ['bad-tail', 'bad-head', 'bad-stage']]
    const answers: Answer[] = texts.map((text, i) => ({ id: toHex(digestFields([text])).slice(0, 16), author: authors[i][0], ...(authors[i].length > 1 ? { coauthors: authors[i].slice(1) } : {}) }))
    const corruptId = answers[2].id

    const round = `${ownerId}:1`
    const state = initialReputation(genesis)
    const schedule = scheduleRound(state, round, answers)
    expect(schedule.assignments.some((a) => a.judge === ownerId)).toBe(false) // the owner does not judge
    const result = await collectJudging({
      round,
      prompt: promptText,
      answers: new Map(answers.map((a, i) => [a.id, texts[i]])),
      assignments: schedule.assignments,
      open: async (judge, options) => await owner.dialProtocol(peerIdFromString(judge), PROTOCOL, options),
      now: () => 100
    })
    expect(result.failures).toEqual([])
    const settled = settleRound(state, { round, answers, commitments: result.commitments, reveals: result.reveals, deadline: 1000 })
    expect(settled.outcome.flags).toEqual([])
    expect(settled.outcome.ranking.at(-1)).toBe(corruptId)

    // Two judges that hold layers 2–4 audit the corrupting stage at 20 sampled positions.
    const session = 'session-bad'
    const positions = sampleSpotChecks([session, '2-4'], prompt.length + 40, 20)
    const check = spotCheck(stage, corrupt.trace, positions)
    expect(check.passed).toBe(false)

    // Every record as it would sit in the swarm state, each in its writer's namespace.
    const records: Array<{ writer: string, record: ConsensusRecord }> = [
      ...answers.map((a) => ({ writer: a.author, record: { t: 'answer' as const, round, digest: a.id } })),
      ...result.commitments.map((c) => ({ writer: c.judge, record: { t: 'commit' as const, round, commitment: c.commitment } })),
      ...result.reveals.map((r) => ({ writer: r.judge, record: { t: 'reveal' as const, round, votes: r.votes, salt: r.salt } })),
      { writer: ownerId, record: { t: 'round', round, seq: 1, deadline: 1000, answers: answers.map((a) => [a.id, a.author, ...(a.coauthors ?? [])]), reveals: result.reveals.map((r) => [r.judge, r.at]), winner: settled.outcome.winner, ranking: settled.outcome.ranking } },
      ...judgeIds.slice(0, 2).map((writer, i) => ({ writer, record: { t: 'spot-check' as const, id: `sc${i}`, seq: 2, case: `${session}:2-4`, subject: 'bad-stage', model: 'stories260K', start: 2, end: 4, checked: check.checked, mismatched: check.mismatches.map((m) => m.position), passed: false } }))
    ]
    const stored: StoredRecord[] = records.map(({ writer, record }) => ({ id: recordId(record), data: recordData(record), writer }))
    const ledger = deriveLedger(stored, { genesis })
    const again = deriveLedger([...stored].reverse(), { genesis: [...genesis].reverse() })
    expect(Buffer.from(encodeReputation(again.state)).equals(Buffer.from(encodeReputation(ledger.state)))).toBe(true)
    expect(ledger.ownerMismatches).toEqual([])
    expect(ledger.outcomes.map((o) => o.winner)).toEqual([settled.outcome.winner])
    expect(ledger.state.nodes.get('bad-stage')?.excluded).toBe(true)
    expect(ledger.state.nodes.get('bad-tail')).toBeUndefined() // its answer did not win
    for (const j of judgeIds) expect(ledger.state.nodes.get(j)?.excluded).toBe(false)
  })
})
