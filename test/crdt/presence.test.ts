// Presence as signed ephemeral beacons: never in the envelope log or the document, only the
// latest per writer kept, bounded skew, bounded table, excluded writers ignored, TTL on the
// reader's clock.
import * as Y from 'yjs'
import { describe, expect, it } from 'vitest'
import { crdtConstants, decodeBeacon, encodeBeacon, keySigner, memoryEnvelopeStore, sealBeacon, SwarmState, type Beacon } from '../../crdt/index.ts'
import { seededRandom, testSeed } from '../seed.ts'
import { capture, makeState, seededKey, SWARM, syncPair } from './helpers.ts'

const seed = testSeed()

describe(`presence beacons (TEST_SEED=${seed} npx vitest run test/crdt/presence.test.ts)`, () => {
  it('a heartbeat is a beacon: 1,000 heartbeat periods add 0 bytes to the envelope log and the document', async () => {
    const random = seededRandom(seed)
    let now = 1_000_000
    const store = memoryEnvelopeStore()
    const a = await makeState(random, { clock: () => now, store })
    const b = await makeState(random, { clock: () => now })
    const sent = capture(a)
    await a.setNode({ capabilities: {}, layers: [], addresses: [], version: '1' })
    await a.flush()
    const logBytes = store.bytes().length
    const docBytes = Y.encodeStateAsUpdate(a.doc).length
    const beacons: Beacon[] = []
    for (let i = 0; i < 1000; i++) {
      now += 10_000
      beacons.push(await a.heartbeat())
      expect(b.receiveBeacon(beacons[i], a.peerId).status).toBe('accepted')
    }
    await a.flush()
    expect(store.bytes().length - logBytes).toBe(0)
    expect(Y.encodeStateAsUpdate(a.doc).length).toBe(docBytes)
    expect(sent).toHaveLength(1) // the node record; no envelope per heartbeat
    expect(a.heads()[0].seq).toBe(1)
    expect(b.writers()).toEqual([]) // b holds no chain of a, only its latest beacon
    expect(b.presence()).toEqual(new Map([[a.peerId, { at: now }]]))
    expect(encodeBeacon(beacons[0]).length).toBeLessThanOrEqual(crdtConstants.MAX_BEACON_BYTES)
    // The beacon carries the writer's head, so b knows it is behind.
    expect(beacons[0]).toMatchObject({ seq: 1, head: a.heads()[0].hash })
    expect(b.receiveBeacon(await a.heartbeat())).toMatchObject({ status: 'accepted', behind: true })
    expect(Object.keys(a.snapshot() as object)).toEqual([a.peerId])
    expect(Object.keys((a.snapshot() as Record<string, Record<string, unknown>>)[a.peerId])).toEqual(['node'])
  })

  it('expires after the TTL by the reader clock, and round-trips the wire codec', async () => {
    const random = seededRandom(seed)
    let now = 1_000_000
    const a = await makeState(random, { clock: () => now })
    const b = await makeState(random, { clock: () => now, presenceTtlMs: 30_000 })
    expect(b.receiveBeacon(decodeBeacon(encodeBeacon(await a.heartbeat())))).toMatchObject({ status: 'accepted', behind: false })
    expect(b.online()).toEqual([a.peerId])
    now += 29_999
    expect(b.online()).toEqual([a.peerId])
    now += 1
    expect(b.online()).toEqual([])
    expect(b.presence().has(a.peerId)).toBe(true) // held until pruned
    b.prunePresence()
    expect(b.presence().size).toBe(0)
    expect(a.online(now - 1)).toEqual([a.peerId]) // its own beacon counts for itself
  })

  it('only the latest beacon is kept: older or equal timestamps are stale', async () => {
    const random = seededRandom(seed)
    let now = 1_000_000
    const a = await makeState(random, { clock: () => now })
    const b = await makeState(random, { clock: () => now })
    const first = await a.heartbeat()
    now += 5_000
    const second = await a.heartbeat()
    expect(b.receiveBeacon(second).status).toBe('accepted')
    expect(b.receiveBeacon(first).status).toBe('stale')
    expect(b.receiveBeacon(second).status).toBe('stale') // a replay
    expect(b.presence().get(a.peerId)).toEqual({ at: now })
    expect(b.counters).toMatchObject({ beacons: 1, staleBeacons: 2, rejected: 0 })
    // A relayed old beacon counts from its own timestamp, not from when it was relayed.
    const c = await makeState(random, { clock: () => now + 29_000 })
    expect(c.receiveBeacon(first).status).toBe('stale') // 34 s old by c's clock: expired
    expect(c.receiveBeacon(second).status).toBe('accepted')
    expect(c.online(now + 30_000)).toEqual([])
  })

  it('a beacon from beyond the skew bound is refused; a clock running ahead cannot stay online', async () => {
    const random = seededRandom(seed)
    let now = 1_000_000
    const far = await makeState(random, { clock: () => now + crdtConstants.BEACON_MAX_SKEW_MS + 1 })
    const near = await makeState(random, { clock: () => now + crdtConstants.BEACON_MAX_SKEW_MS })
    const b = await makeState(random, { clock: () => now })
    expect(b.receiveBeacon(await far.heartbeat(), 'relay')).toMatchObject({ status: 'rejected', reason: 'clock-skew' })
    expect(b.flagged.size).toBe(0) // a wrong clock is not an attack
    expect(b.receiveBeacon(await near.heartbeat()).status).toBe('accepted')
    expect(b.online()).toEqual([near.peerId])
    now += 30_000 // counted from when b took it, not from near's timestamp
    expect(b.online()).toEqual([])
  })

  it('a forged or foreign-swarm beacon fails its signature and flags the sender', async () => {
    const random = seededRandom(seed)
    const a = await makeState(random)
    const b = await makeState(random)
    const beacon = await a.heartbeat()
    const forged = { ...beacon, seq: beacon.seq + 5 }
    expect(b.receiveBeacon(forged, 'evil')).toMatchObject({ status: 'rejected', reason: 'bad-signature' })
    expect(b.flagged.has('evil')).toBe(true)
    expect(b.flagged.has(a.peerId)).toBe(false)
    const elsewhere = await makeState(random, { swarm: 'other-swarm' })
    expect(elsewhere.receiveBeacon(beacon)).toMatchObject({ status: 'rejected', reason: 'bad-signature' })
    expect(b.receiveBeacon(beacon).status).toBe('accepted')
  })

  it('beacons of an excluded (forked) writer are ignored and its presence dropped', async () => {
    const random = seededRandom(seed)
    const key = await seededKey(random)
    const branch = async (tag: number): Promise<SwarmState> => {
      const w = new SwarmState({ swarm: SWARM, signer: keySigner(key) })
      await w.putManifest('m', tag)
      return w
    }
    const [one, two] = [await branch(1), await branch(2)]
    const [a, b] = [await makeState(random), await makeState(random)]
    syncPair(one, a)
    syncPair(two, b)
    expect(a.receiveBeacon(await one.heartbeat()).status).toBe('accepted')
    expect(a.online()).toEqual([one.peerId])
    syncPair(a, b) // the fork is found: a excludes the writer
    expect(a.flagged.get(one.peerId)?.excluded).toBe(true)
    expect(a.online()).toEqual([])
    expect(a.presence().size).toBe(0)
    expect(a.receiveBeacon(await two.heartbeat())).toMatchObject({ status: 'rejected', reason: 'flagged-writer' })
    expect(a.liveBeacons()).toEqual([])
  })

  it('the table is bounded: unknown writers are refused when full, and evicted for writers with a chain', async () => {
    const random = seededRandom(seed)
    let now = 1_000_000
    const b = await makeState(random, { clock: () => now })
    const max = crdtConstants.MAX_PRESENCE_WRITERS
    const keys = await Promise.all(Array.from({ length: max + 1 }, async () => await seededKey(random)))
    const beaconOf = async (k: (typeof keys)[number], at = now): Promise<Beacon> => await sealBeacon(SWARM, keySigner(k), at, 0, new Uint8Array(32))
    for (let i = 0; i < max; i++) expect(b.receiveBeacon(await beaconOf(keys[i])).status).toBe('accepted')
    expect(b.receiveBeacon(await beaconOf(keys[max]), 'sybil')).toMatchObject({ status: 'rejected', reason: 'presence-full' })
    expect(b.flagged.size).toBe(0)
    // Known writers still get in: one with an envelope chain evicts a writer without one.
    const known = await makeState(random, { clock: () => now })
    await known.putManifest('m', 1)
    syncPair(known, b)
    expect(b.receiveBeacon(await known.heartbeat()).status).toBe('accepted')
    expect(b.presence().size).toBe(max)
    expect(b.online()).toContain(known.peerId)
    // Expired entries make room again.
    now += crdtConstants.PRESENCE_TTL_MS
    expect(b.receiveBeacon(await beaconOf(keys[max], now)).status).toBe('accepted')
    expect(b.presence().size).toBe(1)
  })

  it('the presence digest is equal exactly when two replicas hold the same live beacons', async () => {
    const random = seededRandom(seed)
    let now = 1_000_000
    const [a, b, c] = [await makeState(random, { clock: () => now }), await makeState(random, { clock: () => now }), await makeState(random, { clock: () => now })]
    expect(Buffer.from(b.presenceDigest())).toEqual(Buffer.from(c.presenceDigest()))
    const first = await a.heartbeat()
    b.receiveBeacon(first)
    expect(Buffer.from(b.presenceDigest())).not.toEqual(Buffer.from(c.presenceDigest()))
    c.receiveBeacon(first)
    expect(Buffer.from(b.presenceDigest())).toEqual(Buffer.from(c.presenceDigest()))
    now += 1_000
    b.receiveBeacon(await a.heartbeat())
    expect(Buffer.from(b.presenceDigest())).not.toEqual(Buffer.from(c.presenceDigest()))
  })

  it('presence change events keep their shape', async () => {
    const random = seededRandom(seed)
    const a = await makeState(random)
    const b = await makeState(random)
    const seenA: string[] = []
    const seenB: string[] = []
    a.onChange((e) => seenA.push(`${e.kind}:${e.key}:${e.local}`))
    b.onChange((e) => seenB.push(`${e.kind}:${e.key}:${e.local}:${e.writer === a.peerId}`))
    const beacon = await a.heartbeat()
    b.receiveBeacon(beacon)
    b.receiveBeacon(beacon) // stale: no event
    expect(seenA).toEqual(['presence:presence:true'])
    expect(seenB).toEqual(['presence:presence:false:true'])
  })

  it('a heartbeat can be abandoned', async () => {
    const a = await makeState(seededRandom(seed))
    const controller = new AbortController()
    controller.abort(new Error('gave up'))
    await expect(a.heartbeat({ signal: controller.signal })).rejects.toThrow('gave up')
    expect(a.presence().size).toBe(0)
  })
})
