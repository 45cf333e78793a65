// Engine benchmark (`npm run bench:engine`): decode and 128-token prefill speed of our engine on
// shape-only models at each dtype and thread count, against this machine's measured memory
// bandwidth (roofline) and against llama.cpp on the same GGUF file; peak RSS per configuration,
// and the memory of a half-layer shard against a whole one. Prints tables, writes everything to
// bench/results/engine-<timestamp>.json, and ends with one TARGET line per goal of the issue.
// Also continuous batching: decode tok/s of 1, 8, 32 sessions one at a time vs in one stepBatch
// pass (scripts/bench/batch-runs.ts); `--batch-only` runs just that section.
// Every measurement runs in a fresh child process (scripts/bench/measure-*.ts). See bench/README.md.
//   npm run bench:engine -- [--shapes a,b] [--dtypes f32,q8_0,q4_0] [--threads 1,2] [--quick]
//     [--no-llama-cpp] [--memory-shape s] [--models-dir d] [--results-dir d] [--llama-cpp-dir d]
//     [--batch-only | --no-batch] [--batch-models stories260K,stories15M] [--batch-sessions 1,8,32]
import { Command } from 'commander'
import { mkdirSync, writeFileSync } from 'node:fs'
import { cpus, loadavg, release, totalmem } from 'node:os'
import { join, resolve } from 'node:path'
import type { WeightDType } from '../engine/index.ts'
import { measureBandwidth, type BandwidthResult } from './bench/bandwidth.ts'
import { batchTable, batchTargets, runBatchBench, type BatchModelRun } from './bench/batch-runs.ts'
import { ensureLlamaCpp, type LlamaCppInstall } from './bench/llama-cpp.ts'
import { waitForIdle, type IdleWait } from './bench/machine-load.ts'
import { heldBytes, modelCost } from './bench/model-cost.ts'
import { runMemoryCheck, type MemoryCheck } from './bench/memory-check.ts'
import { ensureModel, type ModelFile } from './bench/models.ts'
import { shapeConfig } from './model-shapes.ts'
import { fmt, formatTable, MB, targetLine } from './bench/report.ts'
import { applyBestBandwidth, runSpeed, type EngineName, type SpeedRow, type SpeedRunContext } from './bench/speed-runs.ts'
import { evaluateTargets, REFERENCE_SHAPE, type DecodeComparison, type TargetInputs } from './bench/targets.ts'
import { setThpForRun, THP_MODES, thpMode, type ThpMode } from './bench/thp.ts'
import { DEFAULT_WORKLOAD, QUICK_WORKLOAD } from './bench/workload.ts'

const ROOT = resolve(new URL('..', import.meta.url).pathname)
const MEASURE_SHARD = join(ROOT, 'scripts/bench/measure-shard.ts')
const MEASURE_LLAMA_CPP = join(ROOT, 'scripts/bench/measure-llama-cpp.ts')
const DTYPES: WeightDType[] = ['f32', 'f16', 'q8_0', 'q4_0']
const WASM32_MEMORY_BYTES = 4 * 2 ** 30 // engine memory is one wasm32 WebAssembly.Memory

interface Options {
  shapes: string
  dtypes: string
  threads: string
  quick?: boolean
  llamaCpp: boolean
  memoryShape?: string
  modelsDir: string
  resultsDir: string
  llamaCppDir: string
  childTimeoutMs: string
  idleThreshold: string
  maxIdleWaitMs: string
  contentionCores: string
  retries: string
  thp?: string
  batch: boolean
  batchOnly?: boolean
  batchModels: string
  batchSessions: string
  batchDtype: string
  batchThreads: string
}

const program = new Command('bench-engine')
  .description('engine decode/prefill speed vs memory bandwidth and llama.cpp, on shape-only GGUF models')
  .option('--shapes <list>', 'model shapes (scripts/model-shapes.ts); add llama-1b for the 1B shape', 'smollm2-135m,qwen2.5-0.5b')
  .option('--dtypes <list>', 'weight dtypes: f32, f16, q8_0, q4_0', 'f32,q8_0,q4_0')
  .option('--threads <list>', 'kernel thread counts', '1,2')
  .option('--quick', 'fewer decode steps and runs (a smoke test, not a measurement)')
  .option('--no-llama-cpp', 'skip the llama.cpp side-by-side')
  .option('--memory-shape <shape>', `shape of the half-vs-all memory check (default ${REFERENCE_SHAPE} if in --shapes, else the last shape)`)
  .option('--models-dir <dir>', 'cache of generated GGUF files', 'bench/models')
  .option('--results-dir <dir>', 'where the JSON report goes', 'bench/results')
  .option('--llama-cpp-dir <dir>', 'prefix node-llama-cpp is installed into on demand', '.cache/llama-cpp')
  .option('--child-timeout-ms <ms>', 'limit for each measurement process', '900000')
  .option('--idle-threshold <fraction>', 'before each speed run, wait for the CPUs to be at most this busy (0..1)', '0.25')
  .option('--max-idle-wait-ms <ms>', 'longest wait for idle CPUs before each speed run (0: never wait)', '30000')
  .option('--contention-cores <n>', 'run a speed measurement again when other processes took more cores than this during it', '0.2')
  .option('--retries <n>', 'how many times to run a contended measurement again', '2')
  .option('--thp <mode>', 'set transparent huge pages to always|madvise|never for the run (root; restored on exit); default: leave the system as it is')
  .option('--no-batch', 'skip the continuous-batching section')
  .option('--batch-only', 'run only the continuous-batching section')
  .option('--batch-models <list>', 'batching section: stories260K (the real model) and/or shapes', 'stories260K,stories15M')
  .option('--batch-sessions <list>', 'batching section: concurrent sessions', '1,8,32')
  .option('--batch-dtype <dtype>', 'batching section: weight dtype', 'f32')
  .option('--batch-threads <n>', 'batching section: kernel threads', '1')
program.parse()
const opts = program.opts<Options>()

const list = (s: string) => s.split(',').map((v) => v.trim()).filter((v) => v !== '')
const shapes = list(opts.shapes)
const threadCounts = list(opts.threads).map(Number)
const dtypes = list(opts.dtypes) as WeightDType[]
for (const d of dtypes) if (!DTYPES.includes(d)) program.error(`unknown dtype ${d} (expected one of ${DTYPES.join(', ')})`)
for (const t of threadCounts) if (!Number.isInteger(t) || t < 1) program.error(`bad thread count ${t}`)
for (const s of shapes) {
  try {
    shapeConfig(s)
  } catch (err) {
    program.error((err as Error).message)
  }
}
if (opts.thp !== undefined) {
  if (!(THP_MODES as readonly string[]).includes(opts.thp)) program.error(`--thp must be one of ${THP_MODES.join(', ')}`)
  try {
    setThpForRun(opts.thp as ThpMode)
  } catch (err) {
    program.error((err as Error).message)
  }
}
const workload = opts.quick === true ? QUICK_WORKLOAD : DEFAULT_WORKLOAD
const timeoutMs = Number(opts.childTimeoutMs)
const modelsDir = resolve(ROOT, opts.modelsDir)
/** The shape the roofline and prefill targets are read from (and, by default, the memory check). */
const referenceShape = shapes.includes(REFERENCE_SHAPE) ? REFERENCE_SHAPE : shapes.at(-1)
const memoryShape = opts.memoryShape ?? referenceShape
const log = (line: string) => console.log(line)
const startedAt = new Date()
const idleThreshold = Number(opts.idleThreshold)
const maxIdleWaitMs = Number(opts.maxIdleWaitMs)
/** Waits (bounded) for other processes to leave the CPUs alone; returns what it saw. */
const quiet = (): Promise<IdleWait> => maxIdleWaitMs > 0 ? waitForIdle(idleThreshold, maxIdleWaitMs) : Promise.resolve({ waitedMs: 0 })
const busyNote = (w: IdleWait) => w.busy !== undefined && w.busy > idleThreshold ? ` [CPUs ${(w.busy * 100).toFixed(0)}% busy before the run]` : ''

// 0. Continuous batching: B sessions one at a time vs in one stepBatch pass.
let batchRuns: BatchModelRun[] = []
if (opts.batch || opts.batchOnly === true) {
  batchRuns = await runBatchBench({
    models: list(opts.batchModels), dtype: opts.batchDtype as WeightDType, threads: Number(opts.batchThreads), sessions: list(opts.batchSessions).map(Number),
    modelsDir, timeoutMs, log
  })
  console.log('\ncontinuous batching (whole model, decode tok/s; batched = shard.stepBatch, one at a time = session.step each)\n' + batchTable(batchRuns) + '\n')
}
if (opts.batchOnly === true) {
  const resultsDir = resolve(ROOT, opts.resultsDir)
  mkdirSync(resultsDir, { recursive: true })
  const file = join(resultsDir, `engine-batch-${startedAt.toISOString().replace(/[:.]/g, '-')}.json`)
  writeFileSync(file, JSON.stringify({ benchmark: 'engine-batch', startedAt: startedAt.toISOString(), finishedAt: new Date().toISOString(), argv: process.argv.slice(2), batch: batchRuns }, null, 2) + '\n')
  console.log(`wrote ${file}\n`)
  for (const t of batchTargets(batchRuns)) console.log(targetLine(t))
  process.exit(0)
}

// 1. The machine and its memory bandwidth.
const machine = {
  cpu: cpus()[0]?.model ?? 'unknown',
  cores: cpus().length,
  memoryBytes: totalmem(),
  platform: `${process.platform}-${process.arch}`,
  kernel: release(),
  node: process.version,
  transparentHugePages: thpMode() ?? 'unknown'
}
log(`machine: ${machine.cpu}, ${machine.cores} cores, ${fmt(machine.memoryBytes / 1e9)} GB RAM, node ${machine.node}, transparent huge pages: ${machine.transparentHugePages}`)
// Load averages at start and end go into the report; the bandwidth measurement and every speed
// run first wait (bounded) for idle CPUs and record how busy they were (`quiet`).
const loadBefore = loadavg()
const bandwidthIdle = await quiet()
const bandwidth: BandwidthResult = await measureBandwidth({ threads: threadCounts })
log(`memory bandwidth (${bandwidth.method}${bandwidth.note !== undefined ? `: ${bandwidth.note}` : ''}): ` +
  threadCounts.map((t) => `${t}T ${fmt(bandwidth.gbps[t])} GB/s`).join(', ') + busyNote(bandwidthIdle))

// 2. Model files: one GGUF per (shape, dtype), shared by both engines.
const models = new Map<string, ModelFile>()
const modelErrors: Record<string, string> = {}
for (const shape of shapes) {
  for (const dtype of dtypes) {
    // A whole model must fit one wasm32 memory (layers + LM head; an untied embedding on top).
    const config = shapeConfig(shape)
    const held = modelCost(config, dtype).decodeBytesPerToken + (config.tiedEmbeddings ? 0 : heldBytes(dtype, [config.vocabSize, config.dim]))
    if (held > WASM32_MEMORY_BYTES) {
      modelErrors[`${shape}/${dtype}`] = `skipped: ${fmt(held / 2 ** 30)} GiB of ${dtype} weights exceed the 4 GiB wasm32 engine memory`
      log(`  ${shape} ${dtype}: ${modelErrors[`${shape}/${dtype}`]}`)
      continue
    }
    try {
      models.set(`${shape}/${dtype}`, ensureModel(modelsDir, shape, dtype, log))
    } catch (err) {
      modelErrors[`${shape}/${dtype}`] = (err as Error).message
      log(`  ${(err as Error).message}`)
    }
  }
}

// 3. Speed: for each file and thread count, our engine then llama.cpp, back to back, so both
// meet the same machine (its bandwidth moves over time; see scripts/bench/speed-runs.ts).
let llamaInstall: LlamaCppInstall = { ok: false, reason: 'skipped (--no-llama-cpp)' }
if (opts.llamaCpp) {
  llamaInstall = ensureLlamaCpp(resolve(ROOT, opts.llamaCppDir), log)
  if (!llamaInstall.ok) log(`llama.cpp not available: ${llamaInstall.reason}`)
}
const engines: EngineName[] = llamaInstall.ok ? ['ours', 'llama.cpp'] : ['ours']
const ctx: SpeedRunContext = {
  workload,
  timeoutMs,
  measureShardScript: MEASURE_SHARD,
  measureLlamaCppScript: MEASURE_LLAMA_CPP,
  llamaCppEntry: llamaInstall.entry,
  quiet,
  contentionCores: Number(opts.contentionCores),
  retries: Number(opts.retries),
  log
}
const rows: SpeedRow[] = []
for (const [key, model] of models) {
  for (const threads of threadCounts) {
    for (const engine of engines) {
      const row = await runSpeed(engine, model, threads, ctx)
      rows.push(row)
      log(`${engine.padEnd(9)} ${key} ${threads}T: ` + (row.error !== undefined
        ? `FAILED ${row.error}`
        : `load ${fmt(row.loadMs)} ms, prefill ${fmt(row.prefillTokPerS)} tok/s (${fmt(row.prefillGflops)} GFLOP/s), ` +
          `decode ${fmt(row.decodeTokPerS)} tok/s (${fmt(row.pctRoofline)}% of roofline at ${fmt(row.bandwidthAtRunGbps)} GB/s), ` +
          `peak RSS ${fmt((row.peakRssBytes ?? 0) / MB)} MB${busyNote(row.idle ?? { waitedMs: 0 })}`))
    }
  }
}
// The best bandwidth seen anywhere in the run, per thread count: the conservative roofline.
const bestGbps: Record<number, number> = { ...bandwidth.gbps }
for (const r of rows) {
  if (r.bandwidthAtRunGbps !== undefined) bestGbps[r.threads] = Math.max(bestGbps[r.threads] ?? 0, r.bandwidthAtRunGbps)
}
applyBestBandwidth(rows, bestGbps)
const engineRows = rows.filter((r) => r.engine === 'ours')
const llamaRows = rows.filter((r) => r.engine === 'llama.cpp')

// 5. Ours vs llama.cpp, each at its best thread count.
const comparisons: DecodeComparison[] = []
for (const model of models.values()) {
  const bestOf = (engine: EngineName) => rows
    .filter((r) => r.engine === engine && r.shape === model.shape && r.dtype === model.dtype && r.decodeTokPerS !== undefined)
    .reduce<SpeedRow | undefined>((a, b) => (a === undefined || (b.decodeTokPerS ?? 0) > (a.decodeTokPerS ?? 0) ? b : a), undefined)
  const ours = bestOf('ours')
  const theirs = bestOf('llama.cpp')
  if (ours?.decodeTokPerS !== undefined && theirs?.decodeTokPerS !== undefined) {
    comparisons.push({
      shape: model.shape,
      dtype: model.dtype,
      oursTokPerS: ours.decodeTokPerS,
      oursThreads: ours.threads,
      llamaTokPerS: theirs.decodeTokPerS,
      llamaThreads: theirs.threads,
      ratio: ours.decodeTokPerS / theirs.decodeTokPerS
    })
  }
}

// 6. Memory: shards of half the layers against one of all of them, same q8_0 file, same work.
let memoryCheck: MemoryCheck | undefined
let memoryReason: string | undefined
if (memoryShape === undefined) {
  memoryReason = 'no shape to run it on'
} else {
  try {
    const model = models.get(`${memoryShape}/q8_0`) ?? ensureModel(modelsDir, memoryShape, 'q8_0', log)
    memoryCheck = await runMemoryCheck(MEASURE_SHARD, model, shapeConfig(memoryShape).nLayers, workload, workload.memoryRepeats, timeoutMs, log)
    memoryReason = memoryCheck.reason
  } catch (err) {
    memoryReason = (err as Error).message
  }
}
const memoryRow = (name: string) => memoryCheck?.runs.find((r) => r.name === name)?.result?.peakRssBytes
const memory: TargetInputs['memory'] = memoryCheck?.ratio === undefined
  ? undefined
  : { shape: memoryCheck.shape, ratio: memoryCheck.ratio, halfRssBytes: memoryRow('first half') ?? 0, allRssBytes: memoryRow('all') ?? 0 }

// 7. Tables.
const mb = (x: number | undefined) => fmt(x === undefined ? undefined : x / MB)
const speedTable = (list: SpeedRow[]) => formatTable(['shape', 'dtype', 'thr', 'load ms', 'MB/token', 'prefill tok/s', 'GFLOP/s',
  'decode tok/s', 'GB/s at run', 'roofline tok/s', '% roof', '% best roof', 'peak RSS MB', 'others cores', 'status'],
list.map((r) => [r.shape, r.dtype, r.threads, fmt(r.loadMs), mb(r.decodeBytesPerToken), fmt(r.prefillTokPerS), fmt(r.prefillGflops),
  fmt(r.decodeTokPerS), fmt(r.bandwidthAtRunGbps), fmt(r.rooflineTokPerS), fmt(r.pctRoofline), fmt(r.pctRooflineBest), mb(r.peakRssBytes),
  fmt(r.othersCores, 2), r.error !== undefined ? 'FAILED' : 'ok']))
console.log('\nour engine (wasm backend; decode tok/s = 1 / median step; prefill = 128 tokens, best run)')
console.log(speedTable(engineRows))
console.log('\n' + formatTable(['shape', 'dtype', 'thr', 'engine memory MB', 'read from file MB', 'KV MB'],
  engineRows.map((r) => [r.shape, r.dtype, r.threads, mb(r.ours?.weightBytes), mb(r.ours?.bytesRead), mb(r.ours?.kvBytes)])))
if (llamaRows.length > 0) {
  console.log(`\nllama.cpp (node-llama-cpp ${llamaInstall.version ?? ''}, CPU, same GGUF files, same workload; MB/token as the file stores them)`)
  console.log(speedTable(llamaRows))
} else {
  console.log(`\nllama.cpp: not run (${llamaInstall.reason ?? 'unavailable'})`)
}
console.log('')
console.log(formatTable(['shape', 'dtype', 'ours decode tok/s', 'threads', 'llama.cpp decode tok/s', 'threads', 'ours / llama.cpp'],
  comparisons.map((c) => [c.shape, c.dtype, fmt(c.oursTokPerS), c.oursThreads, fmt(c.llamaTokPerS), c.llamaThreads, `${c.ratio.toFixed(2)}x`])))
console.log(`\nmemory bandwidth (${bandwidth.method}, read-only, ${fmt(bandwidth.bufferBytes / 2 ** 20)} MiB): at start ` +
  threadCounts.map((t) => `${t}T ${fmt(bandwidth.gbps[t])} GB/s`).join(', ') + '; best seen in the run ' +
  threadCounts.map((t) => `${t}T ${fmt(bestGbps[t])} GB/s`).join(', ') + '.')
console.log('roofline = bandwidth measured just before the run, same thread count ÷ MB/token (layer matrices + LM head as held); ' +
  '% best roof uses the best bandwidth seen in the whole run.')
console.log('prefill GFLOP/s = 2 × (layer matmul params × 128 + LM head params) ÷ time; attention products not counted.')
if (batchRuns.length > 0) console.log('\ncontinuous batching\n' + batchTable(batchRuns))
if (memoryCheck !== undefined) {
  const all = memoryRow('all')
  console.log('\n' + formatTable(['shape (q8_0)', 'layers', 'engine memory MB', 'read MB', 'KV MB', 'RSS before load MB', 'steady RSS MB', 'peak RSS MB', '% of all'],
    memoryCheck.runs.map(({ name, start, end, result: r }) => [memoryCheck?.shape, `${name} [${start}, ${end})`,
      mb(r?.weightBytes), mb(r?.bytesRead), mb(r?.kvBytes), mb(r?.rssBeforeLoadBytes), mb(r?.rssSteadyBytes), mb(r?.peakRssBytes),
      fmt(r === undefined || all === undefined ? undefined : 100 * r.peakRssBytes / all)])))
}

// 8. JSON report and TARGET lines.
const reference = engineRows.find((r) => r.shape === referenceShape && r.dtype === 'q8_0' && r.threads === 2 && r.error === undefined)
const targets = evaluateTargets({
  comparisons,
  llamaCppReason: llamaInstall.ok ? 'no q8_0 pair measured' : `llama.cpp: ${llamaInstall.reason ?? 'unavailable'}`,
  reference: {
    shape: referenceShape ?? REFERENCE_SHAPE,
    pctRoofline: reference?.pctRoofline,
    pctRooflineBest: reference?.pctRooflineBest,
    bandwidthGbps: reference?.bandwidthAtRunGbps,
    bestBandwidthGbps: bestGbps[2],
    prefillGflops: reference?.prefillGflops
  },
  memory,
  memoryReason
}).concat(batchTargets(batchRuns))
const resultsDir = resolve(ROOT, opts.resultsDir)
mkdirSync(resultsDir, { recursive: true })
const file = join(resultsDir, `engine-${startedAt.toISOString().replace(/[:.]/g, '-')}.json`)
const report = {
  benchmark: 'engine',
  startedAt: startedAt.toISOString(),
  finishedAt: new Date().toISOString(),
  argv: process.argv.slice(2),
  machine,
  loadAverage: { before: loadBefore, after: loadavg() },
  options: {
    shapes, dtypes, threads: threadCounts, quick: opts.quick === true, referenceShape, memoryShape,
    idleThreshold, maxIdleWaitMs, contentionCores: ctx.contentionCores, retries: ctx.retries
  },
  workload,
  bandwidth: { ...bandwidth, idle: bandwidthIdle, bestSeenGbps: bestGbps },
  models: [...models.values()],
  modelErrors,
  llamaCppInstall: llamaInstall,
  speed: rows,
  comparisons,
  memory: { ...memoryCheck, reason: memoryReason },
  batch: batchRuns,
  targets
}
writeFileSync(file, JSON.stringify(report, null, 2) + '\n')
console.log(`\nwrote ${file}\n`)
for (const t of targets) console.log(targetLine(t))
