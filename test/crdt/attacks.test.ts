// Adversarial suite at the document level, one test per attack: each crafted envelope is
// rejected with a named reason, counted, the right peer is flagged, and the honest replica's
// state is byte-for-byte unchanged. (Flood and unsigned gossip need the network:
// test/protocols/sync-attacks.test.ts.)
import * as Y from 'yjs'
import { describe, expect, it } from 'vitest'
import { GENESIS_HASH, keySigner, sealBeacon, sealEnvelope, crdtConstants, writerIdentity, type Envelope, type ForkProof, type Run, type SwarmState } from '../../crdt/index.ts'
import { syncPair as fullSync } from './helpers.ts'
import { seededRandom, testSeed } from '../seed.ts'
import { capture, makeState, seededKey, SWARM, syncPair } from './helpers.ts'

const seed = testSeed()

/** A victim with some records, an honest replica that has them, and an attacker key. */
async function setup () {
  const random = seededRandom(seed)
  const victim = await makeState(random)
  const honest = await makeState(random)
  const attackerKey = await seededKey(random)
  const attacker = await makeState(() => 0.5, { signer: keySigner(attackerKey) })
  const sent = capture(victim)
  await victim.setNode({ capabilities: {}, layers: [{ model: 'm', start: 0, end: 2 }], addresses: [], version: '1' })
  await victim.claimReputation('someone', 1)
  for (const e of sent) honest.receive(e)
  // The attacker's own replica knows the victim's document (it is public).
  const doc = new Y.Doc()
  doc.clientID = attacker.identity.clientId
  Y.applyUpdate(doc, Y.encodeStateAsUpdate(honest.doc))
  return { victim, honest, attacker, attackerKey, doc }
}

/** Signs `update` as the attacker's next envelope (seq 1 unless given). */
async function signAs (attacker: SwarmState, key: Awaited<ReturnType<typeof seededKey>>, update: Uint8Array, seq = 1, prev: Uint8Array = GENESIS_HASH): Promise<Envelope> {
  return (await sealEnvelope(SWARM, keySigner(key), seq, prev, update)).envelope
}

/** The update a transaction on `doc` produces. */
function updateOf (doc: Y.Doc, fn: () => void): Uint8Array {
  let update: Uint8Array | undefined
  const listener = (u: Uint8Array): void => { update = u }
  doc.on('update', listener)
  doc.transact(fn)
  doc.off('update', listener)
  if (update === undefined) throw new Error('transaction produced no update')
  return update
}

/** The views without one writer (a writer caught cheating is dropped from the views on purpose). */
function viewWithout (state: SwarmState, writer: Uint8Array): string {
  const snapshot = { ...(state.snapshot() as Record<string, unknown>) }
  delete snapshot[writerIdentity(writer)?.peerId ?? '']
  return JSON.stringify(snapshot)
}

function expectRejected (honest: SwarmState, envelope: Envelope, reason: string, from = 'relay-peer'): void {
  const before = Y.encodeStateAsUpdate(honest.doc)
  const view = viewWithout(honest, envelope.writer)
  const result = honest.receive(envelope, from)
  expect(result).toMatchObject({ status: 'rejected', reason })
  expect(Buffer.from(Y.encodeStateAsUpdate(honest.doc)).equals(Buffer.from(before))).toBe(true)
  expect(viewWithout(honest, envelope.writer)).toBe(view)
  expect(honest.counters.byReason[reason as keyof typeof honest.counters.byReason]).toBeGreaterThan(0)
}

describe(`attacks on the document (TEST_SEED=${seed} npx vitest run test/crdt/attacks.test.ts)`, () => {
  it('forged clientID: structs carrying the victim\'s clientID', async () => {
    const { victim, honest, attacker, attackerKey, doc } = await setup()
    doc.clientID = victim.identity.clientId
    const update = updateOf(doc, () => doc.getMap(attacker.identity.namespace).set('node', 'x'))
    expectRejected(honest, await signAs(attacker, attackerKey, update), 'foreign-client')
    // Flagged but not excluded: its chain is stuck before this update on every replica alike.
    expect(honest.flagged.get(attacker.peerId)).toMatchObject({ reasons: ['foreign-client'], excluded: false })
  })

  it('write into another namespace (new key, parent named explicitly)', async () => {
    const { victim, honest, attacker, attackerKey, doc } = await setup()
    const update = updateOf(doc, () => doc.getMap(victim.identity.namespace).set('manifest/evil', 1))
    expectRejected(honest, await signAs(attacker, attackerKey, update), 'foreign-namespace')
    expect(honest.flagged.has(attacker.peerId)).toBe(true)
  })

  it('write into another namespace by overwriting a key (parent inferred from the victim\'s item)', async () => {
    const { victim, honest, attacker, attackerKey, doc } = await setup()
    const update = updateOf(doc, () => doc.getMap(victim.identity.namespace).set('node', 'hijacked'))
    // The overwrite also deletes the victim's item; whichever rule fires first names it.
    const result = honest.receive(await signAs(attacker, attackerKey, update))
    expect(result).toMatchObject({ status: 'rejected' })
    expect(['foreign-origin', 'foreign-delete']).toContain((result as { reason: string }).reason)
    expect(honest.nodes().get(victim.peerId)?.version).toBe('1')
  })

  it('delete another writer\'s items', async () => {
    const { victim, honest, attacker, attackerKey, doc } = await setup()
    const update = updateOf(doc, () => doc.getMap(victim.identity.namespace).delete('node'))
    expectRejected(honest, await signAs(attacker, attackerKey, update), 'foreign-delete')
    expect(honest.nodes().has(victim.peerId)).toBe(true)
  })

  it('equivocation: two different envelopes with one seq; the writer is flagged and shut out', async () => {
    const { honest, attacker, attackerKey, doc } = await setup()
    const first = updateOf(doc, () => doc.getMap(attacker.identity.namespace).set('presence', { at: 1 }))
    const other = new Y.Doc()
    other.clientID = attacker.identity.clientId
    const second = updateOf(other, () => other.getMap(attacker.identity.namespace).set('presence', { at: 2 }))
    expect(honest.receive(await signAs(attacker, attackerKey, first)).status).toBe('accepted')
    expectRejected(honest, await signAs(attacker, attackerKey, second), 'equivocation')
    expect(honest.flagged.get(attacker.peerId)).toMatchObject({ reasons: ['equivocation'], excluded: true })
    expect(Object.keys(honest.snapshot() as object)).not.toContain(attacker.peerId) // excluded from the views
    const later = updateOf(doc, () => doc.getMap(attacker.identity.namespace).set('presence', { at: 3 }))
    const { hash } = await sealEnvelope(SWARM, keySigner(attackerKey), 1, GENESIS_HASH, first)
    expect(honest.receive(await signAs(attacker, attackerKey, later, 2, hash))).toMatchObject({ status: 'rejected', reason: 'flagged-writer' })
  })

  it('equivocation is proven to a replica that only ever saw one branch', async () => {
    const random = seededRandom(seed)
    const key = await seededKey(random)
    const branch = async (at: number): Promise<Envelope[]> => {
      const w = await makeState(() => 0.5, { signer: keySigner(key) })
      const out = capture(w)
      await w.recordRound('tick', 0)
      await w.claimReputation('x', at)
      return out
    }
    const [one, two] = [await branch(1), await branch(2)]
    const [a, b, c] = [await makeState(random), await makeState(random), await makeState(random)]
    for (const e of one) { a.receive(e); c.receive(e) }
    for (const e of two) b.receive(e)
    syncPair(a, b) // a and b hold different seq 2: each sees the fork in one round
    const writer = writerIdentity(key.publicKey.raw)?.peerId as string
    expect(a.flagged.get(writer)?.excluded).toBe(true)
    expect(b.flagged.get(writer)?.excluded).toBe(true)
    expect(c.flagged.has(writer)).toBe(false)
    // c agrees with a's branch, so it cannot see the fork itself; a's proof convinces it.
    const proofs = a.forkProofsExcept(c.excludedClientIds())
    expect(proofs).toHaveLength(1)
    expect(c.receiveForkProof(proofs[0], a.peerId)).toBe(true)
    expect(c.flagged.get(writer)?.excluded).toBe(true)
    expect(a.forkProofsExcept(c.excludedClientIds())).toHaveLength(0)
    for (const s of [a, b, c]) expect(s.rounds().some((r) => r.writer === writer)).toBe(false)
    expect(JSON.stringify(a.snapshot())).toBe(JSON.stringify(b.snapshot()))
    expect(JSON.stringify(c.snapshot())).toBe(JSON.stringify(b.snapshot()))
    // A proof that does not hold is refused and its sender flagged.
    expect(b.receiveForkProof({ a: proofs[0].a, b: proofs[0].a }, 'liar')).toBe(false)
    expect(b.flagged.has('liar')).toBe(true)
  })

  it('equivocation inside Yjs: a new envelope that rewrites clocks already applied', async () => {
    const { honest, attacker, attackerKey, doc } = await setup()
    const first = updateOf(doc, () => doc.getMap(attacker.identity.namespace).set('a', 1))
    const { hash } = await sealEnvelope(SWARM, keySigner(attackerKey), 1, GENESIS_HASH, first)
    expect(honest.receive(await signAs(attacker, attackerKey, first)).status).toBe('accepted')
    const other = new Y.Doc()
    other.clientID = attacker.identity.clientId
    const rewrite = updateOf(other, () => other.getMap(attacker.identity.namespace).set('a', 2)) // clock 0 again
    expectRejected(honest, await signAs(attacker, attackerKey, rewrite, 2, hash), 'clock-gap')
  })

  it('replay: an old envelope again is a no-op, and one from another swarm fails its signature', async () => {
    const random = seededRandom(seed)
    const writer = await makeState(random)
    const honest = await makeState(random)
    const sent = capture(writer)
    await writer.recordRound('tick', 0)
    await writer.recordRound('tick', 0)
    for (const e of sent) honest.receive(e)
    const before = Y.encodeStateAsUpdate(honest.doc)
    expect(honest.receive(sent[0]).status).toBe('duplicate')
    expect(Buffer.from(Y.encodeStateAsUpdate(honest.doc)).equals(Buffer.from(before))).toBe(true)
    const elsewhere = await makeState(random, { swarm: 'other-swarm' })
    expectRejected(elsewhere, sent[0], 'bad-signature')
  })

  it('oversize update', async () => {
    const { honest, attacker, attackerKey, doc } = await setup()
    const update = updateOf(doc, () => doc.getMap(attacker.identity.namespace).set('blob', 'x'.repeat(crdtConstants.MAX_UPDATE_BYTES)))
    expectRejected(honest, await signAs(attacker, attackerKey, update), 'oversize')
  })

  it('bad signature: the sender is flagged, not the key it names', async () => {
    const { victim, honest } = await setup()
    const sent = capture(victim)
    await victim.recordRound('tick', 0)
    const forged = { ...sent[0], signature: Uint8Array.from(sent[0].signature, (b, i) => i === 0 ? b ^ 1 : b) }
    expectRejected(honest, forged, 'bad-signature', 'evil-relay')
    expect(honest.flagged.has('evil-relay')).toBe(true)
    expect(honest.flagged.has(victim.peerId)).toBe(false)
    expect(honest.receive(sent[0]).status).toBe('accepted') // the genuine one still goes through
  })

  it('envelopes held ahead of a gap are bounded', async () => {
    const { honest, attacker } = await setup()
    const sent = capture(attacker)
    for (let i = 0; i < crdtConstants.MAX_PENDING_PER_WRITER + 10; i++) await attacker.recordRound('tick', 0)
    const results = sent.slice(1).map((e) => honest.receive(e, 'gap-maker').status)
    expect(results.filter((r) => r === 'pending')).toHaveLength(crdtConstants.MAX_PENDING_PER_WRITER)
    expect(honest.counters.byReason['pending-full']).toBe(9)
    expect(honest.receive(sent[0]).status).toBe('accepted') // the gap closes: held ones apply
    expect(honest.heads().find((h) => h.clientId === attacker.identity.clientId)?.seq).toBe(crdtConstants.MAX_PENDING_PER_WRITER + 1)
  })

  it('an envelope ahead of a gap is checked for everything but its clock before it is held', async () => {
    const { victim, honest, attacker, attackerKey, doc } = await setup()
    const raid = updateOf(doc, () => doc.getMap(victim.identity.namespace).set('manifest/evil', 1))
    expectRejected(honest, await signAs(attacker, attackerKey, raid, 5, new Uint8Array(32).fill(1)), 'foreign-namespace')
    expect(honest.counters.pending).toBe(0)
  })

  it('a forged anti-entropy run is refused and its sender flagged', async () => {
    const { victim, honest } = await setup()
    await victim.recordRound('tick', 0)
    const fresh = await makeState(seededRandom(seed + 7))
    const [run] = victim.runsFor([], 1 << 20).runs
    const tampered = { ...run, updates: run.updates.map((u, i) => i === 0 ? Uint8Array.from(u, (b, j) => j === u.length - 1 ? b ^ 1 : b) : u) }
    expect(fresh.receiveRun(tampered, 'bad-server')).toMatchObject({ status: 'rejected', reason: 'bad-signature' })
    expect(fresh.flagged.has('bad-server')).toBe(true)
    expect(fresh.writers()).toEqual([])
    expect(fresh.receiveRun(run, 'good-server').status).toBe('accepted')
    expect(honest.counters.rejected).toBe(0)
  })

  it('subdocuments are refused', async () => {
    const { honest, attacker, attackerKey, doc } = await setup()
    const update = updateOf(doc, () => doc.getMap(attacker.identity.namespace).set('sub', new Y.Doc()))
    expectRejected(honest, await signAs(attacker, attackerKey, update), 'forbidden-content')
  })

  it('two struct sections for one client (Yjs would keep one and hide the other as pending)', async () => {
    const { honest, attacker, attackerKey, doc } = await setup()
    const first = updateOf(doc, () => doc.getMap(attacker.identity.namespace).set('a', 1))
    const second = updateOf(doc, () => doc.getMap(attacker.identity.namespace).set('b', 2))
    // Each is [1 section][section][0 deletes]; splice them into [2 sections][s1][s2][0 deletes].
    expect([first[0], first[first.length - 1], second[0], second[second.length - 1]]).toEqual([1, 0, 1, 0])
    const crafted = Buffer.concat([Buffer.from([2]), first.subarray(1, -1), second.subarray(1, -1), Buffer.from([0])])
    expect(Y.decodeUpdate(crafted).structs).toHaveLength(2) // a flattened decode looks contiguous
    expectRejected(honest, await signAs(attacker, attackerKey, crafted), 'malformed')
  })

  it('an empty struct section naming another client (nested types of its own still pass)', async () => {
    const { honest, attacker, attackerKey } = await setup()
    // [1 section][0 structs][client 5][clock 0][0 deletes]: a section naming someone else's client.
    expectRejected(honest, await signAs(attacker, attackerKey, Uint8Array.from([1, 0, 5, 0, 0])), 'malformed')
    const doc = new Y.Doc()
    doc.clientID = attacker.identity.clientId
    const nested = updateOf(doc, () => { const t = new Y.Text(); doc.getMap(attacker.identity.namespace).set('t', t); t.insert(0, 'x') })
    expect(honest.receive(await signAs(attacker, attackerKey, nested)).status).toBe('accepted')
  })

  it('garbage bytes as an update', async () => {
    const { honest, attacker, attackerKey } = await setup()
    expectRejected(honest, await signAs(attacker, attackerKey, Uint8Array.from([200, 1, 2, 3])), 'malformed')
  })

  it('quota: an envelope that would take its writer past MAX_WRITER_BYTES is refused, on every replica at the same seq', async () => {
    const { honest, attacker, attackerKey, doc } = await setup()
    const other = await makeState(seededRandom(seed + 1))
    const map = doc.getMap(attacker.identity.namespace)
    let prev: Uint8Array = GENESIS_HASH
    let held = 0
    let refused: Envelope | undefined
    for (let seq = 1; refused === undefined; seq++) {
      const update = updateOf(doc, () => map.set(`blob-${seq}`, 'x'.repeat(60_000)))
      const sealed = await sealEnvelope(SWARM, keySigner(attackerKey), seq, prev, update)
      if (held + update.length + crdtConstants.ENVELOPE_OVERHEAD_BYTES > crdtConstants.MAX_WRITER_BYTES) refused = sealed.envelope
      else {
        expect(honest.receive(sealed.envelope).status).toBe('accepted')
        held += update.length + crdtConstants.ENVELOPE_OVERHEAD_BYTES
        prev = sealed.hash
      }
    }
    expectRejected(honest, refused, 'quota')
    expect(honest.flagged.get(attacker.peerId)).toMatchObject({ reasons: ['quota'], excluded: false })
    const head = honest.heads().find((h) => h.clientId === attacker.identity.clientId)
    expect(head?.seq).toBe(refused.seq - 1)
    // A replica that syncs from the honest one holds the same chain and refuses the same seq.
    fullSync(honest, other)
    expect(other.heads()).toEqual(honest.heads())
    expect(other.receive(refused)).toMatchObject({ status: 'rejected', reason: 'quota' })
    // Held ahead of a gap, it is refused just as well (the writer's bytes only grow).
    const ahead = await sealEnvelope(SWARM, keySigner(attackerKey), refused.seq + 1, new Uint8Array(32).fill(2), refused.update)
    expect(honest.receive(ahead.envelope)).toMatchObject({ status: 'rejected', reason: 'quota' })
    expect(honest.counters.byReason.quota).toBe(2)
    // Its beacons still count for presence, but do not send us pulling for the refused seq.
    const beacon = await sealBeacon(SWARM, keySigner(attackerKey), Date.now(), refused.seq, new Uint8Array(32))
    expect(honest.receiveBeacon(beacon)).toMatchObject({ status: 'accepted', behind: false })
  })

  it('quota: a node\'s own writes stop before its quota (WriterQuotaError), so peers never refuse one', async () => {
    const random = seededRandom(seed)
    const writer = await makeState(random)
    const peer = await makeState(random)
    const sent = capture(writer)
    const blob = 'y'.repeat(crdtConstants.MAX_RECORD_BYTES - 64)
    let error: unknown
    for (let i = 0; error === undefined; i++) {
      try {
        await writer.recordRound(`r${i}`, blob)
      } catch (err) {
        error = err
      }
    }
    expect((error as Error).name).toBe('WriterQuotaError')
    for (const e of sent) expect(peer.receive(e).status).toBe('accepted')
    expect(peer.counters.rejected).toBe(0)
    expect(sent.length).toBeGreaterThan(400)
  })

  it('writers cap: beyond MAX_WRITERS chains a new writer is refused; writers with no accepted envelope are evicted first', async () => {
    const random = seededRandom(seed)
    const honest = await makeState(random)
    const first = async (key: Awaited<ReturnType<typeof seededKey>>, seq = 1, prev: Uint8Array = GENESIS_HASH): Promise<Envelope> => {
      const doc = new Y.Doc()
      doc.clientID = writerIdentity(key.publicKey.raw)?.clientId as number
      const update = updateOf(doc, () => doc.getMap(writerIdentity(key.publicKey.raw)?.namespace as string).set('node', 1))
      return (await sealEnvelope(SWARM, keySigner(key), seq, prev, update)).envelope
    }
    await honest.recordRound('mine', 1) // our own chain counts as one writer
    // Fill the rest, one of them only with a pending envelope.
    const pendingOnly = await seededKey(random)
    expect(honest.receive(await first(pendingOnly, 2, new Uint8Array(32).fill(1))).status).toBe('pending')
    for (let i = 0; i < crdtConstants.MAX_WRITERS - 2; i++) expect(honest.receive(await first(await seededKey(random))).status).toBe('accepted')
    const late = await first(await seededKey(random))
    expect(honest.receive(late).status).toBe('accepted') // evicts the pending-only writer
    expect(honest.pendingBytes()).toBe(0)
    const refused = await first(await seededKey(random))
    const before = Y.encodeStateAsUpdate(honest.doc)
    expect(honest.receive(refused, 'relay')).toMatchObject({ status: 'rejected', reason: 'writers-full' })
    expect(Buffer.from(Y.encodeStateAsUpdate(honest.doc)).equals(Buffer.from(before))).toBe(true)
    expect(honest.flagged.size).toBe(0) // nobody's fault in particular
    expect(honest.writers()).toHaveLength(crdtConstants.MAX_WRITERS)
  })

  it('fork proofs of writers we hold no chain of are bounded by MAX_WRITERS', async () => {
    const random = seededRandom(seed)
    const honest = await makeState(random)
    const forkOf = async (key: Awaited<ReturnType<typeof seededKey>>): Promise<ForkProof> => {
      const runOf = async (value: number): Promise<Run> => {
        const doc = new Y.Doc()
        doc.clientID = writerIdentity(key.publicKey.raw)?.clientId as number
        const update = updateOf(doc, () => doc.getMap(writerIdentity(key.publicKey.raw)?.namespace as string).set('node', value))
        const { envelope } = await sealEnvelope(SWARM, keySigner(key), 1, GENESIS_HASH, update)
        return { writer: envelope.writer, fromSeq: 1, prev: GENESIS_HASH, updates: [envelope.update], signature: envelope.signature }
      }
      return { a: await runOf(1), b: await runOf(2) }
    }
    for (let i = 0; i < crdtConstants.MAX_WRITERS; i++) expect(honest.receiveForkProof(await forkOf(await seededKey(random)))).toBe(true)
    expect(honest.receiveForkProof(await forkOf(await seededKey(random)))).toBe(false)
    // A writer whose chain we hold is still excluded when proven.
    const heldKey = await seededKey(random)
    const proof = await forkOf(heldKey)
    expect(honest.receiveRun(proof.a).status).toBe('accepted')
    expect(honest.receiveForkProof(proof)).toBe(true)
    expect(honest.excludedClientIds()).toHaveLength(crdtConstants.MAX_WRITERS + 1)
  })
})
