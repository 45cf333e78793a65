// Does memory scale with the layers a shard holds? The same q8_0 file loaded as layers [0, L/2),
// [L/2, L) and [0, L), each in a fresh child that loads, opens a session and prefills 16
// positions; peak RSS compared. The target reads the first half against the whole, as the issue
// states it; the second half (which holds the LM head instead of the embedding) is reported too.
import { runChild } from './child.ts'
import type { ShardJob, ShardResult } from './measure-shard.ts'
import type { ModelFile } from './models.ts'
import { fmt, MB } from './report.ts'
import type { Workload } from './workload.ts'

export interface MemoryRun {
  name: 'first half' | 'second half' | 'all'
  start: number
  end: number
  result?: ShardResult
  error?: string
}

export interface MemoryCheck {
  shape: string
  runs: MemoryRun[]
  /** Peak RSS of the first half ÷ peak RSS of all layers, when both ran. */
  ratio?: number
  secondHalfRatio?: number
  reason?: string
}

export async function runMemoryCheck (script: string, model: ModelFile, nLayers: number, workload: Workload,
  timeoutMs: number, log: (line: string) => void): Promise<MemoryCheck> {
  const half = Math.floor(nLayers / 2)
  const runs: MemoryRun[] = [
    { name: 'first half', start: 0, end: half },
    { name: 'second half', start: half, end: nLayers },
    { name: 'all', start: 0, end: nLayers }
  ]
  for (const run of runs) {
    const job: ShardJob = { mode: 'memory', model: model.path, dtype: 'q8_0', threads: 1, start: run.start, end: run.end, workload }
    const child = await runChild<ShardResult>(script, job, timeoutMs)
    if (child.result !== undefined) run.result = child.result
    else run.error = child.error
    const r = child.result
    log(`memory    ${model.shape} q8_0 layers [${run.start}, ${run.end}): ` + (r !== undefined
      ? `peak RSS ${fmt(r.peakRssBytes / MB)} MB, weights ${fmt(r.weightBytes / MB)} MB, read ${fmt(r.bytesRead / MB)} MB`
      : `FAILED ${child.error}`))
  }
  const [first, second, all] = runs.map((r) => r.result?.peakRssBytes)
  if (first === undefined || all === undefined) return { shape: model.shape, runs, reason: 'a memory run failed' }
  return { shape: model.shape, runs, ratio: first / all, ...(second !== undefined ? { secondHalfRatio: second / all } : {}) }
}
