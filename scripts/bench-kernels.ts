// Micro-benchmark of the WASM matmul kernels: GFLOP/s (2 per multiply-add) and weight GB/s per
// shape, dtype, thread count and T. Decode (T=1) is measured twice: `hot` calls one matrix again
// and again (it sits in L2/L3 when it fits), `stream` cycles through copies of it totalling more
// than the L3. `--stack dim,hidden,kvDim,layers` then decodes one token through the 7 projections
// of every layer of a model (default Qwen2.5-0.5B: 896,4864,128,24), weights streamed from RAM:
// the probe's whole-layer-stack number. Also prints the dispatch round trip of the worker pool.
//   node scripts/bench-kernels.ts [--threads 1,2] [--dtypes f32,f16,q8_0,q4_0] [--T 1,128]
//     [--shapes 896x896,4864x896,896x4864] [--ms 300] [--stream-mb 256]
//     [--stack 896,4864,128,24] [--stack-dtypes q8_0,q4_0,f32] (--stack '' skips it)
import { parseArgs } from 'node:util'
import type { ComputeBackend, Matrix, WeightDType } from '../engine/index.ts'
import { matrixBytes, packMatrix } from '../engine/quantize.ts'
import { createWasmBackend } from '../engine/wasm-backend.ts'

const { values } = parseArgs({
  options: {
    threads: { type: 'string', default: '1,2' },
    dtypes: { type: 'string', default: 'f32,f16,q8_0,q4_0' },
    T: { type: 'string', default: '1,128' },
    shapes: { type: 'string', default: '896x896,4864x896,896x4864' },
    ms: { type: 'string', default: '300' },
    stack: { type: 'string', default: '896,4864,128,24' },
    'stack-dtypes': { type: 'string', default: 'q8_0,q4_0,f32' },
    'stream-mb': { type: 'string', default: '256' }
  }
})
const list = (s: string) => s.split(',').filter((v) => v !== '')
const minMs = Number(values.ms)
const streamBytes = Number(values['stream-mb']) * 2 ** 20

let seed = 0x9e3779b9
function random (): number { // xorshift32, uniform in [-1, 1)
  seed ^= seed << 13; seed ^= seed >>> 17; seed ^= seed << 5
  return (seed >>> 0) / 2 ** 31 - 1
}

/**
 * Seconds per call of `fn`: the best of ROUNDS rounds of about minMs / ROUNDS each, so a burst of
 * other work on this shared machine spoils one round, not the number.
 */
const ROUNDS = 5
function time (fn: () => void): number {
  fn()
  let best = Infinity
  for (let round = 0; round < ROUNDS; round++) {
    let calls = 0
    const start = performance.now()
    let now = start
    for (let batch = 1; now - start < minMs / ROUNDS; batch *= 2) {
      for (let i = 0; i < batch; i++) fn()
      calls += batch
      now = performance.now()
    }
    best = Math.min(best, (now - start) / 1000 / calls)
  }
  return best
}

function copies (be: ComputeBackend, w: Matrix, n: number): Matrix[] {
  const { dataBytes, scaleBytes } = matrixBytes(w.dtype, w.rows, w.cols)
  const out: Matrix[] = [w]
  for (let i = 1; i < n; i++) {
    const ptr = be.mem.alloc(dataBytes)
    const scalesPtr = scaleBytes > 0 ? be.mem.alloc(scaleBytes) : 0
    be.mem.u8(ptr, dataBytes).set(be.mem.u8(w.ptr, dataBytes)) // writes every page: no zero-page reads
    if (scaleBytes > 0) be.mem.u8(scalesPtr, scaleBytes).set(be.mem.u8(w.scalesPtr, scaleBytes))
    out.push({ ...w, ptr, scalesPtr })
  }
  return out
}

function row (cells: (string | number)[]): void {
  console.log(cells.map((c) => String(c).padStart(9)).join(' '))
}

row(['dtype', 'shape', 'T', 'threads', 'mode', 'GFLOP/s', 'GB/s', 'µs/call'])
for (const threads of list(values.threads).map(Number)) {
  if (threads > 1) {
    // Dispatch round trip: a matmul too small to matter, forced onto every thread.
    const tiny = await createWasmBackend({ threads, minParallelWork: 0 })
    const w = packMatrix(tiny.mem, 'f32', 4 * threads, 32, (_r, _n, out) => out.fill(0))
    const x = tiny.mem.alloc(32 * 4)
    const o = tiny.mem.alloc(4 * threads * 4)
    const s = time(() => tiny.matmul(o, w, x, 1))
    console.log(`dispatch round trip, ${threads} threads: ${(s * 1e6).toFixed(2)} µs per matmul (4x32 rows per thread)`)
    await tiny.close()
  }
  for (const shape of list(values.shapes)) {
    const [rows, cols] = shape.split('x').map(Number)
    for (const dtype of list(values.dtypes) as WeightDType[]) {
      const be = await createWasmBackend({ threads }) // a fresh memory per case: streams are big
      const w = packMatrix(be.mem, dtype, rows, cols, (_r, _n, out) => { for (let i = 0; i < out.length; i++) out[i] = random() * 0.05 })
      const { dataBytes, scaleBytes } = matrixBytes(dtype, rows, cols)
      const bytes = dataBytes + scaleBytes
      for (const T of list(values.T).map(Number)) {
        const x = be.mem.alloc(T * cols * 4)
        const xs = be.mem.f32(x, T * cols)
        for (let i = 0; i < xs.length; i++) xs[i] = random()
        const out = be.mem.alloc(T * rows * 4)
        const flop = 2 * rows * cols * T
        const report = (mode: string, s: number) => row([dtype, shape, T, threads, mode,
          (flop / s / 1e9).toFixed(1), T === 1 ? (bytes / s / 1e9).toFixed(1) : '-', (s * 1e6).toFixed(1)])
        report('hot', time(() => be.matmul(out, w, x, T)))
        if (T === 1) {
          const ws = copies(be, w, Math.max(2, Math.ceil(streamBytes / bytes)))
          let i = 0
          const s = time(() => { be.matmul(out, ws[i], x, T); i = (i + 1) % ws.length })
          report('stream', s)
        }
      }
      await be.close()
    }
  }
}

/** Decode through a whole layer stack: q, k, v, o, gate, up, down of every layer, in order. */
async function stack (threads: number, dtype: WeightDType, dims: number[]): Promise<void> {
  const [dim, hidden, kvDim, layers] = dims
  const be = await createWasmBackend({ threads })
  const shapes = [[dim, dim], [kvDim, dim], [kvDim, dim], [dim, dim], [hidden, dim], [hidden, dim], [dim, hidden]]
  const protos = shapes.map(([rows, cols]) => packMatrix(be.mem, dtype, rows, cols, (_r, _n, out) => {
    for (let i = 0; i < out.length; i++) out[i] = random() * 0.05
  }))
  const weights = protos.map((w) => copies(be, w, layers)) // [projection][layer]
  let bytes = 0
  for (const w of protos) { const b = matrixBytes(w.dtype, w.rows, w.cols); bytes += (b.dataBytes + b.scaleBytes) * layers }
  const x = be.mem.alloc(hidden * 4)
  be.mem.f32(x, hidden).fill(0.5)
  const out = be.mem.alloc(hidden * 4)
  const s = time(() => {
    for (let l = 0; l < layers; l++) for (const w of weights) be.matmul(out, w[l], x, 1)
  })
  console.log(`layer stack ${dims.join(',')} ${dtype} ${threads}T: ${(1 / s).toFixed(1)} tok/s, ` +
    `${(bytes / s / 1e9).toFixed(1)} GB/s over ${(bytes / 1e6).toFixed(0)} MB`)
  await be.close()
}

if (values.stack !== '') {
  for (const threads of list(values.threads).map(Number)) {
    for (const dtype of list(values['stack-dtypes']) as WeightDType[]) await stack(threads, dtype, list(values.stack).map(Number))
  }
}
