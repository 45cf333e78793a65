// 32 sessions started concurrently right after a fresh dial all complete. The stage's side of a
// new connection attaches libp2p's stream listener only after its upgrade finishes (the gater
// below is slow, as a busy machine is), while the client's side is already open: every stream the
// client opens meanwhile is an "early stream" at the stage. yamux's default (10) aborted the whole
// connection on the 11th (MaxEarlyStreamsError); the shared stack queues up to its inbound cap.
import { noise } from '@chainsafe/libp2p-noise'
import type { Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { tcp } from '@libp2p/tcp'
import { createLibp2p, type Libp2p } from 'libp2p'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { openLlama2c } from '../../engine/formats/llama2c.ts'
import { generate, sessionStepper } from '../../engine/generate.ts'
import type { Shard } from '../../engine/index.ts'
import { createSampler } from '../../engine/sampler.ts'
import { loadShard } from '../../engine/shard.ts'
import { InferenceStageService, STACK_MAX_EARLY_STREAMS, inferenceProtocol, inferenceStageService, runInference, swarmStack, type ChainHop } from '../../protocols/index.ts'
import { STORIES260K } from '../models.ts'

const SWARM = 'early'
const STEPS = 24
const SESSIONS = 32
const UPGRADE_DELAY_MS = 300

let shard: Shard
let expected: number[]
const prompt = [1, 403, 407, 261, 378]
const nodes: Libp2p[] = []

beforeAll(async () => {
  shard = await loadShard(await openLlama2c(STORIES260K))
  const session = shard.openSession({ maxLength: STEPS })
  expected = []
  for await (const ev of generate(sessionStepper(session), { prompt, steps: STEPS, sampler: createSampler(), bosId: shard.config.bosId })) {
    if (ev.type === 'token') expected.push(ev.id)
  }
  session.close()
  expected = expected.slice(prompt.length - 1) // generate yields the prompt's tokens after BOS too
  expect(expected.length).toBeGreaterThan(10)
})

afterAll(async () => {
  await Promise.all(nodes.map(async (n) => { await n.stop() }))
  await shard.close()
})

describe('many sessions right after a fresh dial', () => {
  it(`${SESSIONS} sessions opened at once on a new connection all complete (the stage's upgrade lags ${UPGRADE_DELAY_MS} ms)`, async () => {
    expect(STACK_MAX_EARLY_STREAMS).toBeGreaterThanOrEqual(SESSIONS + 4) // + identify and friends
    let slowUpgrades = 0
    const stage = await createLibp2p({
      addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
      transports: [tcp()],
      connectionEncrypters: [noise()],
      streamMuxers: swarmStack({ swarm: SWARM }).streamMuxers,
      connectionGater: {
        // the stage finishes its side of the upgrade late: the client's streams arrive before libp2p listens
        denyInboundUpgradedConnection: async () => { slowUpgrades++; await new Promise((resolve) => setTimeout(resolve, UPGRADE_DELAY_MS)); return false }
      },
      services: { inference: inferenceStageService({ swarm: SWARM, maxKvBytes: 64 * 1024 * 1024 }) }
    })
    nodes.push(stage)
    stage.services.inference.serve({ shard, model: 'stories260K' })
    const client = await createLibp2p({ transports: [tcp()], connectionEncrypters: [noise()], streamMuxers: swarmStack({ swarm: SWARM }).streamMuxers })
    nodes.push(client)
    const chain: ChainHop[] = [{ peer: stage.peerId.toString(), start: 0, end: shard.config.nLayers }]
    const open = async (peer: ChainHop['peer'], protocol: string, o: { signal?: AbortSignal }): Promise<Stream> =>
      await client.dialProtocol(typeof peer === 'string' ? peerIdFromString(peer) : peer, protocol, o)
    const connection = await client.dial(stage.getMultiaddrs()[0])
    const runs = await Promise.all(Array.from({ length: SESSIONS }, async () => {
      const out: number[] = []
      for await (const ev of runInference(open, inferenceProtocol(SWARM), { chain, prompt, maxLength: STEPS })) if (ev.type === 'token') out.push(ev.id)
      return out
    }))
    expect(slowUpgrades).toBe(1)
    for (const r of runs) expect(r).toEqual(expected)
    // one connection carried them all: it was never aborted and re-dialled
    expect(connection.status).toBe('open')
    expect(client.getConnections(stage.peerId)).toEqual([connection])
    await expect.poll(() => (stage.services as { inference: InferenceStageService }).inference.usage.sessions).toBe(0)
  }, 60_000)
})
