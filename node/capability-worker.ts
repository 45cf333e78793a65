// Runs the start-up capability measurement off the daemon's main thread: the engine's steps are
// synchronous, so on the main thread a measurement of big layers would stall libp2p (streams,
// heartbeats) and the SIGTERM handler for seconds. The parent posts 'abort' (the signal handed
// to measureCapability) and then terminates this thread, which stops even a running kernel.
import { parentPort, workerData } from 'node:worker_threads'
import { openModel } from '../engine/index.ts'
import type { WeightDType } from '../engine/index.ts'
import { measureCapability } from '../sharding/index.ts'

export interface CapabilityJob { path: string, dtype: WeightDType, threads: number, maxMemoryBytes?: number }

const job = workerData as CapabilityJob
const controller = new AbortController()
parentPort?.on('message', (m: unknown) => { if (m === 'abort') controller.abort() })
try {
  const source = await openModel(job.path, { signal: controller.signal })
  const capability = await measureCapability({
    source,
    dtype: job.dtype,
    threads: job.threads,
    ...(job.maxMemoryBytes !== undefined ? { maxMemoryBytes: job.maxMemoryBytes } : {}),
    signal: controller.signal
  })
  parentPort?.postMessage({ ok: true, capability })
} catch (err) {
  const e = err as Error
  parentPort?.postMessage({ ok: false, error: { name: e.name, message: e.message } })
}
