// The SDK's sampled audits of plain requests (issue 7) end to end: createClient over an in-process
// libp2p owner node, a 3-stage ring of libp2p stages serving stories260K (each records its signed
// frames and answers FETCH), two judge-only verifier nodes; `consensus.auditRate` 1 samples every
// plain request. generate() streams its tokens and `done` as without audits; in the background the
// client asks the verifiers to audit the chain's first, middle and last stages (the last on the
// receipt the done token carried); they pass, and a last stage that substitutes tokens fails.
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromString } from '@libp2p/peer-id'
import { tcp } from '@libp2p/tcp'
import { createLibp2p, type Libp2p } from 'libp2p'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createClient } from '../../client/client.ts'
import type { SwarmReader } from '../../client/route.ts'
import type { GenerateEvent } from '../../client/types.ts'
import type { ReputationState } from '../../consensus/index.ts'
import type { NodeRecord } from '../../crdt/index.ts'
import { openLlama2c } from '../../engine/formats/llama2c.ts'
import { openTokenizer } from '../../engine/index.ts'
import type { ModelSource, Shard, Tokenizer } from '../../engine/index.ts'
import { loadShard } from '../../engine/shard.ts'
import { auditStage, type AuditOutcome } from '../../node/spot-check-audit.ts'
import { SpotRecorder } from '../../node/spot-check.ts'
import { fetchTrace, type AuditRequest, SpotCheckService, spotCheckProtocol, spotCheckService, SpotResponse } from '../../protocols/consensus/spot-check.ts'
import { frameSigner } from '../../protocols/inference/frame-signature.ts'
import { inferenceStageService, type InferenceStageService } from '../../protocols/index.ts'
import { manifestFromSource } from '../../sharding/manifest.ts'
import type { ModelManifest } from '../../sharding/index.ts'
import { pollUntil } from '../node/daemons.ts'
import { STORIES260K, TOK512 } from '../models.ts'
import { substituting } from '../substituting-shard.ts'

const SWARM = 'test'
type Node = Libp2p<{ inference: InferenceStageService, spot: SpotCheckService }>
const nodes: Libp2p[] = []
const shards: Shard[] = []
let source: ModelSource
let manifest: ModelManifest
let tokenizer: Tokenizer

async function node (): Promise<Node> {
  const n = await createLibp2p({ addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] }, transports: [tcp()], connectionEncrypters: [noise()], streamMuxers: [yamux()], services: { inference: inferenceStageService({ swarm: SWARM, maxKvBytes: 4 * 1024 * 1024 }), spot: spotCheckService({ swarm: SWARM }) } })
  nodes.push(n as unknown as Libp2p)
  return n
}
async function load (start: number, end: number): Promise<Shard> {
  const s = await loadShard(source, { start, end, dtype: 'f32', threads: 1 })
  shards.push(s)
  return s
}

beforeAll(async () => {
  source = await openLlama2c(STORIES260K)
  manifest = await manifestFromSource(source)
  tokenizer = await openTokenizer(source, TOK512)
})
afterAll(async () => {
  for (const n of nodes) await n.stop()
  for (const s of shards) await s.close()
})


interface World { stages: Node[], verifiers: Array<{ n: Node, outcomes: Array<{ request: AuditRequest, out: AuditOutcome }> }>, state: SwarmReader, reputation: ReputationState }
async function world (wrapLast?: (s: Shard) => Shard): Promise<World> {
  const bounds = [0, 2, 4, 5]
  const stages: Node[] = []
  const records = new Map<string, NodeRecord>()
  for (let i = 0; i + 1 < bounds.length; i++) {
    const n = await node()
    const loaded = await load(bounds[i], bounds[i + 1])
    const shard = i + 2 === bounds.length && wrapLast !== undefined ? wrapLast(loaded) : loaded
    const recorder = new SpotRecorder()
    n.services.inference.serve({ shard, model: manifest.id, tap: recorder.tap } as never)
    n.services.spot.setHooks({ fetch: (session, side) => recorder.fetch(session, side) })
    stages.push(n)
    records.set(n.peerId.toString(), { capabilities: { model: manifest.id, decodeLayerMs: 1, prefillLayerMsPerToken: 0.1 }, layers: [{ model: manifest.id, start: bounds[i], end: bounds[i + 1] }], addresses: n.getMultiaddrs().map(String), version: 'test' } as unknown as NodeRecord)
  }
  for (let i = 0; i < stages.length; i++) for (let j = i + 1; j < stages.length; j++) await stages[i].dial(stages[j].getMultiaddrs()[0])
  const verifiers: World['verifiers'] = []
  for (let k = 0; k < 2; k++) {
    const n = await node()
    const outcomes: World['verifiers'][number]['outcomes'] = []
    n.services.spot.setHooks({
      audit: (request, from) => {
        void (async () => {
          const signal = AbortSignal.timeout(20_000)
          const out = await auditStage(request, from, {
            fetch: async (peer, side) => await fetchTrace(await n.dialProtocol(peerIdFromString(peer), spotCheckProtocol(SWARM), { signal }), request.sessionId, side, { signal }),
            shardFor: async (start, end) => await load(start, end),
            nLayers: manifest.nLayers
          })
          outcomes.push({ request, out })
        })()
        return SpotResponse.Status.OK
      }
    })
    for (const s of stages) await n.dial(s.getMultiaddrs()[0])
    verifiers.push({ n, outcomes })
    // a judge-only node: it holds the whole model for judging, serves no layers (never routed)
    records.set(n.peerId.toString(), { capabilities: { judgeModel: manifest.id }, layers: [], addresses: n.getMultiaddrs().map(String), version: 'test' } as unknown as NodeRecord)
  }
  const online = [...records.keys()]
  const state: SwarmReader = { nodes: () => records, online: () => online, manifests: () => [{ id: manifest.id, data: manifest, publisher: online[0] }], onChange: () => () => {} }
  const reputation = { nodes: new Map(verifiers.map((v) => [v.n.peerId.toString(), { admitted: true, excluded: false }])) } as unknown as ReputationState
  return { stages, verifiers, state, reputation }
}

async function run (w: World, temperature: number): Promise<{ events: GenerateEvent[], outcomes: (stage: number) => AuditOutcome[] }> {
  const key = await generateKeyPair('Ed25519')
  const owner = await createLibp2p({ privateKey: key, transports: [tcp()], connectionEncrypters: [noise()], streamMuxers: [yamux()] })
  nodes.push(owner as unknown as Libp2p)
  const client = createClient({ libp2p: owner, swarm: SWARM, state: w.state, tokenizer, signer: frameSigner(key, owner.peerId.toString()), consensus: { reputation: () => w.reputation, auditRate: 1 } })
  const events: GenerateEvent[] = []
  for await (const ev of client.generate({ prompt: 'Once upon a time', maxTokens: 24, temperature, seed: 11 })) events.push(ev)
  // the audits run after `done`, in the background: 3 stages × 2 verifiers
  await pollUntil('6 audit outcomes', async () => w.verifiers.every((v) => v.outcomes.length === 3) ? true : undefined, 30_000, 50)
  const chain = (events.at(-1) as Extract<GenerateEvent, { type: 'done' }>).chain
  return { events, outcomes: (stage) => w.verifiers.flatMap((v) => v.outcomes.filter((o) => o.request.subject === chain[stage].peer.toString()).map((o) => o.out)) }
}

describe('SDK: a plain request sampled for audit (auditRate 1) audits every stage of its chain', () => {
  for (const temperature of [0, 0.8]) {
    it(`${temperature === 0 ? 'greedy' : 'seeded'}: tokens and done as usual; first, middle and last stages pass`, async () => {
      const w = await world()
      const { events, outcomes } = await run(w, temperature)
      expect(events.filter((e) => e.type === 'token')).toHaveLength(24)
      const done = events.at(-1) as Extract<GenerateEvent, { type: 'done' }>
      expect(done).toMatchObject({ type: 'done', finishReason: 'length', usage: { completionTokens: 24 } })
      expect(done.chain).toHaveLength(3)
      for (let s = 0; s < 3; s++) {
        expect(outcomes(s), `stage ${s}`).toHaveLength(2)
        for (const out of outcomes(s)) {
          expect(out.badSignatures).toBe(0)
          expect(out.result?.passed, `stage ${s}`).toBe(true)
        }
      }
    })
  }

  it('a last stage that substitutes tokens on a plain request is caught by both verifiers', async () => {
    const w = await world(substituting)
    const { outcomes } = await run(w, 0)
    expect(outcomes(2)).toHaveLength(2)
    for (const out of outcomes(2)) expect(out.result?.passed).toBe(false)
    for (const out of outcomes(0)) expect(out.result?.passed).toBe(true)
  })
})
