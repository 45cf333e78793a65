// Continuous batching on a stage. Over rings of in-process libp2p nodes, concurrent sessions'
// decode steps really run together (the stages' batch counters) and every session still gets
// exactly the single-process greedy tokens of its own prompt. The scheduler on a real shard: ready
// decode steps run as one pass, a bad step fails alone, cancellation drops a queued step, the
// queue is bounded, and a long prefill runs in chunks that take turns with the decoders.
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import type { Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { tcp } from '@libp2p/tcp'
import { createLibp2p, type Libp2p } from 'libp2p'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { openLlama2c } from '../../engine/formats/llama2c.ts'
import { generate, sessionStepper } from '../../engine/generate.ts'
import type { ModelSource, Shard, StageOutput } from '../../engine/index.ts'
import { createSampler } from '../../engine/sampler.ts'
import { loadShard } from '../../engine/shard.ts'
import { Llama2cTokenizer } from '../../engine/tokenizer-llama2c.ts'
import { InferenceStageService, inferenceStageService, runInference, type ChainHop } from '../../protocols/index.ts'
import { StageScheduler } from '../../protocols/inference/stage-scheduler.ts'
import { STORIES260K, TOK512 } from '../models.ts'
import { seededRandom, testSeed } from '../seed.ts'

const SWARM = 'batch'
const STEPS = 64
const TEXTS = ['Once upon a time', 'The little dog', 'Lily and Tom went to the park to play', 'One day']
type Node = Libp2p<{ inference: InferenceStageService }>

let source: ModelSource
const prompts: number[][] = []
const expected: number[][] = []
const shards: Shard[] = []
const nodes: Node[] = []

async function ring (bounds: number[]): Promise<{ client: Node, chain: ChainHop[], stages: Node[] }> {
  const make = async (): Promise<Node> => {
    const n = await createLibp2p({
      addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
      transports: [tcp()],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()],
      services: { inference: inferenceStageService({ swarm: SWARM, maxKvBytes: 16 * 1024 * 1024 }) }
    })
    nodes.push(n)
    return n
  }
  const stages: Node[] = []
  const chain: ChainHop[] = []
  for (let i = 0; i + 1 < bounds.length; i++) {
    const n = await make()
    const shard = await loadShard(source, { start: bounds[i], end: bounds[i + 1] })
    shards.push(shard)
    n.services.inference.serve({ shard, model: 'stories260K' })
    stages.push(n)
    chain.push({ peer: n.peerId, start: bounds[i], end: bounds[i + 1] })
  }
  const client = await make()
  const all = [client, ...stages]
  for (let i = 0; i < all.length; i++) for (let j = i + 1; j < all.length; j++) await all[i].dial(all[j].getMultiaddrs()[0])
  return { client, chain, stages }
}

async function tokensOver (client: Node, chain: ChainHop[], prompt: number[]): Promise<number[]> {
  const out = [...prompt]
  const open = async (peer: ChainHop['peer'], protocol: string, o: { signal?: AbortSignal }): Promise<Stream> =>
    await client.dialProtocol(typeof peer === 'string' ? peerIdFromString(peer) : peer, protocol, o)
  for await (const ev of runInference(open, client.services.inference.protocol, { chain, prompt, maxLength: STEPS, model: 'stories260K' })) {
    if (ev.type === 'token') out.push(ev.id)
  }
  return out
}

beforeAll(async () => {
  source = await openLlama2c(STORIES260K)
  const tokenizer = await Llama2cTokenizer.fromFile(TOK512, source.config.vocabSize)
  const whole = await loadShard(source)
  shards.push(whole)
  for (const text of TEXTS) {
    const prompt = tokenizer.encode(text, { bos: true })
    const session = whole.openSession({ maxLength: STEPS })
    // engine `generate` yields the forced prompt tokens too, from prompt[1] on
    const tokens = [prompt[0]]
    for await (const ev of generate(sessionStepper(session), { prompt, steps: STEPS, sampler: createSampler(), bosId: source.config.bosId })) {
      if (ev.type === 'token') tokens.push(ev.id)
    }
    session.close()
    prompts.push(prompt)
    expected.push(tokens)
  }
})

afterAll(async () => {
  await Promise.all(nodes.splice(0).map(async (n) => await n.stop()))
  await Promise.all(shards.splice(0).map(async (s) => await s.close()))
})

describe('continuous batching over a ring of stages (stories260K, greedy, 64 positions)', () => {
  it.each([
    ['1 stage, 8 sessions', [0, 5], 8],
    ['2 stages, 8 sessions', [0, 2, 5], 8],
    ['3 stages, 32 sessions', [0, 1, 3, 5], 32]
  ])('%s: decode steps run batched and every session gets its single-process tokens', async (_name, bounds, n) => {
    const { client, chain, stages } = await ring(bounds)
    const runs = await Promise.all(Array.from({ length: n }, async (_, i) => await tokensOver(client, chain, prompts[i % prompts.length])))
    runs.forEach((tokens, i) => { expect(tokens, `session ${i}`).toEqual(expected[i % prompts.length]) })
    for (const s of stages) {
      const stats = s.services.inference.stats
      expect(stats.maxBatchSize, JSON.stringify(stats)).toBeGreaterThan(1)
      // most decode steps ran in a batch with others
      const alone = stats.batchSizes[1] ?? 0
      expect(stats.batchedSteps - alone).toBeGreaterThan(stats.batchedSteps / 2)
      await expect.poll(() => s.services.inference.usage).toEqual({ sessions: 0, reservedBytes: 0, kvBytes: 0 })
    }
  })
})

describe('the stage scheduler on a real shard', () => {
  const seed = testSeed()
  let last: Shard
  beforeAll(async () => { last = await loadShard(source, { start: 3, end: 5, maxBatch: 8 }); shards.push(last) })
  const hidden = (rand: () => number, T: number): Float32Array => Float32Array.from({ length: T * last.config.dim }, () => rand() - 0.5)
  const bytes = (f: Float32Array): Buffer => Buffer.from(f.buffer, f.byteOffset, f.byteLength)
  const same = (a: StageOutput, b: StageOutput): boolean => bytes(a.logits as Float32Array).equals(bytes(b.logits as Float32Array))

  it(`runs the ready decode steps as one pass; a bad step fails alone; cancel drops a queued step (TEST_SEED=${seed})`, async () => {
    const rand = seededRandom(seed)
    const scheduler = new StageScheduler()
    const sessions = Array.from({ length: 6 }, () => last.openSession({ maxLength: 16 }))
    const twins = Array.from({ length: 6 }, () => last.openSession({ maxLength: 16 }))
    const inputs = sessions.map(() => hidden(rand, 1))
    inputs[2][5] = Number.NaN // session 2 sends a bad row: only its step fails
    const runs = sessions.map((s, i) => scheduler.run(last, s, { hidden: inputs[i] }, 1))
    scheduler.cancel(sessions[4])
    const results = await Promise.allSettled(runs)
    expect(results[2]).toMatchObject({ status: 'rejected', reason: { name: 'ShapeError' } })
    expect(results[4]).toMatchObject({ status: 'rejected', reason: { name: 'StepCancelledError' } })
    for (const i of [0, 1, 3, 5]) {
      expect(results[i].status).toBe('fulfilled')
      expect(same((results[i] as PromiseFulfilledResult<StageOutput>).value, twins[i].step({ hidden: inputs[i] }))).toBe(true)
    }
    expect([sessions[2].position, sessions[4].position]).toEqual([0, 0])
    // the batch of six was refused by the engine and re-run one by one; the next one is a real pass
    const again = await Promise.all([0, 1, 3, 5].map((i) => scheduler.run(last, sessions[i], { hidden: inputs[i] }, 1)))
    for (const [k, i] of [0, 1, 3, 5].entries()) expect(same(again[k], twins[i].step({ hidden: inputs[i] }))).toBe(true)
    expect(scheduler.stats).toMatchObject({ batches: 2, batchedSteps: 9, maxBatchSize: 5, batchSizes: { 4: 1, 5: 1 } })
    for (const s of [...sessions, ...twins]) s.close()
  })

  it('splits ready decode steps into microbatches (a ring\'s first stage), the oldest first', async () => {
    const scheduler = new StageScheduler()
    const sessions = Array.from({ length: 7 }, () => last.openSession({ maxLength: 4 }))
    const h = new Float32Array(last.config.dim).fill(0.1)
    const order: number[] = []
    await Promise.all(sessions.map(async (s, i) => { await scheduler.run(last, s, { hidden: h }, 1, 3); order.push(i) }))
    expect(scheduler.stats).toMatchObject({ batches: 3, batchedSteps: 7, maxBatchSize: 3, batchSizes: { 3: 2, 1: 1 } })
    expect(order).toEqual([0, 1, 2, 3, 4, 5, 6])
    for (const s of sessions) s.close()
  })

  it('prefill chunks of several prompts share a turn with the decode steps; every output equals stepping alone', async () => {
    const rand = seededRandom(seed ^ 0xc0ffee)
    const scheduler = new StageScheduler()
    const sessions = Array.from({ length: 5 }, () => last.openSession({ maxLength: 16 }))
    const twins = Array.from({ length: 5 }, () => last.openSession({ maxLength: 16 }))
    const inputs = [1, 1, 3, 3, 3].map((T) => hidden(rand, T))
    const outs = await Promise.all(sessions.map(async (s, i) => await scheduler.run(last, s, { hidden: inputs[i] }, inputs[i].length / last.config.dim)))
    outs.forEach((out, i) => { expect(same(out, twins[i].step({ hidden: inputs[i] })), `session ${i}`).toBe(true) })
    expect(scheduler.stats).toMatchObject({ batches: 1, batchedSteps: 2, prefillChunks: 3 })
    for (const s of [...sessions, ...twins]) s.close()
  })

  it('bounds its queue', async () => {
    const scheduler = new StageScheduler({ maxQueued: 3 })
    const sessions = Array.from({ length: 4 }, () => last.openSession({ maxLength: 4 }))
    const h = new Float32Array(last.config.dim).fill(0.1)
    const runs = sessions.map(async (s) => await scheduler.run(last, s, { hidden: h }, 1))
    const results = await Promise.allSettled(runs)
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled', 'fulfilled', 'rejected'])
    expect((results[3] as PromiseRejectedResult).reason).toMatchObject({ name: 'SchedulerFullError' })
    for (const s of sessions) s.close()
  })

  it('a long prefill runs in chunks that take turns with the decoders, and equals one step', async () => {
    const rand = seededRandom(seed ^ 0x5eed)
    const scheduler = new StageScheduler()
    const long = last.openSession({ maxLength: 200 })
    const twin = last.openSession({ maxLength: 200 })
    const decoder = last.openSession({ maxLength: 200 })
    const prompt = hidden(rand, 100) // 13 chunks of ≤ 8 positions
    let decoded = 0
    let prefillDone = false
    let decodedBeforePrefill = -1
    const prefill = scheduler.run(last, long, { hidden: prompt }, 100).then((out) => { prefillDone = true; decodedBeforePrefill = decoded; return out })
    const h = hidden(rand, 1)
    while (!prefillDone && decoded < 150) {
      await scheduler.run(last, decoder, { hidden: h }, 1)
      decoded++
    }
    const out = await prefill
    expect(same(out, twin.step({ hidden: prompt }))).toBe(true)
    expect(long.position).toBe(100)
    expect(decodedBeforePrefill).toBeGreaterThanOrEqual(10) // a decode step ran between the chunks
    expect(scheduler.stats.prefillChunks).toBe(13)
    for (const s of [long, twin, decoder]) s.close()
  })
})
