// fast-check properties of the acceptance rules:
//  - accepted updates commute: any delivery order (envelopes or runs, duplicates, gaps filled
//    later) gives every replica the same document;
//  - a rejected update leaves the state unchanged, and an accepted one changes only its
//    writer's namespace, even for byte-mutated updates that the writer signs itself;
//  - the rules are complete: any honest edit of nested types (text, array, map) in the own
//    namespace is accepted, and the replica's encoded state equals the writer's.
import * as Y from 'yjs'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { GENESIS_HASH, keySigner, sealEnvelope, writerIdentity, type Envelope, type SwarmState } from '../../crdt/index.ts'
import { seededRandom, testSeed } from '../seed.ts'
import { makeState, seededKey, SWARM } from './helpers.ts'

const seed = testSeed()
const runs = Number(process.env.CRDT_LONG === '1' ? 200 : 25)

type Op = { kind: 'set', key: number, value: number } | { kind: 'delete', key: number } | { kind: 'manifest' }
const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant('set' as const), key: fc.nat(4), value: fc.integer() }),
  fc.record({ kind: fc.constant('delete' as const), key: fc.nat(4) }),
  fc.record({ kind: fc.constant('manifest' as const) })
)

/** Runs the ops on `writers` (round robin) and returns every envelope they signed. */
async function play (writers: SwarmState[], ops: Op[]): Promise<Envelope[]> {
  const out: Envelope[] = []
  writers.forEach((w) => w.onEnvelope((e) => out.push(e)))
  for (let i = 0; i < ops.length; i++) {
    const w = writers[i % writers.length]
    const op = ops[i]
    if (op.kind === 'set') await w.recordRound(`k${op.key}`, op.value)
    else if (op.kind === 'manifest') await w.putManifest('m', i)
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

describe(`acceptance rules are complete for honest writers (TEST_SEED=${seed} npx vitest run test/crdt/acceptance.property.test.ts)`, () => {
  type NestedOp = { kind: 'text-insert' | 'text-delete' | 'array-insert' | 'array-delete' | 'map-set' | 'map-delete', at: number, n: number }
  const nestedOp: fc.Arbitrary<NestedOp> = fc.record({
    kind: fc.constantFrom('text-insert', 'text-delete', 'array-insert', 'array-delete', 'map-set', 'map-delete'),
    at: fc.nat(50),
    n: fc.integer({ min: 1, max: 5 })
  })

  it('any edit of nested types (text, array, map) inside the own namespace is accepted, and replicas match', async () => {
    const key = await seededKey(seededRandom(seed))
    const identity = writerIdentity(key.publicKey.raw)
    if (identity === undefined) throw new Error('bad key')
    await fc.assert(fc.asyncProperty(fc.array(nestedOp, { minLength: 1, maxLength: 40 }), async (ops) => {
      const doc = new Y.Doc()
      doc.clientID = identity.clientId
      const root = doc.getMap(identity.namespace)
      const updates: Uint8Array[] = []
      doc.on('update', (u: Uint8Array) => updates.push(u))
      doc.transact(() => {
        root.set('text', new Y.Text())
        root.set('array', new Y.Array<number>())
        root.set('map', new Y.Map<number>())
      })
      const text = root.get('text') as Y.Text
      const array = root.get('array') as Y.Array<number>
      const map = root.get('map') as Y.Map<number>
      for (const op of ops) {
        if (op.kind === 'text-insert') text.insert(op.at % (text.length + 1), 'x'.repeat(op.n))
        else if (op.kind === 'text-delete' && text.length > 0) text.delete(op.at % text.length, Math.min(op.n, text.length - op.at % text.length))
        else if (op.kind === 'array-insert') array.insert(op.at % (array.length + 1), Array.from({ length: op.n }, (_, i) => i))
        else if (op.kind === 'array-delete' && array.length > 0) array.delete(op.at % array.length, Math.min(op.n, array.length - op.at % array.length))
        else if (op.kind === 'map-set') map.set(`k${op.at % 4}`, op.n)
        else if (op.kind === 'map-delete' && map.has(`k${op.at % 4}`)) map.delete(`k${op.at % 4}`)
      }
      const replica = await makeState(seededRandom(seed + 2))
      let prev: Uint8Array = GENESIS_HASH
      for (let i = 0; i < updates.length; i++) {
        const { envelope, hash } = await sealEnvelope(SWARM, keySigner(key), i + 1, prev, updates[i])
        const result = replica.receive(envelope)
        if (result.status !== 'accepted') throw new Error(`honest update ${i} refused: ${JSON.stringify(result)}`)
        prev = hash
      }
      expect(replica.doc.getMap(identity.namespace).toJSON()).toEqual(root.toJSON())
      expect(Buffer.from(Y.encodeStateAsUpdate(replica.doc)).equals(Buffer.from(Y.encodeStateAsUpdate(doc)))).toBe(true)
    }), { seed, numRuns: runs * 4 })
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
