// Sampled audits of PLAIN requests (issue 7) audit every stage, as a consensus round audits its
// chains: a ring of in-process libp2p stages serving stories260K records every signed frame and
// answers FETCH; a client runs a plain session (greedy or seeded) collecting what client/client.ts
// keeps for its audit — the tokens, the last stage's signature of each and its done receipt — and,
// the session sampled (`auditSampled` at rate 1), asks two verifier nodes for AUDITs through
// client/consensus-audit.ts auditPlainRequest (the shared requestAudits). Each verifier fetches over
// /mycelium/<swarm>/spot-check/1.0.0 and runs auditStage:
// - the first stage is checked on the owner's signed prompt and the receipted tokens, the middle
//   stage on its neighbours' frames, the last stage on its tokens (greedy argmax / seeded coins);
// - an AUDIT with a receipt carries no per-token signatures (the receipt binds every token);
// - a last stage that substitutes tokens is caught on a plain request, greedy and seeded.
// And the AUDIT size boundary: with a receipt, AUDIT_MAX_TOKENS tokens fit one AUDIT; without one,
// the owner sends the prefix whose (batch-proof sized) signatures fit, one more does not.
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { PrivateKey, Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { tcp } from '@libp2p/tcp'
import { createLibp2p, type Libp2p } from 'libp2p'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { auditPlainRequest, auditSampled, requestAudits, type PlainSession } from '../../client/consensus-audit.ts'
import type { ReputationState } from '../../consensus/index.ts'
import { openLlama2c } from '../../engine/formats/llama2c.ts'
import type { ModelSource, Shard } from '../../engine/index.ts'
import { loadShard } from '../../engine/shard.ts'
import { auditStage, type AuditOutcome } from '../../node/spot-check-audit.ts'
import { SpotRecorder } from '../../node/spot-check.ts'
import { AUDIT_MAX_TOKENS, auditTokensThatFit, fetchTrace, requestAudit, SPOT_MAX_REQUEST_BYTES, SpotCheckService, spotCheckProtocol, spotCheckService, SpotRequest, SpotResponse, type AuditRequest } from '../../protocols/consensus/spot-check.ts'
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
async function load (start: number, end: number): Promise<Shard> {
  const s = await loadShard(source, { start, end, dtype: 'f32', threads: 1 })
  shards.push(s)
  return s
}

beforeAll(async () => { source = await openLlama2c(STORIES260K) })
afterAll(async () => {
  for (const n of nodes) await n.stop()
  for (const s of shards) await s.close()
})


interface Ring { stages: Node[], chain: ChainHop[] }
/** A ring [0, 2) → [2, 4) → [4, 5) of libp2p stages, each recording its signed frames and answering FETCH. */
async function ring (wrapLast?: (s: Shard) => Shard): Promise<Ring> {
  const bounds = [0, 2, 4, 5]
  const stages: Node[] = []
  const chain: ChainHop[] = []
  for (let i = 0; i + 1 < bounds.length; i++) {
    const n = await node()
    const loaded = await load(bounds[i], bounds[i + 1])
    const shard = i + 2 === bounds.length && wrapLast !== undefined ? wrapLast(loaded) : loaded
    const recorder = new SpotRecorder()
    n.services.inference.serve({ shard, model: MODEL, tap: recorder.tap } as never)
    n.services.spot.setHooks({ fetch: (session, side) => recorder.fetch(session, side) })
    stages.push(n)
    chain.push({ peer: n.peerId, start: bounds[i], end: bounds[i + 1] })
  }
  for (let i = 0; i < stages.length; i++) for (let j = i + 1; j < stages.length; j++) await stages[i].dial(stages[j].getMultiaddrs()[0])
  return { stages, chain }
}

interface Verifier { n: Node, outcomes: Array<{ request: AuditRequest, out: AuditOutcome }>, settled: () => Promise<void> }
async function verifier (): Promise<Verifier> {
  const n = await node()
  const outcomes: Verifier['outcomes'] = []
  const pending: Array<Promise<void>> = []
  n.services.spot.setHooks({
    audit: (request, from) => {
      pending.push((async () => {
        const signal = AbortSignal.timeout(20_000)
        const out = await auditStage(request, from, {
          fetch: async (peer, side) => await fetchTrace(await n.dialProtocol(peerIdFromString(peer), spotCheckProtocol(SWARM), { signal }), request.sessionId, side, { signal }),
          shardFor: async (start, end) => await load(start, end),
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
let owner: Node
let ownerSigner: ReturnType<typeof frameSigner>

/** A plain request through `r`, kept as client/client.ts keeps it for its audit. */
async function plain (r: Ring, sampling: PlainSession['sampling'], maxTokens = 24): Promise<PlainSession> {
  for (const s of r.stages) await owner.dial(s.getMultiaddrs()[0])
  const open = async (peer: ChainHop['peer'], protocol: string, o: { signal?: AbortSignal }): Promise<Stream> => await owner.dialProtocol(typeof peer === 'string' ? peerIdFromString(peer) : peer, protocol, o)
  const s: PlainSession = { sessionId: '', chain: r.chain, prompt: PROMPT, tokens: [], signatures: [], sampling }
  for await (const ev of runInference(open, r.stages[0].services.inference.protocol, { chain: r.chain, prompt: PROMPT, maxLength: PROMPT.length + maxTokens - 1, model: MODEL, sampling: { ...sampling, maxTokens }, signer: ownerSigner })) {
    if (ev.type === 'open') s.sessionId = ev.sessionId
    if (ev.type === 'token') { s.tokens.push(ev.id); s.signatures.push(Uint8Array.from(ev.signature)) }
    if (ev.type === 'done') s.receipt = { session: ev.sessionId, first: ev.first, signature: ev.receipt }
  }
  return s
}

async function auditAt (r: Ring, session: PlainSession, verifiers: Verifier[]): Promise<Awaited<ReturnType<typeof auditPlainRequest>>> {
  for (const v of verifiers) await owner.dial(v.n.getMultiaddrs()[0])
  for (const v of verifiers) for (const s of r.stages) await v.n.dial(s.getMultiaddrs()[0])
  const ids = verifiers.map((v) => v.n.peerId.toString())
  const state = { nodes: () => new Map(ids.map((id) => [id, { layers: [{ model: MODEL, start: 0, end: 5 }], capabilities: {} }])) } as unknown as SwarmReader
  const reputation = { nodes: new Map(ids.map((id) => [id, { admitted: true, excluded: false }])) } as unknown as ReputationState
  // the client's rule: a sampled session (rate 1 samples every one)
  expect(auditSampled(session.sessionId, 1)).toBe(true)
  const asked = await auditPlainRequest({
    swarm: SWARM, model: MODEL, self: owner.peerId.toString(), state, online: () => ids, reputation, signer: ownerSigner, session,
    openStream: async (peer, protocol, o) => await owner.dialProtocol(peerIdFromString(peer), protocol, o)
  })
  await Promise.all(verifiers.map(async (v) => { await v.settled() }))
  return asked
}
const outcomesOf = (vs: Verifier[], subject: ChainHop): Verifier['outcomes'] => vs.flatMap((v) => v.outcomes.filter((o) => o.request.subject === subject.peer.toString()))

describe(`sampled plain requests audit every stage over libp2p (TEST_SEED=${SEED})`, () => {
  beforeAll(async () => {
    const key = await generateKeyPair('Ed25519')
    owner = await node(key)
    ownerSigner = frameSigner(key, owner.peerId.toString())
  })

  for (const temperature of [0, 0.8]) {
    it(`a plain ${temperature === 0 ? 'greedy' : 'seeded'} request: its first, middle and last stages pass at both verifiers, on the receipt (no per-token signatures)`, async () => {
      const r = await ring()
      const session = await plain(r, { temperature, topP: 0.9, topK: 0, seed: SEED % 100_000 })
      expect(session.tokens.length).toBeGreaterThan(10)
      expect(session.receipt?.signature.length).toBe(64)
      const vs = [await verifier(), await verifier()]
      const asked = await auditAt(r, session, vs)
      expect(asked).toHaveLength(6) // 3 stages × 2 verifiers
      expect(asked.every((a) => a.status === SpotResponse.Status.OK)).toBe(true)
      for (const hop of r.chain) {
        const outs = outcomesOf(vs, hop)
        expect(outs, `stage ${hop.start}-${hop.end}`).toHaveLength(2)
        for (const { request, out } of outs) {
          expect(out.skipped).toBeUndefined()
          expect(out.badSignatures).toBe(0)
          expect(out.result?.passed).toBe(true)
          expect(out.result?.checked.length).toBeGreaterThanOrEqual(10)
          if (hop.start === 0 || hop.end === 5) {
            // first and last stages get the tokens, bound by the receipt alone
            expect(request.tokens).toEqual([...PROMPT, ...session.tokens])
            expect(request.tokenSignatures ?? []).toHaveLength(0)
            expect(request.receipt?.first).toBe(PROMPT.length - 1)
          }
        }
      }
    })
  }

  it('without a receipt (a stop string ended it early) the greedy plain request is audited on the per-token signatures', async () => {
    const r = await ring()
    const full = await plain(r, { temperature: 0, topP: 1, topK: 0, seed: 3 })
    const { receipt: _, ...session } = { ...full, tokens: full.tokens.slice(0, 15), signatures: full.signatures.slice(0, 15) }
    const vs = [await verifier(), await verifier()]
    await auditAt(r, session, vs)
    for (const hop of [r.chain[0], r.chain[2]]) {
      for (const { request, out } of outcomesOf(vs, hop)) {
        expect(request.tokenSignatures).toHaveLength(15)
        expect(out.badSignatures).toBe(0)
        expect(out.result?.passed).toBe(true)
      }
    }
  })

  it('an owner that pairs the receipt with other tokens convicts nobody: the last stage is skipped (a bad signature), the first checked on its own record', async () => {
    const r = await ring()
    const session = await plain(r, { temperature: 0, topP: 1, topK: 0, seed: 5 })
    const tokens = [...session.tokens]
    tokens[6] = (tokens[6] + 1) % 512
    const vs = [await verifier(), await verifier()]
    await auditAt(r, { ...session, tokens }, vs)
    const lastOuts = outcomesOf(vs, r.chain[2])
    expect(lastOuts).toHaveLength(2)
    for (const { out } of lastOuts) {
      expect(out.result).toBeUndefined()
      expect(out.badSignatures).toBeGreaterThanOrEqual(1)
    }
    for (const { out } of outcomesOf(vs, r.chain[0])) expect(out.result?.passed).toBe(true)
  })

  for (const temperature of [0, 1]) {
    it(`a last stage that substitutes tokens on a plain ${temperature === 0 ? 'greedy' : 'seeded'} request is caught by both verifiers`, async () => {
      const r = await ring(substituting)
      const session = await plain(r, { temperature, topP: 0.95, topK: 40, seed: (SEED % 100_000) + 7 }, 30)
      const vs = [await verifier(), await verifier()]
      await auditAt(r, session, vs)
      const outs = outcomesOf(vs, r.chain[2])
      expect(outs).toHaveLength(2)
      for (const { out } of outs) {
        expect(out.badSignatures).toBe(0)
        expect(out.result?.passed).toBe(false)
        expect(out.result?.mismatches.length).toBeGreaterThanOrEqual(3)
      }
      // the first stage ran what it was fed: it passes
      for (const { out } of outcomesOf(vs, r.chain[0])) expect(out.result?.passed).toBe(true)
    })
  }
})

/** The bytes of `req` as requestAudit sends it. */
function encodedSize (req: AuditRequest): number {
  const { sampling, receipt, ...rest } = req
  return SpotRequest.encode({
    kind: SpotRequest.Kind.AUDIT, side: SpotRequest.Side.INPUTS, rows: 0, input: new Uint8Array(0), inputTokens: [], temperature: 0, topP: 0, topK: 0, seed: 0, skipDraws: 0, receipt: new Uint8Array(0), receiptFirst: 0,
    ...rest, tokens: req.tokens ?? [], promptLength: req.promptLength ?? 0, greedy: req.greedy ?? false, promptSignature: req.promptSignature ?? new Uint8Array(0), tokenSignatures: req.tokenSignatures ?? [], last: req.last ?? '',
    ...(sampling ?? {}), ...(receipt !== undefined ? { receipt: receipt.signature, receiptFirst: receipt.first } : {})
  }).byteLength
}

describe('AUDIT size: batch-signature proofs no longer cap the generation', () => {
  let a: Node
  let b: Node
  const got: AuditRequest[] = []
  beforeAll(async () => {
    a = await node()
    b = await node()
    b.services.spot.setHooks({ audit: (request) => { got.push(request); return SpotResponse.Status.OK } })
  })
  const open = async (): Promise<Stream> => await a.dialProtocol(b.getMultiaddrs()[0], spotCheckProtocol(SWARM))
  const prompt = Array.from({ length: 64 }, (_, i) => 1 + i)
  const last: AuditRequest = { sessionId: 's', subject: 'l', start: 4, end: 5, predecessor: 'p', successor: '', model: 'm', promptLength: prompt.length, greedy: true, promptSignature: new Uint8Array(64).fill(2), last: 'l' }
  const sampling = { temperature: 0, topP: 1, topK: 0, seed: 1, skipDraws: 0 }

  it('with a receipt, AUDIT_MAX_TOKENS tokens (large ids) fit one AUDIT; one more is MALFORMED', async () => {
    const tokens = [...prompt, ...Array.from({ length: AUDIT_MAX_TOKENS - prompt.length }, (_, i) => 30_000 + (i % 2000))]
    const req: AuditRequest = { ...last, tokens, sampling, receipt: { signature: new Uint8Array(64).fill(1), first: prompt.length - 1 } }
    expect(encodedSize(req)).toBeLessThan(SPOT_MAX_REQUEST_BYTES / 8)
    expect(await requestAudit(await open(), req)).toBe(SpotResponse.Status.OK)
    expect(got.at(-1)?.tokens).toHaveLength(AUDIT_MAX_TOKENS)
    expect(got.at(-1)?.receipt?.first).toBe(prompt.length - 1)
    expect(await requestAudit(await open(), { ...req, tokens: [...tokens, 1] })).toBe(SpotResponse.Status.MALFORMED)
    // a receipt needs a sampling to be checked against
    expect(await requestAudit(await open(), { ...req, sampling: { ...sampling, topP: 2 } })).toBe(SpotResponse.Status.MALFORMED)
  })

  it('without a receipt, the prefix whose 584-byte signatures fit is accepted; a longer one, over 1 MiB, is refused', async () => {
    const sigs = Array.from({ length: 4000 }, () => new Uint8Array(584).fill(3))
    const n = auditTokensThatFit(prompt.length, sigs)
    expect(n).toBeGreaterThan(1500)
    expect(n).toBeLessThan(1800)
    const req = (k: number): AuditRequest => ({ ...last, tokens: [...prompt, ...Array.from({ length: k }, (_, i) => 30_000 + i)], tokenSignatures: sigs.slice(0, k), sessionId: 's'.repeat(128), subject: 'x'.repeat(128), predecessor: 'p'.repeat(128), last: 'l'.repeat(128), model: 'm'.repeat(128) })
    expect(await requestAudit(await open(), req(n))).toBe(SpotResponse.Status.OK)
    expect(got.at(-1)?.tokenSignatures).toHaveLength(n)
    expect(encodedSize(req(n))).toBeLessThanOrEqual(SPOT_MAX_REQUEST_BYTES)
    // the headroom is small: 20 tokens more no longer fit, and such an AUDIT is refused
    expect(encodedSize(req(n + 20))).toBeGreaterThan(SPOT_MAX_REQUEST_BYTES)
    expect(await requestAudit(await open(), req(n + 20)).catch(() => 'failed')).not.toBe(SpotResponse.Status.OK)
  })

  it('requestAudits sends a long unreceipted generation as the prefix that fits, and a receipted one whole', async () => {
    const ids = [b.peerId.toString()]
    const state = { nodes: () => new Map(ids.map((id) => [id, { layers: [{ model: MODEL, start: 0, end: 5 }], capabilities: {} }])) } as unknown as SwarmReader
    const reputation = { nodes: new Map(ids.map((id) => [id, { admitted: true, excluded: false }])) } as unknown as ReputationState
    const chain = [{ peer: 'p', start: 0, end: 4 }, { peer: 'l', start: 4, end: 5 }] as unknown as ChainHop[]
    const tokens = Array.from({ length: 6000 }, (_, i) => 1 + (i % 500))
    const signatures = tokens.map(() => new Uint8Array(584).fill(5))
    const base = { swarm: SWARM, model: MODEL, self: a.peerId.toString(), state, online: () => ids, reputation, prompt, greedy: true, sampling: { temperature: 0, topP: 1, topK: 0 }, openStream: async (peer: string, protocol: string, o: { signal?: AbortSignal }) => await a.dialProtocol(peerIdFromString(peer), protocol, o) }
    got.length = 0
    const plainOut = await requestAudits({ ...base, round: 'r1', chains: [{ chain, sessionId: 's1', tokens, signatures, seed: 1 }] })
    expect(plainOut.map((o) => o.status)).toEqual([SpotResponse.Status.OK, SpotResponse.Status.OK])
    const n = auditTokensThatFit(prompt.length, signatures)
    expect(got).toHaveLength(2)
    for (const r of got) { expect(r.tokens).toHaveLength(prompt.length + n); expect(r.tokenSignatures).toHaveLength(n) }
    got.length = 0
    const receipted = await requestAudits({ ...base, round: 'r2', chains: [{ chain, sessionId: 's2', tokens, signatures, seed: 1, receipt: { session: 's2', first: prompt.length - 1, signature: new Uint8Array(64).fill(9) } }] })
    expect(receipted).toHaveLength(2)
    expect(got).toHaveLength(2)
    for (const r of got) { expect(r.tokens).toHaveLength(prompt.length + tokens.length); expect(r.tokenSignatures ?? []).toHaveLength(0); expect(r.receipt?.first).toBe(prompt.length - 1) }
  })
})
