// Commit–reveal of ballots. A judge first publishes commitment = SHA-256(domain, round, judge,
// ballot, salt) and only after the commit deadline reveals (ballot, salt): nobody can copy votes
// they have not seen, nor change a vote after seeing others. Every node checks reveals alike:
// a reveal that does not hash to the commitment, arrives after the reveal deadline (by the
// round's own clock, recorded in the round record) or never arrives is dropped and flagged for
// the stake penalty; votes on comparisons the judge was not assigned are dropped and flagged.
import { randomBytes } from 'node:crypto'
import { COMMIT_DOMAIN, MAX_BALLOT_VOTES } from './constants.ts'
import { compareText, digestFields, toHex } from './digest.ts'
import { InvalidConsensusRecordError } from './errors.ts'
import type { Commitment, JudgeFlag, PairSchedule, Reveal, Vote } from './index.ts'

const CHOICES = new Set(['first', 'second', 'tie'])

/** Votes sorted by (first, second); the same ballot always encodes to the same bytes. */
export function canonicalBallot (votes: readonly Vote[]): Vote[] {
  if (votes.length > MAX_BALLOT_VOTES) throw new InvalidConsensusRecordError(`ballot of ${votes.length} votes exceeds ${MAX_BALLOT_VOTES}`)
  for (const v of votes) {
    if (typeof v.first !== 'string' || typeof v.second !== 'string' || !CHOICES.has(v.choice)) throw new InvalidConsensusRecordError('malformed vote')
  }
  const sorted = votes.map((v) => ({ first: v.first, second: v.second, choice: v.choice }))
    .sort((a, b) => compareText(a.first, b.first) || compareText(a.second, b.second))
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i].first === sorted[i - 1].first && sorted[i].second === sorted[i - 1].second) throw new InvalidConsensusRecordError(`two votes on ${sorted[i].first} vs ${sorted[i].second}`)
  }
  return sorted
}

export function ballotBytes (votes: readonly Vote[]): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(canonicalBallot(votes).map((v) => [v.first, v.second, v.choice])))
}

/** Hex commitment to a ballot. */
export function commitBallot (round: string, judge: string, votes: readonly Vote[], salt: string): string {
  return toHex(digestFields([COMMIT_DOMAIN, round, judge, ballotBytes(votes), salt]))
}

/** A fresh random salt (hex, 32 bytes): the one non-deterministic input, chosen by the judge. */
export function newSalt (): string {
  return randomBytes(32).toString('hex')
}

export interface RevealCheck {
  /** Valid votes per judge (assigned comparisons only), judges sorted. */
  accepted: Map<string, Vote[]>
  flags: JudgeFlag[]
}

/**
 * Which revealed votes count. `deadline` bounds `reveal.at`. Only judges the schedule assigned are
 * expected; a commitment from anyone else is ignored.
 */
export function checkReveals (schedule: PairSchedule, commitments: readonly Commitment[], reveals: readonly Reveal[], deadline: number): RevealCheck {
  const assigned = new Map<string, Set<string>>()
  for (const a of schedule.assignments) {
    let set = assigned.get(a.judge)
    if (set === undefined) assigned.set(a.judge, set = new Set())
    set.add(`${a.first}\u0000${a.second}`)
  }
  const byJudge = <T extends { judge: string, round: string }>(list: readonly T[]): Map<string, T[]> => {
    const map = new Map<string, T[]>()
    for (const x of list) {
      if (x.round !== schedule.round || !assigned.has(x.judge)) continue
      const held = map.get(x.judge)
      if (held === undefined) map.set(x.judge, [x])
      else held.push(x)
    }
    return map
  }
  const commitsOf = byJudge(commitments)
  const revealsOf = byJudge(reveals)
  const accepted = new Map<string, Vote[]>()
  const flags: JudgeFlag[] = []
  for (const judge of [...assigned.keys()].sort(compareText)) {
    const commits = commitsOf.get(judge) ?? []
    const distinct = new Set(commits.map((c) => c.commitment))
    if (distinct.size > 1) { flags.push({ judge, reason: 'equivocation' }); continue }
    if (distinct.size === 0) { flags.push({ judge, reason: 'missing' }); continue }
    const commitment = commits[0].commitment
    const onTime = (revealsOf.get(judge) ?? []).filter((r) => r.at <= deadline)
    if (onTime.length === 0) {
      flags.push({ judge, reason: (revealsOf.get(judge) ?? []).length > 0 ? 'late' : 'missing' })
      continue
    }
    let votes: Vote[] | undefined
    for (const r of onTime) {
      let ok = false
      try {
        ok = commitBallot(schedule.round, judge, r.votes, r.salt) === commitment
      } catch (err) {
        if (!(err instanceof InvalidConsensusRecordError)) throw err
      }
      if (ok) { votes = canonicalBallot(r.votes); break }
    }
    if (votes === undefined) { flags.push({ judge, reason: 'mismatch' }); continue }
    const mine = assigned.get(judge) as Set<string>
    const valid = votes.filter((v) => mine.has(`${v.first}\u0000${v.second}`))
    if (valid.length < votes.length) flags.push({ judge, reason: 'unassigned', count: votes.length - valid.length })
    accepted.set(judge, valid)
  }
  return { accepted, flags }
}
