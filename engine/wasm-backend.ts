// The fast backend: WebAssembly SIMD128 kernels (engine/wasm/kernels.c) over one shared
// WebAssembly.Memory, with the rows of every matmul split between the main thread and
// `threads - 1` workers (worker-pool.ts). Memory map, from address 0:
//   [kernels.wasm statics and its own small stack | one stack per thread | engine allocations]
// q8_0 / q4_0 matmuls first quantize the activations once per call (on the main thread) into a
// scratch buffer that every thread then reads.
import { readFile } from 'node:fs/promises'
import { availableParallelism } from 'node:os'
import { createEngineMemory } from './engine-memory.ts'
import { ShapeError } from './errors.ts'
import type { AttentionShape, ComputeBackend, Matrix, WeightDType } from './index.ts'
import { checkMatmul } from './reference-backend.ts'
import { bindKernels, createWorkerPool, KERNEL_NAMES, MATMUL_ARGS, MAX_CHUNKS, type KernelExports, type WorkerPool } from './worker-pool.ts'

const PAGE_BYTES = 65536
const MAX_PAGES = 65536 // wasm32: 4 GiB, the maximum kernels.wasm declares
/** Shadow stack per thread; the kernels use none (build-wasm.sh checks), this is a safety margin. */
const STACK_BYTES = 16384
/** Below this many multiply-adds a matmul runs on the main thread only (dispatch would dominate). */
const DEFAULT_MIN_PARALLEL_WORK = 65536
/** Row chunks per thread in a split matmul: work moves away from a thread that is descheduled. */
const CHUNKS_PER_THREAD = 4
const QK = 32
/** q8_0 kernels compute 256 * the integer dot (kernels.c); the activation scale undoes it. */
const Q8_DOT_SCALE = 1 / 256

const KERNEL_INDEX: Record<WeightDType, number> = { f32: 0, f16: 1, q8_0: 2, q4_0: 3 }

export interface WasmBackendInit {
  /** Threads running kernels, the main thread included; default: os.availableParallelism(). */
  threads?: number
  /** Multiply-adds (rows * cols * T) below which a matmul is not split; default 65536. */
  minParallelWork?: number
}

let compiled: Promise<WebAssembly.Module> | undefined

/** kernels.wasm, compiled once per process. */
export async function kernelModule (): Promise<WebAssembly.Module> {
  compiled ??= readFile(new URL('./wasm/kernels.wasm', import.meta.url)).then(async (bytes) => WebAssembly.compile(bytes))
  return compiled
}

export async function createWasmBackend (init: WasmBackendInit = {}): Promise<ComputeBackend> {
  const threads = Math.max(1, Math.floor(init.threads ?? availableParallelism()))
  const minParallelWork = init.minParallelWork ?? DEFAULT_MIN_PARALLEL_WORK
  const module = await kernelModule()
  const memory = new WebAssembly.Memory({ initial: 2, maximum: MAX_PAGES, shared: true })
  const instance = new WebAssembly.Instance(module, { env: { memory } })
  const ex = instance.exports as unknown as KernelExports
  const stacksStart = Math.ceil((ex.__heap_base.value as number) / 64) * 64
  const stackTop = (index: number) => stacksStart + (index + 1) * STACK_BYTES
  const base = stackTop(threads - 1)
  if (base > memory.buffer.byteLength) memory.grow(Math.ceil((base - memory.buffer.byteLength) / PAGE_BYTES))
  ex.__stack_pointer.value = stackTop(0)
  const mem = createEngineMemory({ base, shared: true, memory })
  const kernels = bindKernels(ex)
  const pool: WorkerPool | undefined = threads > 1
    ? await createWorkerPool({ module, memory, workers: threads - 1, stackTop })
    : undefined

  // Activation scratch for q8_0 / q4_0: int16 quants (T, cols), scales and quant sums (T, cols / 32).
  let scratchValues = 0
  let xq = 0
  let xs = 0
  let xsum = 0
  function quantizeActivations (xPtr: number, values: number, scaleMul: number): void {
    if (values > scratchValues) {
      if (scratchValues > 0) for (const p of [xq, xs, xsum]) mem.free(p)
      scratchValues = Math.max(values, scratchValues * 2)
      xq = mem.alloc(scratchValues * 2)
      xs = mem.alloc(scratchValues / QK * 4)
      xsum = mem.alloc(scratchValues / QK * 4)
    }
    ex.quantize_act(xPtr, values / QK, xq, xs, xsum, scaleMul)
  }

  const args = new Int32Array(MATMUL_ARGS)

  function matmul (outPtr: number, w: Matrix, xPtr: number, T: number): void {
    checkMatmul(w, T)
    const { rows, cols } = w
    let x = xPtr
    let s = 0
    let sum = 0
    if (w.dtype === 'q8_0' || w.dtype === 'q4_0') {
      quantizeActivations(xPtr, T * cols, w.dtype === 'q8_0' ? Q8_DOT_SCALE : 1)
      x = xq
      s = xs
      sum = xsum
    }
    const kernel = KERNEL_INDEX[w.dtype]
    const groups = Math.ceil(rows / 4)
    if (pool === undefined || rows * cols * T < minParallelWork || groups < threads) {
      kernels[kernel](outPtr, w.ptr, w.scalesPtr, x, s, sum, rows, cols, T, 0, rows)
      return
    }
    // Chunks of whole 4-row groups, a few per thread so that a busy thread's share is taken over.
    const chunkGroups = Math.ceil(groups / Math.min(groups, threads * CHUNKS_PER_THREAD, MAX_CHUNKS))
    args[0] = outPtr; args[1] = w.ptr; args[2] = w.scalesPtr; args[3] = x; args[4] = s; args[5] = sum
    args[6] = rows; args[7] = cols; args[8] = T
    pool.run(kernels, kernel, args, Math.ceil(groups / chunkGroups), chunkGroups * 4)
  }

  // Attention: per-head score rows (nHeads, positions) and the kernel's params block.
  const paramsPtr = mem.alloc(16)
  let scoresPtr = 0
  let scoresBytes = 0
  const attentionKernel = KERNEL_NAMES.indexOf('attention')

  function attention (outPtr: number, qPtr: number, keysPtr: number, valuesPtr: number, T: number, pos0: number, shape: AttentionShape): void {
    const { nHeads, nKvHeads, headSize } = shape
    if (headSize % 4 !== 0 || nHeads % nKvHeads !== 0) throw new ShapeError(`attention needs head size % 4 == 0 and whole GQA groups (${nHeads} heads, ${nKvHeads} kv heads, size ${headSize})`)
    const positions = pos0 + T
    if (nHeads * positions * 4 > scoresBytes) {
      if (scoresPtr !== 0) mem.free(scoresPtr)
      scoresBytes = Math.max(nHeads * positions * 4, scoresBytes * 2)
      scoresPtr = mem.alloc(scoresBytes)
    }
    const params = new Int32Array(mem.memory.buffer, paramsPtr, 3)
    params[0] = pos0
    params[1] = nKvHeads
    params[2] = scoresBytes / 4 / nHeads // floats per head
    const work = T * positions * nHeads * headSize
    if (pool === undefined || work < minParallelWork || nHeads < 2) {
      kernels[attentionKernel](outPtr, qPtr, keysPtr, valuesPtr, scoresPtr, paramsPtr, nHeads, headSize, T, 0, nHeads)
      return
    }
    args[0] = outPtr; args[1] = qPtr; args[2] = keysPtr; args[3] = valuesPtr; args[4] = scoresPtr; args[5] = paramsPtr
    args[6] = nHeads; args[7] = headSize; args[8] = T
    pool.run(kernels, attentionKernel, args, Math.min(nHeads, MAX_CHUNKS), Math.ceil(nHeads / Math.min(nHeads, MAX_CHUNKS)))
  }

  return {
    name: 'wasm',
    threads,
    mem,
    matmul,
    attention,
    swiglu: (gatePtr, upPtr, n) => ex.swiglu(gatePtr, upPtr, n),
    close: async () => { await pool?.close() }
  }
}
