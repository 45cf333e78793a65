// The swarm-sync service over real libp2p (loopback TCP, noise, yamux, gossipsub): gossip
// fan-out, anti-entropy on connect, and the service plugged into a plain `services` map.
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
    await a.services.swarmSync.state.heartbeat()
    await a.services.swarmSync.state.putManifest('m', { layers: 2 })
    expect(await until(() => b.services.swarmSync.state.manifests().length === 1, 5000)).toBe(true)
    // c was not there: it gets everything by anti-entropy when it connects.
    await c.dial(b.getMultiaddrs()[0])
    expect(await until(() => c.services.swarmSync.state.manifests().length === 1, 5000)).toBe(true)
    expect(c.services.swarmSync.state.snapshot()).toEqual(a.services.swarmSync.state.snapshot())
    expect(c.services.swarmSync.stats.syncBytesIn).toBeGreaterThan(0)
  })

  it('a pull can be aborted', async () => {
    const partition = new Partition()
    for (let i = 0; i < 2; i++) nodes.push(await createSyncNode(partition, { swarm: 'unit', syncIntervalMs: 0 }))
    const [a, b] = nodes
    await a.services.swarmSync.state.heartbeat()
    await b.dial(a.getMultiaddrs()[0])
    await b.services.swarmSync.whenIdle()
    await a.services.swarmSync.state.heartbeat()
    const controller = new AbortController()
    controller.abort(new Error('caller gave up'))
    const failed = b.services.swarmSync.stats.pullsFailed
    expect(await b.services.swarmSync.pull(a.peerId.toString(), { signal: controller.signal })).toBe(0)
    expect(b.services.swarmSync.stats.pullsFailed).toBe(failed + 1)
    await expect(b.services.swarmSync.whenIdle({ signal: controller.signal })).resolves.toBeUndefined()
  })
})
