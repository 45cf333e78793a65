// Spot-checks of SEEDED (temperature > 0) last stages end to end over real libp2p (issue 7): a ring
// of in-process libp2p stages serving stories260K records every signed frame (SpotRecorder as its
// StageTap) and answers FETCH; a client runs a seeded session (the last stage signs each token and a
// done receipt that binds the tokens AND the sampling); the owner asks two verifier nodes for
// AUDITs (client/consensus-audit.ts requestAudits with the chain's sampling, seed and receipt); each
// verifier fetches the frames over /mycelium/<swarm>/spot-check/1.0.0 and runs auditStage
// (node/spot-check-audit.ts → spotCheckSampled) with its copy loaded in the subject's dtype:
// - an honest seeded last stage passes (f32, and q8_0 / f16 subjects);
// - a last stage that substitutes tokens (its logits shifted on some steps: it signs what it sent)
//   fails at both verifiers, and their evidence records make every ledger exclude it;
// - an owner that names another seed (or temperature) gets no check at all: the receipt does not
//   bind that sampling, so the AUDIT is skipped, counted as a bad signature, and nobody is convicted;
// - the subject's dtype: an honest q8_0 middle stage audited by an f32 verifier copy at the f32
//   tolerance (what the verifier did before) vs in the q8_0 tolerance / a q8_0 copy (now).
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { PrivateKey, Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { tcp } from '@libp2p/tcp'
import { createLibp2p, type Libp2p } from 'libp2p'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { requestAudits } from '../../client/consensus-audit.ts'
import { deriveLedger, recordData, recordId, type ConsensusRecord, type ReputationState } from '../../consensus/index.ts'
import { openLlama2c } from '../../engine/formats/llama2c.ts'
import type { ModelSource, Shard, WeightDType } from '../../engine/index.ts'
import { loadShard } from '../../engine/shard.ts'
import { auditStage, type AuditOutcome } from '../../node/spot-check-audit.ts'
import { SpotRecorder } from '../../node/spot-check.ts'
import { fetchTrace, SpotCheckService, spotCheckProtocol, spotCheckService, SpotResponse, type AuditRequest } from '../../protocols/consensus/spot-check.ts'
import { frameSigner } from '../../protocols/inference/frame-signature.ts'
import { inferenceStageService, runInference, type ChainHop, type InferenceStageService } from '../../protocols/index.ts'
import type { SwarmReader } from '../../client/route.ts'
import { testSeed } from '../seed.ts'
import { STORIES260K } from '../models.ts'
import { substituting } from '../substituting-shard.ts'

const SWARM = 'test'
const MODEL = 'stories260K'
type Node = Libp2p<{ inference: InferenceStageService, spot: SpotCheckService }>
const nodes: Libp2p[] = []
const shards: Shard[] = []
let source: ModelSource
const SEED = testSeed()

async function node (privateKey?: PrivateKey): Promise<Node> {
  const n = await createLibp2p({ ...(privateKey !== undefined ? { privateKey } : {}), addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] }, transports: [tcp()], connectionEncrypters: [noise()], streamMuxers: [yamux()], services: { inference: inferenceStageService({ swarm: SWARM, maxKvBytes: 4 * 1024 * 1024 }), spot: spotCheckService({ swarm: SWARM }) } })
  nodes.push(n as unknown as Libp2p)
  return n
}
async function load (start: number, end: number, dtype: WeightDType = 'f32'): Promise<Shard> {
  const s = await loadShard(source, { start, end, dtype, threads: 1 })
  shards.push(s)
  return s
}

beforeAll(async () => { source = await openLlama2c(STORIES260K) })
afterAll(async () => {
  for (const n of nodes) await n.stop()
  for (const s of shards) await s.close()
})


interface Ring { stages: Node[], chain: ChainHop[], recorders: SpotRecorder[] }
/** A ring [0, 2) → [2, 4) → [4, 5) of libp2p stages, each recording its signed frames and answering FETCH. */
async function ring (lastDtype: WeightDType, wrapLast?: (s: Shard) => Shard, middleDtype: WeightDType = 'f32'): Promise<Ring> {
  const bounds = [0, 2, 4, 5]
  const stages: Node[] = []
  const chain: ChainHop[] = []
  const recorders: SpotRecorder[] = []
  for (let i = 0; i + 1 < bounds.length; i++) {
    const n = await node()
    const isLast = i + 2 === bounds.length
    const loaded = await load(bounds[i], bounds[i + 1], isLast ? lastDtype : i === 1 ? middleDtype : 'f32')
    const shard = isLast && wrapLast !== undefined ? wrapLast(loaded) : loaded
    const recorder = new SpotRecorder()
    n.services.inference.serve({ shard, model: MODEL, tap: recorder.tap } as never)
    n.services.spot.setHooks({ fetch: (session, side) => recorder.fetch(session, side) })
    stages.push(n)
    recorders.push(recorder)
    chain.push({ peer: n.peerId, start: bounds[i], end: bounds[i + 1] })
  }
  for (let i = 0; i < stages.length; i++) for (let j = i + 1; j < stages.length; j++) await stages[i].dial(stages[j].getMultiaddrs()[0])
  return { stages, chain, recorders }
}

/** A verifier node: it answers AUDITs by running auditStage over FETCHes to the ring (copy in `stageDtype`). */
interface Verifier { n: Node, outcomes: Array<{ request: AuditRequest, out: AuditOutcome }>, settled: () => Promise<void> }
async function verifier (dtypeOf: (subject: string) => WeightDType): Promise<Verifier> {
  const n = await node()
  const outcomes: Verifier['outcomes'] = []
  const pending: Array<Promise<void>> = []
  n.services.spot.setHooks({
    audit: (request, from) => {
      pending.push((async () => {
        const signal = AbortSignal.timeout(20_000)
        const out = await auditStage(request, from, {
          fetch: async (peer, side) => await fetchTrace(await n.dialProtocol(peerIdFromString(peer), spotCheckProtocol(SWARM), { signal }), request.sessionId, side, { signal }),
          shardFor: async (start, end, dtype) => await load(start, end, dtype),
          stageDtype: dtypeOf(request.subject),
          nLayers: source.config.nLayers
        })
        outcomes.push({ request, out })
      })())
      return SpotResponse.Status.OK
    }
  })
  return { n, outcomes, settled: async () => { await Promise.all(pending) } }
}

const PROMPT = [1, 403, 407, 261, 300]
interface Run { sessionId: string, tokens: number[], signatures: Array<Uint8Array<ArrayBuffer>>, receipt?: { session: string, first: number, signature: Uint8Array } }
/** The owner (a client with its own key) runs one seeded session through `r`. */
async function generate (owner: Node, r: Ring, sampling: { temperature: number, topP: number, topK: number, seed: number }, maxTokens = 28): Promise<Run> {
  for (const s of r.stages) await owner.dial(s.getMultiaddrs()[0])
  const open = async (peer: ChainHop['peer'], protocol: string, o: { signal?: AbortSignal }): Promise<Stream> => await owner.dialProtocol(typeof peer === 'string' ? peerIdFromString(peer) : peer, protocol, o)
  const run: Run = { sessionId: '', tokens: [], signatures: [] }
  for await (const ev of runInference(open, r.stages[0].services.inference.protocol, { chain: r.chain, prompt: PROMPT, maxLength: 64, model: MODEL, sampling: { ...sampling, maxTokens }, ...(ownerSigner !== undefined ? { signer: ownerSigner } : {}) })) {
    if (ev.type === 'token') { run.tokens.push(ev.id); run.signatures.push(Uint8Array.from(ev.signature)) }
    if (ev.type === 'done') { run.sessionId = ev.sessionId; run.receipt = { session: ev.sessionId, first: ev.first, signature: ev.receipt } }
  }
  return run
}
let ownerSigner: ReturnType<typeof frameSigner>

/** The owner's AUDITs of every stage of `r`'s chain, sent to the verifiers (as after a consensus round). */
async function audit (owner: Node, r: Ring, run: Run, verifiers: Verifier[], sampling: { temperature: number, topP: number, topK: number }, seed: number): Promise<Awaited<ReturnType<typeof requestAudits>>> {
  for (const v of verifiers) await owner.dial(v.n.getMultiaddrs()[0])
  for (const v of verifiers) for (const s of r.stages) await v.n.dial(s.getMultiaddrs()[0])
  const ids = verifiers.map((v) => v.n.peerId.toString())
  const state = { nodes: () => new Map(ids.map((id) => [id, { layers: [{ model: MODEL, start: 0, end: 5 }] }])) } as unknown as SwarmReader
  const reputation = { nodes: new Map(ids.map((id) => [id, { admitted: true, excluded: false }])) } as unknown as ReputationState
  return await requestAudits({
    round: 'r1', swarm: SWARM, model: MODEL, self: owner.peerId.toString(), state, online: () => ids, reputation,
    chains: [{ chain: r.chain, sessionId: run.sessionId, tokens: run.tokens, signatures: run.signatures, seed, ...(run.receipt !== undefined ? { receipt: run.receipt } : {}) }],
    prompt: PROMPT, greedy: false, sampling, ...(ownerSigner !== undefined ? { signer: ownerSigner } : {}),
    openStream: async (peer, protocol, o) => await owner.dialProtocol(peerIdFromString(peer), protocol, o)
  })
}

/** The verifiers' evidence records of the last stage (as node/spot-check.ts writes them) and what every ledger makes of them. */
function ledgerOf (verifiers: Verifier[], last: string, others: string[]): ReturnType<typeof deriveLedger> {
  const records = verifiers.flatMap((v, i) => v.outcomes.filter((o) => o.request.subject === last && o.out.result !== undefined).map((o) => {
    const a = o.request
    const result = o.out.result as NonNullable<AuditOutcome['result']>
    const rec: ConsensusRecord = { t: 'spot-check', id: `${a.sessionId}.${a.start}-${a.end}`, seq: i + 1, case: `${a.sessionId}:${a.start}-${a.end}`, subject: a.subject, model: a.model, start: a.start, end: a.end, checked: result.checked, mismatched: [...new Set(result.mismatches.map((m) => m.position))].sort((x, y) => x - y), passed: result.passed }
    return { id: recordId(rec), data: recordData(rec), writer: v.n.peerId.toString() }
  }))
  return deriveLedger(records, { genesis: [...verifiers.map((v) => v.n.peerId.toString()), last, ...others] })
}

const lastOutcomes = (vs: Verifier[], last: string): AuditOutcome[] => vs.flatMap((v) => v.outcomes.filter((o) => o.request.subject === last).map((o) => o.out))

describe(`seeded last stages audited over libp2p (TEST_SEED=${SEED})`, () => {
  let owner: Node
  beforeAll(async () => {
    // the owner signs its prompts with its libp2p key (as connect() and a daemon's client do)
    const key = await generateKeyPair('Ed25519')
    owner = await node(key)
    ownerSigner = frameSigner(key, owner.peerId.toString())
  })

  for (const dtype of ['f32', 'q8_0', 'f16'] as const) {
    it(`an honest seeded ${dtype} last stage passes at both verifiers (copies in ${dtype})`, async () => {
      const r = await ring(dtype)
      const sampling = { temperature: 0.8, topP: 0.9, topK: 0, seed: SEED % 100_000 }
      const run = await generate(owner, r, sampling)
      expect(run.tokens.length).toBeGreaterThan(10)
      const last = r.chain[2].peer.toString()
      // the subjects' records: the last stage serves `dtype`, the others f32
      const dtypeOf = (subject: string): WeightDType => subject === last ? dtype : 'f32'
      const vs = [await verifier(dtypeOf), await verifier(dtypeOf)]
      const asked = await audit(owner, r, run, vs, sampling, sampling.seed)
      // every stage of the chain (first, middle, last) was asked of both verifiers
      expect(asked).toHaveLength(6)
      expect(asked.every((a) => a.status === SpotResponse.Status.OK)).toBe(true)
      await Promise.all(vs.map(async (v) => { await v.settled() }))
      const outs = lastOutcomes(vs, last)
      expect(outs).toHaveLength(2)
      for (const out of outs) {
        expect(out.skipped).toBeUndefined()
        expect(out.badSignatures).toBe(0)
        expect(out.result?.checked.length).toBeGreaterThanOrEqual(Math.min(20, run.tokens.length - 1))
        expect(out.result?.passed).toBe(true)
      }
      // the other stages of the chain passed too
      for (const v of vs) for (const o of v.outcomes) expect(o.out.result?.passed, o.request.subject).toBe(true)
      expect(ledgerOf(vs, last, []).state.nodes.get(last)?.excluded).toBe(false)
    })
  }

  it('a last stage that substitutes tokens is caught by both verifiers and excluded; an owner naming another seed convicts nobody', async () => {
    const r = await ring('f32', substituting)
    const sampling = { temperature: 1, topP: 0.95, topK: 40, seed: (SEED % 100_000) + 7 }
    const run = await generate(owner, r, sampling, 30)
    const vs = [await verifier(() => 'f32'), await verifier(() => 'f32')]
    await audit(owner, r, run, vs, sampling, sampling.seed)
    await Promise.all(vs.map(async (v) => { await v.settled() }))
    const last = r.chain[2].peer.toString()
    const outs = lastOutcomes(vs, last)
    expect(outs).toHaveLength(2)
    console.log(`substituting last stage (every third token, ${run.tokens.length} generated): ${outs.map((o) => `${o.result?.mismatches.length ?? 'n/a'}/${o.result?.checked.length ?? 0}`).join(', ')} positions mismatched at the two verifiers`)
    for (const out of outs) {
      expect(out.badSignatures).toBe(0)
      expect(out.result?.passed).toBe(false)
      expect(out.result?.mismatches.length).toBeGreaterThanOrEqual(3)
    }
    const ledger = ledgerOf(vs, last, [])
    expect(ledger.state.nodes.get(last)?.excluded).toBe(true)

    // an honest ring; the owner names another seed (or temperature) than the chain ran with
    const honest = await ring('f32')
    const run2 = await generate(owner, honest, sampling, 30)
    const framing = [await verifier(() => 'f32'), await verifier(() => 'f32')]
    const last2 = honest.chain[2].peer.toString()
    await audit(owner, honest, run2, framing, sampling, sampling.seed + 1)
    await audit(owner, honest, run2, framing, { ...sampling, temperature: 0.5 }, sampling.seed)
    await Promise.all(framing.map(async (v) => { await v.settled() }))
    const framed = lastOutcomes(framing, last2)
    expect(framed.length).toBeGreaterThanOrEqual(2) // each verifier takes one AUDIT per (session, range); the node dedups, this harness does not
    for (const out of framed) {
      expect(out.result).toBeUndefined()
      expect(out.skipped).toMatch(/receipt/)
      expect(out.badSignatures).toBe(1)
    }
    expect(ledgerOf(framing, last2, []).state.nodes.get(last2)?.excluded).toBe(false)
  })

  it('an honest q8_0 middle stage is judged in its own dtype: a q8_0 copy, or an f32 copy at the q8_0 tolerance (not the f32 one)', async () => {
    const r = await ring('f32', undefined, 'q8_0')
    const middle = r.chain[1].peer.toString()
    const sampling = { temperature: 0.8, topP: 0.9, topK: 0, seed: (SEED % 100_000) + 3 }
    const run = await generate(owner, r, sampling, 40)
    const f32Copy = async (start: number, end: number): Promise<Shard> => await load(start, end, 'f32')
    const fetch = (v: Node) => async (peer: string, side: 'inputs' | 'outputs') => await fetchTrace(await v.dialProtocol(peerIdFromString(peer), spotCheckProtocol(SWARM)), run.sessionId, side)
    const v = await node()
    for (const s of r.stages) await v.dial(s.getMultiaddrs()[0])
    const request: AuditRequest = { sessionId: run.sessionId, subject: middle, start: 2, end: 4, predecessor: r.chain[0].peer.toString(), successor: r.chain[2].peer.toString(), model: MODEL }
    const deps = { fetch: fetch(v), nLayers: source.config.nLayers }
    // before: the verifier's own f32 copy, the f32 tolerance
    const before = await auditStage(request, owner.peerId.toString(), { ...deps, shardFor: f32Copy })
    // now: the subject's dtype from its record, the copy loaded in it
    const now = await auditStage(request, owner.peerId.toString(), { ...deps, shardFor: async (start, end, dtype) => await load(start, end, dtype), stageDtype: 'q8_0' })
    // an f32 copy at the q8_0 tolerance
    const cross = await auditStage(request, owner.peerId.toString(), { ...deps, shardFor: f32Copy, stageDtype: 'q8_0' })
    console.log(`q8_0 middle stage, ${before.result?.checked.length ?? 0} positions: f32 copy at f32 tolerance ${before.result?.mismatches.length ?? 'n/a'} mismatched; q8_0 copy ${now.result?.mismatches.length ?? 'n/a'}; f32 copy at q8_0 tolerance ${cross.result?.mismatches.length ?? 'n/a'}`)
    expect(before.result?.passed).toBe(false) // what the verifier did before: an honest q8_0 stage convicted (14–15 of 20 positions)
    expect(now.result?.passed).toBe(true)
    expect(cross.result?.passed).toBe(true)
  })
})
