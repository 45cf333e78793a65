// The readable oracle: matmul and attention in plain TypeScript over engine memory, one thread. Quantized
// weights are dequantized a row at a time and multiplied with the f32 activations (the WASM
// kernels quantize the activations instead; test/engine/kernels.test.ts bounds the difference).
// Sums are taken in float64 and rounded to f32 once, so this is also the most accurate backend.
import { createEngineMemory } from './engine-memory.ts'
import { ShapeError } from './errors.ts'
import type { AttentionShape, ComputeBackend, EngineMemory, Matrix } from './index.ts'
import { attention as attentionRows, swiglu } from './ops.ts'
import { dequantizeRow } from './quantize.ts'

export interface ReferenceBackendInit {
  /** Memory to allocate in; default: a fresh engine memory. */
  mem?: EngineMemory
}

export function createReferenceBackend (init: ReferenceBackendInit = {}): ComputeBackend {
  const mem = init.mem ?? createEngineMemory()
  let row = new Float32Array(0) // (cols) the current weight row, dequantized

  function matmul (outPtr: number, w: Matrix, xPtr: number, T: number): void {
    const { rows, cols } = w
    checkMatmul(w, T)
    const x = mem.f32(xPtr, T * cols) // (T, cols)
    const out = mem.f32(outPtr, T * rows) // (T, rows)
    if (row.length < cols) row = new Float32Array(cols)
    for (let r = 0; r < rows; r++) {
      dequantizeRow(mem, w, r, row)
      for (let t = 0; t < T; t++) out[t * rows + r] = dot(row, x, t * cols, cols)
    }
  }

  let scores = new Float32Array(0) // (positions) one head's attention weights

  function attention (outPtr: number, qPtr: number, keysPtr: number, valuesPtr: number, T: number, pos0: number, shape: AttentionShape): void {
    const dim = shape.nHeads * shape.headSize
    const kvDim = shape.nKvHeads * shape.headSize
    if (scores.length < pos0 + T) scores = new Float32Array(pos0 + T)
    attentionRows(mem.f32(outPtr, T * dim), mem.f32(qPtr, T * dim), mem.f32(keysPtr, (pos0 + T) * kvDim),
      mem.f32(valuesPtr, (pos0 + T) * kvDim), T, pos0, shape, scores)
  }

  return {
    name: 'reference',
    threads: 1,
    mem,
    matmul,
    attention,
    swiglu: (gatePtr, upPtr, n) => swiglu(mem.f32(gatePtr, n), mem.f32(upPtr, n), n),
    close: async () => {}
  }
}

function dot (w: Float32Array, x: Float32Array, xFrom: number, n: number): number {
  let s = 0
  for (let c = 0; c < n; c++) s += w[c] * x[xFrom + c]
  return s
}

/** Validates a matmul request; shared by both backends. */
export function checkMatmul (w: Matrix, T: number): void {
  if (!Number.isInteger(T) || T < 1) throw new ShapeError(`matmul needs T >= 1 tokens, got ${T}`)
  if (!Number.isInteger(w.rows) || !Number.isInteger(w.cols) || w.rows < 1 || w.cols < 1) {
    throw new ShapeError(`matrix has shape [${w.rows}, ${w.cols}]`)
  }
  if ((w.dtype === 'q8_0' || w.dtype === 'q4_0') && (w.rows % 4 !== 0 || w.cols % 32 !== 0)) {
    throw new ShapeError(`${w.dtype} matrix [${w.rows}, ${w.cols}] is not in 4-row groups of 32-column blocks`)
  }
}
