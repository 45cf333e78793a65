// The inference protocol between in-process libp2p nodes on loopback TCP: 1-, 2-, 3- and 5-stage
// rings of stories260K give exactly the single-process engine's greedy tokens; bad input on the
// wire (garbage, oversize, unknown session, wrong shape, steps out of order, wrong layers, a full
// stage) ends in a status, and the stage keeps serving afterwards.
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import type { Stream } from '@libp2p/interface'
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id'
import { generateKeyPairFromSeed } from '@libp2p/crypto/keys'
import { tcp } from '@libp2p/tcp'
import { defaultLogger } from '@libp2p/logger'
import { pbStream, streamPair } from '@libp2p/utils'
import { createLibp2p, type Libp2p } from 'libp2p'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { openLlama2c } from '../../engine/formats/llama2c.ts'
import { generate, sessionStepper } from '../../engine/generate.ts'
import type { ModelSource, Shard } from '../../engine/index.ts'
import { createSampler } from '../../engine/sampler.ts'
import { loadShard } from '../../engine/shard.ts'
import { Llama2cTokenizer } from '../../engine/tokenizer-llama2c.ts'
import { InferenceFrame, InferenceFailedError, InferenceStageService, inferenceProtocol, inferenceStageService, runInference, type ChainHop } from '../../protocols/index.ts'
import { asError, frameChannel, isReset } from '../../protocols/inference/wire.ts'
import { STORIES260K, TOK512 } from '../models.ts'
import { greedyTokens } from '../reference.ts'

const SWARM = 'test'
const STEPS = 64
type Node = Libp2p<{ inference: InferenceStageService }>

let source: ModelSource
let prompt: number[]
let expected: number[]
const shards: Shard[] = []
const nodes: Node[] = []

async function node (init: Parameters<typeof inferenceStageService>[0] = {}): Promise<Node> {
  const n = await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: { inference: inferenceStageService({ swarm: SWARM, maxKvBytes: 4 * 1024 * 1024, ...init }) }
  })
  nodes.push(n)
  return n
}

/** Nodes serving `bounds` ([0, a), [a, b), …), all connected to each other and to a client node. */
async function ring (bounds: number[], init: Parameters<typeof inferenceStageService>[0] = {}): Promise<{ client: Node, chain: ChainHop[], stages: Node[] }> {
  const stages: Node[] = []
  const chain: ChainHop[] = []
  for (let i = 0; i + 1 < bounds.length; i++) {
    const n = await node(init)
    const shard = await loadShard(source, { start: bounds[i], end: bounds[i + 1] })
    shards.push(shard)
    n.services.inference.serve({ shard, model: 'stories260K' })
    stages.push(n)
    chain.push({ peer: n.peerId, start: bounds[i], end: bounds[i + 1] })
  }
  const client = await node()
  const all = [client, ...stages]
  for (let i = 0; i < all.length; i++) for (let j = i + 1; j < all.length; j++) await all[i].dial(all[j].getMultiaddrs()[0])
  return { client, chain, stages }
}

async function tokensOver (client: Node, chain: ChainHop[], options: { codec?: 'f32' | 'f16' | 'int8', sampling?: { temperature: number, topP: number, seed: number } } = {}): Promise<number[]> {
  const out = [...prompt]
  const open = async (peer: ChainHop['peer'], protocol: string, o: { signal?: AbortSignal }): Promise<Stream> =>
    await client.dialProtocol(typeof peer === 'string' ? peerIdFromString(peer) : peer, protocol, o)
  for await (const ev of runInference(open, client.services.inference.protocol, { chain, prompt, maxLength: STEPS, model: 'stories260K', ...options })) {
    if (ev.type === 'token') out.push(ev.id)
  }
  return out
}

beforeAll(async () => {
  source = await openLlama2c(STORIES260K)
  const tokenizer = await Llama2cTokenizer.fromFile(TOK512, source.config.vocabSize)
  prompt = tokenizer.encode('Once upon a time', { bos: true })
  const whole = await loadShard(source)
  shards.push(whole)
  expected = await greedyTokens(whole, prompt, STEPS)
  expect(expected.length).toBeGreaterThan(prompt.length + 20) // a real generation, not an early BOS
})

afterAll(async () => {
  await Promise.all(nodes.splice(0).map(async (n) => await n.stop()))
  await Promise.all(shards.splice(0).map(async (s) => await s.close()))
})

describe('inference over a ring of stages (stories260K, greedy, 64 positions)', () => {
  it.each([
    ['1 stage', [0, 5]],
    ['2 stages', [0, 2, 5]],
    ['3 stages', [0, 1, 3, 5]],
    ['5 stages', [0, 1, 2, 3, 4, 5]]
  ])('%s gives the single-process tokens', async (_name, bounds) => {
    const { client, chain, stages } = await ring(bounds)
    expect(await tokensOver(client, chain)).toEqual(expected)
    // every stage let go of the session
    for (const s of stages) await expect.poll(() => s.services.inference.usage).toEqual({ sessions: 0, reservedBytes: 0, kvBytes: 0 })
  })

  it('seeded sampling over a ring equals the single-process engine with the same seed (seeds around 2^31 .. 2^32 too)', async () => {
    const { client, chain } = await ring([0, 2, 5])
    const whole = shards[0]
    const seen = new Set<string>()
    for (const seed of [7, 2 ** 31 - 1, 2 ** 31, 3_000_000_000, 2 ** 32 - 1, 2 ** 32, Number.MAX_SAFE_INTEGER]) {
      const sampling = { temperature: 0.9, topP: 0.9, seed }
      // what `mycelium run --seed` computes: the engine's generate with createSampler({ seed })
      const session = whole.openSession({ maxLength: STEPS })
      const reference = [prompt[0]]
      for await (const ev of generate(sessionStepper(session), { prompt, steps: STEPS, sampler: createSampler(sampling), bosId: source.config.bosId })) {
        if (ev.type === 'token') reference.push(ev.id)
      }
      session.close()
      expect(await tokensOver(client, chain, { sampling }), `seed ${seed}`).toEqual(reference)
      seen.add(reference.join(','))
    }
    expect(seen.size).toBeGreaterThan(4) // the seed matters: not one sequence for every seed
  })

  it('hidden states travel in f16 and int8 too (a lossy codec still runs the whole ring)', async () => {
    const { client, chain } = await ring([0, 3, 5])
    expect(await tokensOver(client, chain, { codec: 'f16' })).toHaveLength(expected.length)
    expect((await tokensOver(client, chain, { codec: 'int8' })).length).toBeGreaterThan(prompt.length)
  })

  it('a client that stops reading cancels the session on every stage, which keep serving', async () => {
    const { client, chain, stages } = await ring([0, 2, 4, 5])
    const open = async (peer: ChainHop['peer'], protocol: string, o: { signal?: AbortSignal }): Promise<Stream> =>
      await client.dialProtocol(typeof peer === 'string' ? peerIdFromString(peer) : peer, protocol, o)
    let seen = 0
    for await (const ev of runInference(open, inferenceProtocol(SWARM), { chain, prompt, maxLength: STEPS })) {
      if (ev.type === 'token' && ++seen === 5) break
    }
    for (const s of stages) await expect.poll(() => s.services.inference.usage.sessions).toBe(0)
    const aborted = new AbortController()
    const run = runInference(open, inferenceProtocol(SWARM), { chain, prompt, maxLength: STEPS, signal: aborted.signal })
    await expect((async () => { for await (const ev of run) if (ev.type === 'token') aborted.abort() })()).rejects.toMatchObject({ name: 'InferenceFailedError', status: 'CANCELLED' })
    for (const s of stages) await expect.poll(() => s.services.inference.usage.sessions).toBe(0)
    expect(await tokensOver(client, chain)).toEqual(expected)
  })

  it('32 concurrent sessions over one 3-stage ring all give the single-process tokens', async () => {
    const { client, chain, stages } = await ring([0, 1, 3, 5])
    const runs = await Promise.all(Array.from({ length: 32 }, async () => await tokensOver(client, chain)))
    for (const r of runs) expect(r).toEqual(expected)
    for (const s of stages) await expect.poll(() => s.services.inference.usage.sessions).toBe(0)
  })

  it('failover: a middle stage that crashes at token 20 is replaced; only its span replays the history (the others keep their KV); the tokens are unchanged', async () => {
    const { client, chain, stages } = await ring([0, 2, 4, 5])
    const spare = await node()
    const shard = await loadShard(source, { start: 2, end: 4 })
    shards.push(shard)
    spare.services.inference.serve({ shard, model: 'stories260K' })
    for (const n of [client, ...stages]) await spare.dial(n.getMultiaddrs()[0])
    const open = async (peer: ChainHop['peer'], protocol: string, o: { signal?: AbortSignal }): Promise<Stream> =>
      await client.dialProtocol(typeof peer === 'string' ? peerIdFromString(peer) : peer, protocol, o)
    const out = [...prompt]
    const retries: unknown[] = []
    const replace = async (hop: ChainHop): Promise<ChainHop | undefined> => (hop.start === 2 ? { peer: spare.peerId, start: 2, end: 4 } : undefined)
    for await (const ev of runInference(open, inferenceProtocol(SWARM), { chain, prompt, maxLength: STEPS, model: 'stories260K', failover: { replace } })) {
      if (ev.type === 'token') {
        out.push(ev.id)
        // a crash, not a graceful stop: its connections break under the sessions (as kill -9 would)
        if (ev.position === 20) { for (const c of stages[1].getConnections()) c.abort(new Error('crashed')); await stages[1].stop() }
      }
      if (ev.type === 'retry') retries.push(ev)
    }
    // the first stage's Result named the crashed stage: replaced without probing
    expect(retries).toMatchObject([{ type: 'retry', attempt: 1, status: 'DOWNSTREAM', replaced: [1], culprit: 'named' }])
    expect(out).toEqual(expected)
    // span-only replay: the healthy stages kept their KV (they skipped the history's rows they held);
    // only the spare ran the whole history
    for (const s of [stages[0], stages[2]]) expect(s.services.inference.stats).toMatchObject({ resumed: 1 })
    expect(stages[0].services.inference.stats.keptRows).toBeGreaterThanOrEqual(20)
    expect(stages[2].services.inference.stats.keptRows).toBeGreaterThanOrEqual(19)
    expect(spare.services.inference.stats).toMatchObject({ resumed: 0, keptRows: 0 })
    for (const s of [stages[0], stages[2], spare]) await expect.poll(() => s.services.inference.usage).toEqual({ sessions: 0, reservedBytes: 0, kvBytes: 0 })
  })

  it('failover: a stage two hops down fails; the Result names it through the chain and only it is replaced, with no probe', async () => {
    const { client, chain, stages } = await ring([0, 1, 2, 4, 5])
    const spare = await node()
    const shard = await loadShard(source, { start: 2, end: 4 })
    shards.push(shard)
    spare.services.inference.serve({ shard, model: 'stories260K' })
    for (const n of [client, ...stages]) await spare.dial(n.getMultiaddrs()[0])
    const opened: string[] = []
    const open = async (peer: ChainHop['peer'], protocol: string, o: { signal?: AbortSignal }): Promise<Stream> => {
      opened.push(peer.toString())
      return await client.dialProtocol(typeof peer === 'string' ? peerIdFromString(peer) : peer, protocol, o)
    }
    const out = [...prompt]
    const retries: unknown[] = []
    const replace = async (hop: ChainHop): Promise<ChainHop | undefined> => (hop.start === 2 ? { peer: spare.peerId, start: 2, end: 4 } : undefined)
    for await (const ev of runInference(open, inferenceProtocol(SWARM), { chain, prompt, maxLength: STEPS, model: 'stories260K', failover: { replace } })) {
      if (ev.type === 'token') {
        out.push(ev.id)
        if (ev.position === 20) { for (const c of stages[2].getConnections()) c.abort(new Error('crashed')); await stages[2].stop() }
      }
      if (ev.type === 'retry') retries.push(ev)
    }
    expect(retries).toMatchObject([{ type: 'retry', attempt: 1, replaced: [2], culprit: 'named' }])
    expect(out).toEqual(expected)
    // the three live stages kept their KV, before and after the replaced span
    for (const i of [0, 1, 3]) expect(stages[i].services.inference.stats.resumed, `stage ${i}`).toBe(1)
    expect(spare.services.inference.stats.resumed).toBe(0)
    // sessions open streams to the first stage only; a probe would have opened one to every hop
    expect(new Set(opened)).toEqual(new Set([stages[0].peerId.toString()]))
    expect(spare.services.inference.stats.opened).toBe(1)
  })

  it('failover: a first stage that crashes is found by the probe and replaced; the stages after it keep their KV; the tokens are unchanged', async () => {
    const { client, chain, stages } = await ring([0, 2, 4, 5])
    const spare = await node()
    const shard = await loadShard(source, { start: 0, end: 2 })
    shards.push(shard)
    spare.services.inference.serve({ shard, model: 'stories260K' })
    for (const n of [client, ...stages]) await spare.dial(n.getMultiaddrs()[0])
    const open = async (peer: ChainHop['peer'], protocol: string, o: { signal?: AbortSignal }): Promise<Stream> =>
      await client.dialProtocol(typeof peer === 'string' ? peerIdFromString(peer) : peer, protocol, o)
    const out = [...prompt]
    const retries: unknown[] = []
    const replace = async (hop: ChainHop): Promise<ChainHop | undefined> => (hop.start === 0 ? { peer: spare.peerId, start: 0, end: 2 } : undefined)
    for await (const ev of runInference(open, inferenceProtocol(SWARM), { chain, prompt, maxLength: STEPS, model: 'stories260K', failover: { replace, probeTimeoutMs: 10_000 } })) {
      if (ev.type === 'token') {
        out.push(ev.id)
        if (ev.position === 20) { for (const c of stages[0].getConnections()) c.abort(new Error('crashed')); await stages[0].stop() }
      }
      if (ev.type === 'retry') retries.push(ev)
    }
    expect(retries).toMatchObject([{ type: 'retry', attempt: 1, replaced: [0], culprit: 'probed' }])
    expect(out).toEqual(expected)
    for (const i of [1, 2]) expect(stages[i].services.inference.stats.resumed, `stage ${i}`).toBe(1)
    expect(spare.services.inference.stats.resumed).toBe(0)
    for (const s of [stages[1], stages[2], spare]) await expect.poll(() => s.services.inference.usage).toEqual({ sessions: 0, reservedBytes: 0, kvBytes: 0 })
  })

  it('failover: a middle stage that stalls (alive, answers nothing) is found by the probes; the first stage, told by the client, keeps its KV; tokens unchanged', async () => {
    const { client, chain, stages } = await ring([0, 2, 4, 5])
    const spare = await node()
    const shard = await loadShard(source, { start: 2, end: 4 })
    shards.push(shard)
    spare.services.inference.serve({ shard, model: 'stories260K' })
    for (const n of [client, ...stages]) await spare.dial(n.getMultiaddrs()[0])
    const open = async (peer: ChainHop['peer'], protocol: string, o: { signal?: AbortSignal }): Promise<Stream> =>
      await client.dialProtocol(typeof peer === 'string' ? peerIdFromString(peer) : peer, protocol, o)
    const out = [...prompt]
    const retries: unknown[] = []
    const replace = async (hop: ChainHop): Promise<ChainHop | undefined> => (hop.start === 2 ? { peer: spare.peerId, start: 2, end: 4 } : undefined)
    for await (const ev of runInference(open, inferenceProtocol(SWARM), { chain, prompt, maxLength: STEPS, model: 'stories260K', failover: { replace, probeTimeoutMs: 300 } })) {
      if (ev.type === 'token') {
        out.push(ev.id)
        if (ev.position === 20) {
          // the stage's engine hangs and it stops taking streams: connections up, nothing moves
          const service = stages[1].services.inference as unknown as { scheduler: { run: () => Promise<never> } }
          service.scheduler.run = async () => await new Promise(() => {})
          await stages[1].unhandle(inferenceProtocol(SWARM))
        }
      }
      if (ev.type === 'retry') retries.push(ev)
    }
    expect(retries).toMatchObject([{ type: 'retry', attempt: 1, status: 'STALLED', replaced: [1] }])
    expect(out).toEqual(expected)
    expect(stages[0].services.inference.stats.resumed).toBe(1)
    expect(spare.services.inference.stats.resumed).toBe(0)
  })

  it('a kept session nobody resumes is freed after the suspend deadline', async () => {
    const { client, chain, stages } = await ring([0, 2, 4, 5], { suspendTimeoutMs: 300 })
    const open = async (peer: ChainHop['peer'], protocol: string, o: { signal?: AbortSignal }): Promise<Stream> =>
      await client.dialProtocol(typeof peer === 'string' ? peerIdFromString(peer) : peer, protocol, o)
    const run = (async () => {
      for await (const ev of runInference(open, inferenceProtocol(SWARM), { chain, prompt, maxLength: STEPS, failover: { replace: async () => undefined } })) {
        if (ev.type === 'token' && ev.position === 20) { for (const c of stages[1].getConnections()) c.abort(new Error('crashed')); await stages[1].stop() }
      }
    })()
    await expect(run).rejects.toMatchObject({ name: 'InferenceFailedError', status: 'DOWNSTREAM' })
    // the first and last stages keep the failed session's KV for a resume that does not come …
    for (const s of [stages[0], stages[2]]) expect(s.services.inference.usage.sessions).toBe(1)
    // … and free it at the deadline
    for (const s of [stages[0], stages[2]]) await expect.poll(() => s.services.inference.usage, { timeout: 5000 }).toEqual({ sessions: 0, reservedBytes: 0, kvBytes: 0 })
  })

  it('switching the served shard mid-generation: the open session finishes on its shard, new ones see the switch', async () => {
    const { client, chain, stages } = await ring([0, 2, 5])
    const open = async (peer: ChainHop['peer'], protocol: string, o: { signal?: AbortSignal }): Promise<Stream> =>
      await client.dialProtocol(typeof peer === 'string' ? peerIdFromString(peer) : peer, protocol, o)
    const out = [...prompt]
    for await (const ev of runInference(open, inferenceProtocol(SWARM), { chain, prompt, maxLength: STEPS })) {
      if (ev.type === 'token') {
        out.push(ev.id)
        if (ev.position === 10) stages[1].services.inference.serve(undefined)
      }
    }
    expect(out).toEqual(expected)
    await expect(tokensOver(client, chain)).rejects.toMatchObject({ name: 'InferenceFailedError', status: 'DOWNSTREAM' })
  })

  it('failover with seeded sampling (temperature 0.9): the replacement continues the PRNG, tokens unchanged', async () => {
    const { client, chain, stages } = await ring([0, 2, 4, 5])
    const spare = await node()
    const shard = await loadShard(source, { start: 2, end: 4 })
    shards.push(shard)
    spare.services.inference.serve({ shard, model: 'stories260K' })
    for (const n of [client, ...stages]) await spare.dial(n.getMultiaddrs()[0])
    const open = async (peer: ChainHop['peer'], protocol: string, o: { signal?: AbortSignal }): Promise<Stream> =>
      await client.dialProtocol(typeof peer === 'string' ? peerIdFromString(peer) : peer, protocol, o)
    const sampling = { temperature: 0.9, topP: 0.9, seed: 42 }
    const run = async (stopAt?: number): Promise<number[]> => {
      const out: number[] = []
      const replace = async (hop: ChainHop): Promise<ChainHop | undefined> => (hop.start === 2 ? { peer: spare.peerId, start: 2, end: 4 } : undefined)
      for await (const ev of runInference(open, inferenceProtocol(SWARM), { chain, prompt, maxLength: STEPS, sampling, failover: { replace } })) {
        if (ev.type === 'token') {
          out.push(ev.id)
          if (ev.position === stopAt) { for (const c of stages[1].getConnections()) c.abort(new Error('crashed')); await stages[1].stop() }
        }
      }
      return out
    }
    const baseline = await run()
    expect(baseline.length).toBeGreaterThan(20)
    expect(await run(prompt.length + 9)).toEqual(baseline)
    // the last stage kept its KV and sampled on with a fresh PRNG advanced by the draws made
    for (const i of [0, 2]) expect(stages[i].services.inference.stats.resumed).toBe(1)
  })

  it('a stage that stops mid-generation ends the request with a status, and frees the others', async () => {
    const { client, chain, stages } = await ring([0, 2, 4, 5])
    const open = async (peer: ChainHop['peer'], protocol: string, o: { signal?: AbortSignal }): Promise<Stream> =>
      await client.dialProtocol(typeof peer === 'string' ? peerIdFromString(peer) : peer, protocol, o)
    const failure = (async () => {
      for await (const ev of runInference(open, inferenceProtocol(SWARM), { chain, prompt, maxLength: STEPS })) {
        if (ev.type === 'token' && ev.position === 10) await stages[1].stop()
      }
    })()
    const err = await failure.then(() => undefined, (e: unknown) => e)
    expect(err).toBeInstanceOf(InferenceFailedError)
    for (const s of [stages[0], stages[2]]) await expect.poll(() => s.services.inference.usage.sessions).toBe(0)
  })
})

/**
 * A stage service with fake components, driven over in-memory stream pairs. Its fake neighbours
 * have no keys: frame signatures are not checked unless `init.verifyFrames` says so.
 */
function bare (shard: Shard, init: ConstructorParameters<typeof InferenceStageService>[1] = {}): InferenceStageService {
  const service = new InferenceStageService({
    peerId: peerIdFromString('12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN'),
    registrar: { handle: async () => {}, unhandle: async () => {} },
    connectionManager: { openStream: async () => { throw new Error('no network in this test') } },
    logger: defaultLogger()
  }, { swarm: SWARM, verifyFrames: false, ...init })
  service.serve({ shard, model: 'stories260K' })
  return service
}

/**
 * Writes `input` (raw bytes or frames) to a fresh stream into `service` and reads frames back
 * until the stage closes or refuses; `hold` keeps our side open and stops after that many frames.
 */
async function exchange (service: InferenceStageService, input: Uint8Array | Array<Partial<InferenceFrame>>, hold?: number): Promise<InferenceFrame[]> {
  const [a, b] = await streamPair()
  void service.handle(b, 'client')
  const pb = pbStream(a)
  if (input instanceof Uint8Array) a.send(input)
  else for (const f of input) await pb.write(f as InferenceFrame, InferenceFrame)
  if (hold === undefined) await a.close()
  const out: InferenceFrame[] = []
  while (hold === undefined || out.length < hold) {
    let frame: InferenceFrame
    try {
      frame = await pb.read(InferenceFrame)
    } catch (err) {
      expect((err as Error).name).toBe('UnexpectedEOFError') // the stage closed its side
      break
    }
    out.push(frame)
    if (frame.result !== undefined && frame.result.status !== 'OK') break
  }
  return out
}

const open = (over: Partial<InferenceFrame['open'] & object> = {}): Partial<InferenceFrame> => ({
  open: { sessionId: over.sessionId ?? 's1', model: 'stories260K', start: 0, end: 5, maxLength: STEPS, codec: 'F32' as never, chain: [], origin: '', sampling: { temperature: 0, topP: 1, topK: 0, seed: 1, maxTokens: 0, skipDraws: 0 }, ...over }
})
const step = (over: Partial<InferenceFrame['step'] & object> = {}): Partial<InferenceFrame> => ({
  step: { sessionId: 's1', position: 0, tokens: prompt, hidden: new Uint8Array(0), dtype: 'F32' as never, shape: [], signature: new Uint8Array(0), ...over }
})
const status = (frames: InferenceFrame[]): string | undefined => frames.find((f) => f.result !== undefined && f.result.status !== 'OK')?.result?.status

describe('inference stage refusals (in-memory streams)', () => {
  let whole: Shard
  beforeAll(async () => { whole = await loadShard(source); shards.push(whole) })

  it('garbage, oversize, a step with no session and a stray attach each get their status', async () => {
    const service = bare(whole, { maxFrameBytes: 1024 })
    expect(status(await exchange(service, Uint8Array.from([3, 0xff, 0xff, 0xff])))).toBe('MALFORMED')
    expect(status(await exchange(service, Uint8Array.from([0x80, 0x80, 0x04])))).toBe('TOO_LARGE') // announces 64 KiB
    expect(status(await exchange(service, [step()]))).toBe('UNKNOWN_SESSION')
    expect(status(await exchange(service, [{ attach: { sessionId: 'nope' } }]))).toBe('UNKNOWN_SESSION')
    expect(status(await exchange(service, [{ close: 's1' }]))).toBe('MALFORMED')
  })

  it('open is checked against the shard, the model, the context and the memory budget', async () => {
    const service = bare(whole, { maxSessions: 1 })
    expect(status(await exchange(service, [open({ end: 4 })]))).toBe('WRONG_LAYERS')
    expect(status(await exchange(service, [open({ model: 'another' })]))).toBe('WRONG_MODEL')
    expect(status(await exchange(service, [open({ maxLength: 100_000 })]))).toBe('OUT_OF_RANGE')
    expect(status(await exchange(service, [open({ chain: [{ peer: 'x', start: 5, end: 6 }] })]))).toBe('MALFORMED')
    expect(status(await exchange(service, [open({ sessionId: '' })]))).toBe('MALFORMED')
    const held = await exchange(service, [open({ sessionId: 'held' })], 1)
    expect(held[0].result?.status).toBe('OK')
    expect(service.usage.sessions).toBe(1)
    expect(status(await exchange(service, [open({ sessionId: 'second' })]))).toBe('FULL')
    const tight = bare(whole, { maxKvBytes: 1000 })
    expect(status(await exchange(tight, [open()]))).toBe('FULL')
  })

  it('steps out of order, of the wrong shape or past the context end the session with a status', async () => {
    const service = bare(whole)
    expect(status(await exchange(service, [open(), step({ position: 3 })]))).toBe('OUT_OF_ORDER')
    expect(status(await exchange(service, [open(), step({ tokens: [], hidden: new Uint8Array(256), shape: [1, 64] })]))).toBe('WRONG_SHAPE')
    expect(status(await exchange(service, [open(), step({ tokens: [100_000] })]))).toBe('OUT_OF_RANGE')
    expect(status(await exchange(service, [open({ maxLength: 2 }), step()]))).toBe('OUT_OF_RANGE') // the prompt is longer than 2
    expect(status(await exchange(service, [open(), step({ sessionId: 'other' })]))).toBe('UNKNOWN_SESSION')
    expect(service.usage).toEqual({ sessions: 0, reservedBytes: 0, kvBytes: 0 })
  })

  /** A [1, 3) stage whose next hop (an in-memory stream) accepts the open and then only reads. */
  async function middleStage (init: ConstructorParameters<typeof InferenceStageService>[1] = {}): Promise<InferenceStageService> {
    const middle = await loadShard(source, { start: 1, end: 3 })
    shards.push(middle)
    const [toNext, nextEnd] = await streamPair()
    // the next hop: accepts the open, then reads whatever comes
    void (async () => {
      const pb = pbStream(nextEnd)
      await pb.read(InferenceFrame)
      await pb.write({ result: { status: 'OK' as never, sessionId: 's1', detail: '', peer: '' } }, InferenceFrame)
    })()
    const service = new InferenceStageService({
      peerId: peerIdFromString('12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN'),
      registrar: { handle: async () => {}, unhandle: async () => {} },
      connectionManager: { openStream: async () => toNext },
      logger: defaultLogger()
    }, { swarm: SWARM, verifyFrames: false, ...init })
    service.serve({ shard: middle })
    return service
  }
  const middleOpen = open({ start: 1, end: 3, chain: [{ peer: '12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN', start: 3, end: 5 }], origin: 'o' })

  it('a middle stage refuses hidden states of the wrong dtype, shape or length', async () => {
    const hidden = (T: number, bytes: number, dtype = 'F32'): Partial<InferenceFrame> => step({ tokens: [], hidden: new Uint8Array(bytes), shape: [T, 64], dtype: dtype as never })
    expect(status(await exchange(await middleStage(), [middleOpen, step({ tokens: [], hidden: new Uint8Array(4 * 64 * 2), shape: [2, 63] })]))).toBe('WRONG_SHAPE')
    expect(status(await exchange(await middleStage(), [middleOpen, hidden(2, 4 * 64 * 2 - 4)]))).toBe('WRONG_SHAPE')
    expect(status(await exchange(await middleStage(), [middleOpen, hidden(2, 2 * 64 * 2, 'F16')]))).toBe('WRONG_SHAPE') // the session's codec is f32
    expect(status(await exchange(await middleStage(), [middleOpen, step()]))).toBe('WRONG_SHAPE') // tokens to a middle stage
    const ok = await middleStage()
    expect(status(await exchange(ok, [middleOpen, hidden(2, 4 * 64 * 2), { ...hidden(1, 4 * 64), step: { ...hidden(1, 4 * 64).step!, position: 5 } }]))).toBe('OUT_OF_ORDER')
    expect(ok.usage.sessions).toBe(0)
  })

  it('a middle stage ends a session whose upstream goes quiet (idle deadline), and every session expires', async () => {
    expect(status(await exchange(await middleStage({ idleTimeoutMs: 50 }), [middleOpen], 2))).toBe('TIMEOUT')
    const first = bare(whole, { sessionTimeoutMs: 50 })
    expect(status(await exchange(first, [open()], 2))).toBe('TIMEOUT')
    expect(first.usage.sessions).toBe(0)
  })

  it('keeps serving: a clean generation after all the refusals gives the expected tokens', async () => {
    const service = bare(whole, { maxFrameBytes: 1024 })
    await exchange(service, Uint8Array.from([3, 0xff, 0xff, 0xff]))
    await exchange(service, [open(), step({ position: 9 })])
    const out = [...prompt]
    const opener = async (): Promise<Stream> => {
      const [a, b] = await streamPair()
      void service.handle(b, 'client')
      return a
    }
    for await (const ev of runInference(opener, inferenceProtocol(SWARM), { chain: [{ peer: 'x', start: 0, end: 5 }], prompt, maxLength: STEPS })) {
      if (ev.type === 'token') out.push(ev.id)
    }
    expect(out).toEqual(expected)
  })
})

describe('failures name the failed peer (Result.peer); liveness probes are quiet; write failures are Errors', () => {
  const NEXT = '12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN'
  const FURTHER = '12D3KooWFurtherDownTheChain'
  let middle: Shard
  let whole: Shard
  beforeAll(async () => {
    middle = await loadShard(source, { start: 1, end: 3 }); shards.push(middle)
    whole = await loadShard(source); shards.push(whole)
  })

  /** A [1, 3) stage whose next hop (in memory) accepts the open, reads the first step, then does `then`. */
  function withNext (then: (end: Stream, pb: ReturnType<typeof pbStream>) => Promise<void>): InferenceStageService {
    const service = new InferenceStageService({
      peerId: peerIdFromString(NEXT),
      registrar: { handle: async () => {}, unhandle: async () => {} },
      connectionManager: {
        openStream: async () => {
          const [toNext, end] = await streamPair()
          void (async () => {
            const pb = pbStream(end)
            await pb.read(InferenceFrame)
            await pb.write({ result: { status: 'OK' as never, sessionId: 's1', detail: '', peer: '' } }, InferenceFrame)
            await pb.read(InferenceFrame) // the forwarded hidden states
            await then(end, pb)
          })().catch((err: unknown) => { end.abort(asError(err)) })
          return toNext
        }
      },
      logger: defaultLogger()
    }, { swarm: SWARM, verifyFrames: false })
    service.serve({ shard: middle })
    return service
  }
  const middleOpen = open({ start: 1, end: 3, chain: [{ peer: NEXT, start: 3, end: 5 }], origin: 'o' })
  const hidden = step({ tokens: [], hidden: new Uint8Array(4 * 64), shape: [1, 64] })
  const result = (status: string, peer: string): Partial<InferenceFrame> => ({ result: { status: status as never, sessionId: 's1', detail: 'x', peer } })

  it.each<[string, (end: Stream, pb: ReturnType<typeof pbStream>) => Promise<void>, string, string]>([
    ['resets its stream', async (end) => { end.abort(new Error('the next hop died')) }, 'DOWNSTREAM', NEXT],
    ['closes its stream', async (end) => { await end.close() }, 'DOWNSTREAM', NEXT],
    ['answers INTERNAL', async (_end, pb) => { await pb.write(result('INTERNAL', ''), InferenceFrame) }, 'INTERNAL', NEXT],
    ['relays a failure further down', async (_end, pb) => { await pb.write(result('DOWNSTREAM', FURTHER), InferenceFrame) }, 'DOWNSTREAM', FURTHER],
    ['relays an unattributed DOWNSTREAM', async (_end, pb) => { await pb.write(result('DOWNSTREAM', ''), InferenceFrame) }, 'DOWNSTREAM', '']
  ])('a middle stage whose next hop %s answers %s naming %j', async (_what, then, want, peer) => {
    const service = withNext(then)
    const frames = await exchange(service, [middleOpen, hidden], 2)
    expect(frames[0].result?.status).toBe('OK')
    expect(frames[1].result).toMatchObject({ status: want, peer })
    await expect.poll(() => service.usage.sessions).toBe(0)
  })

  it('a last stage whose previous stage resets its stream tells the first stage, naming that stage, on the token stream', async () => {
    const last = await loadShard(source, { start: 3, end: 5 }); shards.push(last)
    const PREV = '12D3KooWPreviousStageOfTheRing'
    const onTokenStream: InferenceFrame[] = []
    let tokenStreamDone: () => void = () => {}
    const done = new Promise<void>((resolve) => { tokenStreamDone = resolve })
    const service = new InferenceStageService({
      peerId: peerIdFromString(NEXT),
      registrar: { handle: async () => {}, unhandle: async () => {} },
      connectionManager: {
        // the first stage (`origin`): accepts the attach, then records what comes on the token stream
        openStream: async () => {
          const [toFirst, end] = await streamPair()
          void (async () => {
            const pb = pbStream(end)
            await pb.read(InferenceFrame)
            await pb.write({ result: { status: 'OK' as never, sessionId: 's1', detail: '', peer: '' } }, InferenceFrame)
            for (;;) onTokenStream.push(await pb.read(InferenceFrame))
          })().catch(() => { tokenStreamDone() })
          return toFirst
        }
      },
      logger: defaultLogger()
    }, { swarm: SWARM, verifyFrames: false })
    service.serve({ shard: last })
    const [a, b] = await streamPair()
    void service.handle(b, PREV)
    const pb = pbStream(a)
    await pb.write(open({ start: 3, end: 5, origin: NEXT }) as InferenceFrame, InferenceFrame)
    expect((await pb.read(InferenceFrame)).result?.status).toBe('OK')
    await pb.write(hidden as InferenceFrame, InferenceFrame)
    await expect.poll(() => onTokenStream.length).toBe(1) // the sampled token went to the first stage
    a.abort(new Error('the previous stage died'))
    await done
    expect(onTokenStream[0].token).toBeDefined()
    expect(onTokenStream[1]?.result).toMatchObject({ status: 'DOWNSTREAM', peer: PREV })
    await expect.poll(() => service.usage.sessions).toBe(0)
  })

  it('a kept first-stage session is resumed only by the client that opened it', async () => {
    const first = await loadShard(source, { start: 0, end: 2 }); shards.push(first)
    // the next hop accepts every open (answering that it holds nothing) and, on the first one, dies after the prompt
    let opens = 0
    const service = new InferenceStageService({
      peerId: peerIdFromPrivateKey(await generateKeyPairFromSeed('Ed25519', new Uint8Array(32).fill(7))),
      registrar: { handle: async () => {}, unhandle: async () => {} },
      connectionManager: {
        openStream: async () => {
          const [toNext, end] = await streamPair()
          const n = opens++
          void (async () => {
            const pb = pbStream(end)
            const id = (await pb.read(InferenceFrame)).open?.sessionId ?? ''
            // as the last stage: attach the token stream to the first stage, then answer the open
            const [toFirst, atFirst] = await streamPair()
            void service.handle(atFirst, NEXT)
            const back = pbStream(toFirst)
            await back.write({ attach: { sessionId: id } } as InferenceFrame, InferenceFrame)
            await back.read(InferenceFrame)
            await pb.write({ result: { status: 'OK' as never, sessionId: id, detail: '', peer: '', position: 0 } }, InferenceFrame)
            await pb.read(InferenceFrame)
            if (n === 0) end.abort(new Error('the next hop died'))
          })().catch(() => {})
          return toNext
        }
      },
      logger: defaultLogger()
    }, { swarm: SWARM, verifyFrames: false })
    service.serve({ shard: first })
    const chain = [{ peer: NEXT, start: 2, end: 5 }]
    const failed = await exchange(service, [open({ sessionId: 'a', end: 2, chain, resumable: true }), step({ sessionId: 'a' })], 2)
    expect(failed[1].result).toMatchObject({ status: 'DOWNSTREAM', peer: NEXT })
    expect(service.usage.sessions).toBe(1) // kept for a resume
    const resume = (id: string): Partial<InferenceFrame> => open({ sessionId: id, end: 2, chain, resumable: true, resume: 'a', resumeTo: prompt.length })
    // another peer naming the session gets a fresh one, and the kept one stays
    const [x, y] = await streamPair()
    void service.handle(y, 'someone-else')
    const px = pbStream(x)
    await px.write(resume('b') as InferenceFrame, InferenceFrame)
    expect((await px.read(InferenceFrame)).result?.status).toBe('OK')
    expect(service.stats.resumed).toBe(0)
    x.abort(new Error('done'))
    // the client that opened it adopts it
    const again = await exchange(service, [resume('c')], 1)
    expect(again[0].result).toMatchObject({ status: 'OK', position: prompt.length })
    expect(service.stats.resumed).toBe(1)
  })

  it('a next hop that cannot be opened is named', async () => {
    const service = bare(middle)
    const frames = await exchange(service, [middleOpen])
    expect(frames[0].result).toMatchObject({ status: 'DOWNSTREAM', peer: NEXT })
  })

  it('a liveness probe is answered OK at once and counts as nothing; nor does a stream reset before its first frame', async () => {
    const service = bare(whole)
    expect(await exchange(service, [{ probe: {} }])).toMatchObject([{ result: { status: 'OK' } }])
    const [a, b] = await streamPair()
    const served = service.handle(b, 'client')
    a.abort(new Error('an older client\'s probe'))
    await served
    expect(service.stats).toMatchObject({ opened: 0, refused: 0 })
    expect(service.usage.sessions).toBe(0)
  })

  it('a write awaiting drain that the stream\'s close interrupts rejects with an Error that has a message (not the close event)', async () => {
    const [a, b] = await streamPair()
    a.send = () => false // the muxer's buffer is full: the write waits for 'drain'
    const write = frameChannel(a).write({ close: 's1' })
    b.abort(new Error('the next hop died'))
    const err = await write.then(() => undefined, (e: unknown) => e)
    expect(err).toBeInstanceOf(Error)
    expect((err as Error).message).not.toBe('')
    expect(isReset(err)).toBe(true)
    // a close event without an error becomes a StreamClosedError (a reset for the callers)
    const closed = asError(new Event('close'))
    expect(closed).toMatchObject({ name: 'StreamClosedError' })
    expect(closed.message).toMatch(/closed/)
    expect(isReset(closed)).toBe(true)
  })
})
