// Consensus in a swarm serving two models (issue 7: admission is "proved capability on THIS
// model"). Eleven CRDT replicas with real keys: founders g0 (holds A) and g1 (holds B), a0–a3
// calibrated on A by g0, b0–b3 on B by g1, and s — calibrated on B, now serving A. The owner's
// side of a round (client/consensus.ts roundChains, roundSchedule, settleRound, roundRecord) runs
// on a0's ledger; the judges' side (node/consensus-judge.ts isOwnAssignment, each on its own
// replica's ledger and its own model) and every replica's ledger settle the same round:
// answers only from nodes admitted for A, judges only among them and the founders, the owner's
// schedule equal to every ledger's, identical bytes everywhere. The calibration loop's choice
// (calibrationCandidate) picks s up for A although it is admitted (for B).
import { describe, expect, it } from 'vitest'
import { roundChains, roundRecord, roundSchedule, type ConsensusRun } from '../../client/consensus.ts'
import { admittedFor, commitBallot, deriveLedger, encodeReputation, recordData, recordId, scheduleRound, settleRound, type Answer, type ConsensusRecord, type ReputationState, type Vote } from '../../consensus/index.ts'
import type { JsonValue, NodeRecord, SwarmState } from '../../crdt/index.ts'
import { calibrationCandidate, calibrationKey, isOwnAssignment } from '../../node/consensus-judge.ts'
import { createRng } from '../../sharding/sim/random.ts'
import { makeState, syncPair } from '../crdt/helpers.ts'
import { testSeed } from '../seed.ts'
import { ownerRun } from './consensus-run.ts'

const seed = testSeed()
const A = 'a'.repeat(64)
const B = 'b'.repeat(64)
const N_LAYERS = 4

function serving (model: string): NodeRecord {
  return { capabilities: { model, dtype: 'f32', decodeLayerMs: 1, prefillLayerMsPerToken: 1, memoryBytes: 1 << 30 }, layers: [{ model, start: 0, end: N_LAYERS }], addresses: [], version: 'test' }
}

function syncAll (states: SwarmState[]): void {
  for (let pass = 0; pass < 2; pass++) for (let i = 0; i < states.length; i++) for (let j = i + 1; j < states.length; j++) syncPair(states[i], states[j])
}

async function write (state: SwarmState, record: ConsensusRecord): Promise<void> {
  await state.recordRound(recordId(record), recordData(record) as JsonValue)
}

/** The owner's run for model `model` over the swarm's node records, scheduling with `state`. */
function runOf (self: string, records: Map<string, NodeRecord>, state: ReputationState, model: string): ConsensusRun {
  return ownerRun({ self, records, state, model, nLayers: N_LAYERS })
}

describe(`consensus with two models: the owner, the judges and every ledger schedule by the round's model (TEST_SEED=${seed} npx vitest run test/client/consensus-models.test.ts)`, () => {
  it('answers and judges only from nodes admitted for the model; owner schedule = every ledger\'s; same settled bytes on every replica', async () => {
    const rng = createRng(seed)
    const names = ['g0', 'g1', 'a0', 'a1', 'a2', 'a3', 'b0', 'b1', 'b2', 'b3', 's']
    const replica = new Map<string, SwarmState>()
    for (const n of names) replica.set(n, await makeState(rng))
    const id = (n: string): string => (replica.get(n) as SwarmState).peerId
    const name = new Map(names.map((n) => [id(n), n]))
    const states = [...replica.values()]
    const genesis = [id('g0'), id('g1')]
    const holds = new Map(names.map((n) => [n, n === 's' || n.startsWith('a') || n === 'g0' ? A : B]))
    const records = new Map(names.map((n) => [id(n), serving(holds.get(n) as string)]))
    // admissions: g0 calibrates the A nodes on A, g1 the B nodes and s on B
    let seq = 1
    for (const n of ['a0', 'a1', 'a2', 'a3']) await write(replica.get('g0') as SwarmState, { t: 'calibration', seq: seq++, subject: id(n), model: A, challenge: `c-${n}`, tasks: 3, tasksExact: 3, pairs: 2, pairsRight: 2, passed: true })
    for (const n of ['b0', 'b1', 'b2', 'b3', 's']) await write(replica.get('g1') as SwarmState, { t: 'calibration', seq: seq++, subject: id(n), model: B, challenge: `c-${n}`, tasks: 3, tasksExact: 3, pairs: 2, pairsRight: 2, passed: true })
    syncAll(states)
    const ledgerOf = (n: string): ReturnType<typeof deriveLedger> => deriveLedger((replica.get(n) as SwarmState).rounds(), { genesis })
    const owner = 'a0'
    const ownerState = ledgerOf(owner).state
    expect(admittedFor(ownerState.nodes.get(id('s')))).toBe(true) // admitted — for B

    // the calibration loop: g0 (holding A) picks s for A although s is admitted (for B); g1 (holding B) has nobody to calibrate
    const members = (): Iterable<[string, NodeRecord]> => records
    const online = new Set(records.keys())
    const tried = new Map<string, { at: number, failures: number }>()
    expect(calibrationCandidate(members(), { self: id('g0'), online, state: ledgerOf('g0').state, model: A, tried, now: 1e12 })?.id).toBe(id('s'))
    expect(calibrationCandidate(members(), { self: id('g1'), online, state: ledgerOf('g1').state, model: B, tried, now: 1e12 })).toBeUndefined()
    // the backoff is per (subject, model): a try of s on B does not hold back its calibration on A
    tried.set(calibrationKey(id('s'), B), { at: 1e12, failures: 0 })
    expect(calibrationCandidate(members(), { self: id('g0'), online, state: ledgerOf('g0').state, model: A, tried, now: 1e12 })?.id).toBe(id('s'))
    tried.set(calibrationKey(id('s'), A), { at: 1e12, failures: 0 })
    expect(calibrationCandidate(members(), { self: id('g0'), online, state: ledgerOf('g0').state, model: A, tried, now: 1e12 })).toBeUndefined()

    // the owner's chains on A: whole-model A servers admitted for A (itself too), not s (admitted for B only)
    const chains = roundChains(runOf(id(owner), records, ownerState, A), 8)
    const authors = chains.map((c) => name.get(String(c[c.length - 1].peer)) as string).sort()
    expect(authors).toEqual(['a0', 'a1', 'a2', 'a3', 'g0'])
    const round = `${id(owner)}:1`
    const answers: Answer[] = chains.map((c, i) => ({ id: `ans${i}`, author: String(c[c.length - 1].peer) }))
    const schedule = roundSchedule(ownerState, round, answers, A)
    const judges = [...new Set(schedule.assignments.map((x) => name.get(x.judge) as string))].sort()
    // founders (every model) and nodes admitted for A, less the owner; no B node, not s
    expect(judges).toEqual(['a1', 'a2', 'a3', 'g0', 'g1'])
    // every replica's ledger draws the same schedule for the round's model
    for (const n of names) expect(scheduleRound(ledgerOf(n).state, round, answers, undefined, { model: A })).toEqual(schedule)

    // the judges' accept, each on its own ledger and with its own model
    const sent = answers.map((a) => ({ id: a.id, authors: [a.author] }))
    const pairsOf = (judge: string): Array<{ first: string, second: string }> => schedule.assignments.filter((x) => x.judge === judge).map(({ first, second }) => ({ first, second }))
    const accepted: string[] = []
    for (const n of judges) if (holds.get(n) === A && isOwnAssignment(ledgerOf(n).state, id(n), round, pairsOf(id(n)), sent, A)) accepted.push(n)
    expect(accepted).toEqual(['a1', 'a2', 'a3', 'g0'])
    // g1 is a founder holding only B: scheduled (founders count for every model); whether its own
    // schedule (for B) gives it the same pairs depends on the draw, but it cannot decode A's tokens
    // to the texts sent, so its answerText refuses UNVERIFIED: it does not vote — founders should
    // hold every model the swarm serves (consensus/README.md)
    // a node admitted for B only has no assignment in an A round, whatever pairs it is sent
    for (const j of judges) expect(isOwnAssignment(ledgerOf('b0').state, id('b0'), round, pairsOf(id(j)), sent, A)).toBe(false)

    // the accepting judges vote (answer ans0 preferred), commit and reveal in their own namespaces
    const commitments = []
    const reveals = []
    for (const n of accepted) {
      const votes: Vote[] = pairsOf(id(n)).map(({ first, second }) => ({ first, second, choice: first === 'ans0' ? 'first' : second === 'ans0' ? 'second' : first < second ? 'first' : 'second' }))
      const salt = `salt-${n}`
      const commitment = commitBallot(round, id(n), votes, salt)
      await write(replica.get(n) as SwarmState, { t: 'commit', round, commitment })
      await write(replica.get(n) as SwarmState, { t: 'reveal', round, votes, salt })
      commitments.push({ round, judge: id(n), commitment })
      reveals.push({ round, judge: id(n), votes, salt, at: 500 })
    }
    const settled = settleRound(ownerState, { round, model: A, answers, commitments, reveals, deadline: 1000 })
    // the votes counted: the winner lost none (which answer wins depends on the pairs drawn)
    const lost = new Set(reveals.flatMap((r) => r.votes.map((v) => (v.choice === 'first' ? v.second : v.first))))
    expect(answers.map((a) => a.id)).toContain(settled.outcome.winner)
    expect(lost.has(settled.outcome.winner)).toBe(false)
    await write(replica.get(owner) as SwarmState, roundRecord({ round, model: A, seq: seq++, deadline: 1000, answers, reveals, outcome: settled.outcome, receipts: [] }))
    syncAll(states)
    const bytes = encodeReputation(ledgerOf(owner).state)
    for (const n of names) {
      const l = ledgerOf(n)
      expect(l.ownerMismatches).toEqual([])
      expect(l.outcomes).toHaveLength(1)
      const o = l.outcomes[0]
      expect([o.round, o.ranking, o.strengths, o.weights, o.flags]).toEqual([round, settled.outcome.ranking, settled.outcome.strengths, settled.outcome.weights, settled.outcome.flags])
      expect(Buffer.from(encodeReputation(l.state)).equals(Buffer.from(bytes))).toBe(true)
    }
    // no B node was scheduled, counted or charged; the refusing founder lost its reveal stake
    const o = ledgerOf('b0').outcomes[0]
    for (const n of ['b0', 'b1', 'b2', 'b3', 's']) {
      expect(o.weights.map(([j]) => j)).not.toContain(id(n))
      expect(o.flags.map((f) => f.judge)).not.toContain(id(n))
    }
    expect(o.flags).toEqual([{ judge: id('g1'), reason: 'missing' }])

    // once g0 calibrates s on A (it serves A now), s answers and judges A rounds too
    await write(replica.get('g0') as SwarmState, { t: 'calibration', seq, subject: id('s'), model: A, challenge: 'c-s-a', tasks: 3, tasksExact: 3, pairs: 2, pairsRight: 2, passed: true })
    syncAll(states)
    const later = ledgerOf(owner).state
    expect(later.nodes.get(id('s'))?.models).toEqual([A, B])
    expect(roundChains(runOf(id(owner), records, later, A), 8).map((c) => name.get(String(c[c.length - 1].peer))).sort()).toEqual(['a0', 'a1', 'a2', 'a3', 'g0', 's'])
    // a round on B owned by b0 never schedules an A node
    const answersB: Answer[] = ['b1', 'b2', 'b3'].map((n, i) => ({ id: `bns${i}`, author: id(n) }))
    const judgesB = new Set(roundSchedule(ledgerOf('b0').state, `${id('b0')}:2`, answersB, B).assignments.map((x) => name.get(x.judge)))
    for (const n of ['a0', 'a1', 'a2', 'a3']) expect(judgesB.has(n)).toBe(false)
    expect(judgesB.has('g0') && judgesB.has('s')).toBe(true)
  })
})
