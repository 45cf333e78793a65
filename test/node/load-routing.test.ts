// Load-aware routing. Daemons publish their live load (open sessions, slots, KV headroom, measured
// step time) on the swarm's load topic (node/load-beacon.ts); a reader's view merges it into the
// records' capabilities and the router (protocols/inference/route-chain.ts → sharding's
// routeRequest) prefers idle stages. Unit parts: the message checks, the bounded expiring table,
// the merged view, the step timer fed by a real shard's stepBatch. With real daemons: two serve
// the whole model, one of them holds open sessions; requests through a third daemon's HTTP API
// all go to the idle one.
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { peerIdFromString } from '@libp2p/peer-id'
import { tcp } from '@libp2p/tcp'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p, type Libp2p } from 'libp2p'
import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { openLlama2c } from '../../engine/formats/llama2c.ts'
import { loadShard } from '../../engine/shard.ts'
import type { NodeRecord } from '../../crdt/index.ts'
import { controlRequest } from '../../node/control.ts'
import { LOAD_MAX_MESSAGE_BYTES, LOAD_MAX_PEERS, LOAD_TTL_MS } from '../../node/constants.ts'
import { decodeLoad, encodeLoad, LoadTable, ownLoad, withLoad } from '../../node/load-beacon.ts'
import type { NodeLoad } from '../../node/load-beacon.ts'
import { timedShard } from '../../node/serving.ts'
import { chainRouter, inferenceProtocol } from '../../protocols/index.ts'
import { HiddenCodec as InferenceHiddenCodec } from '../../protocols/inference/inference.pb.js'
import { frameChannel } from '../../protocols/inference/wire.ts'
import { createStepTimer } from '../../sharding/index.ts'
import { STORIES260K } from '../models.ts'
import { cleanupDaemons, pollUntil, scratch, startDaemon, type Started } from './daemons.ts'

const SWARM = 'load'

afterEach(cleanupDaemons)

function record (layers: NodeRecord['layers'], extra: NodeRecord['capabilities'] = {}): NodeRecord {
  return { capabilities: { model: 'm', dtype: 'f32', decodeLayerMs: 0.1, prefillLayerMsPerToken: 0.05, memoryBytes: 1e9, ...extra }, layers, addresses: [], version: '0.1.0' }
}

function views (nodes: Map<string, NodeRecord>): { nodes: () => Map<string, NodeRecord>, online: () => string[], manifests: () => [], onChange: () => () => void } {
  return { nodes: () => nodes, online: () => [...nodes.keys()], manifests: () => [], onChange: () => () => {} }
}

describe('load messages, table and view', () => {
  it('decodes only well-formed, bounded messages', () => {
    const good: NodeLoad = { load: 3, slots: 64, kvFreeBytes: 1000, stepLayerMs: 0.25 }
    expect(decodeLoad(encodeLoad(good))).toEqual(good)
    expect(decodeLoad(encodeLoad({ load: 0, slots: 64, kvFreeBytes: 0 }))).toEqual({ load: 0, slots: 64, kvFreeBytes: 0 })
    const bad = ['', 'null', '[]', '{"load":-1,"slots":1,"kvFreeBytes":0}', '{"load":1.5,"slots":1,"kvFreeBytes":0}', '{"load":1,"kvFreeBytes":0}',
      '{"load":1,"slots":1,"kvFreeBytes":0,"stepLayerMs":-2}', '{"load":1,"slots":1,"kvFreeBytes":0,"stepLayerMs":"x"}', '{"load":1e9,"slots":1,"kvFreeBytes":0}',
      `{"load":1,"slots":1,"kvFreeBytes":0,"pad":"${'x'.repeat(LOAD_MAX_MESSAGE_BYTES)}"}`, '\u0000\u00ff']
    for (const b of bad) expect(decodeLoad(new TextEncoder().encode(b)), b.slice(0, 60)).toBeUndefined()
  })

  it('keeps the latest load per peer, forgets it after the TTL, and stays bounded', () => {
    let now = 0
    const table = new LoadTable(() => now)
    table.set('a', { load: 1, slots: 64, kvFreeBytes: 0 })
    table.set('a', { load: 2, slots: 64, kvFreeBytes: 0 })
    expect(table.get('a')?.load).toBe(2)
    now = LOAD_TTL_MS
    expect(table.get('a')).toBeUndefined()
    for (let i = 0; i < LOAD_MAX_PEERS + 100; i++) table.set(`p${i}`, { load: i, slots: 64, kvFreeBytes: 0 })
    expect(table.size).toBe(LOAD_MAX_PEERS)
    expect(table.get(`p${LOAD_MAX_PEERS + 99}`)?.load).toBe(LOAD_MAX_PEERS + 99)
    expect(table.get('p0')).toBeUndefined() // the oldest update went first
  })

  it('the router prefers the idle one of two nodes serving the same span', () => {
    const nodes = new Map([['busy', record([{ model: 'm', start: 0, end: 5 }])], ['idle', record([{ model: 'm', start: 0, end: 5 }], { decodeLayerMs: 0.12 })]])
    // without load figures the faster-measured node wins
    expect(chainRouter(views(nodes), { model: { id: 'm', nLayers: 5 } }).route().map((h) => h.peer)).toEqual(['busy'])
    const table = new LoadTable()
    table.set('busy', { load: 12, slots: 64, kvFreeBytes: 0, stepLayerMs: 0.4 })
    table.set('idle', { load: 0, slots: 64, kvFreeBytes: 0 })
    const loaded = withLoad(views(nodes), table)
    expect(loaded.nodes().get('busy')?.capabilities).toMatchObject({ load: 12, slots: 64, stepLayerMs: 0.4 })
    expect(nodes.get('busy')?.capabilities.load).toBeUndefined() // the records themselves are untouched
    expect(chainRouter(loaded, { model: { id: 'm', nLayers: 5 } }).route().map((h) => h.peer)).toEqual(['idle'])
    // its own load is read directly
    const self = withLoad(views(nodes), new LoadTable(), { peerId: 'busy', load: () => ({ load: 20, slots: 64, kvFreeBytes: 0 }) })
    expect(chainRouter(self, { model: { id: 'm', nLayers: 5 } }).route().map((h) => h.peer)).toEqual(['idle'])
  })

  it('ownLoad: sessions, slots bounded by the KV budget, step time only while busy', () => {
    const timer = createStepTimer({ decodeLayerMs: 0.123456, prefillLayerMsPerToken: 0.01, memoryBytes: 1 })
    expect(ownLoad({ usage: { sessions: 0, reservedBytes: 0, kvBytes: 0 } }, timer)).toEqual({ load: 0, slots: 64, kvFreeBytes: 256 * 1024 * 1024 })
    const busy = ownLoad({ usage: { sessions: 2, reservedBytes: 200 * 1024 * 1024, kvBytes: 0 } }, timer)
    expect(busy).toEqual({ load: 2, slots: 2, kvFreeBytes: 56 * 1024 * 1024, stepLayerMs: 0.12 }) // 100 MiB each: no third fits
  })

  it('timedShard feeds the step timer from real stepBatch passes', async () => {
    const source = await openLlama2c(STORIES260K)
    const timer = createStepTimer({ decodeLayerMs: 1000, prefillLayerMsPerToken: 1000, memoryBytes: 1 })
    const shard = timedShard(await loadShard(source, { start: 0, end: 5 }), () => timer)
    const a = shard.openSession({ maxLength: 64 })
    const b = shard.openSession({ maxLength: 64 })
    shard.stepBatch([{ session: a, input: { tokens: [1, 2, 3] } }, { session: b, input: { tokens: [1, 2] } }]) // prefill chunks only
    expect(timer.prefillLayerMsPerToken).toBeLessThan(1000)
    expect(timer.decodeLayerMs).toBe(1000)
    for (let i = 0; i < 20; i++) shard.stepBatch([{ session: a, input: { tokens: [5] } }, { session: b, input: { tokens: [6] } }])
    expect(timer.decodeLayerMs).toBeLessThan(100) // measured passes (≪ 1 s per layer) pulled the seed down
    expect(timer.decodeLayerMs).toBeGreaterThan(0)
    await shard.close()
  })
})

describe('load-aware routing between daemons', () => {
  let client: Libp2p
  beforeAll(async () => {
    client = await createLibp2p({ addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] }, transports: [tcp()], connectionEncrypters: [noise()], streamMuxers: [yamux()] })
  })
  afterAll(async () => { await client.stop() })

  const ready = (d: Started): Record<string, unknown> => d.events.find((e) => e.event === 'ready') as Record<string, unknown>
  const addr = (d: Started): string => (ready(d).listen as string[]).find((a) => a.includes('/tcp/') && !a.includes('/ws')) as string
  const opened = async (d: Started): Promise<number> => ((await controlRequest(join(d.dir, 'control.sock'), { cmd: 'status' })) as unknown as { inference: { opened: number } }).inference.opened

  it('requests through the API go to the idle one of two whole-model daemons', async () => {
    const d1 = await startDaemon(scratch('mycelium-load-'), ['--swarm', SWARM, '--model', STORIES260K, '--layers', '0:5', '--threads', '1'], 'serving')
    const d2 = await startDaemon(scratch('mycelium-load-'), ['--swarm', SWARM, '--model', STORIES260K, '--layers', '0:5', '--threads', '1', '--bootstrap', addr(d1)], 'serving')
    // the API node serves [0, 1) only: every chain is d1 or d2 alone
    const d0 = await startDaemon(scratch('mycelium-load-'), ['--swarm', SWARM, '--model', STORIES260K, '--layers', '0:1', '--threads', '1', '--api-port', '0', '--bootstrap', addr(d1), '--bootstrap', addr(d2)], 'serving')
    const url = (await pollUntil('the api event', async () => d0.events.find((e) => e.event === 'api'), 10_000)).url as string
    const [id1, id2] = [d1, d2].map((d) => ready(d).peerId as string)
    const swarmOf = async (d: Started): Promise<{ nodes: Record<string, NodeRecord>, online: string[], loads: Record<string, NodeLoad> }> =>
      await controlRequest(join(d.dir, 'control.sock'), { cmd: 'swarm' }) as unknown as { nodes: Record<string, NodeRecord>, online: string[], loads: Record<string, NodeLoad> }
    await pollUntil('d0 to see both stages and their loads', async () => {
      const v = await swarmOf(d0)
      return [id1, id2].every((id) => v.online.includes(id) && (v.nodes[id]?.layers.length ?? 0) > 0 && v.loads[id] !== undefined) ? true : undefined
    }, 30_000)

    // The router's choice as d0 would make it for the API's requests below (a few prompt tokens,
    // 16 generated), from a snapshot of d0's view with the loads `loads` says.
    const request = { promptTokens: 6, genTokens: 16 }
    type View = Awaited<ReturnType<typeof swarmOf>>
    const routeIn = (view: View, loads: Record<string, NodeLoad> = view.loads): string[] => {
      const table = new LoadTable()
      for (const [peer, l] of Object.entries(loads)) table.set(peer, l)
      const views = { nodes: () => new Map(Object.entries(view.nodes)), online: () => view.online, manifests: () => [], onChange: () => () => {} }
      return chainRouter(withLoad(views, table), { model: { id: view.nodes[id1].layers[0].model, nLayers: 5 }, self: ready(d0).peerId as string, request }).route().map((h) => h.peer.toString())
    }
    // Make busy the one the router picks when both are idle, once d0's view says that a modest
    // load on it would tip the choice: the RTTs each side measured are part of the cost, and a
    // first probe taken while a daemon was still starting can differ by milliseconds on loopback
    // (the probe service re-probes every minute and keeps the least RTT, so this settles then).
    const LOAD_TO_TIP = 24
    const { busyId, tipsAt } = await pollUntil('a preferred daemon that a few sessions tip over', async () => {
      const v = await swarmOf(d0)
      const [preferred] = routeIn(v)
      const idle = v.loads[preferred]
      if (idle === undefined) return undefined
      for (let n = 1; n <= LOAD_TO_TIP; n++) {
        if (routeIn(v, { ...v.loads, [preferred]: { ...idle, load: n } })[0] !== preferred) return { busyId: preferred, tipsAt: n }
      }
      return undefined
    }, 90_000)
    const busy = busyId === id1 ? d1 : d2
    const idle = busy === d1 ? d2 : d1
    const model = (await swarmOf(d0)).nodes[id1].layers[0].model
    const held = Math.max(48, 2 * tipsAt) // twice what tips it: room for the RTTs to move meanwhile

    // hold them open on it (opened, never stepped: they count until the idle timeout)
    await client.dial(multiaddr(addr(busy)))
    const channels = []
    for (let i = 0; i < held; i++) {
      const stream = await client.dialProtocol(peerIdFromString(busyId), inferenceProtocol(SWARM))
      const ch = frameChannel(stream)
      await ch.write({ open: { sessionId: `held-${i}`, model, start: 0, end: 5, maxLength: 256, codec: InferenceHiddenCodec.F32, chain: [], origin: '', sampling: { temperature: 0, topP: 1, topK: 0, seed: 1, maxTokens: 0, skipDraws: 0 } } })
      channels.push(ch)
    }
    await pollUntil(`the busy daemon to hold ${held} sessions`, async () => {
      const s = await controlRequest(join(busy.dir, 'control.sock'), { cmd: 'status' }) as unknown as { inference: { sessions: number } }
      return s.inference.sessions === held ? true : undefined
    }, 10_000)
    await pollUntil('d0 to see the busy daemon\'s load', async () => ((await swarmOf(d0)).loads[busyId]?.load === held ? true : undefined), 15_000)

    // d0's own view with the loads now: the router picks the idle one
    expect(routeIn(await swarmOf(d0))).toEqual([ready(idle).peerId])
    const before = { busy: await opened(busy), idle: await opened(idle) }
    for (let i = 0; i < 4; i++) {
      const r = await fetch(`${url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'stories260K', prompt: 'Once upon a time', max_tokens: 16, temperature: 0 }) })
      expect(r.status).toBe(200)
    }
    expect(await opened(busy)).toBe(before.busy) // nothing new on the busy one
    expect(await opened(idle)).toBe(before.idle + 4)
    for (const ch of channels) ch.stream.abort(new Error('done'))
  }, 180_000)
})
