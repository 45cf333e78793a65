// Swarm-state benchmark (`npm run bench:crdt`): 20 in-process libp2p nodes (loopback TCP, noise,
// yamux, gossipsub, swarm-sync) split in two halves of 10; each half makes 1,000 operations on
// the replicated document; then the partition heals. Measures the time from reconnection to
// every replica holding the identical document, and the bytes that moved — TCP bytes received
// by every node (all protocols, counted by a stand-in libp2p Metrics) and the payload alone
// (sync frames + gossip envelopes) — against the missing delta: for each node, the Yjs update
// that would bring its pre-heal document to the final one (encodeStateAsUpdate(final, svBefore)).
// Also the per-envelope cost of signing and of checking (verify + authorize + apply), and what
// presence costs: heartbeats are signed beacons outside the log, so 1,000 heartbeat periods
// must add 0 bytes to the envelope log (measured on a store, with an injected clock).
// Timings are wall-clock on a shared 2-core machine: expect noise between runs.
//   npm run bench:crdt -- [--seed n] [--ops-per-side 1000] [--nodes 20] [--results-dir bench/results]
import { Command } from 'commander'
import { mkdirSync, writeFileSync } from 'node:fs'
import { cpus, loadavg } from 'node:os'
import { join, resolve } from 'node:path'
import * as Y from 'yjs'
import { generateKeyPairFromSeed } from '@libp2p/crypto/keys'
import { authorizeUpdate, encodeBeacon, envelopeHash, keySigner, memoryEnvelopeStore, SwarmState, type Envelope } from '../crdt/index.ts'
import { fmt, formatTable, targetLine, type Target } from './bench/report.ts'
// The in-process node harness is shared with the convergence tests.
import { createSyncNode, Partition, until, type SyncNode } from '../test/protocols/sync-harness.ts'
import type { Libp2pOptions } from 'libp2p'
import { seededRandom } from '../test/seed.ts'

const ROOT = resolve(new URL('..', import.meta.url).pathname)
const program = new Command()
  .option('--seed <n>', 'PRNG seed for the operations and topology', '1')
  .option('--ops-per-side <n>', 'operations made on each side of the partition', '1000')
  .option('--nodes <n>', 'replicas (split in two halves)', '20')
  .option('--results-dir <dir>', 'where the JSON goes', join(ROOT, 'bench/results'))
  .parse()
const opts = program.opts<{ seed: string, opsPerSide: string, nodes: string, resultsDir: string }>()
const seed = Number(opts.seed)
const opsPerSide = Number(opts.opsPerSide)
const total = Number(opts.nodes)
const random = seededRandom(seed)
const SWARM = 'bench'

async function operation (state: SwarmState, i: number): Promise<void> {
  const r = random()
  if (r < 0.4) await state.claimReputation(`peer-${Math.floor(random() * 50)}`, Math.floor(random() * 1000) / 1000)
  else if (r < 0.65) await state.recordRound(`round-${i}`, { pair: [Math.floor(random() * 20), Math.floor(random() * 20)], winner: Math.floor(random() * 2) })
  else if (r < 0.8) await state.heartbeat() // a beacon: gossiped on the presence topic, not an envelope
  else if (r < 0.9) await state.setNode({ capabilities: { memoryBytes: 8e9, layerMs: Math.floor(random() * 100) / 10 }, layers: [{ model: 'llama-1b', start: 0, end: 1 + Math.floor(random() * 16) }], addresses: ['/ip4/127.0.0.1/tcp/4001'], version: '0.1.0' })
  else await state.putManifest(`model-${Math.floor(random() * 5)}`, { layers: 16, revision: i })
}

/**
 * A stand-in libp2p Metrics that only counts the bytes every TCP connection receives (noise
 * ciphertext: yamux, gossipsub control, identify and all). Other metrics are no-ops.
 */
function wireCounter (): { metrics: NonNullable<Libp2pOptions['metrics']>, bytes: () => number } {
  let received = 0
  // reason: a no-op stand-in for every metric type; `then` stays undefined so it is never awaited
  const noop: any = new Proxy(function () {}, { get: (_t, p) => p === 'then' ? undefined : noop, apply: () => noop }) // eslint-disable-line @typescript-eslint/no-explicit-any
  const metrics = {
    trackMultiaddrConnection: (maConn: { onData: (data: Uint8Array) => void }) => {
      const onData = maConn.onData.bind(maConn)
      maConn.onData = (data) => { received += data.byteLength; onData(data) }
    },
    trackProtocolStream: () => {},
    registerMetric: () => noop,
    registerMetricGroup: () => noop,
    registerCounter: () => noop,
    registerCounterGroup: () => noop,
    registerHistogram: () => noop,
    registerHistogramGroup: () => noop,
    registerSummary: () => noop,
    registerSummaryGroup: () => noop,
    traceFunction: (_name: string, fn: unknown) => fn,
    createTrace: () => undefined
  }
  return { metrics: () => metrics as unknown as ReturnType<NonNullable<Libp2pOptions['metrics']>>, bytes: () => received }
}

const wire = wireCounter()

function fingerprint (node: SyncNode): string {
  const state = node.services.swarmSync.state
  return JSON.stringify([state.heads().map((h) => [h.clientId, h.seq]), state.snapshot()])
}

function traffic (node: SyncNode): number {
  const s = node.services.swarmSync.stats
  return s.syncBytesIn + s.gossipBytesIn
}

/** The same, had the runs travelled uncompressed. */
function rawTraffic (node: SyncNode): number {
  const s = node.services.swarmSync.stats
  return s.syncBytesIn - s.syncRunBytesIn + s.syncRawBytesIn + s.gossipBytesIn
}

async function heal (): Promise<Record<string, number>> {
  const partition = new Partition()
  const nodes: SyncNode[] = []
  for (let i = 0; i < total; i++) nodes.push(await createSyncNode(partition, { swarm: SWARM, syncIntervalMs: 1000 }, { heartbeatInterval: 1000 }, undefined, { metrics: wire.metrics }))
  const half = total / 2
  nodes.forEach((n, i) => partition.set(n.peerId.toString(), i < half ? 0 : 1))
  const sideOf = (i: number): number[] => i < half ? [...Array(half).keys()] : [...Array(half).keys()].map((k) => k + half)
  // Inside each half: a ring plus one random chord per node.
  await Promise.all(nodes.map(async (n, i) => {
    const side = sideOf(i)
    const next = side[(side.indexOf(i) + 1) % side.length]
    const chord = side[Math.floor(random() * side.length)]
    for (const j of new Set([next, chord])) if (j !== i) await n.dial(nodes[j].getMultiaddrs()[0])
  }))
  for (const side of [0, 1]) {
    const members = nodes.filter((_, i) => (i < half ? 0 : 1) === side)
    for (let k = 0; k < opsPerSide; k++) await operation(members[k % members.length].services.swarmSync.state, k + side * opsPerSide)
  }
  // Each half agrees internally, then gossipsub's message cache ages out (3 heartbeats), so what
  // crosses after the heal is what the heal itself costs.
  const sides = [nodes.slice(0, half), nodes.slice(half)]
  const inner = await until(() => sides.every((s) => new Set(s.map(fingerprint)).size === 1), 30_000, 20)
  if (!inner) throw new Error('halves did not converge before the heal')
  await new Promise((r) => setTimeout(r, 3500))
  await Promise.all(nodes.map(async (n) => await n.services.swarmSync.whenIdle()))
  const before = nodes.map((n) => ({ sv: Y.encodeStateVector(n.services.swarmSync.state.doc), bytes: traffic(n), raw: rawTraffic(n), updates: n.services.swarmSync.state.updateBytes() }))

  const wireBefore = wire.bytes()
  const t0 = performance.now()
  partition.heal()
  await Promise.all(nodes.slice(0, half).map(async (n, i) => {
    for (const j of [half + i, half + ((i + 3) % half)]) await n.dial(nodes[j].getMultiaddrs()[0])
  }))
  const converged = await until(() => new Set(nodes.map(fingerprint)).size === 1, 30_000, 2)
  const healMs = performance.now() - t0
  const wireBytes = wire.bytes() - wireBefore
  if (!converged) throw new Error('replicas did not converge within 30 s')
  await Promise.all(nodes.map(async (n) => await n.services.swarmSync.whenIdle()))
  let sent = 0
  let raw = 0
  let delta = 0
  let updateDelta = 0
  nodes.forEach((n, i) => {
    const state = n.services.swarmSync.state
    sent += traffic(n) - before[i].bytes
    raw += rawTraffic(n) - before[i].raw
    delta += Y.encodeStateAsUpdate(state.doc, before[i].sv).length
    updateDelta += state.updateBytes() - before[i].updates
  })
  const pulls = nodes.reduce((x, n) => x + n.services.swarmSync.stats.pulls, 0)
  // Operations that were heartbeats made beacons, not envelopes.
  const envelopes = nodes[0].services.swarmSync.state.heads().reduce((x, h) => x + h.seq, 0)
  await Promise.all(nodes.map(async (n) => await n.stop()))
  return { healMs, sent, raw, wireBytes, delta, updateDelta, pulls, envelopes }
}

/** Per-envelope costs: signing, and each part of checking one incoming envelope. */
async function envelopeCosts (): Promise<Record<string, number>> {
  const seedBytes = Uint8Array.from({ length: 32 }, () => Math.floor(random() * 256))
  const writer = new SwarmState({ swarm: SWARM, signer: keySigner(await generateKeyPairFromSeed('Ed25519', seedBytes)) })
  const envelopes: Envelope[] = []
  writer.onEnvelope((e) => envelopes.push(e))
  const n = 2000
  const t0 = performance.now()
  // Heartbeats among the operations are beacons: write until n envelopes exist.
  for (let i = 0; envelopes.length < n; i++) await operation(writer, i)
  const writeUs = (performance.now() - t0) * 1000 / n
  const reader = new SwarmState({ swarm: SWARM, signer: keySigner(await generateKeyPairFromSeed('Ed25519', new Uint8Array(32).fill(9))) })
  const t1 = performance.now()
  for (const e of envelopes) reader.receive(e)
  const receiveUs = (performance.now() - t1) * 1000 / n
  const viaRuns = new SwarmState({ swarm: SWARM, signer: keySigner(await generateKeyPairFromSeed('Ed25519', new Uint8Array(32).fill(8))) })
  const { runs } = writer.runsFor([], 1 << 30)
  const tr = performance.now()
  for (const run of runs) viaRuns.receiveRun(run)
  const runUs = (performance.now() - tr) * 1000 / n
  const identity = writer.identity
  const t2 = performance.now()
  for (const e of envelopes) identity.verify(envelopeHash(SWARM, e.writer, e.seq, e.prev, e.update), e.signature)
  const verifyUs = (performance.now() - t2) * 1000 / n
  const t3 = performance.now()
  for (const e of envelopes) authorizeUpdate(e.update, { clientId: identity.clientId, namespace: identity.namespace, clock: 0 })
  const authorizeUs = (performance.now() - t3) * 1000 / n
  const doc = new Y.Doc()
  const t4 = performance.now()
  for (const e of envelopes) Y.applyUpdate(doc, e.update)
  const applyUs = (performance.now() - t4) * 1000 / n
  const avgEnvelopeBytes = envelopes.reduce((x, e) => x + e.update.length, 0) / n
  return { writeUs, receiveUs, runUs, verifyUs, authorizeUs, applyUs, avgEnvelopeBytes }
}

/** Log growth from presence: 1,000 heartbeat periods of one writer, seen by a second replica. */
async function presenceCosts (): Promise<Record<string, number>> {
  const periods = 1000
  let now = Date.now()
  const store = memoryEnvelopeStore()
  const writer = new SwarmState({ swarm: SWARM, signer: keySigner(await generateKeyPairFromSeed('Ed25519', new Uint8Array(32).fill(7))), clock: () => now, store })
  const readerStore = memoryEnvelopeStore()
  const reader = new SwarmState({ swarm: SWARM, signer: keySigner(await generateKeyPairFromSeed('Ed25519', new Uint8Array(32).fill(6))), clock: () => now, store: readerStore })
  await writer.setNode({ capabilities: {}, layers: [], addresses: [], version: '0.1.0' })
  for (const run of writer.runsFor([], 1 << 20).runs) reader.receiveRun(run)
  await Promise.all([writer.flush(), reader.flush()])
  const before = store.bytes().length + readerStore.bytes().length
  let beaconBytes = 0
  let signUs = 0
  let receiveUs = 0
  for (let i = 0; i < periods; i++) {
    now += 10_000
    const t0 = performance.now()
    const beacon = await writer.heartbeat()
    const t1 = performance.now()
    if (reader.receiveBeacon(beacon).status !== 'accepted') throw new Error('beacon refused')
    receiveUs += (performance.now() - t1) * 1000
    signUs += (t1 - t0) * 1000
    beaconBytes += encodeBeacon(beacon).length
  }
  await Promise.all([writer.flush(), reader.flush()])
  const logGrowth = store.bytes().length + readerStore.bytes().length - before
  return { periods, logGrowth, beaconBytes: beaconBytes / periods, signUs: signUs / periods, receiveUs: receiveUs / periods }
}

const load = loadavg()[0]
const healResult = await heal()
const costs = await envelopeCosts()
const presence = await presenceCosts()
const ratio = healResult.sent / healResult.delta
const wireRatio = healResult.wireBytes / healResult.delta
console.log(`bench:crdt — ${total} nodes, ${opsPerSide} operations per side, seed ${seed}, ${cpus().length} cores, load ${load.toFixed(2)} (shared machine: timings are noisy)\n`)
console.log(formatTable(['measure', 'value'], [
  ['time to full convergence after heal (ms)', fmt(healResult.healMs)],
  ['payload bytes received by all nodes after heal', healResult.sent],
  ['missing delta, Yjs (sum over nodes)', healResult.delta],
  ['missing envelope updates (sum over nodes)', healResult.updateDelta],
  ['bytes / Yjs delta', fmt(ratio, 2)],
  ['same bytes had the runs gone uncompressed', healResult.raw],
  ['uncompressed bytes / Yjs delta', fmt(healResult.raw / healResult.delta, 2)],
  ['TCP bytes received, heal to convergence (all protocols)', healResult.wireBytes],
  ['TCP bytes / Yjs delta', fmt(healResult.wireBytes / healResult.delta, 2)],
  ['bytes / envelope updates', fmt(healResult.sent / healResult.updateDelta, 2)],
  ['pulls (all nodes, whole run)', healResult.pulls]
]))
console.log('\nper envelope (µs)')
console.log(formatTable(['step', 'µs'], [
  ['local write: transact + authorize + hash + sign', fmt(costs.writeUs, 1)],
  ['receive: verify + authorize + chain + apply', fmt(costs.receiveUs, 1)],
  ['  of which Ed25519 verify (hash included)', fmt(costs.verifyUs, 1)],
  ['  of which authorize (decode + rules)', fmt(costs.authorizeUs, 1)],
  ['  of which Yjs applyUpdate', fmt(costs.applyUs, 1)],
  ['receive through anti-entropy runs (one signature per run)', fmt(costs.runUs, 1)],
  ['average update bytes', fmt(costs.avgEnvelopeBytes, 1)]
]))
console.log('\npresence (signed beacons, outside the log)')
console.log(formatTable(['measure', 'value'], [
  [`envelope-log bytes added by ${presence.periods} heartbeat periods (writer + reader stores)`, presence.logGrowth],
  ['beacon bytes on the wire', fmt(presence.beaconBytes, 1)],
  ['heartbeat: sign a beacon (µs)', fmt(presence.signUs, 1)],
  ['receive a beacon: verify + table (µs)', fmt(presence.receiveUs, 1)]
]))
const targets: Target[] = [
  { name: 'heal convergence', figure: `${fmt(healResult.healMs)} ms`, goal: '≤ 2000 ms on loopback', met: healResult.healMs <= 2000 },
  { name: 'heal bytes', figure: `${fmt(wireRatio, 2)}× the missing Yjs delta (TCP bytes, all protocols; payload alone ${fmt(ratio, 2)}×, uncompressed ${fmt(healResult.raw / healResult.delta, 2)}×)`, goal: '≤ 1.5×', met: wireRatio <= 1.5 },
  { name: 'envelope check cost', figure: `${fmt(costs.receiveUs, 1)} µs per envelope`, goal: 'reported', met: true },
  { name: 'presence log growth', figure: `${presence.logGrowth} bytes for ${presence.periods} heartbeat periods`, goal: '0 bytes', met: presence.logGrowth === 0 }
]
mkdirSync(opts.resultsDir, { recursive: true })
const file = join(opts.resultsDir, `crdt-${new Date().toISOString().replace(/[:.]/g, '-')}.json`)
writeFileSync(file, JSON.stringify({ seed, nodes: total, opsPerSide, load, heal: healResult, costs, presence, targets }, null, 2))
console.log(`\nwrote ${file}`)
for (const t of targets) console.log(targetLine(t))
process.exit(0)
