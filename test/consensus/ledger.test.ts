// Reputation derived from signed records: the same records give the same bytes whatever their
// order, on independent computations and on CRDT replicas that received them by anti-entropy;
// a lying owner, an unadmitted verifier and a failed spot-check are handled alike everywhere.
import { describe, expect, it } from 'vitest'
import type { JsonValue, SwarmState } from '../../crdt/index.ts'
import { commitBallot, encodeReputation, scheduleRound, settleRound, type Answer } from '../../consensus/index.ts'
import { deriveLedger, type StoredRecord } from '../../consensus/ledger.ts'
import { recordData, recordId, type ConsensusRecord } from '../../consensus/records.ts'
import { createRng } from '../../sharding/sim/random.ts'
import { makeState, syncPair } from '../crdt/helpers.ts'
import { testSeed } from '../seed.ts'
import { noisyBallots } from './ballots.ts'

const seed = testSeed()

/** Plays `rounds` rounds among `ids` (all genesis); returns every record each node would write. */
function playRounds (ids: string[], rounds: number, rng: () => number, lie = false): Array<{ writer: string, record: ConsensusRecord }> {
  const out: Array<{ writer: string, record: ConsensusRecord }> = []
  const stored = (): StoredRecord[] => out.map(({ writer, record }) => ({ id: recordId(record), data: recordData(record), writer }))
  // A spot-check and a calibration land between rounds too.
  // Two verifiers confirm the same failed case; a lone accuser of p0 changes nothing.
  const failed = { t: 'spot-check' as const, seq: 2, case: 'session-1:2-4', subject: ids[ids.length - 1], model: 'm', start: 2, end: 4, checked: [1, 5], mismatched: [5], passed: false }
  out.push({ writer: ids[0], record: { ...failed, id: 'x1' } }, { writer: ids[1], record: { ...failed, id: 'x2' } })
  out.push({ writer: ids[2], record: { ...failed, id: 'x3', case: 'session-9:0-2', subject: ids[0] } })
  out.push({ writer: 'nobody', record: { t: 'calibration', seq: 1, subject: 'sybil', model: 'm', challenge: 'c', tasks: 3, tasksExact: 3, pairs: 4, pairsRight: 4, passed: true } })
  out.push({ writer: ids[1], record: { t: 'calibration', seq: 1, subject: 'newcomer', model: 'm', challenge: 'c', tasks: 3, tasksExact: 3, pairs: 4, pairsRight: 4, passed: true } })
  for (let r = 0; r < rounds; r++) {
    const owner = ids[r % (ids.length - 1)] // the last id is excluded by a spot-check: its rounds would not count
    const round = `${owner}:${r}`
    // Answer 0 came from a two-node pipeline: its other node must not judge it either.
    const answers: Answer[] = ids.slice(0, 4).map((author, i) => ({ id: `d${r}x${i}`, author, ...(i === 0 ? { coauthors: [ids[ids.length - 2]] } : {}) }))
    for (const a of answers) out.push({ writer: a.author, record: { t: 'answer', round, digest: a.id } })
    const state = deriveLedger(stored(), { genesis: ids }).state
    const schedule = scheduleRound(state, round, answers)
    // answer 0 is best; judges are right 80% of the time
    const ballots = noisyBallots(schedule, rng)
    const reveals: Array<[string, number]> = []
    const commitments = []
    const revealList = []
    for (const [judge, votes] of ballots) {
      const salt = Math.floor(rng() * 1e9).toString(16)
      const commitment = commitBallot(round, judge, votes, salt)
      out.push({ writer: judge, record: { t: 'commit', round, commitment } })
      commitments.push({ round, judge, commitment })
      if (rng() < 0.1) continue // a missed reveal
      const at = rng() < 0.1 ? 2000 : 500 // some late
      out.push({ writer: judge, record: { t: 'reveal', round, votes, salt } })
      reveals.push([judge, at])
      revealList.push({ round, judge, votes, salt, at })
    }
    const settled = settleRound(state, { round, answers, commitments, reveals: revealList, deadline: 1000 })
    const ranking = lie && r === rounds - 1 ? [...settled.outcome.ranking].reverse() : settled.outcome.ranking
    out.push({ writer: owner, record: { t: 'round', round, seq: r + 3, deadline: 1000, answers: answers.map((a) => [a.id, a.author, ...(a.coauthors ?? [])]), reveals, winner: ranking[0], ranking } })
  }
  return out
}

function shuffle<T> (xs: T[], rng: () => number): T[] {
  const a = [...xs]
  for (let i = a.length - 1; i > 0; i--) { const j = Math.floor(rng() * (i + 1)); [a[i], a[j]] = [a[j], a[i]] }
  return a
}

describe(`reputation ledger (TEST_SEED=${seed} npx vitest run test/consensus/ledger.test.ts)`, () => {
  it('same records in any order → identical reputation bytes and outcomes', () => {
    const rng = createRng(seed)
    const ids = Array.from({ length: 10 }, (_, i) => `p${i}`)
    const records = playRounds(ids, 12, rng).map(({ writer, record }) => ({ id: recordId(record), data: recordData(record), writer }))
    const a = deriveLedger(records, { genesis: ids })
    const b = deriveLedger(shuffle(records, rng), { genesis: [...ids].reverse() })
    expect(Buffer.from(encodeReputation(b.state)).equals(Buffer.from(encodeReputation(a.state)))).toBe(true)
    expect(JSON.stringify(b.outcomes.map((o) => [o.winner, o.ranking, o.strengths, o.weights]))).toBe(JSON.stringify(a.outcomes.map((o) => [o.winner, o.ranking, o.strengths, o.weights])))
    expect(a.outcomes.length).toBe(12)
    expect(a.ownerMismatches).toEqual([])
    // Answer 0 is best: it wins most rounds.
    expect(a.outcomes.filter((o) => o.winner.endsWith('x0')).length).toBeGreaterThanOrEqual(7)
    // The failed spot-check excluded p9; the unadmitted verifier's calibration did nothing; p1's did.
    expect(a.state.nodes.get('p9')?.excluded).toBe(true)
    expect(a.state.nodes.get('p0')?.excluded).toBe(false)
    expect(a.state.nodes.has('sybil')).toBe(false)
    expect(a.state.nodes.get('newcomer')?.admitted).toBe(true)
    // Missed or late reveals were flagged somewhere in 12 rounds.
    expect(a.outcomes.some((o) => o.flags.some((f) => f.reason === 'missing' || f.reason === 'late'))).toBe(true)
  })

  it('an owner that declares another ranking is caught and penalized; the round still counts as recomputed', () => {
    const rng = createRng(seed ^ 5)
    const ids = Array.from({ length: 8 }, (_, i) => `p${i}`)
    const plays = playRounds(ids, 6, rng, true)
    const records = plays.map(({ writer, record }) => ({ id: recordId(record), data: recordData(record), writer }))
    const l = deriveLedger(records, { genesis: ids })
    const liar = plays.filter((p) => p.record.t === 'round').at(-1)?.writer as string
    expect(l.ownerMismatches).toEqual([`${liar}:5`])
    expect(l.outcomes.length).toBe(6)
    // the same rounds with that owner declaring the recomputed ranking: no mismatch, less negative
    // evidence (comparing against the rounds without that record would mix in the decay of one
    // round more)
    const recomputed = l.outcomes[5].ranking
    const honestRecords = plays.map(({ writer, record }) => {
      const fixed = record.t === 'round' && writer === liar && record.seq === 8 ? { ...record, winner: recomputed[0], ranking: recomputed } : record
      return { id: recordId(fixed), data: recordData(fixed), writer }
    })
    const honest = deriveLedger(honestRecords, { genesis: ids })
    expect(honest.ownerMismatches).toEqual([])
    expect(honest.state.nodes.get(liar)?.negative ?? 0).toBeLessThan(l.state.nodes.get(liar)?.negative as number)
  })

  it('a spot-check failure needs two verifiers of the same case, outnumbering those who passed it', () => {
    const ids = ['v1', 'v2', 'v3', 'v4', 's']
    const check = (writer: string, id: string, passed: boolean, caseId = 'c1', seq = 1): StoredRecord => {
      const record: ConsensusRecord = { t: 'spot-check', id, seq, case: caseId, subject: 's', model: 'm', start: 0, end: 2, checked: [3], mismatched: passed ? [] : [3], passed }
      return { id: recordId(record), data: recordData(record), writer }
    }
    const excluded = (records: StoredRecord[]): boolean => deriveLedger(records, { genesis: ids }).state.nodes.get('s')?.excluded === true
    expect(excluded([check('v1', 'a', false)])).toBe(false)
    expect(excluded([check('v1', 'a', false), check('v2', 'b', false, 'c2')])).toBe(false) // different cases
    expect(excluded([check('v1', 'a', false), check('v1', 'b', false)])).toBe(false) // one verifier twice
    expect(excluded([check('v1', 'a', false), check('s', 'b', false)])).toBe(false) // the subject itself
    expect(excluded([check('v1', 'a', false), check('v2', 'b', false)])).toBe(true)
    // Folded in seq order: two passes first, then two failures — disputed, not excluded.
    expect(excluded([check('v1', 'a', false, 'c1', 2), check('v3', 'c', true), check('v4', 'd', true), check('v2', 'b', false, 'c1', 2)])).toBe(false)
    expect(excluded([check('v1', 'a', false, 'c1', 2), check('v3', 'c', true), check('v2', 'b', false, 'c1', 2), check('v4', 'd', false, 'c1', 2)])).toBe(true)
  })

  it('malformed records are ignored by every node alike, and a round id not prefixed by its owner is refused', () => {
    const ids = ['p0', 'p1', 'p2']
    const bad: StoredRecord[] = [
      { id: 'c/x', data: { t: 'commit', round: 'y', commitment: 'ab' }, writer: 'p0' }, // id ≠ record
      { id: 'r/x', data: { t: 'reveal', round: 'x', salt: 's', votes: [['a', 'b', 'Q']] }, writer: 'p0' },
      { id: 'o/p1:1', data: { t: 'round', round: 'p1:1', seq: -1 }, writer: 'p1' },
      { id: 'o/p2:1', data: { t: 'round', round: 'p2:1', seq: 1, deadline: 1, answers: [], reveals: [], winner: 'a', ranking: [] }, writer: 'p0' },
      { id: 'k/a/b', data: 7, writer: 'p0' }
    ]
    const l = deriveLedger(bad, { genesis: ids })
    expect(l.invalid).toBe(5)
    expect(l.outcomes).toEqual([])
  })

  it('through the CRDT: four replicas that write their own records and sync derive identical bytes', async () => {
    const rng = createRng(seed ^ 9)
    const states: SwarmState[] = []
    for (let i = 0; i < 4; i++) states.push(await makeState(rng))
    const ids = states.map((s) => s.peerId)
    const byId = new Map(states.map((s) => [s.peerId, s]))
    const plays = playRounds(ids, 6, rng)
    for (const { writer, record } of plays) {
      const state = byId.get(writer)
      if (state !== undefined) await state.recordRound(recordId(record), recordData(record) as JsonValue)
    }
    for (let i = 0; i < states.length; i++) for (let j = i + 1; j < states.length; j++) syncPair(states[i], states[j])
    for (let i = 0; i < states.length; i++) for (let j = i + 1; j < states.length; j++) syncPair(states[i], states[j])
    const direct = deriveLedger(plays.filter((p) => byId.has(p.writer)).map(({ writer, record }) => ({ id: recordId(record), data: recordData(record), writer })), { genesis: ids })
    const bytes = states.map((s) => Buffer.from(encodeReputation(deriveLedger(s.rounds(), { genesis: ids }).state)))
    for (const b of bytes) expect(b.equals(Buffer.from(encodeReputation(direct.state)))).toBe(true)
    expect(direct.outcomes.length).toBe(6)
  })
})

describe('answer attribution by the round owner (phase 2: pipelines write no answer records)', () => {
  it('answers without an author record count as the owner lists them; an author record that differs drops the answer', () => {
    const rng = createRng(seed)
    const ids = Array.from({ length: 8 }, (_, i) => `p${i}`)
    const withAuthors = playRounds(ids, 6, rng)
    const ownerOnly = withAuthors.filter(({ record }) => record.t !== 'answer').map(({ writer, record }) => ({ id: recordId(record), data: recordData(record), writer }))
    const all = withAuthors.map(({ writer, record }) => ({ id: recordId(record), data: recordData(record), writer }))
    const a = deriveLedger(all, { genesis: ids })
    const b = deriveLedger(ownerOnly, { genesis: ids })
    expect(b.outcomes.length).toBe(6)
    expect(Buffer.from(encodeReputation(b.state)).equals(Buffer.from(encodeReputation(a.state)))).toBe(true)
    // the author of answer 1 of round 0 says it answered something else: that answer leaves the round
    const lying = [...ownerOnly, { id: recordId({ t: 'answer', round: 'p0:0', digest: 'other' }), data: recordData({ t: 'answer', round: 'p0:0', digest: 'other' }), writer: ids[1] }]
    const c = deriveLedger(lying, { genesis: ids })
    expect(c.outcomes[0].ranking).not.toContain('d0x1')
    expect(b.outcomes[0].ranking).toContain('d0x1')
  })
})
