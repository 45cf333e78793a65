// One speed measurement (our engine or llama.cpp, one file, one thread count) and the figures
// derived from it. This VM's memory bandwidth moves over time (2 threads read either ~33 or
// ~50 GB/s for minutes at a time, as the host places the vCPUs), so each run is preceded by a
// short bandwidth measurement at its own thread count: `% roof` compares the decode speed with
// the bandwidth available right then, `% best roof` with the best bandwidth seen in the whole
// benchmark at that thread count (the conservative figure). A run that other processes shared
// (see ./machine-load.ts) is run again.
import type { WeightDType } from '../../engine/index.ts'
import { shapeConfig } from '../model-shapes.ts'
import { measureBandwidth } from './bandwidth.ts'
import { runChild } from './child.ts'
import { cpuBusySeconds, type IdleWait } from './machine-load.ts'
import type { LlamaCppJob, LlamaCppResult } from './measure-llama-cpp.ts'
import type { ShardJob, ShardResult } from './measure-shard.ts'
import { ggufBytes, heldBytes, modelCost, prefillFlops, rooflineTokPerS } from './model-cost.ts'
import type { ModelFile } from './models.ts'
import type { Workload } from './workload.ts'

export type EngineName = 'ours' | 'llama.cpp'

export interface SpeedRow {
  engine: EngineName
  shape: string
  dtype: WeightDType
  threads: number
  idle?: IdleWait
  bandwidthAtRunGbps?: number
  /** Weight bytes read per decoded token as this engine holds them (ours: f32 scales; llama.cpp: the file's f16 scales). */
  decodeBytesPerToken: number
  error?: string
  loadMs?: number
  prefillTokPerS?: number
  prefillGflops?: number
  decodeTokPerS?: number
  rooflineTokPerS?: number
  pctRoofline?: number
  pctRooflineBest?: number
  peakRssBytes?: number
  /** Cores other processes kept busy while the child ran (machine busy time − the child's CPU time). */
  othersCores?: number
  othersCoresByAttempt?: number[]
  ours?: ShardResult
  llamaCpp?: LlamaCppResult
}

export interface SpeedRunContext {
  workload: Workload
  timeoutMs: number
  measureShardScript: string
  measureLlamaCppScript: string
  llamaCppEntry?: string
  quiet: () => Promise<IdleWait>
  /** A run during which other processes took more cores than this is run again … */
  contentionCores: number
  /** … at most this many times. */
  retries: number
  log: (line: string) => void
}

/** Runs one measurement, again (up to `retries` times) when other processes took more than
 * `contentionCores` of CPU while it ran; keeps the least contended attempt. */
function llamaCppJob (ctx: SpeedRunContext, model: string, threads: number): LlamaCppJob {
  if (ctx.llamaCppEntry === undefined) throw new Error('llama.cpp is not installed')
  return { entry: ctx.llamaCppEntry, model, threads, workload: ctx.workload }
}

export async function runSpeed (engine: EngineName, model: ModelFile, threads: number, ctx: SpeedRunContext): Promise<SpeedRow> {
  let best: SpeedRow | undefined
  const others: number[] = []
  for (let attempt = 0; attempt <= ctx.retries; attempt++) {
    const row = await runSpeedOnce(engine, model, threads, ctx)
    others.push(row.othersCores ?? 0)
    if (best === undefined || (row.error === undefined && (best.error !== undefined || (row.othersCores ?? 0) < (best.othersCores ?? 0)))) best = row
    if (row.error !== undefined || row.othersCores === undefined || row.othersCores <= ctx.contentionCores) break
    ctx.log(`  ${engine} ${model.shape}/${model.dtype} ${threads}T: other processes took ${row.othersCores.toFixed(2)} cores during the run` +
      (attempt < ctx.retries ? ', running it again' : ''))
  }
  if (best === undefined) throw new Error('unreachable: at least one attempt runs')
  best.othersCoresByAttempt = others
  return best
}

async function runSpeedOnce (engine: EngineName, model: ModelFile, threads: number, ctx: SpeedRunContext): Promise<SpeedRow> {
  const config = shapeConfig(model.shape)
  const cost = modelCost(config, model.dtype, 0, config.nLayers, engine === 'ours' ? heldBytes : ggufBytes)
  const row: SpeedRow = { engine, shape: model.shape, dtype: model.dtype, threads, decodeBytesPerToken: cost.decodeBytesPerToken }
  row.idle = await ctx.quiet()
  row.bandwidthAtRunGbps = (await measureBandwidth({ threads: [threads], rounds: 1 })).gbps[threads]
  const busyBefore = cpuBusySeconds()
  // Both measurement children report the same figures; only the job and the result's slot differ.
  const run = engine === 'ours'
    ? await runChild<ShardResult>(ctx.measureShardScript, { mode: 'speed', model: model.path, dtype: model.dtype, threads, workload: ctx.workload } satisfies ShardJob, ctx.timeoutMs)
    : await runChild<LlamaCppResult>(ctx.measureLlamaCppScript, llamaCppJob(ctx, model.path, threads), ctx.timeoutMs)
  row.error = run.error
  const wallMs = run.wallMs
  const r = run.result
  if (r !== undefined) {
    if (engine === 'ours') row.ours = r as ShardResult
    else row.llamaCpp = r as LlamaCppResult
  }
  const loadMs = r?.loadMs
  const prefill = r?.prefill
  const peakRssBytes = r?.peakRssBytes
  const decodeTokPerS = r?.decode?.tokPerS
  const childCpuSeconds = r?.cpuSeconds
  const busyAfter = cpuBusySeconds()
  if (busyBefore !== undefined && busyAfter !== undefined && childCpuSeconds !== undefined && wallMs > 0) {
    row.othersCores = Math.max(0, (busyAfter - busyBefore - childCpuSeconds) / (wallMs / 1000))
  }
  if (row.error === undefined) delete row.error
  row.loadMs = loadMs
  row.peakRssBytes = peakRssBytes
  row.prefillTokPerS = prefill?.tokPerS
  if (prefill !== undefined) row.prefillGflops = prefillFlops(cost, prefill.tokens) / (prefill.bestMs / 1000) / 1e9
  row.decodeTokPerS = decodeTokPerS
  if (row.bandwidthAtRunGbps !== undefined) row.rooflineTokPerS = rooflineTokPerS(cost, row.bandwidthAtRunGbps)
  if (row.rooflineTokPerS !== undefined && decodeTokPerS !== undefined) row.pctRoofline = 100 * decodeTokPerS / row.rooflineTokPerS
  return row
}

/** Fills `pctRooflineBest`: decode speed against the best bandwidth seen at the row's thread count. */
export function applyBestBandwidth (rows: SpeedRow[], bestGbps: Record<number, number>): void {
  for (const row of rows) {
    const gbps = bestGbps[row.threads]
    if (gbps !== undefined && row.decodeTokPerS !== undefined) {
      row.pctRooflineBest = 100 * row.decodeTokPerS / (gbps * 1e9 / row.decodeBytesPerToken)
    }
  }
}
