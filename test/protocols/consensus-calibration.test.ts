// Calibration as proof of capability over the wire (issue 7): a calibrator sends a newcomer
// challenge inputs for the layer range it serves (CHALLENGE on /mycelium/<swarm>/spot-check/1.0.0),
// derived from a fresh challenge id, and checks its outputs with its own copy of the same layers
// (consensus/stage-challenge.ts) — between in-process libp2p nodes on real stories260K shards:
// honest first / middle / last / whole-model stages pass; a corrupting stage (noise on its
// outputs) and a lazy one (skips its last layer) fail; a node that does not serve the range refuses;
// malformed challenges are answered with a status.
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { tcp } from '@libp2p/tcp'
import { pbStream } from '@libp2p/utils'
import { createLibp2p, type Libp2p } from 'libp2p'
import { afterAll, describe, expect, it } from 'vitest'
import { answerStageChallenge, checkStageChallenge, stageChallenge } from '../../consensus/index.ts'
import { loadModel, type Shard } from '../../engine/index.ts'
import { corruptHidden } from '../../node/spot-check-corrupt.ts'
import { seededRandom, testSeed } from '../seed.ts'
import { requestChallenge, SpotCheckService, spotCheckService, SpotRequest, SpotResponse, type ChallengeRequest } from '../../protocols/consensus/spot-check.ts'
import { STORIES260K, TOK512 } from '../models.ts'

const SWARM = 'test'
const nodes: Libp2p[] = []
const shards: Shard[] = []
afterAll(async () => {
  for (const n of nodes) await n.stop()
  for (const s of shards) await s.close()
})

async function node (): Promise<Libp2p<{ spot: SpotCheckService }>> {
  const n = await createLibp2p({ addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] }, transports: [tcp()], connectionEncrypters: [noise()], streamMuxers: [yamux()], services: { spot: spotCheckService({ swarm: SWARM }) } })
  nodes.push(n as unknown as Libp2p)
  return n
}
const load = async (start: number, end: number): Promise<Shard> => { const m = await loadModel(STORIES260K, { start, end, tokenizer: TOK512 }); shards.push(m.shard); return m.shard }

/** A newcomer answering challenges for [start, end) with `shard` (whatever it really computes). */
// `corrupt`: as --test-corrupt-output 1 — 1 × RMS noise on the hidden states it computes (its
// outputs; a last stage's, before its head, by noising what enters its layers)
function candidate (n: Libp2p<{ spot: SpotCheckService }>, range: { start: number, end: number }, shard: Shard, corrupt = false): void {
  const random = seededRandom(testSeed() + 7)
  n.services.spot.setHooks({
    challenge: async (req) => {
      if (req.model !== 'm' || req.start !== range.start || req.end !== range.end) return undefined
      const input = corrupt && shard.isLast && 'hidden' in req.input ? { hidden: Float32Array.from(req.input.hidden) } : req.input
      if ('hidden' in input && input !== req.input) corruptHidden(input.hidden, shard.config.dim, 1, random)
      const a = answerStageChallenge(shard, input)
      if (corrupt && 'hidden' in a) corruptHidden(a.hidden, shard.config.dim, 1, random)
      return 'tokens' in a ? a : { hidden: a.hidden, dim: shard.config.dim }
    }
  })
}

describe('calibration of a stage over the wire (CHALLENGE)', () => {
  it('honest stages pass; corrupting and lazy stages fail; another range is refused', async () => {
    const calibrator = await node()
    const ask = async (subject: Libp2p, req: ChallengeRequest): ReturnType<typeof requestChallenge> =>
      await requestChallenge(await calibrator.dialProtocol(subject.getMultiaddrs()[0], calibrator.services.spot.protocol), req)
    const ranges = [{ start: 0, end: 2 }, { start: 2, end: 4 }, { start: 4, end: 5 }, { start: 0, end: 5 }]
    for (const [i, r] of ranges.entries()) {
      const mine = await load(r.start, r.end) // the calibrator's own copy of the layers
      const check = async (shard: Shard, challenge: string, corrupt = false): Promise<ReturnType<typeof checkStageChallenge>> => {
        const subject = await node()
        candidate(subject, r, shard, corrupt)
        const input = stageChallenge({ challenge, candidate: subject.peerId.toString(), ...r, dim: mine.config.dim, vocab: mine.config.vocabSize })
        const answer = await ask(subject, { model: 'm', ...r, rows: 'tokens' in input ? input.tokens.length : input.hidden.length / mine.config.dim, input })
        return checkStageChallenge(mine, input, answer === undefined ? undefined : 'tokens' in answer ? answer : { hidden: answer.hidden })
      }
      const honest = await check(await load(r.start, r.end), `c${i}`)
      expect(honest.passed, JSON.stringify(honest)).toBe(true)
      expect(honest.rowsExact).toBe(honest.rows)
      if (!(r.start === 0 && r.end === 5)) { // a whole model sends no hidden states to corrupt
        const corrupt = await check(await load(r.start, r.end), `d${i}`, true)
        expect(corrupt.passed, JSON.stringify(corrupt)).toBe(false)
      }
      if (r.end - r.start > 1) {
        // lazy: skips a layer (computes [start, end - 1) and passes it on as [start, end))
        const lazy = await check(await load(r.start, r.end - 1), `f${i}`)
        expect(lazy.passed, JSON.stringify(lazy)).toBe(false)
      }
    }
    // different challenge ids give different inputs (nothing to precompute)
    const a = stageChallenge({ challenge: 'x', candidate: 'p', start: 2, end: 4, dim: 8, vocab: 512 })
    const b = stageChallenge({ challenge: 'y', candidate: 'p', start: 2, end: 4, dim: 8, vocab: 512 })
    expect('hidden' in a && 'hidden' in b && a.hidden.some((v, j) => v !== b.hidden[j])).toBe(true)
    // a node that does not serve the range refuses (undefined), which fails calibration
    const other = await node()
    candidate(other, { start: 0, end: 2 }, await load(0, 2))
    const mid = await load(2, 4)
    const input = stageChallenge({ challenge: 'z', candidate: other.peerId.toString(), start: 2, end: 4, dim: mid.config.dim, vocab: mid.config.vocabSize })
    const refused = await ask(other, { model: 'm', start: 2, end: 4, rows: 8, input })
    expect(refused).toBeUndefined()
    expect(checkStageChallenge(mid, input, refused).passed).toBe(false)
  }, 60_000)

  it('malformed challenges are answered MALFORMED, the node keeps serving', async () => {
    const calibrator = await node()
    const subject = await node()
    candidate(subject, { start: 2, end: 4 }, await load(2, 4))
    const raw = async (req: Partial<SpotRequest>): Promise<SpotResponse.Status> => {
      const pb = pbStream(await calibrator.dialProtocol(subject.getMultiaddrs()[0], calibrator.services.spot.protocol), { maxDataLength: 1 << 24 })
      await pb.write({ kind: SpotRequest.Kind.CHALLENGE, sessionId: '', side: SpotRequest.Side.INPUTS, subject: '', predecessor: '', successor: '', model: 'm', start: 2, end: 4, rows: 0, input: new Uint8Array(0), inputTokens: [], ...req }, SpotRequest)
      return (await pb.read(SpotResponse)).status
    }
    expect(await raw({})).toBe(SpotResponse.Status.MALFORMED) // no input
    expect(await raw({ rows: 3, input: new Uint8Array(10) })).toBe(SpotResponse.Status.MALFORMED) // not float32 rows
    expect(await raw({ rows: 2, input: new Uint8Array(8), inputTokens: [1, 2] })).toBe(SpotResponse.Status.MALFORMED) // both
    expect(await raw({ inputTokens: Array.from({ length: 65 }, () => 5) })).toBe(SpotResponse.Status.MALFORMED) // too many rows
    expect(await raw({ rows: 1, input: new Uint8Array(12) })).toBe(SpotResponse.Status.REFUSED) // wrong width: the stage throws, answered REFUSED
    const ok = await raw({ rows: 1, input: new Uint8Array(new Float32Array(64).fill(0.5).buffer) })
    expect(ok).toBe(SpotResponse.Status.OK)
  }, 30_000)
})

