// The four engine targets, evaluated from the benchmark's rows. Each names the
// configuration it was read from; a target whose inputs were not measured says so, never guesses.
import type { Target } from './report.ts'
import { fmt } from './report.ts'

export const REFERENCE_SHAPE = 'qwen2.5-0.5b'
export const GOALS = {
  decodeVsLlamaCpp: 1.0, // ours ÷ llama.cpp, q8_0, each at its best thread count
  rooflinePct: 70, // q8_0 decode, reference shape, 2 threads
  prefillGflops: 50, // 128-token prefill, 2 threads
  halfShardMemory: 0.6 // peak RSS of layers [0, L/2) ÷ peak RSS of [0, L), q8_0
}

export interface DecodeComparison {
  shape: string
  dtype: string
  oursTokPerS: number
  oursThreads: number
  llamaTokPerS: number
  llamaThreads: number
  ratio: number
}

export interface TargetInputs {
  comparisons: DecodeComparison[]
  llamaCppReason?: string
  /** The shape the roofline and prefill targets read (q8_0, 2 threads), and its figures when that run succeeded. */
  reference: {
    shape: string
    pctRoofline?: number // against the bandwidth measured just before the run
    pctRooflineBest?: number // against the best bandwidth seen in the whole benchmark
    bandwidthGbps?: number
    bestBandwidthGbps?: number
    prefillGflops?: number
  }
  memory?: { shape: string, ratio: number, halfRssBytes: number, allRssBytes: number }
  memoryReason?: string
}

export function evaluateTargets (inp: TargetInputs): Target[] {
  const q8 = inp.comparisons.filter((c) => c.dtype === 'q8_0')
  const worst = q8.length > 0 ? q8.reduce((a, b) => (b.ratio < a.ratio ? b : a)) : undefined
  const ref = inp.reference
  const refNote = `${ref.shape} q8_0, 2 threads` +
    (ref.shape !== REFERENCE_SHAPE ? `; ${REFERENCE_SHAPE} not in this run` : '') +
    (ref.pctRoofline === undefined ? '; no successful run of it (needs q8_0 and 2 threads)' : '')
  const pct = ref.pctRoofline
  const gf = ref.prefillGflops
  return [
    {
      name: 'q8_0 decode vs llama.cpp',
      goal: `>= ${GOALS.decodeVsLlamaCpp.toFixed(1)}x`,
      ...(worst !== undefined
        ? {
            figure: `${worst.ratio.toFixed(2)}x`,
            met: worst.ratio >= GOALS.decodeVsLlamaCpp,
            note: 'lowest over shapes: ' + q8.map((c) => `${c.shape} ${c.ratio.toFixed(2)}x (${fmt(c.oursTokPerS)} @${c.oursThreads}T vs ${fmt(c.llamaTokPerS)} @${c.llamaThreads}T)`).join(', ')
          }
        : { note: inp.llamaCppReason ?? 'no q8_0 pair measured' })
    },
    {
      name: `q8_0 decode % of bandwidth roofline, ${ref.shape}, 2 threads`,
      goal: `>= ${GOALS.rooflinePct}%`,
      ...(pct !== undefined ? { figure: `${pct.toFixed(1)}%`, met: pct >= GOALS.rooflinePct } : {}),
      note: refNote + (pct === undefined
        ? ''
        : `; roofline at ${fmt(ref.bandwidthGbps)} GB/s measured just before the run` +
          (ref.pctRooflineBest !== undefined ? `; ${ref.pctRooflineBest.toFixed(1)}% against the best ${fmt(ref.bestBandwidthGbps)} GB/s seen in the run` : ''))
    },
    {
      name: '128-token prefill GFLOP/s, 2 threads',
      goal: `>= ${GOALS.prefillGflops} GFLOP/s`,
      ...(gf !== undefined ? { figure: `${gf.toFixed(1)} GFLOP/s`, met: gf >= GOALS.prefillGflops } : {}),
      note: refNote
    },
    {
      name: 'half-layer shard memory vs all layers',
      goal: `<= ${(GOALS.halfShardMemory * 100).toFixed(0)}%`,
      ...(inp.memory !== undefined
        ? {
            figure: `${(inp.memory.ratio * 100).toFixed(1)}%`,
            met: inp.memory.ratio <= GOALS.halfShardMemory,
            note: `${inp.memory.shape} q8_0, layers [0, L/2) vs [0, L), median peak RSS ${fmt(inp.memory.halfRssBytes / 1e6)} MB / ${fmt(inp.memory.allRssBytes / 1e6)} MB`
          }
        : { note: inp.memoryReason ?? 'not run' })
    }
  ]
}
