// What a simulation run measures, over the window after warm-up.
import type { Scenario, SimResult } from './index.ts'

interface Tracked {
  arrival: number
  firstTokenAt?: number
  state: string
  sim: { genTokens: number }
}

interface PerRequest { tokensInWindow: number, gapSum: number, gaps: number, failed: boolean }

export interface Metrics {
  arrived(req: Tracked): void
  token(req: Tracked, now: number): void
  gap(req: Tracked, ms: number, now: number): void
  completed(req: Tracked): void
  failed(req: Tracked): void
  uncovered(from: number, to: number): void
  result(scheduler: string, moves: number, events: number): SimResult
}

/** Nearest-rank percentile of an ascending array. */
export function percentile (sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return NaN
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
  return sorted[i]
}

export function createMetrics (scenario: Scenario): Metrics {
  const from = scenario.warmupMs
  const to = scenario.durationMs
  const inWindow = (t: number): boolean => t >= from && t <= to
  const per = new Map<Tracked, PerRequest>()
  const gaps: number[] = []
  let completed = 0
  let failed = 0
  let uncoveredMs = 0
  let allTokens = 0
  const get = (req: Tracked): PerRequest => {
    let r = per.get(req)
    if (r === undefined) { r = { tokensInWindow: 0, gapSum: 0, gaps: 0, failed: false }; per.set(req, r) }
    return r
  }
  return {
    arrived (req) { get(req) },
    token (req, now) {
      if (!inWindow(now)) return
      get(req).tokensInWindow++
      allTokens++
    },
    gap (req, ms, now) {
      const r = get(req)
      r.gapSum += ms
      r.gaps++
      if (inWindow(now)) gaps.push(ms)
    },
    completed (req) { if (inWindow(req.arrival)) completed++ },
    failed (req) {
      get(req).failed = true
      if (inWindow(req.arrival)) failed++
    },
    uncovered (a, b) {
      const lo = Math.max(a, from)
      const hi = Math.min(b, to)
      if (hi > lo) uncoveredMs += hi - lo
    },
    result (scheduler, moves, events) {
      const windowS = (to - from) / 1000
      let good = 0
      let arrived = 0
      let metSlo = 0
      const ttfts: number[] = []
      for (const [req, r] of per) {
        const ttft = req.firstTokenAt !== undefined ? req.firstTokenAt - req.arrival : to - req.arrival // censored at the end
        const meets = !r.failed && req.firstTokenAt !== undefined && ttft <= scenario.sloTtftMs && (r.gaps === 0 || r.gapSum / r.gaps <= scenario.sloTokenMs)
        if (meets) good += r.tokensInWindow
        if (!inWindow(req.arrival)) continue
        arrived++
        if (meets) metSlo++
        ttfts.push(ttft)
      }
      gaps.sort((a, b) => a - b)
      ttfts.sort((a, b) => a - b)
      return {
        scheduler,
        scenario: scenario.name,
        goodputTokensPerS: good / windowS,
        tokensPerS: allTokens / windowS,
        p50TokenMs: percentile(gaps, 50),
        p95TokenMs: percentile(gaps, 95),
        p50TtftMs: percentile(ttfts, 50),
        p95TtftMs: percentile(ttfts, 95),
        uncoveredS: uncoveredMs / 1000,
        requests: { arrived, completed, failed, metSlo },
        moves,
        events
      }
    }
  }
}
