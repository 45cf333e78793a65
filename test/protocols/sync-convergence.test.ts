// Seeded convergence harness in the style of yjs's TestConnector, over real libp2p: 20 replicas
// on loopback TCP (noise, yamux, gossipsub, swarm-sync), random operations, random partitions
// and heals, 30% of inbound gossip dropped, random inbound delays (reordering). After the final
// heal every replica must hold the identical document: same views (JSON), same encoded Yjs state
// (Y.encodeStateAsUpdate, byte for byte) and same per-writer heads. Presence (signed beacons
// outside the document) converges separately: every replica's clock jumps 40 s (past the 30 s
// TTL) each round, and after the heal all replicas must agree, at one fixed time, that exactly
// the writers who beat in the last round are online. Then a writer forks (each
// replica gets one of two branches): every replica must exclude it and the views must agree. One PRNG drives operations, partitions,
// drops and delays; network timing is real, so a seed reproduces the workload, not the schedule.
//
//   TEST_SEED=<seed> npx vitest run test/protocols/sync-convergence.test.ts
//   CRDT_LONG=1 ...   more rounds and operations
import * as Y from 'yjs'
import { generateKeyPairFromSeed } from '@libp2p/crypto/keys'
import { keySigner, SwarmState, type Envelope } from '../../crdt/index.ts'
import { afterAll, describe, expect, it } from 'vitest'
import { seededRandom, testSeed } from '../seed.ts'
import { createSyncNode, enforce, Partition, until, type SyncNode } from './sync-harness.ts'

const seed = testSeed()
const long = process.env.CRDT_LONG === '1'
const REPLICAS = 20
const ROUNDS = long ? 12 : 3
const OPS_PER_ROUND = long ? 120 : 40
const DROP = 0.3
const repro = `TEST_SEED=${seed}${long ? ' CRDT_LONG=1' : ''} npx vitest run test/protocols/sync-convergence.test.ts`

const nodes: SyncNode[] = []
let phaseOneDone = false
/** Virtual time shared by every replica: real time plus jumps between rounds. */
let offset = 0
const clock = (): number => Date.now() + offset
const ROUND_JUMP_MS = 40_000
/** Timestamp of each writer's latest beacon. */
const lastBeat = new Map<string, number>()
afterAll(async () => { await Promise.all(nodes.splice(0).map(async (n) => await n.stop())) })

async function randomOp (node: SyncNode, random: () => number, i: number): Promise<void> {
  const state = node.services.swarmSync.state
  const r = random()
  if (r < 0.2) lastBeat.set(state.peerId, (await state.heartbeat()).at)
  else if (r < 0.45) await state.claimReputation(`peer-${Math.floor(random() * 8)}`, Math.floor(random() * 100))
  else if (r < 0.65) await state.recordRound(`r${Math.floor(random() * 20)}`, { i, votes: [Math.floor(random() * 5)] })
  else if (r < 0.8) await state.setNode({ capabilities: { mem: Math.floor(random() * 1e9) }, layers: [{ model: 'm', start: 0, end: 1 + Math.floor(random() * 8) }], addresses: [], version: `v${i}` })
  else if (r < 0.9) await state.putManifest(`m${Math.floor(random() * 4)}`, { i })
  else {
    const keys = [...state.doc.getMap(state.identity.namespace).keys()]
    if (keys.length > 0) await state.remove(keys[Math.floor(random() * keys.length)])
  }
}

function fingerprint (node: SyncNode): string {
  const state = node.services.swarmSync.state
  return JSON.stringify([state.snapshot(), Buffer.from(Y.encodeStateAsUpdate(state.doc)).toString('base64'), state.heads().map((h) => [h.clientId, h.seq])])
}

describe(`convergence over libp2p (${repro})`, () => {
  it(`${REPLICAS} replicas converge after random partitions, 30% gossip loss and reordering`, async () => {
    const random = seededRandom(seed)
    const partition = new Partition()
    for (let i = 0; i < REPLICAS; i++) {
      nodes.push(await createSyncNode(partition, {
        swarm: 'fuzz',
        syncIntervalMs: 300,
        clock,
        random,
        dropInbound: () => random() < DROP,
        inboundDelayMs: () => random() < 0.2 ? Math.floor(random() * 40) : 0
      }))
    }
    // A ring plus random chords, so the mesh is connected when nothing is partitioned.
    const edges: Array<[number, number]> = []
    for (let i = 0; i < REPLICAS; i++) edges.push([i, (i + 1) % REPLICAS], [i, Math.floor(random() * REPLICAS)])
    const connect = async (): Promise<void> => {
      await Promise.all(edges.filter(([a, b]) => a !== b).map(async ([a, b]) => {
        if (partition.blocked(nodes[a].peerId.toString(), nodes[b].peerId.toString())) return
        await nodes[a].dial(nodes[b].getMultiaddrs()[0]).catch(() => undefined)
      }))
    }
    await connect()
    let op = 0
    for (let round = 0; round < ROUNDS; round++) {
      offset += ROUND_JUMP_MS // every beacon of earlier rounds has expired
      const groups = 1 + Math.floor(random() * 3)
      for (const node of nodes) partition.set(node.peerId.toString(), Math.floor(random() * groups))
      await enforce(partition, nodes)
      await connect()
      for (let i = 0; i < OPS_PER_ROUND; i++) await randomOp(nodes[Math.floor(random() * REPLICAS)], random, op++)
      await new Promise((resolve) => setTimeout(resolve, 50 + Math.floor(random() * 150)))
    }
    partition.heal()
    const at = clock()
    await connect()
    const converged = await until(() => new Set(nodes.map(fingerprint)).size === 1, long ? 60_000 : 20_000, 50)
    if (!converged) {
      const counts = new Map<string, number>()
      for (const n of nodes) counts.set(fingerprint(n), (counts.get(fingerprint(n)) ?? 0) + 1)
      expect.fail(`replicas did not converge (${counts.size} distinct states); reproduce with: ${repro}`)
    }
    const states = nodes.map((n) => n.services.swarmSync.state)
    expect(states[0].writers().length).toBeGreaterThan(1)
    for (const s of states) expect(s.counters.rejected).toBe(0)
    const total = (key: keyof SyncNode['services']['swarmSync']['stats']): number => nodes.reduce((n, node) => n + node.services.swarmSync.stats[key], 0)
    expect(total('gossipDropped')).toBeGreaterThan(0)
    expect(total('pulls')).toBeGreaterThan(0)
    // Presence converges too: at one fixed time, every replica names the same writers online,
    // exactly those whose latest beacon is younger than the TTL.
    const expected = [...lastBeat].filter(([, t]) => at - t < 30_000).map(([peerId]) => peerId).sort()
    const online = (node: SyncNode): string => JSON.stringify(node.services.swarmSync.state.online(at))
    const agreed = await until(() => nodes.every((n) => online(n) === JSON.stringify(expected)), long ? 60_000 : 20_000, 50)
    if (!agreed) expect.fail(`presence did not converge (${new Set(nodes.map(online)).size} distinct views, expected ${expected.length} online); reproduce with: ${repro}`)
    expect(expected.length).toBeGreaterThan(0)
    expect(lastBeat.size).toBeGreaterThan(expected.length) // some beacons expired on the way
    phaseOneDone = true
    if (long) console.log(`seed ${seed}: ${op} ops, ${states[0].writers().length} writers, gossip dropped ${total('gossipDropped')} accepted ${total('gossipAccepted')}, pulls ${total('pulls')} (failed ${total('pullsFailed')}), sync bytes in ${total('syncBytesIn')}`)
  })

  it('an equivocating writer is excluded by every replica, and honest views stay identical', async () => {
    if (!phaseOneDone) expect.fail(`needs the converged replicas of the previous test; ${repro}`)
    const random = seededRandom(seed ^ 0x5eed)
    const key = await generateKeyPairFromSeed('Ed25519', Uint8Array.from({ length: 32 }, () => Math.floor(random() * 256)))
    const branch = async (tag: number): Promise<Envelope[]> => {
      const writer = new SwarmState({ swarm: 'fuzz', signer: keySigner(key) })
      const out: Envelope[] = []
      writer.onEnvelope((e) => out.push(e))
      await writer.putManifest('m', { tag })
      await writer.claimReputation('victim', tag)
      return out
    }
    const [one, two] = [await branch(1), await branch(2)]
    // Each replica is handed one branch directly, as a forking writer would do.
    for (const node of nodes) for (const e of random() < 0.5 ? one : two) node.services.swarmSync.state.receive(e)
    const writer = key.publicKey.toString()
    const views = (node: SyncNode): string => JSON.stringify(node.services.swarmSync.state.snapshot())
    const done = await until(() => nodes.every((n) => n.services.swarmSync.state.flagged.get(writer)?.excluded === true) && new Set(nodes.map(views)).size === 1, long ? 60_000 : 20_000, 50)
    if (!done) expect.fail(`the forked writer was not excluded everywhere; reproduce with: ${repro}`)
    expect(JSON.parse(views(nodes[0]))[writer]).toBeUndefined()
  })
})
