// Signed inference frames (issue 7): the signer over a libp2p Ed25519 key gives libp2p's exact
// signature bytes; every tampered field fails verification; a 3-stage ring of in-process libp2p
// nodes signs every step frame it sends (the client its prompt), every token and the done token's
// receipt, and the StageTap sees each frame with its signature and signer; a stage that receives a
// frame its sender did not sign ends the session MALFORMED naming that sender.
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
import { checkEquivocation, peerPublicKey, signedMessage, tokensHash } from '../../consensus/signed-frames.ts'
import { receiptEntry } from '../../client/consensus.ts'
import { frameSigner, receiptMessage, receiptSampling, stepContentHash, stepMessage, tokenMessage, verifyPeer, verifyStep, verifyToken } from '../../protocols/inference/frame-signature.ts'
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
