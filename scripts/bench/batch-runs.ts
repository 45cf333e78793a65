// The continuous-batching section of `npm run bench:engine`: for each model, decode tokens/s of B
// sessions stepped one at a time against the same sessions in one `shard.stepBatch` pass, for each
// B, each model in a fresh child (./measure-batch.ts). `stories260K` is the real model in the
// shared models folder; any other name is a shape of scripts/model-shapes.ts (an f32 GGUF from
// ./models.ts).
import { existsSync } from 'node:fs'
import { resolve } from 'node:path'
import type { WeightDType } from '../../engine/index.ts'
import { runChild } from './child.ts'
import type { BatchJob, BatchResult } from './measure-batch.ts'
import { ensureModel } from './models.ts'
import { fmt, formatTable, type Target } from './report.ts'

const MEASURE_BATCH = new URL('./measure-batch.ts', import.meta.url).pathname
const SHARED_STORIES260K = resolve(new URL('../../..', import.meta.url).pathname, 'shared/models/stories260K/stories260K.bin')
/** Decode tokens per mode and B: enough for a steady figure on the small models. */
const BATCH_TOKENS: Record<string, number> = { stories260K: 2048 }
const DEFAULT_BATCH_TOKENS = 256
const WARMUP_STEPS = 2
/** The aggregate-throughput goal at 32 sessions, which batching on a stage must allow. */
const GOAL_SESSIONS = 32
const GOAL_SPEEDUP = 4

export interface BatchBenchOptions {
  models: string[]
  dtype: WeightDType
  threads: number
  sessions: number[]
  modelsDir: string
  timeoutMs: number
  log: (line: string) => void
}

export interface BatchModelRun {
  model: string
  path?: string
  result?: BatchResult
  error?: string
}

export async function runBatchBench (o: BatchBenchOptions): Promise<BatchModelRun[]> {
  const runs: BatchModelRun[] = []
  for (const model of o.models) {
    let path: string
    try {
      path = model === 'stories260K' ? SHARED_STORIES260K : ensureModel(o.modelsDir, model, o.dtype, o.log).path
      if (!existsSync(path)) throw new Error(`${path} is missing`)
    } catch (err) {
      runs.push({ model, error: (err as Error).message })
      continue
    }
    const job: BatchJob = { model: path, dtype: o.dtype, threads: o.threads, sessions: o.sessions, tokens: BATCH_TOKENS[model] ?? DEFAULT_BATCH_TOKENS, warmupSteps: WARMUP_STEPS }
    const r = await runChild<BatchResult>(MEASURE_BATCH, job, o.timeoutMs)
    runs.push({ model, path, result: r.result, error: r.error })
    o.log(`batching ${model} ${o.dtype} ${o.threads}T: ` + (r.result === undefined
      ? `FAILED ${r.error ?? ''}`
      : r.result.rows.map((row) => `B=${row.sessions} ${fmt(row.sequentialTokPerS)} → ${fmt(row.batchedTokPerS)} tok/s`).join(', ')))
  }
  return runs
}

export function batchTable (runs: BatchModelRun[]): string {
  return formatTable(['model', 'dtype', 'thr', 'dim', 'sessions', 'one at a time tok/s', 'batched tok/s', 'batched / one at a time', 'batched / 1 session'],
    runs.flatMap(({ model, result: r }) => r === undefined
      ? [[model, undefined, undefined, undefined, undefined, undefined, undefined, 'FAILED', undefined]]
      : r.rows.map((row) => [model, r.dtype, r.threads, r.dim, row.sessions, fmt(row.sequentialTokPerS), fmt(row.batchedTokPerS),
        `${row.speedup.toFixed(2)}x`, `${(row.batchedTokPerS / (r.rows.find((x) => x.sessions === 1)?.sequentialTokPerS ?? Number.NaN)).toFixed(2)}x`])))
}

/** One TARGET per model: decode tok/s of 32 batched sessions against one session alone. */
export function batchTargets (runs: BatchModelRun[]): Target[] {
  return runs.map(({ model, result: r, error }) => {
    const one = r?.rows.find((row) => row.sessions === 1)
    const many = r?.rows.find((row) => row.sessions === GOAL_SESSIONS)
    const ratio = one !== undefined && many !== undefined ? many.batchedTokPerS / one.sequentialTokPerS : undefined
    return {
      name: `engine aggregate decode, ${GOAL_SESSIONS} sessions batched vs 1 session (${model})`,
      figure: ratio === undefined ? undefined : `${ratio.toFixed(2)}x`,
      goal: `≥ ${GOAL_SPEEDUP}x`,
      met: ratio === undefined ? undefined : ratio >= GOAL_SPEEDUP,
      note: ratio === undefined ? (error ?? `run with --batch-sessions including 1 and ${GOAL_SESSIONS}`) : `${r?.dtype} ${r?.threads} thread(s), whole model in one process`
    }
  })
}
