// Threads for the WASM kernels: worker_threads, each with its own instance of kernels.wasm over
// the one shared WebAssembly.Memory, driven through an Int32Array control block in a
// SharedArrayBuffer (no postMessage on the hot path; see shared/research/executor-probe.md §1–2).
//
// A job is one matmul (or attention, split by heads instead of rows) whose rows are cut into chunks of whole 4-row groups. The main thread writes
// the kernel index and arguments, marks every chunk `pending` for the new sequence number s
// (state 2s), and publishes s with Atomics.store + Atomics.notify. Every thread then walks the
// chunks from its own starting point (thread i starts at chunk i * n / threads, so normally each
// runs one contiguous share) and claims each pending one with a compareExchange 2s -> 2s + 1. A
// claimed chunk's arguments are stable: the job cannot end before that chunk is counted done.
// So a worker that is descheduled (a busy machine) costs nothing: the main thread takes its
// chunks. Idle threads spin on Atomics.load (a dispatch costs well under a microsecond), then
// sleep in Atomics.wait.
import { Worker } from 'node:worker_threads'

/** The exports of kernels.wasm (engine/wasm/kernels.c documents them). */
export interface KernelExports {
  quantize_act (x: number, nblocks: number, xq: number, xs: number, xsum: number, scaleMul: number): void
  matmul_f32: MatmulKernel
  matmul_f16: MatmulKernel
  matmul_q8_0: MatmulKernel
  matmul_q4_0: MatmulKernel
  /** Same signature: (out, q, keys, values, scores, params, nHeads, headSize, T, h0, h1). */
  attention: MatmulKernel
  swiglu (gate: number, up: number, n: number): void
  __heap_base: WebAssembly.Global
  __stack_pointer: WebAssembly.Global
}

export type MatmulKernel = (out: number, w: number, ws: number, x: number, xs: number, xsum: number,
  rows: number, cols: number, T: number, r0: number, r1: number) => void

/** Kernel index → export name; the index travels in the control block. */
export const KERNEL_NAMES = ['matmul_f32', 'matmul_f16', 'matmul_q8_0', 'matmul_q4_0', 'attention'] as const
export const MATMUL_ARGS = 9 // out, w, ws, x, xs, xsum, rows, cols, T
/** Most chunks one job is cut into. */
export const MAX_CHUNKS = 64

// Control block (int32 slots); words written by different threads sit on their own 64-byte lines.
const SEQ = 0
const STOP = 1
const KERNEL = 2
const CHUNKS = 3
const CHUNK_ROWS = 4
const ARGS = 5 // .. 13
const ROWS = ARGS + 6
const DONE = 16 // chunks finished in the current job
const MAIN_WAITING = 17 // the main thread sleeps on DONE: the last chunk's thread notifies only then
const FAILED = 32 // a kernel trapped on a worker in the current job
const SLEEPERS = 33 // workers in (or about to enter) Atomics.wait: the main thread notifies only then
const STATE = 48 // MAX_CHUNKS words: 2s pending, 2s + 1 claimed (s = the job's sequence number)
const CONTROL_WORDS = STATE + MAX_CHUNKS
const SEQ_MASK = 0x3fffffff // 2s + 1 stays a positive int32
/** Atomics.load polls before an idle thread sleeps in Atomics.wait (~100 µs). */
const SPIN_LOADS = 20_000

export function bindKernels (exports: KernelExports): MatmulKernel[] {
  return KERNEL_NAMES.map((name) => exports[name])
}

export interface WorkerData {
  module: WebAssembly.Module
  memory: WebAssembly.Memory
  control: SharedArrayBuffer
  index: number // 1-based thread index; the main thread is 0
  threads: number // all threads, the main one included
  stackTop: number
}

/** Claims and runs the pending chunks of job `seq`, walking from `start`; returns how many. */
function runChunks (ctrl: Int32Array, kernels: MatmulKernel[], seq: number, start: number): number {
  const n = ctrl[CHUNKS] // if this is already another job's count, every claim below fails
  let ran = 0
  for (let k = 0; k < n; k++) {
    const j = (start + k) % n
    if (Atomics.compareExchange(ctrl, STATE + j, 2 * seq, 2 * seq + 1) !== 2 * seq) continue
    const a = ARGS
    const rows = ctrl[ROWS]
    const r0 = j * ctrl[CHUNK_ROWS]
    const r1 = Math.min(rows, r0 + ctrl[CHUNK_ROWS])
    try {
      kernels[ctrl[KERNEL]](ctrl[a], ctrl[a + 1], ctrl[a + 2], ctrl[a + 3], ctrl[a + 4], ctrl[a + 5], rows, ctrl[a + 7], ctrl[a + 8], r0, r1)
    } catch {
      // A trap (a bad pointer or shape): reported through FAILED, the main thread throws it.
      Atomics.store(ctrl, FAILED, 1)
    }
    ran++
    if (Atomics.add(ctrl, DONE, 1) + 1 === n && Atomics.load(ctrl, MAIN_WAITING) !== 0) Atomics.notify(ctrl, DONE)
  }
  return ran
}

/** The worker's side: runs jobs until STOP. Called by kernel-worker.ts. */
export function serveJobs (kernels: MatmulKernel[], data: WorkerData): void {
  const ctrl = new Int32Array(data.control)
  let seen = 0 // the pool issues job 1 only after every worker has started
  for (;;) {
    let seq = Atomics.load(ctrl, SEQ)
    for (let spins = 0; seq === seen; seq = Atomics.load(ctrl, SEQ)) {
      if (++spins > SPIN_LOADS) {
        // Announce before sleeping; Atomics.wait re-checks SEQ, so a job published in between is
        // either seen here or notified (all of these are sequentially consistent).
        Atomics.add(ctrl, SLEEPERS, 1)
        Atomics.wait(ctrl, SEQ, seen)
        Atomics.sub(ctrl, SLEEPERS, 1)
        spins = 0
      }
    }
    seen = seq
    if (Atomics.load(ctrl, STOP) !== 0) return
    runChunks(ctrl, kernels, seq, Math.floor(data.index * ctrl[CHUNKS] / data.threads))
  }
}

export interface WorkerPool {
  /** Worker threads (the main thread is not counted). */
  readonly size: number
  /**
   * Runs kernel `kernel` over rows [0, rows) cut into `chunks` chunks of `chunkRows` rows, on the
   * main thread (with `kernels`, its own instance) and the workers; returns when all are done.
   * Throws WebAssembly.RuntimeError if a kernel trapped on any thread.
   */
  run (kernels: MatmulKernel[], kernel: number, args: Int32Array, chunks: number, chunkRows: number): void
  close (): Promise<void>
}

export async function createWorkerPool (init: { module: WebAssembly.Module, memory: WebAssembly.Memory,
  workers: number, stackTop: (index: number) => number }): Promise<WorkerPool> {
  const control = new SharedArrayBuffer(CONTROL_WORDS * 4)
  const ctrl = new Int32Array(control)
  const workers: Worker[] = []
  let seq = 0
  let closed = false
  let failure: Error | undefined

  try {
    for (let i = 1; i <= init.workers; i++) {
      const workerData: WorkerData = { module: init.module, memory: init.memory, control, index: i, threads: init.workers + 1, stackTop: init.stackTop(i) }
      const worker = new Worker(new URL('./kernel-worker.ts', import.meta.url), { workerData })
      workers.push(worker)
      await new Promise<void>((resolve, reject) => {
        worker.once('message', () => resolve())
        worker.once('error', reject)
        worker.once('exit', (code) => reject(new Error(`kernel worker ${i} exited with code ${code} while starting`)))
      })
      worker.removeAllListeners()
      // A worker that dies outside a kernel (it catches traps) fails the next matmul, not the process.
      worker.on('error', (err) => { failure ??= err })
      worker.unref() // an idle pool never keeps the process alive
    }
  } catch (err) {
    await Promise.all(workers.map(async (w) => w.terminate()))
    throw err
  }

  function run (kernels: MatmulKernel[], kernel: number, args: Int32Array, chunks: number, chunkRows: number): void {
    if (failure !== undefined) throw failure
    seq = (seq + 1) & SEQ_MASK
    ctrl[KERNEL] = kernel
    ctrl[CHUNKS] = chunks
    ctrl[CHUNK_ROWS] = chunkRows
    for (let i = 0; i < MATMUL_ARGS; i++) ctrl[ARGS + i] = args[i]
    ctrl[DONE] = 0
    ctrl[FAILED] = 0
    for (let j = 0; j < chunks; j++) ctrl[STATE + j] = 2 * seq
    Atomics.store(ctrl, SEQ, seq) // publishes everything above
    if (Atomics.load(ctrl, SLEEPERS) !== 0) Atomics.notify(ctrl, SEQ)
    runChunks(ctrl, kernels, seq, 0)
    for (let spins = 0, done = Atomics.load(ctrl, DONE); done !== chunks; done = Atomics.load(ctrl, DONE)) {
      if (++spins > SPIN_LOADS) {
        Atomics.store(ctrl, MAIN_WAITING, 1)
        Atomics.wait(ctrl, DONE, done)
        Atomics.store(ctrl, MAIN_WAITING, 0)
        spins = 0
      }
    }
    if (Atomics.load(ctrl, FAILED) !== 0) throw new WebAssembly.RuntimeError('a matmul kernel trapped (bad pointer or shape?)')
  }

  async function close (): Promise<void> {
    if (closed) return
    closed = true
    Atomics.store(ctrl, STOP, 1)
    Atomics.store(ctrl, SEQ, (seq + 1) & SEQ_MASK)
    Atomics.notify(ctrl, SEQ)
    await Promise.all(workers.map(async (w) => w.terminate()))
  }

  return { size: workers.length, run, close }
}
