// Signed inference frames (issue 7): the signer over a libp2p Ed25519 key gives libp2p's exact
// signature bytes; every tampered field fails verification; a 3-stage ring of in-process libp2p
// nodes signs every step frame it sends (the client its prompt), every token and the done token's
// receipt, and the StageTap sees each frame with its signature and signer; a stage that receives a
// frame its sender did not sign ends the session MALFORMED naming that sender.
// Batch signatures: a stage signs the frames of one scheduler pass once (a Merkle root), each frame
// carrying its proof in its signature field; a forged path, another batch's leaf, a wrong index or
// an oversized path fail; equivocation proofs hold with batch signatures; a receiver verifies one
// root per batch (counted) and its cache stays bounded; many sessions through a 2-stage ring.
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import type { Stream } from '@libp2p/interface'
import { generateKeyPair, generateKeyPairFromSeed } from '@libp2p/crypto/keys'
import { defaultLogger } from '@libp2p/logger'
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id'
import { tcp } from '@libp2p/tcp'
import { pbStream, streamPair } from '@libp2p/utils'
import { createLibp2p, type Libp2p } from 'libp2p'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { openLlama2c } from '../../engine/formats/llama2c.ts'
import type { ModelSource, Shard } from '../../engine/index.ts'
import { loadShard } from '../../engine/shard.ts'
import { BATCH_MAX_DEPTH, batchRootMessage, batchSignature, batchTree, checkEquivocation, peerPublicKey, signedMessage, tokensHash, VerifiedRoots } from '../../consensus/signed-frames.ts'
import { parseRecord, recordData } from '../../consensus/records.ts'
import { receiptEntry } from '../../client/consensus.ts'
import { BatchSigner, frameSigner, receiptMessage, receiptSampling, stepContentHash, stepMessage, tokenMessage, verifyPeer, verifyStep, verifyToken } from '../../protocols/inference/frame-signature.ts'
import { HiddenCodec } from '../../protocols/inference/inference.pb.js'
import { InferenceFrame, InferenceStageService, inferenceStageService, runInference, type ChainHop, type StageTap, type TapFrame } from '../../protocols/index.ts'
import { STORIES260K } from '../models.ts'

const SWARM = 'test'
type Node = Libp2p<{ inference: InferenceStageService }>
const nodes: Node[] = []
const shards: Shard[] = []
let source: ModelSource

async function node (): Promise<Node> {
  const n = await createLibp2p({ addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] }, transports: [tcp()], connectionEncrypters: [noise()], streamMuxers: [yamux()], services: { inference: inferenceStageService({ swarm: SWARM, maxKvBytes: 4 * 1024 * 1024 }) } })
  nodes.push(n)
  return n
}

beforeAll(async () => { source = await openLlama2c(STORIES260K) })
afterAll(async () => {
  for (const n of nodes) await n.stop()
  for (const s of shards) await s.close()
})

describe('frame signatures', () => {
  it('sign with a cached node:crypto key = libp2p\'s key.sign; every tampered field fails', async () => {
    const key = await generateKeyPairFromSeed('Ed25519', new Uint8Array(32).fill(3))
    const peer = peerIdFromPrivateKey(key).toString()
    const signer = frameSigner(key, peer)
    expect(signer).toBeDefined()
    expect(peerPublicKey(peer)).toEqual(key.publicKey.raw)
    const hidden = Uint8Array.from({ length: 2 * 64 * 4 }, (_, i) => i % 251)
    const content = { hidden, dtype: HiddenCodec.F32, shape: [2, 64] }
    const message = stepMessage('s1', 5, content)
    const signature = signer?.sign(message) ?? new Uint8Array(0)
    expect(Buffer.from(signature).equals(Buffer.from(await key.sign(message)))).toBe(true)
    expect(verifyStep(peer, 's1', 5, content, signature)).toBe(true)
    const other = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
    const flipped = Uint8Array.from(hidden); flipped[7] ^= 1
    for (const [what, ok] of [
      ['another session', verifyStep(peer, 's2', 5, content, signature)],
      ['another position', verifyStep(peer, 's1', 6, content, signature)],
      ['another codec', verifyStep(peer, 's1', 5, { ...content, dtype: HiddenCodec.F16 }, signature)],
      ['another shape', verifyStep(peer, 's1', 5, { ...content, shape: [1, 128] }, signature)],
      ['one bit of payload', verifyStep(peer, 's1', 5, { ...content, hidden: flipped }, signature)],
      ['another signer', verifyStep(other, 's1', 5, content, signature)],
      ['not a peer id', verifyStep('peer', 's1', 5, content, signature)],
      ['a short signature', verifyStep(peer, 's1', 5, content, signature.subarray(1))],
      ['no signature', verifyStep(peer, 's1', 5, content, new Uint8Array(0))]
    ] as Array<[string, boolean]>) expect(ok, what).toBe(false)
    // token steps hash their ids, not bytes: [1, 2] is not [2, 1]
    expect(Buffer.from(stepContentHash({ tokens: [1, 2], dtype: HiddenCodec.F32, shape: [] })).equals(Buffer.from(stepContentHash({ tokens: [2, 1], dtype: HiddenCodec.F32, shape: [] })))).toBe(false)
    const t = signer?.sign(tokenMessage('s1', 9, 42))
    expect(verifyToken(peer, 's1', 9, 42, t)).toBe(true)
    expect(verifyToken(peer, 's1', 9, 43, t)).toBe(false)
    expect(verifyToken(peer, 's1', 10, 42, t)).toBe(false)
    // two different tokens signed at one position: a proof anyone can check
    const u = signer?.sign(tokenMessage('s1', 9, 43)) ?? new Uint8Array(0)
    const proof = { signer: peer, kind: 'token' as const, session: 's1', position: 9, contents: [Buffer.from(tokensHash([42])).toString('hex'), Buffer.from(tokensHash([43])).toString('hex')] as [string, string], signatures: [Buffer.from(t ?? []).toString('base64'), Buffer.from(u).toString('base64')] as [string, string] }
    expect(checkEquivocation(proof)).toBe(true)
    expect(checkEquivocation({ ...proof, contents: [proof.contents[0], proof.contents[0]] })).toBe(false)
    expect(checkEquivocation({ ...proof, signer: other })).toBe(false)
  })
})

describe('batch signatures', () => {
  const messages = (n: number, session = 'b1'): Uint8Array[] => Array.from({ length: n }, (_, i) => tokenMessage(session, i, 100 + i))
  const signBatch = (sign: (m: Uint8Array) => Uint8Array, ms: Uint8Array[]): Uint8Array[] => {
    const { root, paths } = batchTree(ms)
    const sig = sign(batchRootMessage(ms.length, root))
    return ms.map((_, i) => batchSignature(sig, i, ms.length, paths[i]))
  }

  it('every leaf verifies alone; a forged path, another batch\'s leaf, a wrong index, an oversized path fail', async () => {
    const key = await generateKeyPairFromSeed('Ed25519', new Uint8Array(32).fill(21))
    const peer = peerIdFromPrivateKey(key).toString()
    const signer = frameSigner(key, peer)
    if (signer === undefined) throw new Error('no signer')
    for (const n of [2, 3, 5, 8, 32, 33]) {
      const ms = messages(n)
      const sigs = signBatch(signer.sign, ms)
      sigs.forEach((sig, i) => {
        expect(verifyToken(peer, 'b1', i, 100 + i, sig), `leaf ${i} of ${n}`).toBe(true)
        expect(sig.length).toBe(64 + 8 + 32 * Math.ceil(Math.log2(n)))
      })
      // a leaf's proof does not cover another leaf's message (nor the message under another position)
      expect(verifyToken(peer, 'b1', 0, 101, sigs[0])).toBe(false)
      expect(verifyToken(peer, 'b1', 1, 100, sigs[0])).toBe(false)
    }
    const ms = messages(5)
    const sigs = signBatch(signer.sign, ms)
    const ok = (sig: Uint8Array, i = 2): boolean => verifyToken(peer, 'b1', i, 100 + i, sig)
    expect(ok(sigs[2])).toBe(true)
    const edit = (f: (b: Uint8Array, v: DataView) => void): Uint8Array => { const b = Uint8Array.from(sigs[2]); f(b, new DataView(b.buffer)); return b }
    // a forged path: any bit of any sibling hash
    for (let d = 0; d < 3; d++) expect(ok(edit((b) => { b[72 + 32 * d + 5] ^= 1 })), `path hash ${d}`).toBe(false)
    // a wrong index (another leaf's place, past the leaves, past the padded tree)
    for (const index of [0, 1, 3, 4, 5, 7, 8, 0xffffffff]) expect(ok(edit((_, v) => { v.setUint32(64, index) })), `index ${index}`).toBe(false)
    // another leaf count (the root message binds it), too few for the path, one
    for (const leaves of [6, 8, 4, 1, 0]) expect(ok(edit((_, v) => { v.setUint32(68, leaves) })), `leaves ${leaves}`).toBe(false)
    // the signature itself
    expect(ok(edit((b) => { b[10] ^= 1 }))).toBe(false)
    // a leaf of another batch, with its own valid proof, for a message of this batch
    const other = signBatch(signer.sign, messages(5, 'b2'))
    expect(verifyToken(peer, 'b2', 2, 102, other[2])).toBe(true)
    expect(ok(other[2])).toBe(false)
    // truncated / padded paths, and paths past the bound (≤ 16 hashes, ≤ 2^16 leaves)
    expect(ok(sigs[2].subarray(0, sigs[2].length - 32))).toBe(false)
    expect(ok(Uint8Array.from([...sigs[2], ...new Uint8Array(32)]))).toBe(false)
    expect(ok(sigs[2].subarray(0, sigs[2].length - 1))).toBe(false)
    const big = new Uint8Array(64 + 8 + 32 * (BATCH_MAX_DEPTH + 1))
    new DataView(big.buffer).setUint32(68, 2 ** (BATCH_MAX_DEPTH + 1))
    expect(ok(big)).toBe(false)
    // a root signature is no frame signature (the batch domain) and a frame signature no root one
    const { root } = batchTree(ms)
    expect(verifyPeer(peer, ms[2], signer.sign(batchRootMessage(5, root)))).toBe(false)
    // a batch of one is the plain signature: nothing else changes for a lone frame
    expect(Buffer.from(batchSignature(signer.sign(ms[0]), 0, 1, [])).equals(Buffer.from(signer.sign(ms[0])))).toBe(true)
    // equivocation proofs hold with batch signatures: two leaves of two batches at one (token, session, position)
    const x = signBatch(signer.sign, [tokenMessage('b1', 2, 7), tokenMessage('b1', 3, 8)])[0]
    const proof = { signer: peer, kind: 'token' as const, session: 'b1', position: 2, contents: [Buffer.from(tokensHash([102])).toString('hex'), Buffer.from(tokensHash([7])).toString('hex')] as [string, string], signatures: [Buffer.from(sigs[2]).toString('base64'), Buffer.from(x).toString('base64')] as [string, string] }
    const sorted = proof.contents[0] < proof.contents[1] ? proof : { ...proof, contents: [proof.contents[1], proof.contents[0]] as [string, string], signatures: [proof.signatures[1], proof.signatures[0]] as [string, string] }
    expect(checkEquivocation(sorted)).toBe(true)
    expect(checkEquivocation({ ...sorted, signatures: [sorted.signatures[0], Buffer.from(edit((b) => { b[80] ^= 1 })).toString('base64')] })).toBe(false)
    // and a ledger parses such a record (its signature fields carry the proofs)
    const record = { t: 'equivocation' as const, seq: 1, ...sorted }
    const id = `q/${peer}/token.2.b1`
    expect(parseRecord(id, JSON.parse(JSON.stringify(recordData(record))))).toMatchObject({ signer: peer, signatures: sorted.signatures })
  })

  it('a receiver verifies one root per batch; its cache stays bounded; failed roots are not kept', async () => {
    const key = await generateKeyPairFromSeed('Ed25519', new Uint8Array(32).fill(22))
    const peer = peerIdFromPrivateKey(key).toString()
    const signer = frameSigner(key, peer)
    if (signer === undefined) throw new Error('no signer')
    const roots = new VerifiedRoots(4)
    const ms = messages(32)
    const sigs = signBatch(signer.sign, ms)
    // all of a batch's frames at once (checks in flight are shared) and then again
    expect((await Promise.all(ms.map(async (m, i) => await roots.verify(peer, m, sigs[i])))).every(Boolean)).toBe(true)
    expect(await roots.verify(peer, ms[7], sigs[7])).toBe(true)
    expect(roots.verifications).toBe(1)
    expect(roots.hits).toBe(32)
    // a cached root does not vouch for a message outside its tree, nor for another signer
    expect(await roots.verify(peer, tokenMessage('b1', 0, 999), sigs[0])).toBe(false)
    const other = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
    expect(await roots.verify(other, ms[0], sigs[0])).toBe(false)
    // a forged root signature is checked, fails, and is not kept (the next try checks again)
    const forged = sigs.map((s) => { const b = Uint8Array.from(s); b[0] ^= 1; return b })
    const before = roots.verifications
    expect(await roots.verify(peer, ms[1], forged[1])).toBe(false)
    expect(await roots.verify(peer, ms[1], forged[1])).toBe(false)
    expect(roots.verifications).toBe(before + 2)
    // a peer sending many batches (validly signed or not) never grows the cache past its bound
    for (let b = 0; b < 12; b++) {
      const mb = messages(3, `many${b}`)
      const sb = signBatch(signer.sign, mb)
      expect(await roots.verify(peer, mb[0], sb[0])).toBe(true)
      expect(roots.size).toBeLessThanOrEqual(4)
    }
    // a batch of one: plain signature, verified each time (nothing cached)
    const lone = tokenMessage('b1', 0, 5)
    const size = roots.size
    expect(await roots.verify(peer, lone, signer.sign(lone))).toBe(true)
    expect(roots.size).toBe(size)
  })

  it('BatchSigner: the frames asked for in one burst share one signature; a lone frame gets a plain one', async () => {
    const key = await generateKeyPairFromSeed('Ed25519', new Uint8Array(32).fill(23))
    const peer = peerIdFromPrivateKey(key).toString()
    const signer = frameSigner(key, peer)
    if (signer === undefined) throw new Error('no signer')
    const batch = new BatchSigner(signer)
    const ms = messages(20)
    const sigs = await Promise.all(ms.map(async (m) => await Promise.resolve().then(async () => await batch.sign(m))))
    expect(batch.signatures).toBe(1)
    expect(batch.frames).toBe(20)
    sigs.forEach((sig, i) => { expect(verifyToken(peer, 'b1', i, 100 + i, sig)).toBe(true) })
    const lone = await batch.sign(ms[3])
    expect(lone.length).toBe(64)
    expect(verifyToken(peer, 'b1', 3, 103, lone)).toBe(true)
    expect(batch.signatures).toBe(2)
  })
})

describe('signed frames on a ring of libp2p nodes', () => {
  it('every step frame, token and the receipt carry their sender\'s valid signature; the tap sees them', async () => {
    const bounds = [0, 2, 4, 5]
    const stages: Node[] = []
    const chain: ChainHop[] = []
    const tapped: Array<{ stage: string, session: string, dim: number, input: TapFrame, output?: TapFrame }> = []
    for (let i = 0; i + 1 < bounds.length; i++) {
      const n = await node()
      const shard = await loadShard(source, { start: bounds[i], end: bounds[i + 1] })
      shards.push(shard)
      const stage = n.peerId.toString()
      n.services.inference.serve({ shard, model: 'stories260K', tap: (step: Parameters<StageTap>[0]) => { tapped.push({ stage, session: step.sessionId, dim: step.dim, input: step.input, ...(step.output !== undefined ? { output: step.output } : {}) }) } } as never)
      stages.push(n)
      chain.push({ peer: n.peerId, start: bounds[i], end: bounds[i + 1] })
    }
    const clientKey = await generateKeyPair('Ed25519')
    const client = await createLibp2p({ privateKey: clientKey, transports: [tcp()], connectionEncrypters: [noise()], streamMuxers: [yamux()] })
    nodes.push(client as unknown as Node)
    for (const s of stages) await client.dial(s.getMultiaddrs()[0])
    for (let i = 0; i < stages.length; i++) for (let j = i + 1; j < stages.length; j++) await stages[i].dial(stages[j].getMultiaddrs()[0])
    const self = client.peerId.toString()
    const open = async (peer: ChainHop['peer'], protocol: string, o: { signal?: AbortSignal }): Promise<Stream> => await client.dialProtocol(typeof peer === 'string' ? peerIdFromString(peer) : peer, protocol, o)
    const prompt = [1, 403, 407, 261]
    const tokens: Array<{ id: number, position: number, signature: Uint8Array }> = []
    let done: { receipt: Uint8Array, first: number, sessionId: string } | undefined
    for await (const ev of runInference(open, stages[0].services.inference.protocol, { chain, prompt, maxLength: 24, model: 'stories260K', signer: frameSigner(clientKey, self) })) {
      if (ev.type === 'token') tokens.push(ev)
      if (ev.type === 'done') done = ev
    }
    const last = stages[2].peerId.toString()
    expect(tokens.length).toBeGreaterThan(5)
    expect(done).toBeDefined()
    const session = done?.sessionId ?? ''
    for (const t of tokens) expect(verifyToken(last, session, t.position, t.id, t.signature)).toBe(true)
    // the receipt binds the tokens and the sampling they were drawn with (here the defaults: greedy, seed 1)
    const sampling = receiptSampling({ temperature: 0, topP: 1, topK: 0, seed: 1 })
    expect(verifyPeer(last, receiptMessage(session, done?.first ?? 0, tokens.map((t) => t.id), sampling), done?.receipt)).toBe(true)
    expect(verifyPeer(last, receiptMessage(session, done?.first ?? 0, tokens.map((t) => t.id).reverse(), sampling), done?.receipt)).toBe(false)
    expect(verifyPeer(last, receiptMessage(session, done?.first ?? 0, tokens.map((t) => t.id), { ...sampling, seed: 2 }), done?.receipt)).toBe(false)
    expect(verifyPeer(last, receiptMessage(session, done?.first ?? 0, tokens.map((t) => t.id), { ...sampling, temperature: 0.5 }), done?.receipt)).toBe(false)
    // as a consensus round records it (client/consensus.ts), the ledger's check holds: the answer is its last stage's
    const entry = receiptEntry('answer', tokens.map((t) => t.id), done === undefined ? undefined : { session: done.sessionId, first: done.first, signature: done.receipt }, { temperature: 0, topP: 1, topK: 0, seed: 1 }) ?? []
    expect(entry.slice(0, 3)).toEqual(['answer', session, String(done?.first)])
    expect(verifyPeer(last, signedMessage('receipt', entry[1], Number(entry[2]), Buffer.from(entry[3], 'hex')), Buffer.from(entry[4], 'base64'))).toBe(true)
    expect(verifyPeer(stages[1].peerId.toString(), signedMessage('receipt', entry[1], Number(entry[2]), Buffer.from(entry[3], 'hex')), Buffer.from(entry[4], 'base64'))).toBe(false)
    // the tap: what each stage received and sent, signed by whoever sent it
    const ids = stages.map((s) => s.peerId.toString())
    const check = (f: TapFrame, dim: number): boolean => f.sampled === true
      ? verifyToken(f.signer, session, f.position - 1, f.tokens?.[0] ?? -1, f.signature)
      : f.tokens !== undefined
        ? verifyStep(f.signer, session, f.position, { tokens: f.tokens, dtype: HiddenCodec.F32, shape: [] }, f.signature)
        : verifyStep(f.signer, session, f.position, { hidden: f.hidden, dtype: [HiddenCodec.F32, HiddenCodec.F16, HiddenCodec.INT8][f.codec], shape: [f.rows, dim] }, f.signature)
    const mine = tapped.filter((x) => x.session === session)
    expect(mine.length).toBe(3 * (tokens.length))
    for (const x of mine) {
      const i = ids.indexOf(x.stage)
      const from = i === 0 ? (x.input.sampled === true ? last : self) : ids[i - 1]
      expect(x.input.signer).toBe(from)
      expect(check(x.input, x.dim)).toBe(true)
      if (x.output !== undefined) {
        expect(x.output.signer).toBe(x.stage)
        expect(check(x.output, x.dim)).toBe(true)
      }
    }
    expect(stages.every((s) => s.services.inference.badSignatures === 0)).toBe(true)
  })

  it('many sessions through a 2-stage ring: frames signed a batch at a time, every frame verifies, one verification per batch at the receiver', async () => {
    const stages: Node[] = []
    const chain: ChainHop[] = []
    const tapped: Array<{ stage: string, session: string, dim: number, input: TapFrame, output?: TapFrame }> = []
    for (const [start, end] of [[0, 3], [3, 5]]) {
      const n = await node()
      const shard = await loadShard(source, { start, end })
      shards.push(shard)
      const stage = n.peerId.toString()
      n.services.inference.serve({ shard, model: 'stories260K', tap: (step: Parameters<StageTap>[0]) => { tapped.push({ stage, session: step.sessionId, dim: step.dim, input: step.input, ...(step.output !== undefined ? { output: step.output } : {}) }) } } as never)
      stages.push(n)
      chain.push({ peer: n.peerId, start, end })
    }
    const clientKey = await generateKeyPair('Ed25519')
    const client = await createLibp2p({ privateKey: clientKey, transports: [tcp()], connectionEncrypters: [noise()], streamMuxers: [yamux()] })
    nodes.push(client as unknown as Node)
    for (const s of stages) await client.dial(s.getMultiaddrs()[0])
    await stages[0].dial(stages[1].getMultiaddrs()[0])
    const self = client.peerId.toString()
    const open = async (peer: ChainHop['peer'], protocol: string, o: { signal?: AbortSignal }): Promise<Stream> => await client.dialProtocol(typeof peer === 'string' ? peerIdFromString(peer) : peer, protocol, o)
    const SESSIONS = 16
    const runs = await Promise.all(Array.from({ length: SESSIONS }, async (_, k) => {
      const tokens: Array<{ id: number, position: number, signature: Uint8Array }> = []
      let session = ''
      for await (const ev of runInference(open, stages[0].services.inference.protocol, { chain, prompt: [1, 403 + k, 407, 261], maxLength: 20, model: 'stories260K', signer: frameSigner(clientKey, self) })) {
        if (ev.type === 'token') tokens.push(ev)
        if (ev.type === 'done') session = ev.sessionId
      }
      return { session, tokens }
    }))
    const [first, last] = stages.map((s) => s.peerId.toString())
    const [a, b] = stages.map((s) => s.services.inference.stats)
    const G = 20 - 4 + 1
    for (const r of runs) {
      expect(r.session).not.toBe('')
      expect(r.tokens.length).toBe(G) // from the logits at positions 3 … 19
      // every token the client got verifies alone, with the proof its signature field carries
      for (const t of r.tokens) expect(verifyToken(last, r.session, t.position, t.id, t.signature)).toBe(true)
    }
    // batching happened on both stages: far fewer signatures than frames
    expect(a.signedFrames).toBe(SESSIONS * G) // the prompt's output and G − 1 decode steps
    expect(a.signatures).toBeLessThan(a.signedFrames / 3)
    expect(b.signatures - SESSIONS).toBeLessThan((b.signedFrames) / 3) // (+ one receipt per session)
    expect(tapped.some((x) => (x.output?.signature.length ?? 0) > 64)).toBe(true)
    // every recorded frame verifies for anyone (path → root → signature), signed by whoever sent it
    const check = (f: TapFrame, session: string, dim: number): boolean => f.sampled === true
      ? verifyToken(f.signer, session, f.position - 1, f.tokens?.[0] ?? -1, f.signature)
      : f.tokens !== undefined
        ? verifyStep(f.signer, session, f.position, { tokens: f.tokens, dtype: HiddenCodec.F32, shape: [] }, f.signature)
        : verifyStep(f.signer, session, f.position, { hidden: f.hidden, dtype: [HiddenCodec.F32, HiddenCodec.F16, HiddenCodec.INT8][f.codec], shape: [f.rows, dim] }, f.signature)
    const sessions = new Set(runs.map((r) => r.session))
    const mine = tapped.filter((x) => sessions.has(x.session))
    expect(mine.length).toBe(2 * SESSIONS * G)
    for (const x of mine) {
      expect(x.input.signer).toBe(x.stage === first ? (x.input.sampled === true ? last : self) : first)
      expect(check(x.input, x.session, x.dim)).toBe(true)
      if (x.output !== undefined) expect(check(x.output, x.session, x.dim)).toBe(true)
    }
    // the receivers: one Ed25519 verification per batch they received, the batch's other frames from the cache
    // last stage: every step frame the first stage signed, in a.signatures batches
    expect(b.verifications).toBe(a.signatures)
    expect(b.verifications + b.verifiedFromCache).toBe(a.signedFrames)
    // first stage: the client's prompts (plain signatures) and the fed-back tokens (not the done ones: never run)
    expect(a.verifications + a.verifiedFromCache).toBe(SESSIONS + SESSIONS * (G - 1))
    expect(a.verifications).toBeLessThanOrEqual(SESSIONS + b.signatures - SESSIONS)
    expect(a.verifications).toBeLessThan(SESSIONS + SESSIONS * (G - 1) / 3)
    expect(stages.every((s) => s.services.inference.badSignatures === 0)).toBe(true)
  })

  it('a stage refuses a frame its sender did not sign: MALFORMED naming the sender', async () => {
    const prevKey = await generateKeyPairFromSeed('Ed25519', new Uint8Array(32).fill(9))
    const PREV = peerIdFromPrivateKey(prevKey).toString()
    const NEXT = peerIdFromPrivateKey(await generateKeyPairFromSeed('Ed25519', new Uint8Array(32).fill(10))).toString()
    const middle = await loadShard(source, { start: 1, end: 3 })
    shards.push(middle)
    const service = new InferenceStageService({
      peerId: peerIdFromPrivateKey(await generateKeyPairFromSeed('Ed25519', new Uint8Array(32).fill(11))),
      registrar: { handle: async () => {}, unhandle: async () => {} },
      connectionManager: {
        openStream: async () => {
          const [toNext, end] = await streamPair()
          void (async () => {
            const pb = pbStream(end)
            await pb.read(InferenceFrame)
            await pb.write({ result: { status: 'OK' as never, sessionId: 's1', detail: '', peer: '' } }, InferenceFrame)
            for (;;) await pb.read(InferenceFrame)
          })().catch(() => {})
          return toNext
        }
      },
      logger: defaultLogger()
    }, { swarm: SWARM })
    service.serve({ shard: middle })
    const run = async (sign: (m: Uint8Array) => Promise<Uint8Array>, refused: boolean): Promise<InferenceFrame[]> => {
      const [a, b] = await streamPair()
      void service.handle(b, PREV)
      const pb = pbStream(a)
      await pb.write({ open: { sessionId: 's1', model: '', start: 1, end: 3, maxLength: 16, codec: 'F32' as never, chain: [{ peer: NEXT, start: 3, end: 5 }], origin: NEXT, sampling: { temperature: 0, topP: 1, topK: 0, seed: 1, maxTokens: 0, skipDraws: 0 } } } as InferenceFrame, InferenceFrame)
      const out = [await pb.read(InferenceFrame)]
      const hidden = new Uint8Array(2 * 64 * 4)
      const content = { hidden, dtype: HiddenCodec.F32, shape: [2, 64] }
      await pb.write({ step: { sessionId: 's1', position: 0, tokens: [], hidden, dtype: 'F32' as never, shape: [2, 64], signature: await sign(stepMessage('s1', 0, content)) } } as InferenceFrame, InferenceFrame)
      // refused: the stage answers upstream; else it ran the step and passed it on (nothing comes back)
      const steps = service.stats.steps
      if (refused) out.push(await pb.read(InferenceFrame))
      else await expect.poll(() => service.stats.steps).toBe(steps + 1)
      a.abort(new Error('done'))
      return out
    }
    const forged = await run(async () => new Uint8Array(64).fill(1), true)
    expect(forged[0].result?.status).toBe('OK')
    expect(forged[1]?.result).toMatchObject({ status: 'MALFORMED', peer: PREV })
    expect(service.badSignatures).toBe(1)
    // the same frame signed by the previous stage runs
    await expect.poll(() => service.usage.sessions).toBe(0)
    const honest = await run(async (m) => await prevKey.sign(m), false)
    expect(honest[0].result?.status).toBe('OK')
    expect(service.badSignatures).toBe(1)
  })
})
