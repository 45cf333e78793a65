// Threads for the WASM kernels: worker_threads, each with its own instance of kernels.wasm over
// the one shared WebAssembly.Memory, driven through an Int32Array control block in a
// SharedArrayBuffer (no postMessage on the hot path; see shared/research/executor-probe.md §1–2).
//
// A job: the main thread writes the kernel index, its arguments and each worker's row range,
// then Atomics.store + Atomics.notify a new sequence number; it computes its own rows and waits
// for every worker's DONE slot to reach that number. Idle threads spin on Atomics.load for a
// while (a dispatch then costs about half a microsecond) before they sleep in Atomics.wait.
import { Worker } from 'node:worker_threads'

/** The exports of kernels.wasm (engine/wasm/kernels.c documents them). */
export interface KernelExports {
  quantize_act (x: number, nblocks: number, xq: number, xs: number, xsum: number, scaleMul: number): void
  matmul_f32: MatmulKernel
  matmul_f16: MatmulKernel
  matmul_q8_0: MatmulKernel
  matmul_q4_0: MatmulKernel
  __heap_base: WebAssembly.Global
  __stack_pointer: WebAssembly.Global
}

export type MatmulKernel = (out: number, w: number, ws: number, x: number, xs: number, xsum: number,
  rows: number, cols: number, T: number, r0: number, r1: number) => void

/** Kernel index → export name; the index travels in the control block. */
export const KERNEL_NAMES = ['matmul_f32', 'matmul_f16', 'matmul_q8_0', 'matmul_q4_0'] as const
export const MATMUL_ARGS = 9 // out, w, ws, x, xs, xsum, rows, cols, T

// Control block (int32 slots). Each thread's slots sit on their own 64-byte line.
const SEQ = 0
const STOP = 1
const KERNEL = 2
const ARGS = 3
const LINE = 16
const DONE = 0 // within a worker's line
const R0 = 1
const R1 = 2
const FAILED = 3
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
  stackTop: number
}

/** The worker's side: runs jobs until STOP. Called by kernel-worker.ts. */
export function serveJobs (kernels: MatmulKernel[], control: SharedArrayBuffer, index: number): void {
  const ctrl = new Int32Array(control)
  const line = index * LINE
  let seen = 0 // the pool issues job 1 only after every worker has started
  for (;;) {
    let seq = Atomics.load(ctrl, SEQ)
    for (let spins = 0; seq === seen; seq = Atomics.load(ctrl, SEQ)) {
      if (++spins > SPIN_LOADS) { Atomics.wait(ctrl, SEQ, seen); spins = 0 }
    }
    seen = seq
    if (Atomics.load(ctrl, STOP) !== 0) return
    try {
      const a = ARGS
      kernels[ctrl[KERNEL]](ctrl[a], ctrl[a + 1], ctrl[a + 2], ctrl[a + 3], ctrl[a + 4], ctrl[a + 5],
        ctrl[a + 6], ctrl[a + 7], ctrl[a + 8], ctrl[line + R0], ctrl[line + R1])
    } catch {
      // A trap (a bad pointer or shape): reported through FAILED, the main thread throws it.
      ctrl[line + FAILED] = 1
    }
    Atomics.store(ctrl, line + DONE, seq)
    Atomics.notify(ctrl, line + DONE)
  }
}

export interface WorkerPool {
  /** Worker threads (the main thread is not counted). */
  readonly size: number
  /** Starts `kernel` on every worker; worker i (1-based) gets rows [ranges[i], ranges[i + 1]). */
  start (kernel: number, args: ArrayLike<number>, ranges: ArrayLike<number>): void
  /** Blocks until every worker finished the last job; throws if a kernel trapped on one. */
  wait (): void
  close (): Promise<void>
}

export async function createWorkerPool (init: { module: WebAssembly.Module, memory: WebAssembly.Memory,
  workers: number, stackTop: (index: number) => number }): Promise<WorkerPool> {
  const control = new SharedArrayBuffer((init.workers + 1) * LINE * 4)
  const ctrl = new Int32Array(control)
  const workers: Worker[] = []
  let seq = 0
  let closed = false

  try {
    for (let i = 1; i <= init.workers; i++) {
      const workerData: WorkerData = { module: init.module, memory: init.memory, control, index: i, stackTop: init.stackTop(i) }
      const worker = new Worker(new URL('./kernel-worker.ts', import.meta.url), { workerData })
      workers.push(worker)
      await new Promise<void>((resolve, reject) => {
        worker.once('message', () => resolve())
        worker.once('error', reject)
        worker.once('exit', (code) => reject(new Error(`kernel worker ${i} exited with code ${code} while starting`)))
      })
      worker.removeAllListeners()
      worker.unref() // an idle pool never keeps the process alive
    }
  } catch (err) {
    await Promise.all(workers.map(async (w) => w.terminate()))
    throw err
  }

  function start (kernel: number, args: ArrayLike<number>, ranges: ArrayLike<number>): void {
    ctrl[KERNEL] = kernel
    for (let i = 0; i < MATMUL_ARGS; i++) ctrl[ARGS + i] = args[i]
    for (let i = 1; i <= workers.length; i++) {
      ctrl[i * LINE + R0] = ranges[i]
      ctrl[i * LINE + R1] = ranges[i + 1]
    }
    seq = (seq + 1) | 0
    Atomics.store(ctrl, SEQ, seq)
    Atomics.notify(ctrl, SEQ)
  }

  function wait (): void {
    let failed = 0
    for (let i = 1; i <= workers.length; i++) {
      const done = i * LINE + DONE
      for (let spins = 0, d = Atomics.load(ctrl, done); d !== seq; d = Atomics.load(ctrl, done)) {
        if (++spins > SPIN_LOADS) { Atomics.wait(ctrl, done, d); spins = 0 }
      }
      if (ctrl[i * LINE + FAILED] !== 0) { ctrl[i * LINE + FAILED] = 0; failed = i }
    }
    if (failed !== 0) throw new WebAssembly.RuntimeError(`a kernel trapped on worker thread ${failed} (bad pointer or shape?)`)
  }

  async function close (): Promise<void> {
    if (closed) return
    closed = true
    Atomics.store(ctrl, STOP, 1)
    Atomics.store(ctrl, SEQ, (seq + 1) | 0)
    Atomics.notify(ctrl, SEQ)
    await Promise.all(workers.map(async (w) => w.terminate()))
  }

  return { size: workers.length, start, wait, close }
}
