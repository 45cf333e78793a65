// Admission per model (issue 7: "known-answer tasks on the model it claims"). A swarm serving two
// models A and B: calibration on B admits for B only, a verifier vouches only for a model it is
// admitted for, founders (genesis) count for every model; rounds name their model and are
// scheduled and settled among the judges admitted for it, by the owner and by every ledger alike;
// a round record without a model (from before) still parses and counts every admitted node.
import { describe, expect, it } from 'vitest'
import { admittedFor, applyCalibration, commitBallot, DEFAULT_REPUTATION_PARAMS, eligibleJudges, encodeReputation, initialReputation, scheduleRound, settleRound, type Answer } from '../../consensus/index.ts'
import { deriveLedger, type StoredRecord } from '../../consensus/ledger.ts'
import { parseRecord, recordData, recordId, type ConsensusRecord } from '../../consensus/records.ts'
import { InvalidConsensusRecordError } from '../../consensus/errors.ts'
import { createRng } from '../../sharding/sim/random.ts'
import { testSeed } from '../seed.ts'
import { noisyBallots } from './ballots.ts'

const seed = testSeed()
const A = 'a'.repeat(64)
const B = 'b'.repeat(64)
const GENESIS = ['g0', 'g1', 'g2']
const ON_A = ['a0', 'a1', 'a2', 'a3', 'a4', 'a5']
const ON_B = ['b0', 'b1', 'b2', 'b3', 'b4', 'b5']

const stored = (writer: string, record: ConsensusRecord): StoredRecord => ({ id: recordId(record), data: recordData(record), writer })
const calibration = (writer: string, subject: string, model: string, seq = 1): StoredRecord =>
  stored(writer, { t: 'calibration', seq, subject, model, challenge: `c-${writer}-${model.slice(0, 1)}`, tasks: 3, tasksExact: 3, pairs: 2, pairsRight: 2, passed: true })

/** g0 admits a0–a5 on A, g1 admits b0–b5 on B; g2 admits `both` on A and b0 admits it on B; b0 tries to admit `x` on A. */
function admissions (): StoredRecord[] {
  return [
    ...ON_A.map((s) => calibration('g0', s, A)),
    ...ON_B.map((s) => calibration('g1', s, B)),
    calibration('g2', 'both', A),
    calibration('b0', 'both', B, 2),
    calibration('b0', 'x', A, 2)
  ]
}

/** Rounds on A and B (and model-less ones when `legacy`): the owner schedules by the model, every scheduled judge votes (80% right); a B-only node also slips a ballot into each A round. */
function playRounds (rounds: number, rng: () => number, legacy = false): StoredRecord[] {
  const out = admissions()
  for (let r = 0; r < rounds; r++) {
    const onA = r % 2 === 0
    const model = legacy && r % 3 === 2 ? undefined : onA ? A : B
    const authors = onA ? ON_A : ON_B
    const owner = authors[r % authors.length]
    const round = `${owner}:${r}`
    const answers: Answer[] = authors.filter((a) => a !== owner).slice(0, 4).map((author, i) => ({ id: `d${r}x${i}`, author }))
    const state = deriveLedger(out, { genesis: GENESIS }).state
    const schedule = scheduleRound(state, round, answers, undefined, model !== undefined ? { model } : {})
    // answer 0 is best; judges are right 80% of the time
    const ballots = noisyBallots(schedule, rng)
    // an interloper admitted for B only commits and reveals on an A round: never counted
    if (onA && model !== undefined) ballots.set('b5', schedule.pairs.map(([first, second]) => ({ first, second, choice: 'first' as const })))
    const reveals: Array<[string, number]> = []
    const commitments = []
    const revealList = []
    for (const [judge, votes] of ballots) {
      const salt = Math.floor(rng() * 1e9).toString(16)
      const commitment = commitBallot(round, judge, votes, salt)
      out.push(stored(judge, { t: 'commit', round, commitment }))
      commitments.push({ round, judge, commitment })
      out.push(stored(judge, { t: 'reveal', round, votes, salt }))
      reveals.push([judge, 500])
      revealList.push({ round, judge, votes, salt, at: 500 })
    }
    const settled = settleRound(state, { round, ...(model !== undefined ? { model } : {}), answers, commitments, reveals: revealList, deadline: 1000 })
    out.push(stored(owner, { t: 'round', round, ...(model !== undefined ? { model } : {}), seq: r + 3, deadline: 1000, answers: answers.map((a) => [a.id, a.author]), reveals, winner: settled.outcome.winner, ranking: settled.outcome.ranking }))
  }
  return out
}

function shuffle<T> (xs: readonly T[], rng: () => number): T[] {
  const a = [...xs]
  for (let i = a.length - 1; i > 0; i--) { const j = Math.floor(rng() * (i + 1)); [a[i], a[j]] = [a[j], a[i]] }
  return a
}

describe(`admission per model (TEST_SEED=${seed} npx vitest run test/consensus/ledger-models.test.ts)`, () => {
  it('calibration admits for its model only; founders count for every model; a verifier vouches only for a model it is admitted for', () => {
    const { state } = deriveLedger(admissions(), { genesis: GENESIS })
    for (const g of GENESIS) {
      expect(state.nodes.get(g)?.models).toBeUndefined()
      expect(admittedFor(state.nodes.get(g), A) && admittedFor(state.nodes.get(g), B)).toBe(true)
    }
    for (const a of ON_A) expect([state.nodes.get(a)?.models, admittedFor(state.nodes.get(a), A), admittedFor(state.nodes.get(a), B)]).toEqual([[A], true, false])
    for (const b of ON_B) expect([state.nodes.get(b)?.models, admittedFor(state.nodes.get(b), A), admittedFor(state.nodes.get(b), B)]).toEqual([[B], false, true])
    // calibrated on both (one by a founder, one by a node admitted for B): admitted for both, rewarded once
    expect(state.nodes.get('both')?.models).toEqual([A, B])
    expect(state.nodes.get('both')?.positive).toBe(DEFAULT_REPUTATION_PARAMS.calibrationReward)
    // b0 is admitted for B only: its calibration of x on A admits nobody
    expect(admittedFor(state.nodes.get('x'))).toBe(false)
    // who may judge: founders and the nodes admitted for the model; every admitted node without one
    expect(eligibleJudges(state, A)).toEqual([...ON_A, 'both', ...GENESIS].sort())
    expect(eligibleJudges(state, B)).toEqual([...ON_B, 'both', ...GENESIS].sort())
    expect(eligibleJudges(state)).toEqual([...ON_A, ...ON_B, 'both', ...GENESIS].sort())
  })

  it('a node calibrated on B is never scheduled to judge a round on A; a founder judges rounds on both', () => {
    const { state } = deriveLedger(admissions(), { genesis: GENESIS })
    const judgedA = new Set<string>()
    const judgedB = new Set<string>()
    for (let r = 0; r < 60; r++) {
      const answersA: Answer[] = ON_A.slice(0, 4).map((author, i) => ({ id: `a${r}-${i}`, author }))
      const answersB: Answer[] = ON_B.slice(0, 4).map((author, i) => ({ id: `b${r}-${i}`, author }))
      for (const x of scheduleRound(state, `a5:${r}`, answersA, undefined, { model: A }).assignments) judgedA.add(x.judge)
      for (const x of scheduleRound(state, `b5:${r}`, answersB, undefined, { model: B }).assignments) judgedB.add(x.judge)
    }
    for (const b of ON_B) expect(judgedA.has(b)).toBe(false)
    for (const a of ON_A) expect(judgedB.has(a)).toBe(false)
    for (const g of GENESIS) expect(judgedA.has(g) && judgedB.has(g)).toBe(true)
    expect(judgedA.has('both') && judgedB.has('both')).toBe(true)
    expect(judgedA.has('x') || judgedB.has('x')).toBe(false)
  })

  it('a node serving A after B is calibrated again for A; then it judges A rounds too', () => {
    const base = deriveLedger(admissions(), { genesis: GENESIS })
    expect(admittedFor(base.state.nodes.get('b1'), A)).toBe(false)
    const again = deriveLedger([...admissions(), calibration('g0', 'b1', A, 3)], { genesis: GENESIS })
    expect(again.state.nodes.get('b1')?.models).toEqual([A, B])
    expect(eligibleJudges(again.state, A)).toContain('b1')
    // one identity, one reputation: no second calibration reward
    expect(again.state.nodes.get('b1')?.positive).toBe(base.state.nodes.get('b1')?.positive)
  })

  it('round records name their model; one without a model still parses (and counts every admitted judge); a bad model does not parse', () => {
    const withModel: ConsensusRecord = { t: 'round', round: 'g0:1', model: A, seq: 1, deadline: 1, answers: [['d', 'a0']], reveals: [], winner: 'd', ranking: ['d'] }
    expect(parseRecord('o/g0:1', recordData(withModel))).toEqual(withModel)
    const old = { t: 'round', round: 'g0:1', seq: 1, deadline: 1, answers: [['d', 'a0']], reveals: [], winner: 'd', ranking: ['d'] }
    const parsed = parseRecord('o/g0:1', old)
    expect(parsed.t === 'round' && parsed.model === undefined).toBe(true)
    expect('model' in parsed).toBe(false)
    for (const model of [7, '', 'm'.repeat(129)]) expect(() => parseRecord('o/g0:1', { ...old, model })).toThrow(InvalidConsensusRecordError)
  })

  it('settled by every ledger among the judges admitted for the round\'s model: same bytes in any order, the owner\'s outcome, no B-only judge counted or charged on A', () => {
    const rng = createRng(seed)
    const records = playRounds(14, rng, true)
    const a = deriveLedger(records, { genesis: GENESIS })
    const b = deriveLedger(shuffle(records, rng), { genesis: [...GENESIS].reverse() })
    expect(Buffer.from(encodeReputation(b.state)).equals(Buffer.from(encodeReputation(a.state)))).toBe(true)
    expect(JSON.stringify(b.outcomes.map((o) => [o.round, o.ranking, o.strengths, o.weights, o.flags]))).toBe(JSON.stringify(a.outcomes.map((o) => [o.round, o.ranking, o.strengths, o.weights, o.flags])))
    expect(a.outcomes.length).toBe(14)
    // every owner scheduled as the ledgers do: each declared ranking is the recomputed one
    expect(a.ownerMismatches).toEqual([])
    const model = (round: string): string | undefined => {
      const r = records.find((x) => x.id === `o/${round}`)?.data as { model?: string }
      return r.model
    }
    let legacy = 0
    for (const o of a.outcomes) {
      const m = model(o.round)
      const judges = o.weights.map(([j]) => j)
      if (m === A) {
        // the B-only interloper's ballot was not counted, and no B-only node is charged (never scheduled)
        for (const j of ON_B) expect(judges).not.toContain(j)
        for (const f of o.flags) expect(ON_B).not.toContain(f.judge)
      } else if (m === B) {
        for (const j of ON_A) expect(judges).not.toContain(j)
      } else {
        // a record from before rounds named their model: every admitted node judged it
        legacy++
        expect(judges.some((j) => ON_A.includes(j)) && judges.some((j) => ON_B.includes(j))).toBe(true)
      }
    }
    expect(legacy).toBeGreaterThan(0)
    // admission stayed per model through the rounds; reputation is per identity
    expect(a.state.nodes.get('a0')?.models).toEqual([A])
    expect(a.state.nodes.get('b0')?.models).toEqual([B])
  })

  it('spot-check records count for a model their verifier is admitted for', () => {
    const check = (writer: string, id: string, subject: string, model: string): StoredRecord =>
      stored(writer, { t: 'spot-check', id, seq: 5, case: `case-${subject}`, subject, model, start: 0, end: 2, checked: [3], mismatched: [3], passed: false })
    const excluded = (extra: StoredRecord[], subject: string): boolean => deriveLedger([...admissions(), ...extra], { genesis: GENESIS }).state.nodes.get(subject)?.excluded === true
    // two verifiers admitted for B only cannot convict a node on A …
    expect(excluded([check('b0', 'x1', 'a0', A), check('b1', 'x2', 'a0', A)], 'a0')).toBe(false)
    // … two admitted for A (a node and a founder) can; and B-only verifiers on B
    expect(excluded([check('a1', 'x1', 'a0', A), check('g1', 'x2', 'a0', A)], 'a0')).toBe(true)
    expect(excluded([check('b0', 'x1', 'b2', B), check('b1', 'x2', 'b2', B)], 'b2')).toBe(true)
  })

  it('canonical bytes carry the admitted models, in sorted order', () => {
    const base = initialReputation(['g'])
    const onA = applyCalibration(base, 'n', DEFAULT_REPUTATION_PARAMS, A)
    const onB = applyCalibration(base, 'n', DEFAULT_REPUTATION_PARAMS, B)
    const ab = applyCalibration(onA, 'n', DEFAULT_REPUTATION_PARAMS, B)
    const ba = applyCalibration(onB, 'n', DEFAULT_REPUTATION_PARAMS, A)
    const bytes = (s: typeof base): Buffer => Buffer.from(encodeReputation(s))
    expect(bytes(onA).equals(bytes(onB))).toBe(false)
    expect(bytes(ab).equals(bytes(ba))).toBe(true)
    expect(bytes(ab).equals(bytes(onA))).toBe(false)
    // a calibration naming no model (the simulator's one-model swarms) admits for every model, like a founder
    const every = applyCalibration(base, 'n')
    expect(every.nodes.get('n')?.models).toBeUndefined()
    expect(admittedFor(every.nodes.get('n'), A) && admittedFor(every.nodes.get('n'), B)).toBe(true)
    expect(bytes(every).equals(bytes(onA))).toBe(false)
    // a founder calibrated on a model stays admitted for every model
    expect(applyCalibration(base, 'g', DEFAULT_REPUTATION_PARAMS, A).nodes.get('g')?.models).toBeUndefined()
  })
})
