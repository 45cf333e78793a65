// In-process hosts on loopback: DHT content discovery within a swarm and not across swarms,
// member vs non-member relay limits, payload protocols refused on limited circuits, and a peer
// opening a thousand streams gets refusals while the node keeps serving.
import { generateKeyPairFromSeed } from '@libp2p/crypto/keys'
import type { Connection } from '@libp2p/interface'
import { multiaddr } from '@multiformats/multiaddr'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { nodeConfig } from '../../node/config.ts'
import { createHost } from '../../node/host.ts'
import type { MyceliumHost } from '../../node/host.ts'
import { announceModel, findModelProviders } from '../../node/providers.ts'
import { bulkProtocol, sendBulk } from '../../protocols/index.ts'
import { seededRandom, testSeed } from '../seed.ts'

const seed = testSeed()
const rand = seededRandom(seed)
const SINK = '/test/sink/1.0.0'

async function host (swarm: string, options: { public?: boolean, bootstrap?: string[] } = {}): Promise<MyceliumHost> {
  const key = await generateKeyPairFromSeed('Ed25519', Uint8Array.from({ length: 32 }, () => Math.floor(rand() * 256)))
  const config = nodeConfig({ listen: ['/ip4/127.0.0.1/tcp/0'], swarm, public: options.public, bootstrap: options.bootstrap, dataDir: '/nonexistent', mdns: false, upnp: false })
  return await createHost(config, key, { dhtServer: true, directUpgrade: false })
}

async function waitFor<T> (check: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs: number, what: string): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const v = await check()
    if (v !== undefined && v !== false) return v
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} (TEST_SEED=${seed})`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

describe(`mesh on loopback (TEST_SEED=${seed})`, () => {
  let relay: MyceliumHost
  let a: MyceliumHost
  let b: MyceliumHost
  let stranger: MyceliumHost
  let sunk = 0
  const circuit = (h: MyceliumHost): ReturnType<typeof multiaddr> => multiaddr(`${relay.getMultiaddrs()[0].toString()}/p2p-circuit/p2p/${h.peerId.toString()}`)

  beforeAll(async () => {
    relay = await host('s1', { public: true })
    const boot = [relay.getMultiaddrs()[0].toString()]
    ;[a, b, stranger] = await Promise.all([host('s1', { bootstrap: boot }), host('s1', { bootstrap: boot }), host('s2', { bootstrap: boot })])
    // a test sink that accepts limited connections, to measure what a limited circuit lets through
    await a.handle(SINK, async (stream) => {
      for await (const chunk of stream) sunk += chunk.byteLength
    }, { runOnLimitedConnection: true })
    await waitFor(() => a.getMultiaddrs().some((m) => m.toString().includes('/p2p-circuit')), 15_000, 'a to hold a relay reservation')
  })

  afterAll(async () => {
    await Promise.all([relay, a, b, stranger].filter(Boolean).map(async (h) => { await h.stop() }))
  })

  it('finds providers of a model on the swarm\'s DHT, and not from another swarm', async () => {
    const hash = Array.from({ length: 32 }, () => Math.floor(rand() * 256).toString(16).padStart(2, '0')).join('')
    await a.dial(relay.getMultiaddrs()[0])
    await waitFor(async () => {
      await announceModel(a.contentRouting, 's1', hash, { signal: AbortSignal.timeout(2000) }).catch(() => undefined)
      const found = await findModelProviders(b.contentRouting, 's1', hash, { limit: 1, signal: AbortSignal.timeout(2000) }).catch(() => [])
      return found.some((p) => p.peer === a.peerId.toString()) ? found : undefined
    }, 20_000, 'b to find a as provider')
    const across = await findModelProviders(stranger.contentRouting, 's2', hash, { limit: 1, signal: AbortSignal.timeout(2000) }).catch(() => [])
    expect(across).toEqual([])
  })

  it('gives a member↔member circuit no limits, so payload protocols run over the relay', async () => {
    const conn: Connection = await b.dial(circuit(a), { force: true })
    expect(conn.remoteAddr.toString()).toContain('/p2p-circuit')
    expect(conn.limits).toBeUndefined()
    const stream = await conn.newStream(bulkProtocol('s1'))
    const sent = await sendBulk(stream, 1_000_000)
    expect(sent.bytes).toBe(1_000_000)
  })

  it('keeps a non-member\'s circuit at libp2p\'s 128 KiB default and refuses payload protocols on it', async () => {
    const conn: Connection = await stranger.dial(circuit(a), { force: true })
    expect(conn.limits?.bytes).toBeDefined()
    expect(Number(conn.limits?.bytes)).toBeLessThanOrEqual(128 * 1024)
    await expect(conn.newStream(bulkProtocol('s1'))).rejects.toThrow(/limited/i)
    // another swarm's protocol is simply not spoken here
    await expect(conn.newStream(bulkProtocol('s2'), { runOnLimitedConnection: true })).rejects.toThrow()
    // the relay cuts the circuit at the data limit
    sunk = 0
    const sink = await conn.newStream(SINK, { runOnLimitedConnection: true })
    const chunk = new Uint8Array(16 * 1024)
    let sent = 0
    try {
      while (sent < 1024 * 1024) {
        if (!sink.send(chunk)) await sink.onDrain({ signal: AbortSignal.timeout(5000) })
        sent += chunk.byteLength
      }
      await sink.close({ signal: AbortSignal.timeout(5000) })
    } catch {
      // expected: the relay resets the circuit at the limit
    }
    await waitFor(() => conn.status !== 'open', 10_000, 'the relay to close the limited circuit')
    expect(sunk).toBeLessThanOrEqual(128 * 1024)
  })

  it('answers a thousand parallel streams with refusals and keeps serving', async () => {
    const direct = await b.dial(a.getMultiaddrs().find((m) => !m.toString().includes('/p2p-circuit'))!)
    const attempts = await Promise.allSettled(Array.from({ length: 1000 }, async () => {
      const signal = AbortSignal.timeout(3_000)
      return await sendBulk(await direct.newStream(bulkProtocol('s1'), { signal }), 10, { signal })
    }))
    const refused = attempts.filter((r) => r.status === 'rejected').length
    expect(refused).toBeGreaterThan(0)
    // the node stays up and serves a newcomer (the storming connection itself may be dropped)
    const newcomer = await host('s1')
    try {
      const after = await sendBulk(await newcomer.dialProtocol(a.getMultiaddrs().find((m) => !m.toString().includes('/p2p-circuit'))!, bulkProtocol('s1')), 100_000)
      expect(after.bytes).toBe(100_000)
    } finally {
      await newcomer.stop()
    }
  })
})
