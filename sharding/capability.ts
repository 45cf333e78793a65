// Capability: measured, never looked up. At start-up a node loads a few of the model's layers
// with the real engine and times decode steps (one token) and a prefill chunk; while serving it
// keeps an EWMA of live step times. Its memory budget is what the machine has free, capped by
// the operator's limit. Time comes from an injected clock (milliseconds).
import { freemem } from 'node:os'
import { loadShard } from '../engine/index.ts'
import type { ModelSource, Session, WeightDType } from '../engine/index.ts'
import type { NodeCapability } from './index.ts'
import { CapabilityError } from './errors.ts'
import { FREE_MEMORY_FRACTION, MEASURE_DECODE_STEPS, MEASURE_LAYERS, MEASURE_PREFILL_TOKENS, STEP_EWMA_ALPHA } from './constants.ts'

export interface MeasureCapabilityOptions {
  source: ModelSource
  /** Weight dtype the node will serve; default 'q8_0'. */
  dtype?: WeightDType
  threads?: number
  backend?: 'wasm' | 'reference'
  /** Layers to load for the measurement; default MEASURE_LAYERS. */
  layers?: number
  decodeSteps?: number
  prefillTokens?: number
  /** The operator's limit (`--max-memory`), bytes. */
  maxMemoryBytes?: number
  /** Free memory now, bytes; default os.freemem(). */
  freeMemoryBytes?: number
  /** Milliseconds clock; default performance.now. */
  clock?: () => number
  signal?: AbortSignal
}

/** Bytes a node offers: a fraction of free memory, capped by the operator's limit. */
export function memoryBudget (options: { freeMemoryBytes?: number, maxMemoryBytes?: number } = {}): number {
  const free = (options.freeMemoryBytes ?? freemem()) * FREE_MEMORY_FRACTION
  return Math.floor(options.maxMemoryBytes !== undefined ? Math.min(free, options.maxMemoryBytes) : free)
}

function median (xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2
}

/** A deterministic, well-scaled hidden state [T, dim] (values do not change the timing). */
function probeHidden (T: number, dim: number): Float32Array {
  const h = new Float32Array(T * dim)
  for (let i = 0; i < h.length; i++) h[i] = 0.02 * Math.sin(i * 0.37)
  return h
}

/**
 * Times decode and prefill per layer on this machine with the real engine. Loads a middle
 * range of `layers` layers (so no embedding or LM head is timed), or the whole model when it
 * has fewer than three layers.
 */
export async function measureCapability (options: MeasureCapabilityOptions): Promise<NodeCapability> {
  const { source, signal } = options
  const clock = options.clock ?? (() => performance.now())
  const L = source.config.nLayers
  const want = Math.max(1, Math.min(options.layers ?? MEASURE_LAYERS, L))
  const middle = L >= 3
  const start = middle ? 1 : 0
  const end = middle ? Math.min(L - 1, start + want) : L
  const decodeSteps = options.decodeSteps ?? MEASURE_DECODE_STEPS
  const prefillTokens = options.prefillTokens ?? MEASURE_PREFILL_TOKENS
  if (decodeSteps < 1 || prefillTokens < 1) throw new CapabilityError('measurement needs at least one decode step and one prefill token')
  signal?.throwIfAborted()
  const shard = await loadShard(source, { start, end, dtype: options.dtype ?? 'q8_0', threads: options.threads ?? 1, backend: options.backend ?? 'wasm', ...(signal !== undefined ? { signal } : {}) })
  try {
    const layers = end - start
    const dim = source.config.dim
    const input = (T: number): { tokens: number[] } | { hidden: Float32Array } =>
      shard.isFirst ? { tokens: Array.from({ length: T }, (_, i) => (i % Math.max(1, source.config.vocabSize - 3)) + 3) } : { hidden: probeHidden(T, dim) }
    const maxLength = decodeSteps + prefillTokens + 4
    const run = (session: Session, T: number): number => {
      const t0 = clock()
      session.step(input(T))
      return clock() - t0
    }
    // decode: two warm-up steps, then the median of timed single-token steps
    const dec = shard.openSession({ maxLength })
    const decodeTimes: number[] = []
    try {
      run(dec, 1); run(dec, 1)
      for (let i = 0; i < decodeSteps; i++) {
        signal?.throwIfAborted()
        decodeTimes.push(run(dec, 1))
      }
    } finally { dec.close() }
    // prefill: one warm-up chunk, then one timed chunk of prefillTokens positions
    const pre = shard.openSession({ maxLength })
    let prefillMs: number
    try {
      run(pre, 1)
      pre.truncate(0)
      signal?.throwIfAborted()
      prefillMs = run(pre, prefillTokens)
    } finally { pre.close() }
    const floor = 1e-6 // a clock with coarse resolution can read 0
    return {
      decodeLayerMs: Math.max(floor, median(decodeTimes) / layers),
      prefillLayerMsPerToken: Math.max(floor, prefillMs / (layers * prefillTokens)),
      memoryBytes: memoryBudget(options)
    }
  } finally {
    await shard.close()
  }
}

/** Live per-layer step times, smoothed: fed by every served step. */
export interface StepTimer {
  /** Records one step: `ms` spent running `layers` layers over `tokens` positions. */
  record(ms: number, layers: number, tokens: number): void
  readonly decodeLayerMs: number
  readonly prefillLayerMsPerToken: number
}

/** An EWMA over live step times, seeded with the start-up measurement. */
export function createStepTimer (initial: NodeCapability, alpha = STEP_EWMA_ALPHA): StepTimer {
  let decode = initial.decodeLayerMs
  let prefill = initial.prefillLayerMsPerToken
  return {
    record (ms, layers, tokens) {
      if (!(ms >= 0) || !(layers > 0) || !(tokens > 0)) return
      const perLayer = ms / layers
      if (tokens === 1) decode += alpha * (perLayer - decode)
      else prefill += alpha * (perLayer / tokens - prefill)
    },
    get decodeLayerMs () { return decode },
    get prefillLayerMsPerToken () { return prefill }
  }
}
