// The workload both engines run, so that their numbers compare: a 128-token prefill (best of a few,
// after one untimed warm-up), and greedy decode of `decodeSteps` tokens after a short prompt
// (tok/s = 1 / median per-token time over all decode runs, which drops the odd preempted step on
// a busy 2-core machine; the mean is reported too). Token ids are seeded pseudo-random, identical
// on both sides; the models are shape-only, so speed does not depend on the values.

export interface Workload {
  prefillTokens: number
  promptTokens: number
  decodeSteps: number
  prefillRuns: number
  decodeRuns: number
  /** Loads per layer range in the half-vs-all memory check (the median is reported). */
  memoryRepeats: number
  seed: number
  /** Token ids are drawn from [FIRST_TOKEN_ID, maxTokenId). */
  maxTokenId: number
}

export const DEFAULT_WORKLOAD: Workload = {
  prefillTokens: 128,
  promptTokens: 8,
  decodeSteps: 48,
  prefillRuns: 3,
  decodeRuns: 2,
  memoryRepeats: 3,
  seed: 1,
  maxTokenId: 32000 // every shape in scripts/model-shapes.ts has at least 32000 tokens
}

export const QUICK_WORKLOAD: Workload = { ...DEFAULT_WORKLOAD, decodeSteps: 16, prefillRuns: 1, decodeRuns: 1, memoryRepeats: 1 }

const FIRST_TOKEN_ID = 300 // past the special and byte tokens of the generated vocabularies

/** `count` token ids from a seeded xorshift32, the same sequence in every process. */
export function workloadTokens (count: number, seed: number, maxTokenId: number): number[] {
  let s = (seed * 2654435761) >>> 0 || 1
  const out: number[] = []
  for (let i = 0; i < count; i++) {
    s ^= s << 13; s >>>= 0
    s ^= s >>> 17
    s ^= s << 5; s >>>= 0
    out.push(FIRST_TOKEN_ID + (s % (maxTokenId - FIRST_TOKEN_ID)))
  }
  return out
}

export interface DecodeStats {
  steps: number
  medianMs: number
  meanMs: number
  minMs: number
  maxMs: number
  /** 1000 / medianMs: the reported decode speed. */
  tokPerS: number
  meanTokPerS: number
}

export function decodeStats (stepMs: number[]): DecodeStats {
  const sorted = [...stepMs].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  const medianMs = sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
  const meanMs = sorted.reduce((a, b) => a + b, 0) / sorted.length
  return {
    steps: sorted.length,
    medianMs,
    meanMs,
    minMs: sorted[0],
    maxMs: sorted[sorted.length - 1],
    tokPerS: 1000 / medianMs,
    meanTokPerS: 1000 / meanMs
  }
}

export interface PrefillStats {
  tokens: number
  runsMs: number[]
  bestMs: number
  tokPerS: number
}

export function prefillStats (tokens: number, runsMs: number[]): PrefillStats {
  const bestMs = Math.min(...runsMs)
  return { tokens, runsMs, bestMs, tokPerS: tokens / (bestMs / 1000) }
}
