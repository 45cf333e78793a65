// SwarmState basics: local writes become signed envelopes, other replicas accept them, views
// read them back, change events fire. (Presence beacons: presence.test.ts.)
import { describe, expect, it } from 'vitest'
import { seededRandom, testSeed } from '../seed.ts'
import { capture, makeState, syncPair } from './helpers.ts'

const seed = testSeed()

describe(`SwarmState (TEST_SEED=${seed} npx vitest run test/crdt/swarm-state.test.ts)`, () => {
  it('local writes travel as envelopes and show up in the views of another replica', async () => {
    const random = seededRandom(seed)
    const a = await makeState(random)
    const b = await makeState(random)
    const sent = capture(a)
    await a.setNode({ capabilities: { memoryBytes: 8e9 }, layers: [{ model: 'stories260K', start: 0, end: 5 }], addresses: ['/ip4/127.0.0.1/tcp/1'], version: '0.1.0' })
    await a.claimReputation(b.peerId, 0.75, 'r1')
    await a.recordRound('r1', { winner: 'x' })
    await a.putManifest('m1', { layers: 5 })
    expect(sent.map((e) => e.seq)).toEqual([1, 2, 3, 4])
    for (const e of sent) expect(b.receive(e, a.peerId).status).toBe('accepted')
    expect(b.nodes().get(a.peerId)?.layers).toEqual([{ model: 'stories260K', start: 0, end: 5 }])
    expect(b.reputationClaims()).toEqual([{ issuer: a.peerId, subject: b.peerId, score: 0.75, at: expect.any(Number), round: 'r1' }])
    expect(b.rounds()[0]).toMatchObject({ id: 'r1', writer: a.peerId })
    expect(b.manifests()[0]).toMatchObject({ id: 'm1', publisher: a.peerId })
    expect(b.snapshot()).toEqual(a.snapshot())
  })

  it('an empty namespace equals an absent one in the views', async () => {
    const random = seededRandom(seed)
    const a = await makeState(random)
    const b = await makeState(random)
    a.doc.getMap(a.identity.namespace) // creates the top-level type on a only
    b.doc.getMap(`${a.identity.namespace.slice(0, 3)}someone-else`)
    expect(a.snapshot()).toEqual({})
    expect(a.snapshot()).toEqual(b.snapshot())
  })

  it('emits change events for local and remote writes', async () => {
    const random = seededRandom(seed)
    const a = await makeState(random)
    const b = await makeState(random)
    const sent = capture(a)
    const seenA: string[] = []
    const seenB: string[] = []
    a.onChange((e) => seenA.push(`${e.kind}:${e.key}:${e.local}`))
    b.onChange((e) => seenB.push(`${e.kind}:${e.key}:${e.local}:${e.writer === a.peerId}`))
    await a.putManifest('m', 1)
    b.receive(sent[0])
    expect(seenA).toEqual(['manifest:manifest/m:true'])
    expect(seenB).toEqual(['manifest:manifest/m:false:true'])
  })

  it('anti-entropy runs carry exactly the missing envelopes, one signature per writer', async () => {
    const random = seededRandom(seed)
    const a = await makeState(random)
    const b = await makeState(random)
    for (let i = 0; i < 50; i++) await a.claimReputation(`peer-${i % 7}`, i)
    for (let i = 0; i < 30; i++) await b.recordRound('tick', i)
    syncPair(a, b)
    expect(b.snapshot()).toEqual(a.snapshot())
    expect(a.heads()).toEqual(b.heads())
    const again = syncPair(a, b)
    expect(again).toBe(0)
  })

  it('anti-entropy pages a large backlog through bounded replies', async () => {
    const random = seededRandom(seed)
    const a = await makeState(random)
    const b = await makeState(random)
    for (let i = 0; i < 120; i++) await a.recordRound(`r${i}`, { i })
    let rounds = 0
    for (let more = true; more; rounds++) {
      const reply = a.runsFor(b.heads(), 1000)
      expect(reply.runs.reduce((n, r) => n + r.updates.reduce((m, u) => m + u.length, 0), 0)).toBeLessThan(1000 + 200)
      for (const run of reply.runs) expect(b.receiveRun(run).status).toBe('accepted')
      more = reply.more
    }
    expect(rounds).toBeGreaterThan(5)
    expect(b.snapshot()).toEqual(a.snapshot())
  })
})
