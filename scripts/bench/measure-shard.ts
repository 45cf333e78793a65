// Child process: our engine on one model file, one dtype, one thread count, layers [start, end).
// mode 'speed' runs the shared workload (./workload.ts) on a whole model; mode 'memory' only loads
// the shard, opens a session and runs a short prefill through it, so that peak RSS compares shards
// holding different layer ranges under the same work. Prints its result with ./child.ts's marker.
// Usage (by bench-engine.ts): node scripts/bench/measure-shard.ts '<ShardJob JSON>'
import { loadModel, type ModelConfig, type WeightDType } from '../../engine/index.ts'
import { cpuSeconds, emitResult, peakRssBytes, readChildInput } from './child.ts'
import { decodeStats, prefillStats, workloadTokens, type DecodeStats, type PrefillStats, type Workload } from './workload.ts'

export interface ShardJob {
  mode: 'speed' | 'memory'
  model: string
  dtype: WeightDType
  threads: number
  start?: number
  end?: number
  workload: Workload
}

export interface ShardResult {
  mode: 'speed' | 'memory'
  dtype: WeightDType
  threads: number
  start: number
  end: number
  config: ModelConfig
  loadMs: number
  weightBytes: number
  bytesRead: number
  kvBytes: number
  /** RSS of the child before loading: Node, the engine's modules, nothing of the model. */
  rssBeforeLoadBytes: number
  rssAfterLoadBytes: number
  /** Memory mode: RSS after the session's step and a full GC (when run with --expose-gc). */
  rssSteadyBytes?: number
  prefill?: PrefillStats
  decode?: DecodeStats
  peakRssBytes: number
  /** CPU-seconds this process used (all its threads), to tell its load from other processes'. */
  cpuSeconds: number
}

/** Sessions in memory mode hold this many positions, and prefill this many tokens. */
const MEMORY_MODE_MAX_LENGTH = 256
const MEMORY_MODE_TOKENS = 16
const HIDDEN_FILL = 0.01 // any finite activation: speed and memory do not depend on it

function argmax (x: Float32Array): number {
  let best = 0
  for (let i = 1; i < x.length; i++) if (x[i] > x[best]) best = i
  return best
}

async function main (): Promise<void> {
  const job = readChildInput<ShardJob>()
  const w = job.workload
  const rssBeforeLoadBytes = process.memoryUsage.rss()
  const t0 = performance.now()
  const { shard } = await loadModel(job.model, { dtype: job.dtype, threads: job.threads, start: job.start, end: job.end })
  const loadMs = performance.now() - t0
  const rssAfterLoadBytes = process.memoryUsage.rss()
  const base = {
    mode: job.mode,
    dtype: shard.dtype,
    threads: job.threads,
    start: shard.start,
    end: shard.end,
    config: shard.config,
    loadMs,
    weightBytes: shard.weightBytes,
    bytesRead: shard.bytesRead,
    rssBeforeLoadBytes,
    rssAfterLoadBytes
  }

  if (job.mode === 'memory') {
    const session = shard.openSession({ maxLength: MEMORY_MODE_MAX_LENGTH })
    // A first stage takes token ids; a later one takes hidden states [T, dim] from the stage before.
    session.step(shard.isFirst
      ? { tokens: workloadTokens(MEMORY_MODE_TOKENS, w.seed, w.maxTokenId) }
      : { hidden: new Float32Array(MEMORY_MODE_TOKENS * shard.config.dim).fill(HIDDEN_FILL) })
    const gc = (globalThis as { gc?: () => void }).gc
    gc?.()
    const result: ShardResult = { ...base, kvBytes: session.kvBytes, rssSteadyBytes: process.memoryUsage.rss(), peakRssBytes: peakRssBytes(), cpuSeconds: cpuSeconds() }
    session.close()
    await shard.close()
    emitResult(result)
    return
  }

  if (!shard.isFirst || !shard.isLast) throw new Error('speed mode needs the whole model (tokens in, logits out)')
  const session = shard.openSession({ maxLength: Math.max(w.prefillTokens, w.promptTokens + w.decodeSteps) + 8 })

  // Prefill: one untimed warm-up, then `prefillRuns` timed runs from an empty cache.
  const prompt = workloadTokens(w.prefillTokens, w.seed, w.maxTokenId)
  const prefillMs: number[] = []
  for (let r = 0; r <= w.prefillRuns; r++) {
    session.truncate(0)
    const start = performance.now()
    session.step({ tokens: prompt })
    if (r > 0) prefillMs.push(performance.now() - start)
  }

  // Decode: greedy after a short prompt; each step is one token in, logits out, argmax (timed,
  // as llama.cpp's sampling is).
  const stepMs: number[] = []
  for (let r = 0; r < w.decodeRuns; r++) {
    session.truncate(0)
    const first = session.step({ tokens: workloadTokens(w.promptTokens, w.seed + 1 + r, w.maxTokenId) })
    let next = argmax(first.logits ?? new Float32Array(1))
    for (let i = 0; i < w.decodeSteps; i++) {
      const start = performance.now()
      const out = session.step({ tokens: [next] })
      next = argmax(out.logits ?? new Float32Array(1))
      stepMs.push(performance.now() - start)
    }
  }

  const result: ShardResult = {
    ...base,
    kvBytes: session.kvBytes,
    prefill: prefillStats(w.prefillTokens, prefillMs),
    decode: decodeStats(stepMs),
    peakRssBytes: peakRssBytes(),
    cpuSeconds: cpuSeconds()
  }
  session.close()
  await shard.close()
  emitResult(result)
}

await main()
