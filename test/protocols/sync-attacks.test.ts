// Adversarial suite over the network: attacks that only exist on the wire (flood, unsigned
// gossip, replay by another publisher, bad signatures, oversize messages, sync request floods).
// Document-level attacks (forged clientID, foreign namespace, ...) are in test/crdt/attacks.test.ts.
import { deflateRawSync } from 'node:zlib'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { Ed25519PrivateKey } from '@libp2p/interface'
import { pbStream } from '@libp2p/utils'
import { SYNC_PROTOCOL } from '../../protocols/sync/constants.ts'
import { SyncReply, SyncRequest } from '../../protocols/sync/sync.pb.js'
import { afterEach, describe, expect, it } from 'vitest'
import * as Y from 'yjs'
import { crdtConstants, encodeBeacon, encodeEnvelope, GENESIS_HASH, keySigner, sealEnvelope, SwarmState, type Envelope } from '../../crdt/index.ts'
import { createGossipNode, createSyncNode, Partition, until, type GossipOnlyNode, type SyncNode } from './sync-harness.ts'

const SWARM = 'attack'
const started: Array<SyncNode | GossipOnlyNode> = []
afterEach(async () => { await Promise.all(started.splice(0).map(async (n) => await n.stop())) })

async function honestNode (init = {}): Promise<SyncNode> {
  const node = await createSyncNode(new Partition(), { swarm: SWARM, syncIntervalMs: 0, ...init })
  started.push(node)
  return node
}

/** An attacker libp2p node plus a SwarmState signing with the same key (for valid envelopes). */
async function attacker (gossip = {}): Promise<{ node: GossipOnlyNode, state: SwarmState, sent: Envelope[], key: Ed25519PrivateKey }> {
  const key = await generateKeyPair('Ed25519')
  const node = await createGossipNode(gossip, key)
  started.push(node)
  const state = new SwarmState({ swarm: SWARM, signer: keySigner(key) })
  const sent: Envelope[] = []
  state.onEnvelope((e) => sent.push(e))
  return { node, state, sent, key }
}

async function link (a: SyncNode | GossipOnlyNode, b: SyncNode | GossipOnlyNode, topic: string): Promise<void> {
  a.services.pubsub.subscribe(topic)
  await a.dial(b.getMultiaddrs()[0])
  expect(await until(() => a.services.pubsub.getSubscribers(topic).length > 0 && b.services.pubsub.getSubscribers(topic).length > 0, 5000)).toBe(true)
}

describe('attacks on the wire', () => {
  it('flood: gossip beyond the per-peer rate limit is ignored and counted', async () => {
    const honest = await honestNode({ gossipBurst: 50, gossipPerSecond: 1 })
    const evil = await attacker()
    const topic = honest.services.swarmSync.topic
    await link(evil.node, honest, topic)
    for (let i = 0; i < 400; i++) await evil.state.recordRound('tick', i)
    const started = Date.now()
    for (const e of evil.sent) await evil.node.services.pubsub.publish(topic, encodeEnvelope(e))
    const stats = honest.services.swarmSync.stats
    expect(await until(() => stats.rateLimited + stats.gossipAccepted >= 400, 10_000)).toBe(true)
    const allowed = 50 + Math.ceil((Date.now() - started) / 1000) // burst, then 1 per second
    expect(stats.gossipAccepted).toBeLessThanOrEqual(allowed)
    expect(stats.rateLimited).toBeGreaterThanOrEqual(400 - allowed)
  })

  it('unsigned gossip is never applied', async () => {
    const honest = await honestNode()
    const topic = honest.services.swarmSync.topic
    const evil = await attacker({ globalSignaturePolicy: 'StrictNoSign' })
    await link(evil.node, honest, topic)
    await evil.state.recordRound('tick', 0)
    await evil.node.services.pubsub.publish(topic, encodeEnvelope(evil.sent[0]))
    // A legitimate writer's message after it arrives; the unsigned one never does.
    const good = await attacker()
    await link(good.node, honest, topic)
    await good.state.recordRound('tick', 0)
    await good.node.services.pubsub.publish(topic, encodeEnvelope(good.sent[0]))
    expect(await until(() => honest.services.swarmSync.state.writers().includes(good.state.peerId), 5000)).toBe(true)
    expect(honest.services.swarmSync.state.writers()).not.toContain(evil.state.peerId)
    // And our validator refuses unsigned messages itself, should gossipsub ever pass one on.
    const validator = honest.services.pubsub.topicValidators.get(topic)
    expect(await validator?.(evil.node.peerId, { type: 'unsigned', topic, data: encodeEnvelope(evil.sent[0]) })).toBe('reject')
  })

  it('replay: an envelope re-published by a peer other than its writer is rejected', async () => {
    const honest = await honestNode()
    const topic = honest.services.swarmSync.topic
    const victim = await attacker()
    await victim.state.recordRound('tick', 0)
    const evil = await attacker()
    await link(evil.node, honest, topic)
    await evil.node.services.pubsub.publish(topic, encodeEnvelope(victim.sent[0]))
    const stats = honest.services.swarmSync.stats
    expect(await until(() => stats.gossipRejected >= 1, 5000)).toBe(true)
    expect(honest.services.swarmSync.state.writers()).toEqual([])
  })

  it('bad signature and oversize gossip are rejected, and the sender is flagged', async () => {
    const honest = await honestNode()
    const topic = honest.services.swarmSync.topic
    const evil = await attacker()
    await link(evil.node, honest, topic)
    await evil.state.recordRound('tick', 0)
    const forged = { ...evil.sent[0], signature: new Uint8Array(64).fill(7) }
    await evil.node.services.pubsub.publish(topic, encodeEnvelope(forged))
    await evil.node.services.pubsub.publish(topic, new Uint8Array(200_000).fill(1))
    const stats = honest.services.swarmSync.stats
    expect(await until(() => stats.gossipRejected >= 2, 5000)).toBe(true)
    const state = honest.services.swarmSync.state
    expect(state.flagged.get(evil.node.peerId.toString())?.reasons).toContain('bad-signature')
    expect(state.writers()).not.toContain(evil.state.peerId)
  })

  it('presence topic: replayed, forged and garbage beacons are rejected; a genuine one is taken', async () => {
    const honest = await honestNode()
    const topic = honest.services.swarmSync.presenceTopic
    const victim = await attacker()
    const evil = await attacker()
    await link(evil.node, honest, topic)
    const genuine = await victim.state.heartbeat()
    const own = await evil.state.heartbeat()
    await evil.node.services.pubsub.publish(topic, encodeBeacon(genuine)) // not its writer: a replay
    await evil.node.services.pubsub.publish(topic, encodeBeacon({ ...own, seq: 99 })) // signature no longer holds
    await evil.node.services.pubsub.publish(topic, new Uint8Array(300).fill(3))
    const stats = honest.services.swarmSync.stats
    expect(await until(() => stats.gossipRejected >= 3, 5000)).toBe(true)
    const state = honest.services.swarmSync.state
    expect(state.online()).toEqual([])
    expect(state.flagged.get(evil.node.peerId.toString())?.reasons).toContain('bad-signature')
    await evil.node.services.pubsub.publish(topic, encodeBeacon(own))
    expect(await until(() => state.online().includes(evil.state.peerId), 5000)).toBe(true)
    expect(state.writers()).toEqual([]) // presence never enters the log
  })

  it('a writer past its quota is refused (Ignored, so its honest forwarders are not hung up on)', async () => {
    const honest = await honestNode({ rejectsBeforeHangup: 1 })
    const topic = honest.services.swarmSync.topic
    const evil = await attacker()
    await link(evil.node, honest, topic)
    // Valid envelopes of ≈60 KB each, signed by the attacker's key, until one passes 8 MiB.
    const doc = new Y.Doc()
    doc.clientID = evil.state.identity.clientId
    const map = doc.getMap(evil.state.identity.namespace)
    const updates: Uint8Array[] = []
    doc.on('update', (u: Uint8Array) => updates.push(u))
    let prev: Uint8Array = GENESIS_HASH
    let bytes = 0
    let fitting = 0
    for (let seq = 1; bytes <= crdtConstants.MAX_WRITER_BYTES; seq++) {
      map.set(`blob-${seq}`, 'z'.repeat(60_000))
      const sealed = await sealEnvelope(SWARM, keySigner(evil.key), seq, prev, updates[seq - 1])
      prev = sealed.hash
      bytes += updates[seq - 1].length + crdtConstants.ENVELOPE_OVERHEAD_BYTES
      if (bytes <= crdtConstants.MAX_WRITER_BYTES) fitting = seq
      await evil.node.services.pubsub.publish(topic, encodeEnvelope(sealed.envelope))
    }
    const state = honest.services.swarmSync.state
    expect(await until(() => (state.counters.byReason.quota ?? 0) >= 1, 20_000)).toBe(true)
    expect(state.heads().find((h) => h.clientId === evil.state.identity.clientId)?.seq).toBe(fitting)
    expect(state.flagged.get(evil.state.peerId)?.reasons).toContain('quota')
    expect(honest.services.swarmSync.stats.hangups).toBe(0)
    expect(honest.getConnections(evil.node.peerId).length).toBeGreaterThan(0)
  })

  it('a neighbour that keeps sending invalid gossip is disconnected', async () => {
    const honest = await honestNode({ rejectsBeforeHangup: 5 })
    const topic = honest.services.swarmSync.topic
    const evil = await attacker()
    await link(evil.node, honest, topic)
    for (let i = 0; i < 8; i++) await evil.node.services.pubsub.publish(topic, Uint8Array.from([0xff, i]))
    const stats = honest.services.swarmSync.stats
    expect(await until(() => stats.hangups === 1 && honest.getConnections(evil.node.peerId).length === 0, 5000)).toBe(true)
    expect(stats.gossipRejected).toBeGreaterThanOrEqual(5)
  })

  it('equivocation: found in one anti-entropy round and proven to replicas that saw one branch', async () => {
    const key = await generateKeyPair('Ed25519')
    const branch = async (score: number): Promise<Envelope[]> => {
      const w = new SwarmState({ swarm: SWARM, signer: keySigner(key) })
      const out: Envelope[] = []
      w.onEnvelope((e) => out.push(e))
      await w.recordRound('tick', 0)
      await w.claimReputation('x', score)
      return out
    }
    const [one, two] = [await branch(1), await branch(2)]
    const [a, b, c] = [await honestNode(), await honestNode(), await honestNode()]
    const [sa, sb, sc] = [a, b, c].map((n) => n.services.swarmSync.state)
    for (const e of one) { sa.receive(e); sc.receive(e) }
    for (const e of two) sb.receive(e)
    const writer = key.publicKey.toString()
    await a.dial(b.getMultiaddrs()[0]) // a and b pull from each other on connect
    expect(await until(() => sa.flagged.get(writer)?.excluded === true && sb.flagged.get(writer)?.excluded === true, 5000)).toBe(true)
    await c.dial(a.getMultiaddrs()[0]) // c holds a's branch: only the proof can convince it
    expect(await until(() => sc.flagged.get(writer)?.excluded === true, 5000)).toBe(true)
    for (const s of [sa, sb, sc]) expect(s.rounds().some((r) => r.writer === writer)).toBe(false)
    expect(JSON.stringify(sa.snapshot())).toBe(JSON.stringify(sb.snapshot()))
    expect(JSON.stringify(sc.snapshot())).toBe(JSON.stringify(sa.snapshot()))
  })

  it('a sync reply that inflates past the bound (deflate bomb) fails the pull', async () => {
    const honest = await honestNode()
    const evil = await attacker()
    await evil.node.handle(SYNC_PROTOCOL, async (stream) => {
      const pb = pbStream(stream)
      await pb.read(SyncRequest)
      const bomb = deflateRawSync(new Uint8Array(64 * 1024 * 1024))
      await pb.write({ status: SyncReply.Status.OK, runs: bomb, more: false, forks: [], beacons: [] }, SyncReply)
      await stream.close()
    })
    await honest.dial(evil.node.getMultiaddrs()[0])
    const stats = honest.services.swarmSync.stats
    expect(await until(() => stats.pullsFailed >= 1, 5000)).toBe(true)
    expect(honest.services.swarmSync.state.writers()).toEqual([])
  })

  it('sync requests beyond the per-peer limit are refused', async () => {
    const honest = await honestNode({ syncBurst: 1, syncPerSecond: 0.001 })
    const other = await honestNode()
    await honest.services.swarmSync.state.recordRound('tick', 0)
    await other.dial(honest.getMultiaddrs()[0])
    await other.services.swarmSync.whenIdle()
    expect(await until(() => other.services.swarmSync.state.writers().length === 1, 5000)).toBe(true)
    const failedBefore = other.services.swarmSync.stats.pullsFailed
    await other.services.swarmSync.pull(honest.peerId.toString())
    expect(other.services.swarmSync.stats.pullsFailed).toBe(failedBefore + 1)
    expect(honest.services.swarmSync.stats.syncRefused).toBeGreaterThan(0)
  })
})
