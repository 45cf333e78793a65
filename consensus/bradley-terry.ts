// Bradley–Terry strengths by Hunter's (2004) MM iteration, with a prior, judge weights and ties.
// Model: P(i beats j) = p_i / (p_i + p_j). Every item also plays `prior` virtual wins and `prior`
// virtual losses against a pseudo-item of strength 1, which (a) gives a finite, unique maximum a
// posteriori answer when the comparison graph is disconnected or one item won everything, and (b)
// pins the scale, so no renormalisation is needed. The MM step for this objective is
//   p_i ← (W_i + prior) / (Σ_j n_ij / (p_i + p_j) + 2·prior / (p_i + 1))
// with W_i the (weighted) wins of i, a tie counting half a win to each side, and n_ij the weight of
// all comparisons of i and j.
//
// Bit-identical on every node: items and comparisons are sorted canonically before anything is
// summed, the iteration is Jacobi (each step reads only the previous vector) in item order, the
// stopping test is a comparison of those same floats, and only +, −, ×, ÷ are used — IEEE 754
// rounds them correctly, so no Math.exp/log/pow (whose last bit may differ between libms) enters.
import { BT_MAX_ITERATIONS, BT_PRIOR, BT_TOLERANCE } from './constants.ts'
import { compareText } from './digest.ts'
import { ConsensusInputError } from './errors.ts'
import type { BradleyTerryResult, Comparison } from './index.ts'

export interface BradleyTerryOptions {
  /** Virtual wins and losses against the pseudo-item; 0 gives the plain MLE (then Σp = n). */
  prior?: number
  maxIterations?: number
  tolerance?: number
}

const OUTCOME_ORDER = { first: 0, second: 1, tie: 2 } as const

function compareComparisons (x: Comparison, y: Comparison): number {
  return compareText(x.first, y.first) || compareText(x.second, y.second) ||
    OUTCOME_ORDER[x.outcome] - OUTCOME_ORDER[y.outcome] || x.weight - y.weight
}

/** Strengths of `items` (any order) from weighted pairwise comparisons between them. */
export function bradleyTerry (items: readonly string[], comparisons: readonly Comparison[], options: BradleyTerryOptions = {}): BradleyTerryResult {
  const prior = options.prior ?? BT_PRIOR
  const maxIterations = options.maxIterations ?? BT_MAX_ITERATIONS
  const tolerance = options.tolerance ?? BT_TOLERANCE
  if (!(prior >= 0) || !Number.isFinite(prior)) throw new ConsensusInputError(`prior must be ≥ 0, got ${prior}`)
  const ids = [...new Set(items)].sort(compareText)
  const n = ids.length
  const index = new Map(ids.map((id, i) => [id, i]))
  const wins = new Float64Array(n) // W_i
  const games = new Float64Array(n * n) // n_ij, symmetric
  for (const c of [...comparisons].sort(compareComparisons)) {
    const i = index.get(c.first)
    const j = index.get(c.second)
    if (i === undefined || j === undefined) throw new ConsensusInputError(`comparison of unknown item ${i === undefined ? c.first : c.second}`)
    if (i === j) throw new ConsensusInputError(`item ${c.first} compared with itself`)
    if (!(c.weight >= 0) || !Number.isFinite(c.weight)) throw new ConsensusInputError(`comparison weight must be finite and ≥ 0, got ${c.weight}`)
    if (c.weight === 0) continue
    games[i * n + j] += c.weight
    games[j * n + i] += c.weight
    if (c.outcome === 'first') wins[i] += c.weight
    else if (c.outcome === 'second') wins[j] += c.weight
    else {
      wins[i] += c.weight * 0.5
      wins[j] += c.weight * 0.5
    }
  }
  let p = new Float64Array(n).fill(1)
  let next = new Float64Array(n)
  let iterations = 0
  let converged = n === 0
  while (!converged && iterations < maxIterations) {
    iterations++
    let moved = 0
    for (let i = 0; i < n; i++) {
      let denominator = prior > 0 ? 2 * prior / (p[i] + 1) : 0
      for (let j = 0; j < n; j++) {
        const g = games[i * n + j]
        if (g !== 0) denominator += g / (p[i] + p[j])
      }
      next[i] = denominator === 0 ? p[i] : (wins[i] + prior) / denominator
    }
    if (prior === 0) {
      // Plain MLE: only ratios are defined; fix Σp = n.
      let sum = 0
      for (let i = 0; i < n; i++) sum += next[i]
      if (sum > 0) for (let i = 0; i < n; i++) next[i] = next[i] * n / sum
    }
    for (let i = 0; i < n; i++) {
      const change = next[i] > p[i] ? (next[i] - p[i]) / p[i] : (p[i] - next[i]) / p[i]
      if (!(change <= moved)) moved = change // NaN-safe
    }
    const swap = p
    p = next
    next = swap
    converged = moved <= tolerance
  }
  const strengths = Array.from(p)
  const ranking = ids.map((id, i) => ({ id, s: strengths[i] }))
    .sort((a, b) => b.s - a.s || compareText(a.id, b.id)).map((x) => x.id)
  return { items: ids, strengths, ranking, iterations, converged }
}

/** P(a beats b) under fitted strengths. */
export function winProbability (result: BradleyTerryResult, a: string, b: string): number {
  const pa = result.strengths[result.items.indexOf(a)]
  const pb = result.strengths[result.items.indexOf(b)]
  return pa / (pa + pb)
}
