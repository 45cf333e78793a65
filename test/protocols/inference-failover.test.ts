// Routing chains from the replicated swarm state (protocols/inference/route-chain.ts) and
// failover driven by it: real SwarmState replicas (signed records, presence beacons, anti-entropy
// between them), the router's pick, replacements re-routed from the same views with failed peers
// excluded; then in-process libp2p stages whose chain and replacement come from those views, and
// the client's stall deadline: a stage that goes silent mid-generation (and stops answering the
// probe) is declared STALLED and replaced with identical tokens, while a caller that holds a
// token longer than the deadline causes no false alarm; a first stage that refuses for itself
// (WRONG_LAYERS) is replaced although it answers the probe.
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import type { Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { tcp } from '@libp2p/tcp'
import { createLibp2p, type Libp2p } from 'libp2p'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { SwarmState } from '../../crdt/index.ts'
import { openLlama2c } from '../../engine/formats/llama2c.ts'
import type { ModelSource, Shard } from '../../engine/index.ts'
import { loadShard } from '../../engine/shard.ts'
import { Llama2cTokenizer } from '../../engine/tokenizer-llama2c.ts'
import { allChains, chainCost, CLIENT } from '../../sharding/index.ts'
import type { RouteGraph, RouteNode } from '../../sharding/index.ts'
import { chainRouter, routeSpan, InferenceStatus, inferenceProtocol, inferenceStageService, runInference, type ChainHop, type InferenceEvent, type InferenceStageService } from '../../protocols/index.ts'
import { FAILOVER_FIRST_TOKEN_TIMEOUT_MS, FAILOVER_TOKEN_TIMEOUT_FLOOR_MS } from '../../protocols/inference/constants.ts'
import { frameChannel } from '../../protocols/inference/wire.ts'
import { makeState, syncPair } from '../crdt/helpers.ts'
import { STORIES260K, TOK512 } from '../models.ts'
import { greedyTokens } from '../reference.ts'
import { seededRandom, testSeed } from '../seed.ts'

const seed = testSeed()
const MODEL = 'ab'.repeat(32)
const SWARM = 'failover'
const STEPS = 64

interface Offer { start: number, end: number, decodeLayerMs?: number, model?: string, rtt?: Record<string, number> }

/**
 * One SwarmState per offer, each writing its node record (capabilities as node-record.ts
 * publishes them) and a presence beacon; then full anti-entropy so every replica holds all.
 */
async function swarm (random: () => number, offers: Offer[], options: { peers?: string[] } = {}): Promise<{ states: SwarmState[], ids: string[] }> {
  const states: SwarmState[] = []
  for (let i = 0; i < offers.length; i++) states.push(await makeState(random))
  const ids = options.peers ?? states.map((s) => s.peerId)
  for (let i = 0; i < offers.length; i++) {
    const o = offers[i]
    const rtts = Object.fromEntries(Object.entries(o.rtt ?? {}).map(([k, v]) => [`rttMs:${ids[Number(k)]}`, v]))
    await states[i].setNode({
      capabilities: { model: o.model ?? MODEL, dtype: 'f32', decodeLayerMs: o.decodeLayerMs ?? 1, prefillLayerMsPerToken: 0.1, memoryBytes: 1e9, ...rtts },
      layers: [{ model: o.model ?? MODEL, start: o.start, end: o.end }],
      addresses: [],
      version: 'test'
    })
  }
  for (const s of states) {
    const beacon = await s.heartbeat()
    for (const t of states) if (t !== s) t.receiveBeacon(beacon, s.peerId)
  }
  for (let i = 0; i < states.length; i++) for (let j = i + 1; j < states.length; j++) syncPair(states[i], states[j])
  return { states, ids }
}

const hopsOf = (chain: ChainHop[]): Array<[string, number, number]> => chain.map((h) => [h.peer.toString(), h.start, h.end])

describe(`chainRouter over replicated swarm views (TEST_SEED=${seed} npx vitest run test/protocols/inference-failover.test.ts)`, () => {
  it('routes the cheapest chain of whole published ranges; replacements exclude failed peers and re-route the span', async () => {
    const random = seededRandom(seed)
    // 0: [0,2) fast · 1: [0,2) slow · 2: [2,5) · 3: [2,4) · 4: [4,5) · 5: another model · 6: [2,5) very slow
    const { states } = await swarm(random, [
      { start: 0, end: 2, decodeLayerMs: 1 }, { start: 0, end: 2, decodeLayerMs: 5 }, { start: 2, end: 5, decodeLayerMs: 1 },
      { start: 2, end: 4, decodeLayerMs: 3 }, { start: 4, end: 5, decodeLayerMs: 3 }, { start: 0, end: 5, model: 'cd'.repeat(32) }, { start: 2, end: 5, decodeLayerMs: 40 }
    ])
    const ids = states.map((s) => s.peerId)
    // every replica routes the same chain from its own copy of the state
    const chains = states.map((s) => chainRouter(s, { model: { id: MODEL, nLayers: 5 } }).route())
    for (const c of chains) expect(hopsOf(c)).toEqual([[ids[0], 0, 2], [ids[2], 2, 5]])
    const router = chainRouter(states[3], { model: { id: MODEL, nLayers: 5 } })
    // [2,5) fails: 3 + 4 (3 layers × 3 ms, one more hop at the default 100 ms RTT) beat 6 (3 × 40 ms)
    expect(hopsOf(await router.replace(chains[0][1], 1) ?? [])).toEqual([[ids[3], 2, 4], [ids[4], 4, 5]])
    expect(hopsOf(await router.replace({ peer: ids[3], start: 2, end: 5 }, 1) ?? [])).toEqual([[ids[6], 2, 5]])
    expect(await router.replace({ peer: ids[6], start: 2, end: 5 }, 1)).toBeUndefined()
    expect(hopsOf(await router.replace(chains[0][0], 0) ?? [])).toEqual([[ids[1], 0, 2]])
    expect([...router.excluded].sort()).toEqual([ids[0], ids[2], ids[3], ids[6]].sort())
    expect(() => router.route()).toThrow(expect.objectContaining({ name: 'ShardUnavailableError' }))
  })

  it('never enters a node mid-range (a stage serves exactly its range), even when the router would', async () => {
    const random = seededRandom(seed + 1)
    // 1 holds [1,5) and is very fast: the router's cheapest path is 0 [0,3) → 1 entered at 3; a
    // stage cannot serve that, so the chain must be 0 → 2
    const { states, ids } = await swarm(random, [{ start: 0, end: 3 }, { start: 1, end: 5, decodeLayerMs: 0.01 }, { start: 3, end: 5, decodeLayerMs: 4 }])
    expect(hopsOf(chainRouter(states[0], { model: { id: MODEL, nLayers: 5 } }).route())).toEqual([[ids[0], 0, 3], [ids[2], 3, 5]])
  })

  it('when no nodes tile the failed span, the replacement is a whole new chain', async () => {
    const random = seededRandom(seed + 4)
    // two pipelines split differently: 0 [0,2) → 1 [2,5), and 2 [0,3) → 3 [3,5)
    const { states, ids } = await swarm(random, [{ start: 0, end: 2 }, { start: 2, end: 5 }, { start: 0, end: 3, decodeLayerMs: 2 }, { start: 3, end: 5, decodeLayerMs: 2 }])
    const router = chainRouter(states[0], { model: { id: MODEL, nLayers: 5 } })
    const chain = router.route()
    expect(hopsOf(chain)).toEqual([[ids[0], 0, 2], [ids[1], 2, 5]])
    expect(hopsOf(await router.replace(chain[1], 1) ?? [])).toEqual([[ids[2], 0, 3], [ids[3], 3, 5]])
  })

  it('uses published RTTs, skips offline members and those of other dtypes', async () => {
    const random = seededRandom(seed + 2)
    // two equal replicas of [2,5); 0 measured 5 ms to 1 and 80 ms to 2
    const { states, ids } = await swarm(random, [{ start: 0, end: 2, rtt: { 1: 80, 2: 5 } }, { start: 2, end: 5 }, { start: 2, end: 5 }])
    const router = chainRouter(states[0], { model: { id: MODEL, nLayers: 5 } })
    expect(hopsOf(router.route())).toEqual([[ids[0], 0, 2], [ids[2], 2, 5]])
    const views = { nodes: () => states[0].nodes(), online: () => states[0].online().filter((p) => p !== ids[2]) }
    expect(hopsOf(chainRouter(views, { model: { id: MODEL, nLayers: 5 } }).route())).toEqual([[ids[0], 0, 2], [ids[1], 2, 5]])
    expect(() => chainRouter(states[0], { model: { id: MODEL, nLayers: 5 }, dtype: 'q8_0' }).route()).toThrow(/no chain/)
  })
})

describe(`routeSpan (TEST_SEED=${seed} npx vitest run test/protocols/inference-failover.test.ts)`, () => {
  const L = 6
  const nodeArb: fc.Arbitrary<RouteNode> = fc.record({
    id: fc.integer({ min: 0, max: 30 }),
    start: fc.nat(L - 1),
    len: fc.integer({ min: 1, max: 3 }),
    decodeLayerMs: fc.double({ min: 0.1, max: 20, noNaN: true })
  }).map(({ id, start, len, decodeLayerMs }) => ({ peerId: `p${id}`, start, end: Math.min(L, start + len), decodeLayerMs, prefillLayerMsPerToken: decodeLayerMs / 4, load: 0, slots: 8 }))
  const graphArb: fc.Arbitrary<RouteGraph> = fc.uniqueArray(nodeArb, { minLength: 1, maxLength: 9, selector: (n) => n.peerId }).map((nodes) => ({
    nLayers: L, nodes, hiddenBytesPerToken: 1024, rttMs: (a, b) => (a === CLIENT || b === CLIENT ? 10 : 1 + ((a.length * 7 + b.length * 3 + Number(a.slice(1)) * Number(b.slice(1) || 0)) % 40)), bandwidthBytesPerS: () => 1e7
  }))

  it('returns an exact tiling of the span avoiding excluded peers whenever one exists, and the cheapest when the router has none', () => {
    fc.assert(fc.property(graphArb, fc.nat(L - 1), fc.integer({ min: 1, max: L }), fc.array(fc.integer({ min: 0, max: 30 }), { maxLength: 3 }), (g, a, len, ex) => {
      const start = a
      const end = Math.min(L, a + len)
      const exclude = new Set(ex.map((i) => `p${i}`))
      const req = { promptTokens: 32, genTokens: 32 }
      // brute force: every chain of whole nodes inside the span that tiles it
      const inside: RouteGraph = { ...g, nLayers: end - start, nodes: g.nodes.filter((n) => n.start >= start && n.end <= end && !exclude.has(n.peerId)).map((n) => ({ ...n, start: n.start - start, end: n.end - start })) }
      const exactChains = allChains(inside).filter((c) => c.every((h) => inside.nodes.some((n) => n.peerId === h.peerId && n.start === h.start)))
      const got = routeSpan(g, req, start, end, { exclude })
      if (exactChains.length === 0) { expect(got).toBeUndefined(); return }
      expect(got).toBeDefined()
      const hops = got ?? []
      expect(hops[0].start).toBe(start)
      expect(hops[hops.length - 1].end).toBe(end)
      for (let i = 0; i < hops.length; i++) {
        if (i > 0) expect(hops[i].start).toBe(hops[i - 1].end)
        expect(exclude.has(hops[i].peerId)).toBe(false)
        expect(g.nodes.some((n) => n.peerId === hops[i].peerId && n.start === hops[i].start && n.end === hops[i].end)).toBe(true)
      }
      // never dearer than the cheapest exact tiling by more than the router's spread slack allows (no rng: none)
      const best = Math.min(...exactChains.map((c) => chainCost(inside, req, c).costMs))
      const shifted = hops.map((h) => ({ ...h, start: h.start - start, end: h.end - start }))
      expect(chainCost(inside, req, shifted).costMs).toBeLessThanOrEqual(best * (1 + 1e-9))
    }), { seed, numRuns: 300 })
  })

  it('stays fast on a large swarm (400 nodes, mid-range entries everywhere)', () => {
    const rand = seededRandom(seed + 6)
    const nodes: RouteNode[] = []
    for (let i = 0; i < 400; i++) {
      const start = Math.floor(rand() * 30)
      nodes.push({ peerId: `n${i}`, start, end: Math.min(32, start + 1 + Math.floor(rand() * 6)), decodeLayerMs: 0.5 + rand() * 5, prefillLayerMsPerToken: 0.2, load: 0, slots: 8 })
    }
    const g: RouteGraph = { nLayers: 32, nodes, hiddenBytesPerToken: 8192, rttMs: (a, b) => (a === b ? 0 : 5 + ((a.length + b.length) % 20)), bandwidthBytesPerS: () => 1e8 }
    // CPU time of this process, not wall time: other processes on a loaded machine do not count
    // (it takes ~0.1 s; the bound is for an accidental blow-up such as an exponential search)
    const cpu0 = process.cpuUsage()
    const hops = routeSpan(g, { promptTokens: 128, genTokens: 128 }, 0, 32) ?? []
    const cpu = process.cpuUsage(cpu0)
    expect((cpu.user + cpu.system) / 1000).toBeLessThan(5000)
    expect(hops[0]?.start).toBe(0)
    expect(hops.at(-1)?.end).toBe(32)
    for (const h of hops) expect(nodes.some((n) => n.peerId === h.peerId && n.start === h.start && n.end === h.end)).toBe(true)
  })
})

// --- in-process stages whose chain and replacement come from the swarm views ---

type Node = Libp2p<{ inference: InferenceStageService }>
let source: ModelSource
let prompt: number[]
let expected: number[]
const shards: Shard[] = []
const nodes: Node[] = []

beforeAll(async () => {
  source = await openLlama2c(STORIES260K)
  prompt = (await Llama2cTokenizer.fromFile(TOK512, source.config.vocabSize)).encode('Once upon a time', { bos: true })
  const whole = await loadShard(source)
  shards.push(whole)
  expected = await greedyTokens(whole, prompt, STEPS)
})
afterAll(async () => {
  await Promise.all(nodes.map(async (n) => { await n.stop() }))
  await Promise.all(shards.map(async (s) => { await s.close() }))
})

async function stage (start?: number, end?: number): Promise<Node> {
  const n = await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: { inference: inferenceStageService({ swarm: SWARM, maxKvBytes: 4 * 1024 * 1024 }) }
  })
  nodes.push(n)
  if (start !== undefined && end !== undefined) {
    const shard = await loadShard(source, { start, end })
    shards.push(shard)
    n.services.inference.serve({ shard, model: MODEL })
  }
  return n
}

describe('failover routed from the swarm views', () => {
  it('a middle stage stops at token 20: the router picks the replacement span from the views, tokens unchanged', async () => {
    const ranges: Array<[number, number]> = [[0, 2], [2, 4], [4, 5], [2, 3], [3, 4]]
    const stages: Node[] = []
    for (const [a, b] of ranges) stages.push(await stage(a, b))
    const client = await stage()
    const all = [client, ...stages]
    for (let i = 0; i < all.length; i++) for (let j = i + 1; j < all.length; j++) await all[i].dial(all[j].getMultiaddrs()[0])
    // the records come from SwarmState replicas with their own keys (a writer signs only its own
    // namespace, and these stages are bare libp2p nodes); the views map each replica to its stage
    const random = seededRandom(seed + 3)
    const { states } = await swarm(random, ranges.map(([start, end], i) => ({ start, end, decodeLayerMs: i === 1 ? 1 : 2 })))
    const toStage = new Map(states.map((s, i) => [s.peerId, stages[i].peerId.toString()]))
    const views = {
      nodes: () => new Map([...states[0].nodes()].map(([k, v]) => [toStage.get(k) ?? k, v])),
      online: () => states[0].online().map((k) => toStage.get(k) ?? k)
    }
    const router = chainRouter(views, { model: { id: MODEL, nLayers: 5 }, hiddenBytesPerToken: source.config.dim * 4 })
    const chain = router.route()
    expect(hopsOf(chain)).toEqual([[stages[0].peerId.toString(), 0, 2], [stages[1].peerId.toString(), 2, 4], [stages[2].peerId.toString(), 4, 5]])
    const open = async (peer: ChainHop['peer'], protocol: string, o: { signal?: AbortSignal }): Promise<Stream> =>
      await client.dialProtocol(typeof peer === 'string' ? peerIdFromString(peer) : peer, protocol, o)
    const out = [...prompt]
    const events: InferenceEvent[] = []
    for await (const ev of runInference(open, inferenceProtocol(SWARM), { chain, prompt, maxLength: STEPS, model: MODEL, failover: { replace: router.replace } })) {
      events.push(ev)
      if (ev.type === 'token') {
        out.push(ev.id)
        if (ev.position === 20) await stages[1].stop()
      }
    }
    expect(out).toEqual(expected)
    const retry = events.find((e) => e.type === 'retry')
    expect(retry).toMatchObject({ attempt: 1, replaced: [1] })
    expect(events.find((e) => e.type === 'resumed')).toMatchObject({ attempt: 1 })
    expect([...router.excluded]).toEqual([stages[1].peerId.toString()])
    // the repaired chain ran on the two-stage span [2,3) + [3,4)
    for (const s of [stages[3], stages[4]]) expect(s.services.inference.stats.opened).toBe(1)
  })
})

describe('failover to a chain split differently', () => {
  it('a stage of [0,2)+[2,5) stops at token 20: the router re-routes the whole chain over [0,3)+[3,5), tokens unchanged', async () => {
    const ranges: Array<[number, number]> = [[0, 2], [2, 5], [0, 3], [3, 5]]
    const stages: Node[] = []
    for (const [a, b] of ranges) stages.push(await stage(a, b))
    const client = await stage()
    const all = [client, ...stages]
    for (let i = 0; i < all.length; i++) for (let j = i + 1; j < all.length; j++) await all[i].dial(all[j].getMultiaddrs()[0])
    const { states } = await swarm(seededRandom(seed + 5), ranges.map(([start, end], i) => ({ start, end, decodeLayerMs: i < 2 ? 1 : 2 })))
    const toStage = new Map(states.map((s, i) => [s.peerId, stages[i].peerId.toString()]))
    const views = {
      nodes: () => new Map([...states[0].nodes()].map(([k, v]) => [toStage.get(k) ?? k, v])),
      online: () => states[0].online().map((k) => toStage.get(k) ?? k)
    }
    const router = chainRouter(views, { model: { id: MODEL, nLayers: 5 } })
    const chain = router.route()
    expect(hopsOf(chain)).toEqual([[stages[0].peerId.toString(), 0, 2], [stages[1].peerId.toString(), 2, 5]])
    const open = async (peer: ChainHop['peer'], protocol: string, o: { signal?: AbortSignal }): Promise<Stream> =>
      await client.dialProtocol(typeof peer === 'string' ? peerIdFromString(peer) : peer, protocol, o)
    const out = [...prompt]
    const events: InferenceEvent[] = []
    for await (const ev of runInference(open, inferenceProtocol(SWARM), { chain, prompt, maxLength: STEPS, model: MODEL, failover: { replace: router.replace } })) {
      events.push(ev)
      if (ev.type === 'token') {
        out.push(ev.id)
        if (ev.position === 20) await stages[1].stop()
      }
    }
    expect(out).toEqual(expected)
    expect(events.filter((e) => e.type === 'retry')).toMatchObject([{ attempt: 1, replaced: [1] }])
    for (const s of [stages[2], stages[3]]) expect(s.services.inference.stats.opened).toBe(1)
    expect(stages[0].services.inference.stats.opened).toBe(1) // not used again: the new chain has its own first stage
  })
})

describe('a replacement that does not fit', () => {
  it('hops that do not tile a span around the failed hop end the request with its status', async () => {
    const stages = [await stage(0, 2), await stage(2, 5), await stage(3, 5)]
    const client = await stage()
    for (const n of stages) await client.dial(n.getMultiaddrs()[0])
    await stages[0].dial(stages[1].getMultiaddrs()[0])
    const open = async (peer: ChainHop['peer'], protocol: string, o: { signal?: AbortSignal }): Promise<Stream> =>
      await client.dialProtocol(typeof peer === 'string' ? peerIdFromString(peer) : peer, protocol, o)
    const replace = async (): Promise<ChainHop> => ({ peer: stages[2].peerId, start: 3, end: 5 }) // leaves [2,3) uncovered
    const run = (async () => {
      for await (const ev of runInference(open, inferenceProtocol(SWARM), { chain: [{ peer: stages[0].peerId, start: 0, end: 2 }, { peer: stages[1].peerId, start: 2, end: 5 }], prompt, maxLength: STEPS, model: MODEL, failover: { replace } })) {
        if (ev.type === 'token' && ev.position === 20) await stages[1].stop()
      }
    })()
    await expect(run).rejects.toMatchObject({ name: 'InferenceFailedError', message: expect.stringMatching(/does not tile/) })
  })
})

describe('a first stage that refuses for itself', () => {
  it('WRONG_LAYERS from the first stage (it moved: serves [0,3), not [0,2)) replaces it although it answers the probe', async () => {
    const moved = await stage(0, 3)
    const right = await stage(0, 2)
    const rest = await stage(2, 5)
    const client = await stage()
    const all = [client, moved, right, rest]
    for (let i = 0; i < all.length; i++) for (let j = i + 1; j < all.length; j++) await all[i].dial(all[j].getMultiaddrs()[0])
    const open = async (peer: ChainHop['peer'], protocol: string, o: { signal?: AbortSignal }): Promise<Stream> =>
      await client.dialProtocol(typeof peer === 'string' ? peerIdFromString(peer) : peer, protocol, o)
    const replaced: ChainHop[] = []
    const replace = async (hop: ChainHop): Promise<ChainHop> => { replaced.push(hop); return { peer: right.peerId, start: 0, end: 2 } }
    const out = [...prompt]
    const events: InferenceEvent[] = []
    for await (const ev of runInference(open, inferenceProtocol(SWARM), { chain: [{ peer: moved.peerId, start: 0, end: 2 }, { peer: rest.peerId, start: 2, end: 5 }], prompt, maxLength: STEPS, model: MODEL, failover: { replace } })) {
      events.push(ev)
      if (ev.type === 'token') out.push(ev.id)
    }
    expect(out).toEqual(expected)
    expect(events.filter((e) => e.type === 'retry')).toMatchObject([{ attempt: 1, status: 'WRONG_LAYERS', replaced: [0] }])
    expect(replaced.map((h) => h.peer.toString())).toEqual([moved.peerId.toString()])
  })
})

describe('stall deadline', () => {
  it('a first stage that goes silent after 10 tokens and stops answering: STALLED after the deadline, replaced, identical tokens', async () => {
    const real = await stage(0, 5)
    const client = await stage()
    // a stage that opens, relays the reference's first 10 tokens, then says nothing more (alive:
    // its connection stays up) and stops taking new streams, as a SIGSTOPped process would
    const silent = await createLibp2p({ addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] }, transports: [tcp()], connectionEncrypters: [noise()], streamMuxers: [yamux()] })
    nodes.push(silent as unknown as Node)
    const protocol = inferenceProtocol(SWARM)
    await silent.handle(protocol, async (stream) => {
      const ch = frameChannel(stream)
      const open = (await ch.read()).open
      await ch.write({ result: { status: InferenceStatus.OK, sessionId: open?.sessionId ?? '', detail: '', peer: '' } })
      await ch.read() // the prompt
      for (let i = 0; i < 10; i++) await ch.write({ token: { sessionId: open?.sessionId ?? '', token: expected[prompt.length + i], position: prompt.length - 1 + i, done: false, bos: false, signature: new Uint8Array(0), receipt: new Uint8Array(0), first: 0 } })
      await silent.unhandle(protocol)
    })
    for (const n of [real, silent]) await client.dial(n.getMultiaddrs()[0])
    const open = async (peer: ChainHop['peer'], p: string, o: { signal?: AbortSignal }): Promise<Stream> =>
      await client.dialProtocol(typeof peer === 'string' ? peerIdFromString(peer) : peer, p, o)
    const out = [...prompt]
    const events: InferenceEvent[] = []
    const replace = async (hop: ChainHop): Promise<ChainHop> => ({ peer: real.peerId, start: hop.start, end: hop.end })
    // timers fire late by the event loop's delay: measured, so the bound below is explicit on a loaded machine
    const lag = monitorEventLoopDelay({ resolution: 10 })
    lag.enable()
    // a generous probe deadline: on a loaded machine a live stage may answer slowly (the silent one refuses at once)
    for await (const ev of runInference(open, protocol, { chain: [{ peer: silent.peerId, start: 0, end: 5 }], prompt, maxLength: STEPS, model: MODEL, failover: { replace, probeTimeoutMs: 10_000 } })) {
      events.push(ev)
      if (ev.type === 'token') out.push(ev.id)
    }
    lag.disable()
    expect(out).toEqual(expected)
    const retries = events.filter((e) => e.type === 'retry')
    expect(retries[0]).toMatchObject({ attempt: 1, status: 'STALLED', replaced: [0], replayed: prompt.length + 10 })
    // the decode gaps were ~0 ms, so the deadline is the 2 s floor (not the 15 s first-token
    // deadline); the probes ran during the wait
    if (retries[0]?.type !== 'retry') throw new Error('no retry')
    const lagMs = lag.max / 1e6
    // (Node's timers count whole milliseconds of the loop's cached clock: a 2,000 ms timer may fire
    // when performance.now() has advanced 1,999.99 ms)
    expect(retries[0].detectMs).toBeGreaterThanOrEqual(FAILOVER_TOKEN_TIMEOUT_FLOOR_MS - 1)
    expect(retries[0].detectMs).toBeLessThan(Math.min(FAILOVER_FIRST_TOKEN_TIMEOUT_MS, FAILOVER_TOKEN_TIMEOUT_FLOOR_MS + 1000 + 2 * lagMs))
    // a loaded machine may add false alarms on the real stage afterwards (each costs a replay,
    // never a token): every repair resumed, and the tokens above are unchanged
    expect(events.filter((e) => e.type === 'resumed')).toHaveLength(retries.length)
  })

  it('a caller that holds a token longer than the deadline is no stall (the deadline runs only while waiting on the stage)', async () => {
    const real = await stage(0, 5)
    const client = await stage()
    await client.dial(real.getMultiaddrs()[0])
    const open = async (peer: ChainHop['peer'], p: string, o: { signal?: AbortSignal }): Promise<Stream> =>
      await client.dialProtocol(typeof peer === 'string' ? peerIdFromString(peer) : peer, p, o)
    const out = [...prompt]
    const events: InferenceEvent[] = []
    const replace = async (): Promise<undefined> => undefined
    for await (const ev of runInference(open, inferenceProtocol(SWARM), { chain: [{ peer: real.peerId, start: 0, end: 5 }], prompt, maxLength: STEPS, model: MODEL, failover: { replace, tokenTimeoutMs: 2000, probeTimeoutMs: 10_000 } })) {
      events.push(ev)
      if (ev.type !== 'token') continue
      out.push(ev.id)
      // a slow consumer: 1.5 × the deadline with the next tokens already on their way
      if (ev.position === 20) await new Promise((resolve) => setTimeout(resolve, 3000))
    }
    expect(out).toEqual(expected)
    // had the deadline run while we held the token, the stall would be the very next event
    const held = events.findIndex((e) => e.type === 'token' && e.position === 20)
    expect(events[held + 1]).toMatchObject({ type: 'token', position: 21 })
    // a loaded machine may still cause a false alarm elsewhere (a token > 2 s late while we waited):
    // the live stage answers the probe and the same chain is retried; never a replacement
    for (const r of events.filter((e) => e.type === 'retry')) expect(r).toMatchObject({ status: 'STALLED', replaced: [] })
  })
})
