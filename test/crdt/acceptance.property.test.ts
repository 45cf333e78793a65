// fast-check properties of the acceptance rules:
//  - accepted updates commute: any delivery order (envelopes or runs, duplicates, gaps filled
//    later) gives every replica the same document;
//  - a rejected update leaves the state unchanged, and an accepted one changes only its
//    writer's namespace, even for byte-mutated updates that the writer signs itself.
import * as Y from 'yjs'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { GENESIS_HASH, keySigner, sealEnvelope, writerIdentity, type Envelope, type SwarmState } from '../../crdt/index.ts'
import { seededRandom, testSeed } from '../seed.ts'
import { makeState, seededKey, SWARM } from './helpers.ts'

const seed = testSeed()
const runs = Number(process.env.CRDT_LONG === '1' ? 200 : 25)

type Op = { kind: 'set', key: number, value: number } | { kind: 'delete', key: number } | { kind: 'heartbeat' }
const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant('set' as const), key: fc.nat(4), value: fc.integer() }),
  fc.record({ kind: fc.constant('delete' as const), key: fc.nat(4) }),
  fc.record({ kind: fc.constant('heartbeat' as const) })
)

/** Runs the ops on `writers` (round robin) and returns every envelope they signed. */
async function play (writers: SwarmState[], ops: Op[]): Promise<Envelope[]> {
  const out: Envelope[] = []
  writers.forEach((w) => w.onEnvelope((e) => out.push(e)))
  for (let i = 0; i < ops.length; i++) {
    const w = writers[i % writers.length]
    const op = ops[i]
    if (op.kind === 'set') await w.recordRound(`k${op.key}`, op.value)
    else if (op.kind === 'heartbeat') await w.heartbeat()
    else if (w.rounds().some((r) => r.id === `k${op.key}` && r.writer === w.peerId)) await w.remove(`round/k${op.key}`)
  }
  return out
}

function stateBytes (s: SwarmState): Buffer {
  return Buffer.from(Y.encodeStateVector(s.doc))
}

describe(`acceptance rules, properties (TEST_SEED=${seed} npx vitest run test/crdt/acceptance.property.test.ts)`, () => {
  it('accepted updates commute: any delivery order converges to the writers\' document', async () => {
    await fc.assert(fc.asyncProperty(
      fc.array(opArb, { minLength: 1, maxLength: 30 }), fc.nat(3), fc.array(fc.nat(), { minLength: 60, maxLength: 60 }), fc.array(fc.nat(), { minLength: 60, maxLength: 60 }),
      async (ops, extraWriters, orderA, orderB) => {
        const random = seededRandom(seed)
        const writers: SwarmState[] = []
        for (let i = 0; i <= extraWriters; i++) writers.push(await makeState(random))
        const envelopes = await play(writers, ops)
        const a = await makeState(random)
        const b = await makeState(random)
        const shuffled = (order: number[]): Envelope[] => envelopes.map((e, i) => ({ e, k: order[i % order.length] * 1000 + i })).sort((x, y) => x.k - y.k).map((x) => x.e)
        for (const e of shuffled(orderA)) expect(a.receive(e).status).not.toBe('rejected')
        for (const e of shuffled(orderB).concat(shuffled(orderA))) expect(b.receive(e).status).not.toBe('rejected')
        for (const w of writers) for (const e of envelopes) w.receive(e)
        expect(JSON.stringify(a.snapshot())).toBe(JSON.stringify(writers[0].snapshot()))
        expect(JSON.stringify(b.snapshot())).toBe(JSON.stringify(a.snapshot()))
        expect(stateBytes(a).equals(stateBytes(b))).toBe(true)
      }), { seed, numRuns: runs })
  })

  it('a rejected update leaves the state unchanged; an accepted one touches only its writer', async () => {
    const random = seededRandom(seed)
    const victim = await makeState(random)
    const honestOps: Envelope[] = []
    victim.onEnvelope((e) => honestOps.push(e))
    await victim.setNode({ capabilities: {}, layers: [], addresses: [], version: '1' })
    await victim.recordRound('r', [1, 2, 3])
    const attackerKey = await seededKey(random)
    const attacker = writerIdentity(attackerKey.publicKey.raw)
    if (attacker === undefined) throw new Error('bad key')
    // Templates: honest updates of the attacker, and raids on the victim's namespace.
    const base = new Y.Doc()
    base.clientID = attacker.clientId
    Y.applyUpdate(base, Y.encodeStateAsUpdate((await stateWith(honestOps)).doc))
    const templates = [
      capture(base, () => base.getMap(attacker.namespace).set('presence', { at: 5 })),
      capture(base, () => base.getMap(victim.identity.namespace).set('node', 'x')),
      capture(base, () => base.getMap(victim.identity.namespace).delete('round/r')),
      capture(base, () => { const arr = new Y.Array<number>(); base.getMap(attacker.namespace).set('list', arr); arr.push([1, 2]) })
    ]
    await fc.assert(fc.asyncProperty(
      fc.nat(templates.length - 1), fc.array(fc.tuple(fc.nat(), fc.nat(255)), { maxLength: 4 }),
      async (which, flips) => {
        const update = Uint8Array.from(templates[which])
        for (const [at, value] of flips) update[at % update.length] = value
        const honest = await stateWith(honestOps)
        const before = Buffer.from(Y.encodeStateAsUpdate(honest.doc))
        const victimState = JSON.stringify((honest.snapshot() as Record<string, unknown>)[victim.peerId])
        const { envelope } = await sealEnvelope(SWARM, keySigner(attackerKey), 1, GENESIS_HASH, update)
        let result
        try {
          result = honest.receive(envelope, 'sender')
        } catch (err) {
          throw new Error(`receive threw on template ${which} flips ${JSON.stringify(flips)}`, { cause: err })
        }
        if (result.status === 'rejected') {
          expect(Buffer.from(Y.encodeStateAsUpdate(honest.doc)).equals(before)).toBe(true)
        } else {
          expect(JSON.stringify((honest.snapshot() as Record<string, unknown>)[victim.peerId])).toBe(victimState)
          const sv = Y.decodeStateVector(Y.encodeStateVector(honest.doc))
          for (const client of sv.keys()) expect([victim.identity.clientId, attacker.clientId]).toContain(client)
        }
      }), { seed, numRuns: runs * 8 })
  })
})

async function stateWith (envelopes: Envelope[]): Promise<SwarmState> {
  const s = await makeState(seededRandom(seed + 1))
  for (const e of envelopes) s.receive(e)
  return s
}

function capture (doc: Y.Doc, fn: () => void): Uint8Array {
  let update: Uint8Array | undefined
  const listener = (u: Uint8Array): void => { update = u }
  doc.on('update', listener)
  doc.transact(fn)
  doc.off('update', listener)
  if (update === undefined) throw new Error('no update')
  return update
}
