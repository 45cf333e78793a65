// The consensus judging exchange between in-process libp2p nodes on loopback TCP: the owner
// collects commitments then reveals from the scheduled judges; a judge that reveals another ballot
// than it committed and one that never reveals are caught by consensus/'s reveal check; the
// honest judges' preferred answer wins. Bad requests end in a status.
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { peerIdFromString } from '@libp2p/peer-id'
import { tcp } from '@libp2p/tcp'
import { pbStream } from '@libp2p/utils'
import { createLibp2p, type Libp2p } from 'libp2p'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { commitBallot, initialReputation, scheduleRound, settleRound, type Choice as VoteChoice } from '../../consensus/index.ts'
import { Choice, JudgeCommit, JudgeRequest, JudgeReveal, RevealRequest, collectJudging } from '../../protocols/consensus/judge-exchange.ts'
import { ConsensusJudgeService, consensusJudgeProtocol, consensusJudgeService } from '../../protocols/consensus/judge-service.ts'

const SWARM = 'test'
/** A candidate without a receipt (these judges take the text as sent). */
const NO_RECEIPT = { tokens: [], session: '', first: 0, receipt: new Uint8Array(0) }
const PROTOCOL = consensusJudgeProtocol(SWARM)
type Node = Libp2p<{ judge: ConsensusJudgeService }>
const nodes: Array<Libp2p<Record<string, unknown>>> = []
const longer = async (_prompt: string, a: string, b: string): Promise<VoteChoice> => (a.length > b.length ? 'first' : a.length < b.length ? 'second' : 'tie')

async function judgeNode (accept?: (round: string) => boolean): Promise<Node> {
  const n = await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: { judge: consensusJudgeService({ swarm: SWARM, judgeFn: longer, ...(accept !== undefined ? { accept: (round) => accept(round) } : {}) }) }
  })
  nodes.push(n as unknown as Libp2p<Record<string, unknown>>)
  return n
}

async function plainNode (): Promise<Libp2p> {
  const n = await createLibp2p({ addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] }, transports: [tcp()], connectionEncrypters: [noise()], streamMuxers: [yamux()] })
  nodes.push(n as unknown as Libp2p<Record<string, unknown>>)
  return n
}

let owner: Libp2p
let honest: Node[]
let tamperer: Libp2p
let silent: Libp2p

beforeAll(async () => {
  owner = await plainNode()
  honest = [await judgeNode(), await judgeNode(), await judgeNode(), await judgeNode((round) => !round.startsWith('refuse'))]
  // A judge that commits to its honest ballot but reveals every vote flipped.
  tamperer = await plainNode()
  await tamperer.handle(PROTOCOL, async (stream) => {
    const pb = pbStream(stream)
    const req = await pb.read(JudgeRequest)
    const texts = new Map(req.answers.map((a) => [a.id, a.text]))
    const votes = await Promise.all(req.pairs.map(async (p) => ({ first: p.first, second: p.second, choice: await longer('', texts.get(p.first) ?? '', texts.get(p.second) ?? '') })))
    await pb.write({ status: JudgeCommit.Status.OK, commitment: commitBallot(req.round, tamperer.peerId.toString(), votes, 'salt') }, JudgeCommit)
    await pb.read(RevealRequest)
    await pb.write({ votes: votes.map((v) => ({ first: v.first, second: v.second, choice: v.choice === 'first' ? Choice.SECOND : Choice.FIRST })), salt: 'salt' }, JudgeReveal)
    await stream.close()
  })
  // A judge that commits and then hangs up instead of revealing.
  silent = await plainNode()
  await silent.handle(PROTOCOL, async (stream) => {
    const pb = pbStream(stream)
    const req = await pb.read(JudgeRequest)
    await pb.write({ status: JudgeCommit.Status.OK, commitment: 'ab'.repeat(32) }, JudgeCommit)
    void req
    await stream.close()
  })
  for (const n of [...honest, tamperer, silent]) await owner.dial(n.getMultiaddrs()[0])
})
afterAll(async () => { for (const n of nodes) await n.stop() })

describe('consensus judging over libp2p', () => {
  it('commit then reveal: honest verdicts count, a changed reveal and a missing one are caught', async () => {
    const judges = [...honest.map((n) => n.peerId.toString()), tamperer.peerId.toString(), silent.peerId.toString()]
    const state = initialReputation(judges)
    const answers = ['a', 'bb', 'cccccc', 'dddd'].map((text, i) => ({ id: `digest${i}`, author: `author${i}`, text }))
    const round = `${owner.peerId.toString()}:1`
    // Every judge on every pair, so the tamperer and the silent judge are surely scheduled.
    const schedule = scheduleRound(state, round, answers, judges.length)
    const result = await collectJudging({
      round,
      prompt: 'which is longer?',
      answers: new Map(answers.map((a) => [a.id, a.text])),
      assignments: schedule.assignments,
      open: async (judge, options) => await owner.dialProtocol(peerIdFromString(judge), PROTOCOL, options),
      now: () => 500
    })
    expect(result.commitments.map((c) => c.judge).sort()).toEqual([...judges].sort())
    expect(result.failures.map((f) => f.judge)).toEqual([silent.peerId.toString()])
    const settled = settleRound(state, { round, answers, commitments: result.commitments, reveals: result.reveals, deadline: 1000, judgesPerPair: judges.length })
    expect(settled.outcome.winner).toBe('digest2')
    expect(settled.outcome.ranking).toEqual(['digest2', 'digest3', 'digest1', 'digest0'])
    expect(new Map(settled.outcome.flags.map((f) => [f.judge, f.reason]))).toEqual(new Map([[tamperer.peerId.toString(), 'mismatch'], [silent.peerId.toString(), 'missing']]))
    for (const n of honest) expect(settled.outcome.agreement.get(n.peerId.toString())?.disagree).toBe(0)
  })

  it('bad requests end in a status and the judge keeps serving', async () => {
    const judge = honest[3]
    const ask = async (req: Partial<JudgeRequest>): Promise<JudgeCommit.Status> => {
      const stream = await owner.dialProtocol(judge.peerId, PROTOCOL)
      const pb = pbStream(stream)
      await pb.write(req, JudgeRequest)
      const commit = await pb.read(JudgeCommit)
      await stream.close().catch(() => {})
      return commit.status
    }
    expect(await ask({ round: 'r', prompt: 'p', answers: [{ id: 'x', text: 'x', authors: [], ...NO_RECEIPT }], pairs: [{ first: 'x', second: 'y' }] })).toBe(JudgeCommit.Status.MALFORMED)
    expect(await ask({ round: 'r', prompt: 'p', answers: [{ id: 'x', text: 'x', authors: [], ...NO_RECEIPT }, { id: 'y', text: 'yy', authors: [], ...NO_RECEIPT }], pairs: [{ first: 'x', second: 'y' }, { first: 'x', second: 'y' }] })).toBe(JudgeCommit.Status.MALFORMED)
    expect(await ask({ round: 'refuse:1', prompt: 'p', answers: [{ id: 'x', text: 'x', authors: [], ...NO_RECEIPT }, { id: 'y', text: 'yy', authors: [], ...NO_RECEIPT }], pairs: [{ first: 'x', second: 'y' }] })).toBe(JudgeCommit.Status.REFUSED)
    expect(await ask({ round: 'r', prompt: 'p', answers: Array.from({ length: 65 }, (_, i) => ({ id: `a${i}`, text: '', authors: [], ...NO_RECEIPT })), pairs: [{ first: 'a0', second: 'a1' }] })).toBe(JudgeCommit.Status.TOO_LARGE)
    // Garbage bytes.
    const stream = await owner.dialProtocol(judge.peerId, PROTOCOL)
    stream.send(Uint8Array.from([4, 0xff, 0xff, 0xff, 0x0f])) // one 4-byte frame that is not protobuf
    expect((await pbStream(stream).read(JudgeCommit)).status).toBe(JudgeCommit.Status.MALFORMED)
    await stream.close().catch(() => {})
    expect(judge.services.judge.stats.MALFORMED).toBe(3)
    expect(judge.services.judge.stats.REFUSED).toBe(1)
    expect(judge.services.judge.stats.TOO_LARGE).toBe(1)
  })
})
