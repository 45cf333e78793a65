// Distributed inference between real daemons on loopback: `node start --model stories260K
// --layers a:b` processes form 1-, 2-, 3- and 5-stage chains, and a client node running
// runInference gets exactly the single-process engine's greedy tokens (prompt "Once upon a time",
// 64 positions); `kill -9` of a middle daemon mid-generation fails over to a spare with identical
// tokens; a stalled (SIGSTOP) middle daemon is caught by the token deadline and replaced the same
// way; the chain and its replacement can come from the router over the daemons' replicated swarm
// state. Also: `--layers` is validated with one-line errors.
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import type { Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { tcp } from '@libp2p/tcp'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p, type Libp2p } from 'libp2p'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { join } from 'node:path'
import { nodeConfig } from '../../node/config.ts'
import { controlRequest } from '../../node/control.ts'
import type { NodeRecord } from '../../crdt/index.ts'
import { chainRouter, inferenceProtocol, runInference, type ChainHop, type InferenceEvent, type InferenceRequest } from '../../protocols/index.ts'
import { STORIES260K } from '../models.ts'
import { storiesReference } from '../reference.ts'
import { cleanupDaemons, runCli, scratch, startDaemon, pollUntil, readyRecord, tcpAddr, type Started } from './daemons.ts'

const SWARM = 'pipeline'
const STEPS = 64
let prompt: number[]
let expected: number[]
let client: Libp2p

beforeAll(async () => {
  const ref = await storiesReference(STEPS)
  prompt = ref.prompt
  expected = ref.expected
  await ref.whole.close()
  client = await createLibp2p({ addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] }, transports: [tcp()], connectionEncrypters: [noise()], streamMuxers: [yamux()] })
})
afterAll(async () => { await client.stop() })
afterEach(cleanupDaemons)

/**
 * Starts one daemon per range (plus `extra` ranges, not in the chain); each bootstraps to the ones
 * before it, so every pair is connected.
 */
async function chainOf (bounds: number[], extra: Array<[number, number]> = []): Promise<{ chain: ChainHop[], daemons: Started[], spares: ChainHop[] }> {
  const started: Started[] = []
  const ranges: Array<[number, number]> = [...bounds.slice(0, -1).map((b, i): [number, number] => [b, bounds[i + 1]]), ...extra]
  for (const [start, end] of ranges) {
    const boot = started.map(tcpAddr)
    started.push(await startDaemon(scratch('mycelium-pipe-'), ['--swarm', SWARM, '--model', STORIES260K, '--layers', `${start}:${end}`, '--threads', '1', ...(boot.length > 0 ? ['--bootstrap', ...boot] : [])], 'serving'))
  }
  for (const d of started) await client.dial(multiaddr(tcpAddr(d)))
  const hops = started.map((d, i) => ({ peer: readyRecord(d).peerId as string, start: ranges[i][0], end: ranges[i][1] }))
  return { chain: hops.slice(0, bounds.length - 1), daemons: started, spares: hops.slice(bounds.length - 1) }
}

async function generateOver (chain: ChainHop[], options: Pick<InferenceRequest, 'failover'> & { onToken?: (position: number) => void, events?: InferenceEvent[], timeoutMs?: number } = {}): Promise<number[]> {
  const open = async (peer: ChainHop['peer'], protocol: string, o: { signal?: AbortSignal }): Promise<Stream> =>
    await client.dialProtocol(typeof peer === 'string' ? peerIdFromString(peer) : peer, protocol, o)
  const out = [...prompt]
  for await (const ev of runInference(open, inferenceProtocol(SWARM), { chain, prompt, maxLength: STEPS, signal: AbortSignal.timeout(options.timeoutMs ?? 20_000), ...(options.failover !== undefined ? { failover: options.failover } : {}) })) {
    options.events?.push(ev)
    if (ev.type === 'token') { out.push(ev.id); options.onToken?.(ev.position) }
  }
  return out
}

describe('node start --layers: daemons serve a chain of stages', () => {
  it('validates --layers', () => {
    expect(nodeConfig({ model: STORIES260K, layers: '1:3' }).model?.layers).toEqual({ start: 1, end: 3 })
    expect(nodeConfig({ model: STORIES260K, layers: 'auto' }).model?.layers).toBeUndefined()
    for (const bad of ['3:1', '2:2', 'a:b', '1-3', '-1:2']) expect(() => nodeConfig({ model: STORIES260K, layers: bad })).toThrow(/--layers/)
    expect(() => nodeConfig({ layers: '0:2' })).toThrow(/--layers needs --model/)
    const r = runCli(['node', 'start', '--data-dir', scratch('mycelium-pipe-'), '--no-mdns', '--no-upnp', '--listen', '/ip4/127.0.0.1/tcp/0', '--model', STORIES260K, '--layers', '0:9'])
    expect(r.status).not.toBe(0)
    expect(r.stderr).toMatch(/--layers: 0:9 passes the model's 5 layers/)
  })

  it.each([
    ['1 daemon', [0, 5]],
    ['2 daemons', [0, 3, 5]],
    ['3 daemons', [0, 1, 4, 5]],
    ['5 daemons', [0, 1, 2, 3, 4, 5]]
  ])('%s give the single-process greedy tokens', async (_name, bounds) => {
    const { chain, daemons } = await chainOf(bounds)
    expect(await generateOver(chain)).toEqual(expected)
    // every daemon reports the session it served, and holds none now
    const inference = async (d: Started): Promise<{ sessions: number, reservedBytes: number, opened: number, steps: number }> =>
      (await controlRequest(join(d.dir, 'control.sock'), { cmd: 'status' }) as unknown as { inference: { sessions: number, reservedBytes: number, opened: number, steps: number } }).inference
    for (const d of daemons) {
      await expect.poll(async () => await inference(d)).toMatchObject({ sessions: 0, reservedBytes: 0, opened: 1 }) // teardown travels down the chain
      expect((await inference(d)).steps).toBeGreaterThan(0)
    }
  }, 30_000)

  it('kill -9 of the middle daemon at token 20 of 64: failover to a spare, identical tokens', async () => {
    const { chain, daemons, spares } = await chainOf([0, 1, 4, 5], [[1, 4]])
    const events: InferenceEvent[] = []
    const tokens = await generateOver(chain, {
      events,
      onToken: (position) => { if (position === 20) daemons[1].child.kill('SIGKILL') },
      failover: { replace: async (hop) => spares.find((s) => s.start === hop.start && s.end === hop.end) }
    })
    expect(events.filter((e) => e.type === 'retry')).toMatchObject([{ attempt: 1, replaced: [1] }])
    expect(tokens).toEqual(expected)
  }, 30_000)

  it('a stalled middle daemon (SIGSTOP at token 20 of 64): the token deadline fires, the probe finds it, a spare takes over, identical tokens', async () => {
    const { chain, daemons, spares } = await chainOf([0, 1, 4, 5], [[1, 4]])
    const events: InferenceEvent[] = []
    const tokens = await generateOver(chain, {
      events,
      onToken: (position) => { if (position === 20) daemons[1].child.kill('SIGSTOP') },
      // explicit, generous deadlines for a loaded machine: a live daemon gets 10 s to answer the
      // probe (the stopped one never does), and the whole generation 60 s
      failover: { replace: async (hop) => spares.find((s) => s.start === hop.start && s.end === hop.end), probeTimeoutMs: 10_000 },
      timeoutMs: 60_000
    }).finally(() => { daemons[1].child.kill('SIGCONT') })
    const retries = events.filter((e) => e.type === 'retry')
    // the stall: the stopped daemon, found by the probe and replaced by the spare
    const stall = retries.find((r) => r.type === 'retry' && r.replaced.includes(1))
    expect(stall).toMatchObject({ status: 'STALLED', replaced: [1] })
    // detected by the deadline (max(2 s, 10 × median gap)), not by a stream error
    expect(stall?.type === 'retry' && stall.detectMs).toBeGreaterThanOrEqual(2000)
    // any other repair is a false alarm of a loaded machine: every live hop answered, same chain
    for (const r of retries) if (r !== stall) expect(r).toMatchObject({ status: 'STALLED', replaced: [] })
    expect(events.filter((e) => e.type === 'resumed')).toHaveLength(retries.length)
    expect(tokens).toEqual(expected)
  }, 90_000)

  it('routing from the daemons\' replicated swarm state: the chain and, after kill -9 of its middle daemon, the replacement come from routeRequest', async () => {
    const { daemons } = await chainOf([0, 1, 4, 5], [[1, 4]])
    const ids = daemons.map((d) => readyRecord(d).peerId as string)
    // what daemon 0's replica holds: every daemon's record with its measured model figures and range
    type View = { nodes: Record<string, NodeRecord>, online: string[] }
    const view = await pollUntil('every record to carry the model and its range', async () => {
      const v = await controlRequest(join(daemons[0].dir, 'control.sock'), { cmd: 'swarm' }) as unknown as View
      const full = ids.every((id) => v.online.includes(id) && typeof v.nodes[id]?.capabilities.model === 'string' && v.nodes[id].layers.length === 1)
      return full ? v : undefined
    }, 25_000)
    const model = view.nodes[ids[0]].capabilities.model as string
    const views = { nodes: () => new Map(Object.entries(view.nodes)), online: () => view.online }
    const router = chainRouter(views, { model: { id: model, nLayers: 5 } })
    const chain = router.route()
    expect(chain.map((h) => [h.start, h.end])).toEqual([[0, 1], [1, 4], [4, 5]])
    const middle = ids.indexOf(chain[1].peer.toString())
    const other = ids[middle === 1 ? 3 : 1]
    const events: InferenceEvent[] = []
    const tokens = await generateOver(chain, {
      events,
      onToken: (position) => { if (position === 20) daemons[middle].child.kill('SIGKILL') },
      failover: { replace: router.replace }
    })
    expect(events.filter((e) => e.type === 'retry')).toMatchObject([{ attempt: 1, replaced: [1] }])
    expect([...router.excluded]).toEqual([chain[1].peer.toString()])
    const status = await controlRequest(join(daemons[ids.indexOf(other)].dir, 'control.sock'), { cmd: 'status' }) as unknown as { inference: { opened: number } }
    expect(status.inference.opened).toBe(1) // the router's replacement served the rest
    expect(tokens).toEqual(expected)
  }, 40_000)

  it('--layers auto: three daemons serve the ranges their shared allocation gives them, and the chain generates', async () => {
    const started: Started[] = []
    for (let i = 0; i < 3; i++) {
      // 10 MiB each holds 2 of stories260K's 5 layers: the allocation must split the model over all three
      started.push(await startDaemon(scratch('mycelium-pipe-'), ['--swarm', SWARM, '--model', STORIES260K, '--max-memory', '10M', '--threads', '1', ...(started.length > 0 ? ['--bootstrap', ...started.map(tcpAddr)] : [])]))
    }
    for (const d of started) await client.dial(multiaddr(tcpAddr(d)))
    const ids = started.map((d) => readyRecord(d).peerId as string)
    // wait until one covered allocation is what every daemon last announced serving
    const chain = await pollUntil('the daemons to serve one covered allocation', async () => {
      const a = (await controlRequest(join(started[0].dir, 'control.sock'), { cmd: 'allocation' })) as unknown as { allocation?: { covered: boolean, assignments: Array<{ peerId: string, start: number, end: number }> } }
      const assignments = a.allocation?.covered === true ? a.allocation.assignments : []
      const serving = (d: Started): Record<string, unknown> | undefined => d.events.filter((e) => e.event === 'serving').at(-1)
      const agreed = assignments.length === 3 && started.every((d, i) => {
        const mine = assignments.find((x) => x.peerId === ids[i])
        return mine !== undefined && serving(d)?.start === mine.start && serving(d)?.end === mine.end
      })
      return agreed ? [...assignments].sort((x, y) => x.start - y.start).map((x): ChainHop => ({ peer: x.peerId, start: x.start, end: x.end })) : undefined
    }, 25_000)
    expect(await generateOver(chain)).toEqual(expected)
  }, 40_000)
})
