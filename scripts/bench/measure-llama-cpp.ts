// Child process: llama.cpp (node-llama-cpp, CPU build) on one GGUF at one thread count, running
// the shared workload (./workload.ts). Prints its result with ./child.ts's marker.
// Usage (by bench-engine.ts): node scripts/bench/measure-llama-cpp.ts '<LlamaCppJob JSON>'
import { pathToFileURL } from 'node:url'
import { cpuSeconds, emitResult, peakRssBytes, readChildInput } from './child.ts'
import { decodeStats, prefillStats, workloadTokens, type DecodeStats, type PrefillStats, type Workload } from './workload.ts'

export interface LlamaCppJob {
  entry: string // node-llama-cpp's ESM entry, from ensureLlamaCpp
  model: string
  threads: number
  workload: Workload
}

export interface LlamaCppResult {
  threads: number
  loadMs: number
  modelBytes: number
  systemInfo: string
  prefill: PrefillStats
  decode: DecodeStats
  peakRssBytes: number
  /** CPU-seconds this process used (all its threads), to tell its load from other processes'. */
  cpuSeconds: number
}

// The slice of node-llama-cpp's API used here (it is not a project dependency, so no types).
interface Sequence {
  evaluateWithoutGeneratingNewTokens(tokens: number[]): Promise<void>
  evaluate(tokens: number[], options: { temperature: number, yieldEogToken: boolean }): AsyncGenerator<number, void, void>
  clearHistory(): Promise<void>
}
interface Context { getSequence(): Sequence, dispose(): Promise<void> }
interface Model {
  readonly size: number
  createContext(options: { contextSize: number, batchSize: number, threads: { ideal: number, min: number } }): Promise<Context>
  dispose(): Promise<void>
}
interface Llama {
  readonly systemInfo: string
  loadModel(options: { modelPath: string, gpuLayers: number }): Promise<Model>
  dispose(): Promise<void>
}
interface NodeLlamaCpp {
  getLlama(options: { gpu: false, build: 'never', maxThreads: number, logLevel: string }): Promise<Llama>
}

async function main (): Promise<void> {
  const job = readChildInput<LlamaCppJob>()
  const w = job.workload
  const { getLlama } = await import(pathToFileURL(job.entry).href) as NodeLlamaCpp
  const llama = await getLlama({ gpu: false, build: 'never', maxThreads: job.threads, logLevel: 'error' })
  const t0 = performance.now()
  const model = await llama.loadModel({ modelPath: job.model, gpuLayers: 0 })
  const loadMs = performance.now() - t0
  const contextSize = Math.max(512, w.prefillTokens + w.promptTokens + w.decodeSteps + 8)
  const context = await model.createContext({ contextSize, batchSize: Math.max(w.prefillTokens, 512), threads: { ideal: job.threads, min: job.threads } })
  const sequence = context.getSequence()

  // Prefill: one untimed warm-up, then `prefillRuns` timed runs from an empty cache.
  const prompt = workloadTokens(w.prefillTokens, w.seed, w.maxTokenId)
  const prefillMs: number[] = []
  for (let r = 0; r <= w.prefillRuns; r++) {
    await sequence.clearHistory()
    const start = performance.now()
    await sequence.evaluateWithoutGeneratingNewTokens(prompt)
    if (r > 0) prefillMs.push(performance.now() - start)
  }

  // Decode: greedy, after a short prompt; the time to the first token (the prompt's prefill) is
  // not a decode step, every later gap between tokens is.
  const stepMs: number[] = []
  for (let r = 0; r < w.decodeRuns; r++) {
    await sequence.clearHistory()
    const short = workloadTokens(w.promptTokens, w.seed + 1 + r, w.maxTokenId)
    let last = performance.now()
    let produced = 0
    for await (const token of sequence.evaluate(short, { temperature: 0, yieldEogToken: true })) {
      void token
      const now = performance.now()
      if (produced > 0) stepMs.push(now - last)
      last = now
      produced++
      if (produced > w.decodeSteps) break
    }
  }

  const result: LlamaCppResult = {
    threads: job.threads,
    loadMs,
    modelBytes: model.size,
    systemInfo: llama.systemInfo,
    prefill: prefillStats(w.prefillTokens, prefillMs),
    decode: decodeStats(stepMs),
    peakRssBytes: peakRssBytes(),
    cpuSeconds: cpuSeconds()
  }
  await context.dispose()
  await model.dispose()
  await llama.dispose()
  emitResult(result)
}

await main()
