// Commit–reveal: a matching reveal counts; a mismatched, late or missing one is dropped and
// flagged; two commitments are equivocation; votes outside the judge's assignments are dropped.
import { describe, expect, it } from 'vitest'
import { checkReveals, commitBallot, newSalt, schedulePairs, type Commitment, type Reveal, type Vote } from '../../consensus/index.ts'

const answers = Array.from({ length: 6 }, (_, i) => ({ id: `a${i}`, author: `n${i}` }))
const judges = Array.from({ length: 10 }, (_, i) => ({ id: `n${i}`, weight: 1 }))
const schedule = schedulePairs({ round: 'R', answers, judges, judgesPerPair: 2 })
const judgeIds = [...new Set(schedule.assignments.map((a) => a.judge))].sort()
const ballotOf = (judge: string): Vote[] => schedule.assignments.filter((a) => a.judge === judge).map((a) => ({ first: a.first, second: a.second, choice: 'first' }))

function honest (at = 10): { commitments: Commitment[], reveals: Reveal[] } {
  const commitments: Commitment[] = []
  const reveals: Reveal[] = []
  for (const judge of judgeIds) {
    const votes = ballotOf(judge)
    const salt = newSalt()
    commitments.push({ round: 'R', judge, commitment: commitBallot('R', judge, votes, salt) })
    reveals.push({ round: 'R', judge, votes: [...votes].reverse(), salt, at }) // order does not matter
  }
  return { commitments, reveals }
}

describe('commit–reveal', () => {
  it('accepts matching reveals in any vote order', () => {
    const { commitments, reveals } = honest()
    const r = checkReveals(schedule, commitments, reveals, 100)
    expect(r.flags).toEqual([])
    expect([...r.accepted.keys()]).toEqual(judgeIds)
    for (const j of judgeIds) expect(r.accepted.get(j)?.length).toBe(ballotOf(j).length)
  })

  it('rejects a reveal that does not match its commitment (changed vote, changed salt, other round)', () => {
    const { commitments, reveals } = honest()
    const [j0, j1, j2] = judgeIds
    const changed = reveals.map((r) => r.judge === j0 ? { ...r, votes: r.votes.map((v, i) => i === 0 ? { ...v, choice: 'second' as const } : v) } : r.judge === j1 ? { ...r, salt: newSalt() } : r)
    const otherRound = commitments.map((c) => c.judge === j2 ? { ...c, commitment: commitBallot('R2', j2, ballotOf(j2), reveals.find((r) => r.judge === j2)?.salt as string) } : c)
    const r = checkReveals(schedule, otherRound, changed, 100)
    expect(r.flags).toEqual([{ judge: j0, reason: 'mismatch' }, { judge: j1, reason: 'mismatch' }, { judge: j2, reason: 'mismatch' }].sort((a, b) => a.judge < b.judge ? -1 : 1))
    for (const j of [j0, j1, j2]) expect(r.accepted.has(j)).toBe(false)
  })

  it('ignores a late reveal, flags a missing one and one without commitment', () => {
    const { commitments, reveals } = honest()
    const [j0, j1, j2] = judgeIds
    const r = checkReveals(schedule, commitments.filter((c) => c.judge !== j2), reveals.map((x) => x.judge === j0 ? { ...x, at: 101 } : x).filter((x) => x.judge !== j1), 100)
    expect(new Map(r.flags.map((f) => [f.judge, f.reason]))).toEqual(new Map([[j0, 'late'], [j1, 'missing'], [j2, 'missing']]))
    expect(r.accepted.has(j0) || r.accepted.has(j1) || r.accepted.has(j2)).toBe(false)
    expect(r.accepted.size).toBe(judgeIds.length - 3)
  })

  it('two different commitments from one judge are equivocation; votes on unassigned pairs are dropped', () => {
    const { commitments, reveals } = honest()
    const [j0, j1] = judgeIds
    const extra: Vote = { first: 'a0', second: 'a1', choice: 'first' }
    const mine = ballotOf(j1)
    const stuffed = mine.some((v) => v.first === 'a0' && v.second === 'a1') ? mine : [...mine, extra]
    const salt = newSalt()
    const c2 = commitments.map((c) => c.judge === j1 ? { ...c, commitment: commitBallot('R', j1, stuffed, salt) } : c)
    const r2 = reveals.map((x) => x.judge === j1 ? { ...x, votes: stuffed, salt } : x)
    const r = checkReveals(schedule, [...c2, { round: 'R', judge: j0, commitment: 'ff'.repeat(32) }], r2, 100)
    expect(r.flags.find((f) => f.judge === j0)?.reason).toBe('equivocation')
    if (stuffed !== mine) {
      expect(r.flags.find((f) => f.judge === j1)).toEqual({ judge: j1, reason: 'unassigned', count: 1 })
      expect(r.accepted.get(j1)?.length).toBe(mine.length)
    }
  })

  it('a malformed revealed ballot (duplicate vote) is a mismatch, not a crash', () => {
    const { commitments, reveals } = honest()
    const j0 = judgeIds[0]
    const bad = reveals.map((x) => x.judge === j0 ? { ...x, votes: [...x.votes, x.votes[0]] } : x)
    expect(checkReveals(schedule, commitments, bad, 100).flags).toEqual([{ judge: j0, reason: 'mismatch' }])
  })
})
