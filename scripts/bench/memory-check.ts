// Does memory scale with the layers a shard holds? The same q8_0 file loaded as layers [0, L/2),
// [L/2, L) and [0, L), each in fresh children that load, open a session and prefill 16
// positions; peak RSS compared. Peak RSS moves by tens of MB from run to run (when the garbage of
// the load's staging buffers is collected), so each range runs `repeats` times and the run with
// the median peak is reported. The target reads the first half against the whole, as the issue
// states it; the second half (which holds the LM head instead of the embedding) is shown too.
import { runChild } from './child.ts'
import type { ShardJob, ShardResult } from './measure-shard.ts'
import type { ModelFile } from './models.ts'
import { fmt, MB } from './report.ts'
import type { Workload } from './workload.ts'

export interface MemoryRun {
  name: 'first half' | 'second half' | 'all'
  start: number
  end: number
  /** The run with the median peak RSS. */
  result?: ShardResult
  peakRssBytesAll: number[]
  error?: string
}

export interface MemoryCheck {
  shape: string
  repeats: number
  runs: MemoryRun[]
  /** Median peak RSS of the first half ÷ that of all layers, when both ran. */
  ratio?: number
  secondHalfRatio?: number
  reason?: string
}

export async function runMemoryCheck (script: string, model: ModelFile, nLayers: number, workload: Workload,
  repeats: number, timeoutMs: number, log: (line: string) => void): Promise<MemoryCheck> {
  const half = Math.floor(nLayers / 2)
  const runs: MemoryRun[] = [
    { name: 'first half', start: 0, end: half, peakRssBytesAll: [] },
    { name: 'second half', start: half, end: nLayers, peakRssBytesAll: [] },
    { name: 'all', start: 0, end: nLayers, peakRssBytesAll: [] }
  ]
  const results = new Map<MemoryRun, ShardResult[]>(runs.map((r) => [r, []]))
  // Interleaved (first, second, all, first, ...) so that a slow drift affects every range alike.
  for (let i = 0; i < repeats; i++) {
    for (const run of runs) {
      const job: ShardJob = { mode: 'memory', model: model.path, dtype: 'q8_0', threads: 1, start: run.start, end: run.end, workload }
      const child = await runChild<ShardResult>(script, job, timeoutMs)
      if (child.result !== undefined) results.get(run)?.push(child.result)
      else run.error = child.error
    }
  }
  for (const run of runs) {
    const done = (results.get(run) ?? []).sort((a, b) => a.peakRssBytes - b.peakRssBytes)
    run.peakRssBytesAll = done.map((r) => r.peakRssBytes)
    run.result = done[(done.length - 1) >> 1]
    const r = run.result
    log(`memory    ${model.shape} q8_0 layers [${run.start}, ${run.end}): ` + (r !== undefined
      ? `peak RSS ${fmt(r.peakRssBytes / MB)} MB (median of ${done.map((d) => fmt(d.peakRssBytes / MB)).join(', ')}), ` +
        `engine memory ${fmt(r.weightBytes / MB)} MB, read ${fmt(r.bytesRead / MB)} MB`
      : `FAILED ${run.error}`))
  }
  const [first, second, all] = runs.map((r) => r.result?.peakRssBytes)
  if (first === undefined || all === undefined) return { shape: model.shape, repeats, runs, reason: 'a memory run failed' }
  return { shape: model.shape, repeats, runs, ratio: first / all, ...(second !== undefined ? { secondHalfRatio: second / all } : {}) }
}
