// Which judge compares which answers in a round. After a seeded permutation of the answers, every
// answer is paired with its neighbour (i, i+1) and with the answer half the ring away (i, i+⌊n/2⌋):
// about 1.5n unordered pairs, each judged in both orders by the same judges (so a judge's position
// bias cancels), ≈ 3n ordered comparisons per judge slot. Judges are drawn for each pair by
// reputation-weighted choice without replacement among those who wrote neither answer (nor served
// in the pipeline that produced it). The PRNG is
// seeded by the round id, so every node derives the same schedule and nobody knows it before the
// round exists.
import { JUDGES_PER_PAIR, SCHEDULE_DOMAIN } from './constants.ts'
import { compareText, seededRng } from './digest.ts'
import { ConsensusInputError } from './errors.ts'
import type { Answer, Assignment, JudgeCandidate, PairSchedule } from './index.ts'

export interface ScheduleOptions {
  round: string
  answers: readonly Answer[]
  /** Eligible judges with their weights (reputation); weight 0 never judges. */
  judges: readonly JudgeCandidate[]
  judgesPerPair?: number
}

/** Unordered pairs of answer ids (a before b in the permuted ring), ≈ 1.5n of them. */
function ringPairs (ids: string[]): Array<[string, string]> {
  const n = ids.length
  const seen = new Set<string>()
  const pairs: Array<[string, string]> = []
  const add = (i: number, j: number): void => {
    if (i === j) return
    const key = i < j ? `${i},${j}` : `${j},${i}`
    if (seen.has(key)) return
    seen.add(key)
    pairs.push([ids[i], ids[j]])
  }
  for (let i = 0; i < n; i++) add(i, (i + 1) % n)
  const half = Math.floor(n / 2)
  // Cross pairs: each of the first ⌈n/2⌉ answers with the one half the ring away (≈ n/2 pairs).
  if (n > 3) for (let i = 0; i < Math.ceil(n / 2); i++) add(i, i + half)
  return pairs
}

export function schedulePairs (options: ScheduleOptions): PairSchedule {
  const { round } = options
  const judgesPerPair = options.judgesPerPair ?? JUDGES_PER_PAIR
  const answers = [...options.answers].sort((a, b) => compareText(a.id, b.id))
  for (let i = 1; i < answers.length; i++) {
    if (answers[i].id === answers[i - 1].id) throw new ConsensusInputError(`answer ${answers[i].id} appears twice`)
  }
  const judges = options.judges.filter((j) => j.weight > 0).sort((a, b) => compareText(a.id, b.id))
  const rng = seededRng([SCHEDULE_DOMAIN, round])
  // Fisher–Yates over the canonical order.
  const ids = answers.map((a) => a.id)
  for (let i = ids.length - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1))
    const t = ids[i]
    ids[i] = ids[j]
    ids[j] = t
  }
  const authors = new Map(answers.map((a) => [a.id, new Set([a.author, ...(a.coauthors ?? [])])]))
  const pairs = ringPairs(ids)
  const assignments: Assignment[] = []
  for (const [a, b] of pairs) {
    const excluded = new Set([...(authors.get(a) ?? []), ...(authors.get(b) ?? [])])
    const pool = judges.filter((j) => !excluded.has(j.id))
    for (let k = 0; k < judgesPerPair && pool.length > 0; k++) {
      let total = 0
      for (const j of pool) total += j.weight
      let x = rng() * total
      let pick = pool.length - 1
      for (let i = 0; i < pool.length; i++) {
        x -= pool[i].weight
        if (x < 0) { pick = i; break }
      }
      const judge = pool[pick].id
      pool.splice(pick, 1)
      assignments.push({ judge, first: a, second: b }, { judge, first: b, second: a })
    }
  }
  return { round, pairs, assignments }
}

/** The assignments of one judge, keyed `first\u0000second`. */
export function assignmentsOf (schedule: PairSchedule, judge: string): Set<string> {
  return new Set(schedule.assignments.filter((x) => x.judge === judge).map((x) => `${x.first}\u0000${x.second}`))
}
