// Spot-checks of sharded execution (issue 7): the bounded StageTap recorder (node/spot-check.ts),
// the /mycelium/<swarm>/spot-check/1.0.0 exchange between in-process libp2p nodes (FETCH of
// recorded frames, refused to peers that are neither members nor the session's client and
// rate-limited per peer; AUDIT requests; bad input answered with a status), and the verifier's
// audit on real stories260K shards with signed frames (node/spot-check-audit.ts): an honest stage
// passes, a stage that adds 0.1 × RMS noise fails; neighbours that alter or forge frames cannot
// frame the subject (bad signatures are no evidence); a subject that signed two different frames
// at one position is caught equivocating; the owner cannot frame a first or last stage with
// tokens nobody signed. The same with batch signatures (each frame signed as a leaf of a batch, its
// Merkle proof in its signature field): audits, bad proofs and equivocation proofs work alike.
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { generateKeyPairFromSeed } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { tcp } from '@libp2p/tcp'
import { pbStream } from '@libp2p/utils'
import { createLibp2p, type Libp2p } from 'libp2p'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { auditSampled } from '../../client/consensus-audit.ts'
import { batchRootMessage, batchSignature, batchTree, checkEquivocation } from '../../consensus/signed-frames.ts'
import { parseRecord } from '../../consensus/records.ts'
import { loadModel, type Shard } from '../../engine/index.ts'
import { corruptHidden } from '../../node/spot-check-corrupt.ts'
import { auditStage } from '../../node/spot-check-audit.ts'
import { fetchGate, PeerRateLimit, SpotRecorder } from '../../node/spot-check.ts'
import { fetchAnswer, fetchTrace, requestAudit, SpotCheckService, spotCheckProtocol, spotCheckService, SpotRequest, SpotResponse, type AuditRequest } from '../../protocols/consensus/spot-check.ts'
import { frameSigner, stepMessage, tokenMessage } from '../../protocols/inference/frame-signature.ts'
import { HiddenCodec } from '../../protocols/inference/inference.pb.js'
import type { TapFrame } from '../../protocols/index.ts'
import { seededRandom, testSeed } from '../seed.ts'
import { STORIES260K, TOK512 } from '../models.ts'

const SWARM = 'test'
const nodes: Libp2p[] = []
const shards: Shard[] = []

async function node (): Promise<Libp2p<{ spot: SpotCheckService }>> {
  const n = await createLibp2p({ addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] }, transports: [tcp()], connectionEncrypters: [noise()], streamMuxers: [yamux()], services: { spot: spotCheckService({ swarm: SWARM }) } })
  nodes.push(n as unknown as Libp2p)
  return n
}
afterAll(async () => {
  for (const n of nodes) await n.stop()
  for (const s of shards) await s.close()
})

/** A peer with a key: its id and a signer of inference frames. */
interface Peer { id: string, key: PrivateKey, sign: (m: Uint8Array) => Uint8Array<ArrayBuffer> }
async function peer (seed: number): Promise<Peer> {
  const key = await generateKeyPairFromSeed('Ed25519', new Uint8Array(32).fill(seed))
  const id = peerIdFromPrivateKey(key).toString()
  const signer = frameSigner(key, id)
  if (signer === undefined) throw new Error('no signer')
  return { id, key, sign: signer.sign }
}

/**
 * `p` signing as a stage that batches: each message is leaf 1 of a batch of 5 (the others another
 * session's frames), the root signed once: a batch signature carrying a 3-hash path.
 */
let batches = 0
function batching (p: Peer): Peer {
  return {
    ...p,
    sign: (m) => {
      const b = batches++
      const ms = [tokenMessage(`other${b}`, 0, 1), m, tokenMessage(`other${b}`, 1, 2), tokenMessage(`other${b}`, 2, 3), tokenMessage(`other${b}`, 3, 4)]
      const { root, paths } = batchTree(ms)
      return batchSignature(p.sign(batchRootMessage(ms.length, root)), 1, ms.length, paths[1])
    }
  }
}

const bytes = (h: Float32Array): Uint8Array<ArrayBuffer> => new Uint8Array(Float32Array.from(h).buffer)
/** A step frame of f32 hidden states [rows, dim] at `position`, signed by `by`. */
function hiddenFrame (by: Peer, session: string, position: number, h: Float32Array, dim: number): TapFrame {
  const hidden = bytes(h)
  return { position, rows: h.length / dim, hidden, codec: 0, signature: by.sign(stepMessage(session, position, { hidden, dtype: HiddenCodec.F32, shape: [h.length / dim, dim] })), signer: by.id }
}
function tokensFrame (by: Peer, session: string, position: number, tokens: number[]): TapFrame {
  return { position, rows: tokens.length, tokens, codec: 0, signature: by.sign(stepMessage(session, position, { tokens, dtype: HiddenCodec.F32, shape: [] })), signer: by.id }
}
/** A token sampled from the logits at position − 1, signed by the last stage `by`. */
function sampledFrame (by: Peer, session: string, position: number, token: number): TapFrame {
  return { position, rows: 1, tokens: [token], codec: 0, signature: by.sign(tokenMessage(session, position - 1, token)), signer: by.id, sampled: true }
}
const tap = (r: SpotRecorder, session: string, start: number, end: number, dim: number, input: TapFrame, output?: TapFrame): void => {
  r.tap({ sessionId: session, start, end, dim, input, ...(output !== undefined ? { output } : {}) })
}

describe('spot-check recorder (StageTap)', () => {
  it('keeps copies of the frames with their signatures, caps sessions, bytes per session and bytes in all', async () => {
    const p = await peer(1)
    const frame = (position: number, fill: number): TapFrame => hiddenFrame(p, 'a', position, new Float32Array(16).fill(fill), 16)
    const per = 2 * (64 + 160) // one step: a 64-byte frame in and out, plus bookkeeping
    const r = new SpotRecorder({ sessions: 2, sessionBytes: 3 * per, bytes: 4 * per })
    const first = frame(0, 1)
    tap(r, 'a', 2, 4, 16, first, frame(0, 2))
    ;(first.hidden as Uint8Array).fill(9) // the stage's buffers are not the recorder's
    const got = r.fetch('a', 'inputs')?.steps[0]
    expect(new Float32Array(new Uint8Array(got?.hidden ?? []).buffer)[0]).toBe(1)
    expect(got?.signer).toBe(p.id)
    expect(got?.signature.length).toBe(64)
    tap(r, 'a', 2, 4, 16, frame(1, 2), frame(1, 3))
    tap(r, 'a', 2, 4, 16, frame(2, 3), frame(2, 4))
    expect(r.fetch('a', 'outputs')?.steps.map((x) => x.position)).toEqual([0, 1, 2])
    tap(r, 'a', 2, 4, 16, frame(3, 4), frame(3, 5)) // over the session cap: the session is dropped from answers (incomplete)
    expect(r.fetch('a', 'inputs')).toBeUndefined()
    tap(r, 'b', 2, 4, 16, frame(0, 1), frame(0, 1))
    tap(r, 'c', 2, 4, 16, frame(0, 1), frame(0, 1)) // a third session evicts the oldest
    expect(r.size.sessions).toBe(2)
    expect(r.fetch('a', 'inputs')).toBeUndefined()
    expect(r.fetch('c', 'inputs')?.steps).toHaveLength(1)
    expect(r.size.bytes).toBeLessThanOrEqual(4 * per)
    // a first stage's prompt names the session's client
    tap(r, 'd', 0, 2, 16, tokensFrame(p, 'd', 0, [1, 2]), frame(0, 1))
    expect(r.clientOf('d')).toBe(p.id)
    expect(r.clientOf('c')).toBeUndefined()
  })

  it('the per-peer rate limit counts per window', () => {
    let t = 0
    const limit = new PeerRateLimit(2, 1000, () => t)
    expect([limit.take('x'), limit.take('x'), limit.take('x'), limit.take('y')]).toEqual([true, true, false, true])
    t = 1000
    expect(limit.take('x')).toBe(true)
  })
})

describe('/mycelium/<swarm>/spot-check/1.0.0', () => {
  let a: Libp2p<{ spot: SpotCheckService }>
  let b: Libp2p<{ spot: SpotCheckService }>
  const audits: Array<{ request: AuditRequest, from: string }> = []
  let member: Peer
  beforeAll(async () => {
    a = await node()
    b = await node()
    member = await peer(2)
    const rec = new SpotRecorder()
    tap(rec, 's1', 2, 4, 8, hiddenFrame(member, 's1', 0, new Float32Array(24).fill(0.5), 8), hiddenFrame(member, 's1', 0, new Float32Array(24).fill(1.5), 8))
    const client = await peer(3)
    tap(rec, 's2', 0, 2, 8, tokensFrame(client, 's2', 0, [1, 2]), hiddenFrame(member, 's2', 0, new Float32Array(16), 8))
    // `a` is a member (admitted, not excluded); `c` below is not; `client` opened s2
    const members = new Set([a.peerId.toString()])
    b.services.spot.setHooks({
      fetch: fetchGate(rec, (p) => members.has(p), { fetchRefused: 0, fetchBusy: 0 }, new PeerRateLimit(12, 60_000)),
      audit: (request, from) => { audits.push({ request, from }); return request.subject === 'busy' ? SpotResponse.Status.BUSY : SpotResponse.Status.OK }
    })
  })
  const open = async (from = a): Promise<Awaited<ReturnType<Libp2p['dialProtocol']>>> => await from.dialProtocol(b.getMultiaddrs()[0], spotCheckProtocol(SWARM))

  it('FETCH answers members the recorded frames, NOT_FOUND otherwise; others are REFUSED; too many asks are BUSY', async () => {
    const got = await fetchTrace(await open(), 's1', 'outputs')
    expect(got).toMatchObject({ start: 2, end: 4, dim: 8 })
    expect(got?.steps).toHaveLength(1)
    expect(got?.steps[0]).toMatchObject({ rows: 3, signer: member.id, codec: 0 })
    expect(new Float32Array(new Uint8Array(got?.steps[0].hidden ?? []).buffer)[0]).toBe(1.5)
    expect(await fetchTrace(await open(), 'nope', 'inputs')).toBeUndefined()
    // a stranger (not admitted, not the session's client) learns nothing, not even whether the session exists
    const c = await node()
    expect((await fetchAnswer(await open(c), 's1', 'outputs')).status).toBe(SpotResponse.Status.REFUSED)
    expect((await fetchAnswer(await open(c), 'nope', 'outputs')).status).toBe(SpotResponse.Status.REFUSED)
    // the session's own client may fetch it (a libp2p node with the client's key)
    const owner = await createLibp2p({ privateKey: (await peer(3)).key, transports: [tcp()], connectionEncrypters: [noise()], streamMuxers: [yamux()] })
    nodes.push(owner as unknown as Libp2p)
    const fromOwner = async (id: string): Promise<SpotResponse.Status> => (await fetchAnswer(await owner.dialProtocol(b.getMultiaddrs()[0], spotCheckProtocol(SWARM)), id, 'inputs')).status
    expect(await fromOwner('s2')).toBe(SpotResponse.Status.OK)
    expect(await fromOwner('s1')).toBe(SpotResponse.Status.REFUSED)
    // rate: 12 per minute per peer (the member has used 2 above)
    const statuses: SpotResponse.Status[] = []
    for (let i = 0; i < 11; i++) statuses.push((await fetchAnswer(await open(), 's1', 'inputs')).status)
    expect(statuses.slice(0, 10).every((x) => x === SpotResponse.Status.OK)).toBe(true)
    expect(statuses[10]).toBe(SpotResponse.Status.BUSY)
  })

  it('AUDIT reaches the hook with the requester; bad requests end in MALFORMED', async () => {
    const req: AuditRequest = { sessionId: 's1', subject: 'x', start: 2, end: 4, predecessor: 'p', successor: 'q', model: 'm' }
    expect(await requestAudit(await open(), req)).toBe(SpotResponse.Status.OK)
    expect(await requestAudit(await open(), { ...req, subject: 'busy' })).toBe(SpotResponse.Status.BUSY)
    expect(audits[0].from).toBe(a.peerId.toString())
    expect(audits[0].request).toEqual(req)
    expect(await requestAudit(await open(), { ...req, successor: '' })).toBe(SpotResponse.Status.MALFORMED)
    expect(await requestAudit(await open(), { ...req, end: 2 })).toBe(SpotResponse.Status.MALFORMED)
    // a request frame over 4 KiB, and garbage
    for (const bytes of [new Uint8Array(8192).fill(7), Uint8Array.from([0xff, 0xff, 0xff, 0xff, 0x0f, 1, 2])]) {
      const stream = await open()
      const pb = pbStream(stream, { maxDataLength: 1 << 20 })
      if (bytes.length > 4096) await pb.write({ kind: SpotRequest.Kind.FETCH, sessionId: 'x'.repeat(8000), side: SpotRequest.Side.INPUTS, subject: '', start: 0, end: 0, predecessor: '', successor: '', model: '', tokens: [], promptLength: 0, greedy: false, promptSignature: new Uint8Array(0), tokenSignatures: [], last: '' }, SpotRequest)
      else await stream.send(bytes)
      const res = await pb.read(SpotResponse).catch(() => undefined)
      expect(res?.status ?? SpotResponse.Status.MALFORMED).toBe(SpotResponse.Status.MALFORMED)
    }
    expect(b.services.spot.stats.MALFORMED).toBeGreaterThanOrEqual(3)
  })

  it('AUDIT of a first or last stage carries the tokens; without them (or greedy sampling) it is MALFORMED', async () => {
    const first: AuditRequest = { sessionId: 's1', subject: 'f', start: 0, end: 2, predecessor: '', successor: 'q', model: 'm', tokens: [1, 2, 3], promptLength: 2, greedy: false }
    expect(await requestAudit(await open(), first)).toBe(SpotResponse.Status.OK)
    expect(audits.at(-1)?.request).toEqual(first)
    expect(await requestAudit(await open(), { ...first, tokens: [] })).toBe(SpotResponse.Status.MALFORMED)
    expect(await requestAudit(await open(), { ...first, start: 1 })).toBe(SpotResponse.Status.MALFORMED) // no predecessor but not layer 0
    const last: AuditRequest = { sessionId: 's1', subject: 'l', start: 4, end: 5, predecessor: 'p', successor: '', model: 'm', tokens: [1, 2, 3], promptLength: 2, greedy: true }
    expect(await requestAudit(await open(), last)).toBe(SpotResponse.Status.OK)
    expect(await requestAudit(await open(), { ...last, greedy: false })).toBe(SpotResponse.Status.MALFORMED) // seeded: needs its sampling and receipt
    const seeded: AuditRequest = { ...last, greedy: false, sampling: { temperature: 0.8, topP: 0.9, topK: 0, seed: 7, skipDraws: 0 }, receipt: { signature: new Uint8Array(64).fill(1), first: 1 } }
    expect(await requestAudit(await open(), seeded)).toBe(SpotResponse.Status.OK)
    // the sampling travels as float32 (as the inference wire's Open.sampling)
    expect(audits.at(-1)?.request).toMatchObject({ sampling: { temperature: Math.fround(0.8), topP: Math.fround(0.9), topK: 0, seed: 7, skipDraws: 0 }, receipt: { first: 1 } })
    for (const bad of [{ temperature: 0 }, { temperature: Number.NaN }, { temperature: Infinity }, { topP: 1.5 }, { skipDraws: 2 }]) {
      expect(await requestAudit(await open(), { ...seeded, sampling: { ...seeded.sampling as NonNullable<AuditRequest['sampling']>, ...bad } }), JSON.stringify(bad)).toBe(SpotResponse.Status.MALFORMED)
    }
    expect(await requestAudit(await open(), { ...seeded, receipt: { signature: new Uint8Array(10), first: 1 } })).toBe(SpotResponse.Status.MALFORMED) // not a signature
    expect(await requestAudit(await open(), { ...last, promptLength: 3 })).toBe(SpotResponse.Status.MALFORMED) // nothing generated
    expect(await requestAudit(await open(), { ...last, tokens: Array.from({ length: 20_000 }, () => 1) })).toBe(SpotResponse.Status.MALFORMED) // over AUDIT_MAX_TOKENS
  })
})

const load = async (start: number, end: number): Promise<Shard> => { const m = await loadModel(STORIES260K, { start, end, tokenizer: TOK512 }); shards.push(m.shard); return m.shard }

/** Records of one session as each stage's recorder holds them, and the audit over them. */
interface World { records: Map<string, SpotRecorder>, audit: (a: AuditRequest, owner: string) => ReturnType<typeof auditStage> }
function world (verifier: Shard, nLayers: number): World {
  const records = new Map<string, SpotRecorder>()
  return {
    records,
    audit: async (a, owner) => await auditStage(a, owner, { fetch: async (p, side) => records.get(p)?.fetch(a.sessionId, side), shardFor: async () => verifier, nLayers })
  }
}
const recorder = (w: World, p: Peer): SpotRecorder => { const r = w.records.get(p.id) ?? new SpotRecorder(); w.records.set(p.id, r); return r }

describe('the verifier\'s audit of a middle stage on real shards (signed frames)', () => {
  let head: Shard
  let stage: Shard
  let verifier: Shard
  let pred: Peer
  let subj: Peer
  let succ: Peer
  let owner: Peer
  beforeAll(async () => {
    head = await load(0, 2); stage = await load(2, 4); verifier = await load(2, 4)
    ;[pred, subj, succ, owner] = await Promise.all([peer(11), peer(12), peer(13), peer(14)])
  })
  /**
   * A session through head (pred) → stage (subj) → succ: every stage records the frames it received
   * and sent, signed by their sender. `noise`: the subject corrupts its outputs (and signs them);
   * `alter(position, sent)`: what the successor records instead of what the subject sent.
   */
  const session = (w: World, id: string, options: { noise?: number, alter?: (position: number, sent: TapFrame) => TapFrame, succRecords?: boolean } = {}): number => {
    const dim = stage.config.dim
    const random = seededRandom(testSeed())
    const hs = head.openSession({ maxLength: 64 })
    const ss = stage.openSession({ maxLength: 64 })
    let tokens = [1, 20, 30, 40, 50]
    let position = 0
    for (let i = 0; i < 12; i++) {
      const h = hs.step({ tokens }).hidden as Float32Array
      const sentByPred = hiddenFrame(pred, id, position, h, dim)
      tap(recorder(w, pred), id, 0, 2, dim, tokensFrame(owner, id, position, tokens), sentByPred)
      const out = ss.step({ hidden: h }).hidden as Float32Array
      if ((options.noise ?? 0) > 0) corruptHidden(out, dim, options.noise ?? 0, random)
      const sentBySubj = hiddenFrame(subj, id, position, out, dim)
      tap(recorder(w, subj), id, 2, 4, dim, sentByPred, sentBySubj)
      if (options.succRecords !== false) tap(recorder(w, succ), id, 4, 5, dim, options.alter?.(position, sentBySubj) ?? sentBySubj)
      position += tokens.length
      tokens = [60 + i]
    }
    hs.close()
    ss.close()
    return position
  }
  const middle = (id: string): AuditRequest => ({ sessionId: id, subject: subj.id, start: 2, end: 4, predecessor: pred.id, successor: succ.id, model: 'm' })

  it('an honest stage passes, a corrupting one fails', async () => {
    for (const noise of [0, 0.1]) {
      const w = world(verifier, 5)
      session(w, 's', { noise })
      const out = await w.audit(middle('s'), owner.id)
      expect(out.result?.checked.length).toBeGreaterThan(0)
      expect(out.result?.passed).toBe(noise === 0)
      expect(out.badSignatures).toBe(0)
      expect(out.equivocations).toEqual([])
    }
  })

  it('a successor that alters the subject\'s frames cannot frame it: bad signatures are ignored, the subject\'s own record is used', async () => {
    const w = world(verifier, 5)
    const dim = stage.config.dim
    // keeps the subject's signature on other bytes; or signs the other bytes itself
    session(w, 's', { alter: (p, f) => ({ ...f, hidden: bytes(new Float32Array(f.rows * dim).fill(p)) }) })
    const out = await w.audit(middle('s'), owner.id)
    expect(out.badSignatures).toBeGreaterThanOrEqual(12)
    expect(out.result?.passed).toBe(true)
    const w2 = world(verifier, 5)
    session(w2, 's', { alter: (p, f) => hiddenFrame(succ, 's', p, new Float32Array(f.rows * dim).fill(p), dim) })
    expect((await w2.audit(middle('s'), owner.id)).result?.passed).toBe(true)
  })

  it('the subject\'s own signed record binds it when its successor has none; two different signed frames are equivocation', async () => {
    const w = world(verifier, 5)
    session(w, 's', { noise: 0.1, succRecords: false })
    const out = await w.audit(middle('s'), owner.id)
    expect(out.result?.passed).toBe(false) // from its own SENT frames
    // the subject records one thing and sends (signed) another
    const w2 = world(verifier, 5)
    const dim = stage.config.dim
    session(w2, 's', { alter: (p, f) => p === 5 ? hiddenFrame(subj, 's', p, new Float32Array(f.rows * dim).fill(0.25), dim) : f })
    const out2 = await w2.audit(middle('s'), owner.id)
    expect(out2.equivocations).toHaveLength(1)
    expect(out2.equivocations[0]).toMatchObject({ signer: subj.id, kind: 'step', session: 's', position: 5 })
    expect(checkEquivocation(out2.equivocations[0])).toBe(true)
  })

  it('with batch signatures (Merkle proofs in the signature fields): honest passes, corrupting fails, a forged proof is no evidence, equivocation is proven', async () => {
    const plain = [pred, subj, succ, owner]
    ;[pred, subj, succ, owner] = plain.map(batching)
    try {
      for (const noise of [0, 0.1]) {
        const w = world(verifier, 5)
        session(w, 'b', { noise })
        const out = await w.audit(middle('b'), owner.id)
        expect(out.result?.checked.length).toBeGreaterThan(0)
        expect(out.result?.passed).toBe(noise === 0)
        expect(out.badSignatures).toBe(0)
      }
      // a successor that breaks the subject's proof (one path byte): bad signatures, the subject's own record is used
      const w = world(verifier, 5)
      session(w, 'b', { alter: (_, f) => { const signature = Uint8Array.from(f.signature); signature[64 + 8 + 3] ^= 1; return { ...f, signature } } })
      const out = await w.audit(middle('b'), owner.id)
      expect(out.badSignatures).toBeGreaterThanOrEqual(12)
      expect(out.result?.passed).toBe(true)
      // the subject signs (in another batch) other bytes than it recorded: equivocation, provable with the proofs
      const w2 = world(verifier, 5)
      const dim = stage.config.dim
      session(w2, 'b', { alter: (p, f) => p === 5 ? hiddenFrame(subj, 'b', p, new Float32Array(f.rows * dim).fill(0.25), dim) : f })
      const out2 = await w2.audit(middle('b'), owner.id)
      expect(out2.equivocations).toHaveLength(1)
      const e = out2.equivocations[0]
      expect(e).toMatchObject({ signer: subj.id, kind: 'step', session: 'b', position: 5 })
      expect(e.signatures.every((x) => Buffer.from(x, 'base64').length === 64 + 8 + 3 * 32)).toBe(true)
      expect(checkEquivocation(e)).toBe(true)
      expect(checkEquivocation(parseRecord(`q/${e.signer}/step.5.b`, { t: 'equivocation', seq: 0, ...e }) as typeof e)).toBe(true)
    } finally {
      ;[pred, subj, succ, owner] = plain
    }
  })

  it('the owner cannot frame a first stage with tokens nobody signed', async () => {
    const first = await load(0, 2)
    const wf = world(first, 5)
    // head (pred) is now the subject: a first stage; its inputs are the owner's prompt and the last stage's tokens
    const dim = head.config.dim
    const last = succ
    const hs = head.openSession({ maxLength: 64 })
    const all = [1, 20, 30, 40, 50, ...Array.from({ length: 11 }, (_, i) => 60 + i)]
    let position = 0
    for (const T of [5, ...Array.from({ length: 11 }, () => 1)]) {
      const input = position === 0 ? tokensFrame(owner, 'f', 0, all.slice(0, 5)) : sampledFrame(last, 'f', position, all[position])
      const h = hs.step({ tokens: all.slice(position, position + T) }).hidden as Float32Array
      const sent = hiddenFrame(pred, 'f', position, h, dim)
      tap(recorder(wf, pred), 'f', 0, 2, dim, input, sent)
      tap(recorder(wf, subj), 'f', 2, 4, dim, sent)
      position += T
    }
    hs.close()
    const req = (tokens: number[], promptSignature: Uint8Array<ArrayBuffer>, tokenSignatures: Array<Uint8Array<ArrayBuffer>>): AuditRequest => ({ sessionId: 'f', subject: pred.id, start: 0, end: 2, predecessor: '', successor: subj.id, model: 'm', tokens, promptLength: 5, greedy: false, promptSignature, tokenSignatures, last: last.id })
    const sigs = all.slice(5).map((t, i) => last.sign(tokenMessage('f', 5 + i - 1, t)))
    const promptSig = owner.sign(stepMessage('f', 0, { tokens: all.slice(0, 5), dtype: HiddenCodec.F32, shape: [] }))
    const honest = await wf.audit(req(all, promptSig, sigs), owner.id)
    expect(honest.result?.passed).toBe(true)
    // other tokens, signed by nobody that counts: the first stage's own record (signed by the owner and the last stage) is used
    const lies = all.map((t, i) => i >= 5 ? (t + 7) % 512 : t)
    const framed = await wf.audit(req(lies, promptSig, sigs), owner.id)
    expect(framed.result?.passed).toBe(true)
    // the owner signs a different prompt than it sent: equivocation by the owner; the stage is checked on what it received
    const otherPrompt = [1, 300, 301, 302, 303]
    const lying = await wf.audit(req([...otherPrompt, ...all.slice(5)], owner.sign(stepMessage('f', 0, { tokens: otherPrompt, dtype: HiddenCodec.F32, shape: [] })), sigs), owner.id)
    expect(lying.equivocations.map((e) => e.signer)).toEqual([owner.id])
    expect(lying.result?.passed).toBe(true) // the stage is checked on what it received
  })
})

describe('a greedy last stage on real shards (signed tokens)', () => {
  it('its signed tokens pass when they are the argmax; tokens it signed otherwise fail; tokens it did not sign are no evidence', async () => {
    const head = await load(0, 4)
    const n = head.config.nLayers
    const stage = await load(4, n)
    const verifier = await load(4, n)
    const [pred, subj, owner] = await Promise.all([peer(21), peer(22), peer(23)])
    const dim = head.config.dim
    const prompt = [1, 20, 30, 40, 50]
    const w = world(verifier, n)
    const hs = head.openSession({ maxLength: 64 })
    const ls = stage.openSession({ maxLength: 64 })
    const seq = [...prompt]
    let input = prompt
    let position = 0
    for (let i = 0; i < 16; i++) {
      const h = hs.step({ tokens: input }).hidden as Float32Array
      const sent = hiddenFrame(pred, 's', position, h, dim)
      tap(recorder(w, pred), 's', 0, 4, dim, tokensFrame(owner, 's', position, input), sent)
      const logits = ls.step({ hidden: h }).logits as Float32Array
      const V = stage.config.vocabSize
      const row = logits.subarray(logits.length - V)
      let best = 0
      for (let j = 1; j < V; j++) if (row[j] > row[best]) best = j
      position += input.length
      seq.push(best)
      input = [best]
    }
    hs.close()
    ls.close()
    const req = (tokens: number[], signer: Peer): AuditRequest => ({ sessionId: 's', subject: subj.id, start: 4, end: n, predecessor: pred.id, successor: '', model: 'm', tokens, promptLength: prompt.length, greedy: true, tokenSignatures: tokens.slice(prompt.length).map((t, i) => signer.sign(tokenMessage('s', prompt.length + i - 1, t))), last: subj.id })
    const ok = await w.audit(req(seq, subj), owner.id)
    expect(ok.result?.checked.length).toBe(16)
    expect(ok.result?.passed).toBe(true)
    const random = seededRandom(testSeed())
    const wrong = seq.map((t, i) => i >= prompt.length && (i - prompt.length) % 3 === 1 ? (t + 1 + Math.floor(random() * 100)) % verifier.config.vocabSize : t)
    const bad = await w.audit(req(wrong, subj), owner.id)
    expect(bad.result?.passed).toBe(false)
    expect(bad.result?.mismatches.length).toBeGreaterThanOrEqual(5)
    // the owner's own say-so (tokens signed by the owner, not the stage): nothing to check
    const framed = await w.audit(req(wrong, owner), owner.id)
    expect(framed.result).toBeUndefined()
    expect(framed.badSignatures).toBe(16)
  })
})

describe('sampled audits of plain requests', () => {
  it('auditSampled picks about `rate` of the sessions, the same ones every time', () => {
    const ids = Array.from({ length: 4000 }, (_, i) => `session-${testSeed()}-${i}`)
    const picked = ids.filter((id) => auditSampled(id, 0.1))
    expect(picked.length / ids.length).toBeGreaterThan(0.08)
    expect(picked.length / ids.length).toBeLessThan(0.12)
    expect(ids.filter((id) => auditSampled(id, 0.1))).toEqual(picked)
    expect(ids.some((id) => auditSampled(id, 0))).toBe(false)
    expect(ids.every((id) => auditSampled(id, 1))).toBe(true)
  })
})
