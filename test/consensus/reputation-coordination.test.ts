// The coordination term of the reputation update (reputation.ts, coordinate()): judges who deviate
// from their pairs together, beyond their own records, are charged; a judge that deviates as much
// as it always does is not; bit-identical whatever order the evidence arrives in; and in the
// simulator it separates camouflaged nodes (honest 90% of rounds, attacking together in the rest)
// better than agreement alone, without costing a clean swarm accuracy or weight (false penalties).
import { describe, expect, it } from 'vitest'
import { applyRound, DEFAULT_REPUTATION_PARAMS, encodeReputation, initialReputation, rawWeight, reputationOf, settleRound, type JudgeEvidence, type ReputationState, type RoundOutcome } from '../../consensus/index.ts'
import { runSwarm } from '../../consensus/sim/swarm-sim.ts'
import { seededRandom, testSeed } from '../seed.ts'

const seed = testSeed()
const OFF = { ...DEFAULT_REPUTATION_PARAMS, coordination: 0 }

/** A round where judge j cast `votes[j]` votes and deviated from its pairs on `dev[j]` of them. */
function round (entries: Array<[string, number, number]>): RoundOutcome {
  const evidence = new Map<string, JudgeEvidence>(entries.map(([j, votes, dev]) => [j, { agree: votes - dev, disagree: dev, peerAgree: votes - dev, peerDisagree: dev }]))
  return {
    round: 'r', winner: 'a', ranking: ['a'], strengths: [['a', 1]], weights: [], flags: [],
    agreement: new Map(entries.map(([j, votes, dev]) => [j, { agree: votes - dev, disagree: dev }])),
    evidence
  }
}

const judges = Array.from({ length: 20 }, (_, i) => `j${String(i).padStart(2, '0')}`)
/** Steady history: every judge deviates on its own fixed share (weak judges more) for `n` rounds. */
function steady (n: number, params = DEFAULT_REPUTATION_PARAMS): ReputationState {
  let s = initialReputation(judges)
  for (let r = 0; r < n; r++) s = applyRound(s, round(judges.map((j, i) => [j, 4, 4 * (0.1 + 0.015 * i)])), params)
  return s
}

describe(`reputation: coordination term (TEST_SEED=${seed} npx vitest run test/consensus/reputation-coordination.test.ts)`, () => {
  it('a group deviating together beyond its records is charged; the others are credited', () => {
    const before = steady(40)
    const ring = new Set(judges.slice(14))
    const attack = round(judges.map((j, i) => [j, 4, ring.has(j) ? 3.6 : 4 * (0.1 + 0.015 * i)]))
    const withTerm = applyRound(before, attack)
    const without = applyRound(before, attack, OFF)
    for (const j of judges) {
      const a = reputationOf(withTerm, j)
      const b = reputationOf(without, j)
      if (ring.has(j)) {
        expect(a.negative).toBeGreaterThan(b.negative + 1)
        expect(a.positive).toBe(b.positive)
      } else {
        expect(a.negative).toBe(b.negative)
        expect(a.positive).toBeGreaterThanOrEqual(b.positive)
      }
    }
  })

  it('judges that deviate as their records say (a weak honest judge included) earn no coordination evidence', () => {
    const s = steady(200)
    const t = steady(200, OFF)
    // The weakest judge (deviates on 38.5% of votes every round) keeps its weight.
    const weak = judges[judges.length - 1]
    expect(Math.abs(rawWeight(reputationOf(s, weak)) - rawWeight(reputationOf(t, weak)))).toBeLessThan(0.01)
    for (const j of judges) expect(rawWeight(reputationOf(s, j))).toBeGreaterThan(0)
    // The record is bounded: two decayed numbers per node.
    const rep = reputationOf(s, weak)
    expect(rep.votes).toBeLessThan(4 / (1 - DEFAULT_REPUTATION_PARAMS.decay) + 1e-9)
    expect(rep.deviations).toBeLessThan(rep.votes as number)
  })

  it('is bit-identical whatever order the judges and their evidence arrive in', () => {
    const rng = seededRandom(seed)
    let a = initialReputation(judges)
    let b = initialReputation([...judges].reverse())
    for (let r = 0; r < 30; r++) {
      const entries = judges.map((j): [string, number, number] => { const v = 1 + Math.floor(rng() * 6); return [j, v, Math.floor(rng() * (v + 1)) * 0.7] })
      a = applyRound(a, round(entries))
      b = applyRound(b, round([...entries].sort(() => rng() - 0.5)))
    }
    expect(Buffer.from(encodeReputation(a)).equals(Buffer.from(encodeReputation(b)))).toBe(true)
  })

  it('settleRound hands the peer part of every judge\'s evidence to the update', () => {
    const s = initialReputation(['n0', 'n1', 'n2', 'n3'])
    const answers = [{ id: 'x', author: 'n0' }, { id: 'y', author: 'n1' }]
    const settled = settleRound(s, { round: 'n0:1', answers, commitments: [], reveals: [], deadline: 0 })
    expect(settled.outcome.evidence).toBeInstanceOf(Map)
    expect(settled.outcome.evidence?.size).toBe(0) // nobody revealed
  })

  it('simulator: camouflaged nodes are separated better with the term; a clean swarm keeps its accuracy and its honest nodes their weight', () => {
    const seeds = [0, 1, 2, 3, 4, 5].map((k) => (seed + k * 7919) >>> 0)
    const auc = (params: typeof OFF): number => {
      let sum = 0
      for (const sd of seeds) sum += runSwarm({ seed: sd, nodes: 40, adversary: 'camouflaged', fraction: 0.3, rounds: 50, answersPerRound: 8, params }).aucByRound[49]
      return sum / seeds.length
    }
    const on = auc(DEFAULT_REPUTATION_PARAMS)
    const off = auc(OFF)
    expect(on).toBeGreaterThan(off)
    // False penalties, over three clean swarms: hardly more honest nodes at weight 0 than without
    // the term. Per swarm it is 0 in 57 of 60 seeds, 1 in 2, 2 in 1 (TEST_SEED=192148037, which
    // failed a one-swarm version of this check); without the term 0 in all 60.
    const zero = (ws: number[]): number => ws.filter((w) => w === 0).length
    let zeroOn = 0
    let zeroOff = 0
    for (let k = 0; k < 3; k++) {
      const s = (seed + k * 104729) >>> 0
      const clean = runSwarm({ seed: s, nodes: 40, adversary: 'none', fraction: 0, rounds: 100, answersPerRound: 8 })
      const cleanOff = runSwarm({ seed: s, nodes: 40, adversary: 'none', fraction: 0, rounds: 100, answersPerRound: 8, params: OFF })
      expect(clean.ours.accuracy).toBeGreaterThan(cleanOff.ours.accuracy - 0.04) // worst of 60 seeds: −0.02
      zeroOn += zero(clean.honest.weights)
      zeroOff += zero(cleanOff.honest.weights)
    }
    expect(zeroOn).toBeLessThanOrEqual(zeroOff + 3)
  })
})
