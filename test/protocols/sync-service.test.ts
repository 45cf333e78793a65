// The swarm-sync service over real libp2p (loopback TCP, noise, yamux, gossipsub): gossip
// fan-out, anti-entropy on connect, and the service plugged into a plain `services` map.
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { encodeBeacon, keySigner, SwarmState, type Envelope } from '../../crdt/index.ts'
import type { Message } from '@libp2p/gossipsub'
import { afterEach, describe, expect, it } from 'vitest'
import { createSyncNode, Partition, until, type SyncNode } from './sync-harness.ts'

const nodes: SyncNode[] = []
afterEach(async () => { await Promise.all(nodes.splice(0).map(async (n) => await n.stop())) })

describe('swarm-sync service', () => {
  it('gossips envelopes and pulls what a late joiner missed', async () => {
    const partition = new Partition()
    for (let i = 0; i < 3; i++) nodes.push(await createSyncNode(partition, { swarm: 'unit', syncIntervalMs: 0 }))
    const [a, b, c] = nodes
    await a.dial(b.getMultiaddrs()[0])
    await until(() => a.services.pubsub.getSubscribers(a.services.swarmSync.topic).length > 0, 5000)
    await a.services.swarmSync.state.putManifest('m', { layers: 2 })
    expect(await until(() => b.services.swarmSync.state.manifests().length === 1, 5000)).toBe(true)
    // c was not there: it gets everything by anti-entropy when it connects.
    await c.dial(b.getMultiaddrs()[0])
    expect(await until(() => c.services.swarmSync.state.manifests().length === 1, 5000)).toBe(true)
    expect(c.services.swarmSync.state.snapshot()).toEqual(a.services.swarmSync.state.snapshot())
    expect(c.services.swarmSync.stats.syncBytesIn).toBeGreaterThan(0)
  })

  it('a known identity with an empty store waits for its chain before writing', async () => {
    const key = await generateKeyPair('Ed25519')
    const partition = new Partition()
    const first = await createSyncNode(partition, { swarm: 'unit', syncIntervalMs: 0 }, {}, key)
    const peer = await createSyncNode(partition, { swarm: 'unit', syncIntervalMs: 0 })
    nodes.push(peer)
    await peer.dial(first.getMultiaddrs()[0])
    for (let i = 0; i < 3; i++) await first.services.swarmSync.state.recordRound('tick', i)
    expect(await until(() => peer.services.swarmSync.state.heads()[0]?.seq === 3, 5000)).toBe(true)
    await first.stop()
    // Same key, data directory lost: writes are parked until the first pull returns seq 1..3.
    const again = await createSyncNode(partition, { swarm: 'unit', syncIntervalMs: 0, identityExisted: true }, {}, key)
    nodes.push(again)
    const state = again.services.swarmSync.state
    expect(state.writesPaused).toBe(true)
    const write = state.recordRound('tick', 3)
    await again.dial(peer.getMultiaddrs()[0])
    const envelope = await write
    expect(envelope.seq).toBe(4)
    expect(await until(() => peer.services.swarmSync.state.heads()[0]?.seq === 4, 5000)).toBe(true)
    expect(peer.services.swarmSync.state.flagged.size).toBe(0)
  })

  it('publishes presence beacons on its own, never envelopes, and peers see it online', async () => {
    const partition = new Partition()
    nodes.push(await createSyncNode(partition, { swarm: 'unit', syncIntervalMs: 0, heartbeatIntervalMs: 50 }))
    nodes.push(await createSyncNode(partition, { swarm: 'unit', syncIntervalMs: 0 }))
    const [a, b] = nodes
    await b.dial(a.getMultiaddrs()[0])
    const state = a.services.swarmSync.state
    expect(await until(() => b.services.swarmSync.state.online().includes(state.peerId) && a.services.swarmSync.stats.beaconBytesOut > 0, 5000)).toBe(true)
    expect(await until(() => b.services.swarmSync.stats.beaconBytesIn > 0, 5000)).toBe(true) // by gossip too
    expect(state.online()).toEqual([state.peerId])
    expect(state.heads()).toEqual([])
    expect(b.services.swarmSync.state.writers()).toEqual([])
  })

  it('a node that connects learns who is online from its first pull, without waiting a heartbeat', async () => {
    const partition = new Partition()
    for (let i = 0; i < 3; i++) nodes.push(await createSyncNode(partition, { swarm: 'unit', syncIntervalMs: 0 }))
    const [a, b, late] = nodes
    await a.dial(b.getMultiaddrs()[0])
    await a.services.swarmSync.state.heartbeat()
    await b.services.swarmSync.state.heartbeat()
    expect(await until(() => b.services.swarmSync.state.online().length === 2, 5000)).toBe(true)
    await late.dial(b.getMultiaddrs()[0]) // no timer runs: only the pull's reply can tell it
    await late.services.swarmSync.whenIdle()
    expect(await until(() => late.services.swarmSync.state.online().length === 2, 5000)).toBe(true)
    expect(late.services.swarmSync.state.online()).toEqual(b.services.swarmSync.state.online())
    // Holding the same beacons now (same digest), its next pull gets none of them again.
    const before = late.services.swarmSync.stats.syncBytesIn
    await late.services.swarmSync.pull(b.peerId.toString())
    expect(late.services.swarmSync.stats.syncBytesIn - before).toBeLessThan(100) // 2 beacons would be ≈290
  })

  it('a beacon showing a writer ahead of us makes the node pull from the neighbour that sent it', async () => {
    const partition = new Partition()
    for (let i = 0; i < 2; i++) nodes.push(await createSyncNode(partition, { swarm: 'unit', syncIntervalMs: 0 }))
    const [a, b] = nodes
    await b.dial(a.getMultiaddrs()[0])
    expect(await until(() => b.services.swarmSync.stats.pulls >= 1, 5000)).toBe(true) // the pull on connect
    await b.services.swarmSync.whenIdle()
    // A writer whose envelope a holds but never gossiped (handed over directly), and its beacon.
    const key = await generateKeyPair('Ed25519')
    const writer = new SwarmState({ swarm: 'unit', signer: keySigner(key) })
    const sent: Envelope[] = []
    writer.onEnvelope((e) => sent.push(e))
    await writer.recordRound('r', 1)
    expect(a.services.swarmSync.state.receive(sent[0]).status).toBe('accepted')
    const beacon = await writer.heartbeat()
    const stats = b.services.swarmSync.stats
    const pullsBefore = stats.pulls
    const topic = b.services.swarmSync.presenceTopic
    const validator = b.services.pubsub.topicValidators.get(topic)
    // reason: the validator reads only type, from and data of the gossipsub message
    const message = { type: 'signed', from: peerIdFromPrivateKey(key), topic, data: encodeBeacon(beacon) } as unknown as Message
    expect(await validator?.(a.peerId, message)).toBe('accept') // forwarded by a
    expect(await until(() => b.services.swarmSync.state.rounds().length === 1, 5000)).toBe(true)
    expect(stats.pulls).toBe(pullsBefore + 1)
    expect(b.services.swarmSync.state.online()).toEqual([writer.peerId])
  })

  it('pages a backlog through small replies on one stream', async () => {
    const partition = new Partition()
    for (let i = 0; i < 2; i++) nodes.push(await createSyncNode(partition, { swarm: 'unit', syncIntervalMs: 0, replyBytes: 500 }))
    const [a, b] = nodes
    for (let i = 0; i < 40; i++) await a.services.swarmSync.state.recordRound(`r${i}`, { i })
    await b.dial(a.getMultiaddrs()[0])
    expect(await until(() => b.services.swarmSync.state.rounds().length === 40, 5000)).toBe(true)
    expect(b.services.swarmSync.stats.pulls).toBe(1)
    expect(b.services.swarmSync.stats.syncRawBytesIn).toBeGreaterThan(2000)
  })

  it('a pull can be aborted', async () => {
    const partition = new Partition()
    for (let i = 0; i < 2; i++) nodes.push(await createSyncNode(partition, { swarm: 'unit', syncIntervalMs: 0 }))
    const [a, b] = nodes
    await a.services.swarmSync.state.recordRound('tick', 0)
    await b.dial(a.getMultiaddrs()[0])
    await b.services.swarmSync.whenIdle()
    await a.services.swarmSync.state.recordRound('tick', 1)
    const controller = new AbortController()
    controller.abort(new Error('caller gave up'))
    const failed = b.services.swarmSync.stats.pullsFailed
    expect(await b.services.swarmSync.pull(a.peerId.toString(), { signal: controller.signal })).toBe(0)
    expect(b.services.swarmSync.stats.pullsFailed).toBe(failed + 1)
    await expect(b.services.swarmSync.whenIdle({ signal: controller.signal })).resolves.toBeUndefined()
  })
})
