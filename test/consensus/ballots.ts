// Judges' ballots for a schedule, for ledger tests: the answer with the smaller id is the better
// one, and each judge picks it with probability `accuracy` (one `rng()` draw per assignment, in
// schedule order, so a seed gives the same ballots).
import type { PairSchedule, Vote } from '../../consensus/index.ts'

export function noisyBallots (schedule: PairSchedule, rng: () => number, accuracy = 0.8): Map<string, Vote[]> {
  const ballots = new Map<string, Vote[]>()
  for (const a of schedule.assignments) {
    const votes = ballots.get(a.judge) ?? []
    const better = a.first < a.second ? 'first' : 'second'
    votes.push({ first: a.first, second: a.second, choice: rng() < accuracy ? better : better === 'first' ? 'second' : 'first' })
    ballots.set(a.judge, votes)
  }
  return ballots
}
