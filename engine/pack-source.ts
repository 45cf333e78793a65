// Packing one tensor from its file into engine memory in the held dtype (see Matrix in index.ts).
//
// - Same dtype in the file and in memory (f32, f16, q8_0, q4_0): the stored bytes are copied, never
//   converted. f32 / f16 rows are read straight into the matrix; q8_0 / q4_0 blocks are read a
//   chunk of rows at a time and scattered into the 4-row interleaved layout (quants copied as
//   they are, the f16 scale widened to f32). For blocks written by ggml's reference quantizers this
//   gives the same bytes as dequantizing and requantizing (the general path); for other blocks it
//   keeps the file's values, which requantizing would not.
// - Held as f32 from another dtype: rows are decoded straight into the matrix.
// - Anything else (f32 → q8_0, bf16 → f16, ...): f32 rows a chunk at a time (tensor-reader.ts)
//   quantized by quantize.ts, so the whole f32 matrix never sits in memory.
// Hugging Face q/k rows (`permuteHeads`) are un-permuted on every path: chunks are whole heads and
// each held row is taken from its file row.
import type { EngineMemory, Matrix, TensorRef, WeightDType } from './index.ts'
import { sourceRowBytes, type TensorReader } from './formats/tensor-reader.ts'
import { ShapeError } from './errors.ts'
import { allocMatrix, f16ToF32, matrixBytes, packMatrix } from './quantize.ts'

/** Bytes of file rows read per call when they go through a staging buffer (1 MiB). */
const STAGING_BYTES = 1 << 20
/** Bytes read per call when rows land directly in engine memory (16 MiB). */
const DIRECT_READ_BYTES = 1 << 24
/** Block geometry of the quantized formats in a file: bytes per 32-value block (f16 scale +
 * quants), and 32-bit words of quants per block. */
const FILE_BLOCK = { q8_0: { bytes: 34, words: 8 }, q4_0: { bytes: 18, words: 4 } } as const
const QK = 32

/** Packs `ref` into a new matrix, or into `into` (same dtype and shape) when given. */
export function packTensor (mem: EngineMemory, dtype: WeightDType, ref: TensorRef, reader: TensorReader, into?: Matrix): Matrix {
  const [rows, cols] = ref.shape
  const w = into ?? allocMatrix(mem, dtype, rows, cols)
  if (ref.dtype === dtype) return copyTensor(mem, ref, reader, w)
  if (dtype === 'f32') return decodeTensor(mem, ref, reader, w)
  return packMatrix(mem, dtype, rows, cols, (rowStart, rowCount, out) => reader.readRows(ref, rowStart, rowCount, out), w)
}

/**
 * Packs tensors with the same number of columns one below the other into one matrix (q, k and v;
 * gate and up), so that one matmul (one dispatch, one activation quantization) computes them all:
 * out[t] = [W₀ x[t]; W₁ x[t]; …]. Each part must start on a 4-row group for q8_0 / q4_0.
 */
export function packStacked (mem: EngineMemory, dtype: WeightDType, refs: TensorRef[], reader: TensorReader): Matrix {
  const cols = refs[0].shape[1]
  const rows = refs.reduce((n, r) => n + r.shape[0], 0)
  const w = allocMatrix(mem, dtype, rows, cols)
  let row = 0
  for (const ref of refs) {
    if (ref.shape[1] !== cols) throw new ShapeError(`${ref.name} has ${ref.shape[1]} columns, not ${cols}`)
    const { dataBytes, scaleBytes } = matrixBytes(dtype, row, cols) // offset of this part's rows
    packTensor(mem, dtype, ref, reader, { dtype, rows: ref.shape[0], cols, ptr: w.ptr + dataBytes, scalesPtr: w.scalesPtr + scaleBytes })
    row += ref.shape[0]
  }
  return w
}

/** Rows per chunk for `rowBytes`-byte file rows within `budget`: whole heads when permuted. */
function chunkRows (ref: TensorRef, rows: number, rowBytes: number, budget: number): number {
  const unit = ref.permuteHeads === undefined ? 1 : rows / ref.permuteHeads
  return Math.min(rows, unit * Math.max(1, Math.floor(budget / (unit * rowBytes))))
}

/**
 * For each held row of a chunk starting at file row r0 (a whole number of heads when permuted):
 * the index in the chunk of the file row it comes from. Within a head of size hd, held row
 * 2j + c is file row c × hd/2 + j (rotate-half order → adjacent pairs).
 */
function sourceRows (ref: TensorRef, rows: number, r0: number, n: number): Int32Array {
  const src = new Int32Array(n)
  if (ref.permuteHeads === undefined) {
    for (let i = 0; i < n; i++) src[i] = i
    return src
  }
  const hd = rows / ref.permuteHeads
  for (let i = 0; i < n; i++) {
    const inHead = (r0 + i) % hd
    src[i] = i - inHead + (inHead % 2) * (hd / 2) + (inHead >> 1)
  }
  return src
}

/** Held as f32 from another file dtype: decode each chunk of rows into place. */
function decodeTensor (mem: EngineMemory, ref: TensorRef, reader: TensorReader, w: Matrix): Matrix {
  const { rows, cols } = w
  const step = chunkRows(ref, rows, cols * 4, STAGING_BYTES)
  for (let r = 0; r < rows; r += step) {
    const n = Math.min(step, rows - r)
    reader.readRows(ref, r, n, mem.f32(w.ptr + r * cols * 4, n * cols))
  }
  return w
}

/** Same dtype in file and memory: copy the stored bytes into the held layout. */
function copyTensor (mem: EngineMemory, ref: TensorRef, reader: TensorReader, w: Matrix): Matrix {
  const { rows, cols, dtype } = w
  const rowBytes = sourceRowBytes(ref.dtype, cols)
  if ((dtype === 'f32' || dtype === 'f16') && ref.permuteHeads === undefined) {
    // The held layout is the file's: read the rows into place.
    const step = chunkRows(ref, rows, rowBytes, DIRECT_READ_BYTES)
    for (let r = 0; r < rows; r += step) {
      const n = Math.min(step, rows - r)
      reader.readRawRows(ref, r, n, mem.u8(w.ptr + r * rowBytes, n * rowBytes))
    }
    return w
  }
  const step = chunkRows(ref, rows, rowBytes, STAGING_BYTES)
  // Staging is a whole number of 32-bit words plus room for the copy shifted by 2 bytes (below).
  const staging = new Uint8Array(Math.ceil((step * rowBytes + 4) / 4) * 4)
  const shifted = dtype === 'q8_0' || dtype === 'q4_0' ? new Uint8Array(staging.length + 4) : staging
  for (let r = 0; r < rows; r += step) {
    const n = Math.min(step, rows - r)
    reader.readRawRows(ref, r, n, staging)
    const src = sourceRows(ref, rows, r, n)
    if (dtype === 'f32' || dtype === 'f16') {
      const dst = mem.u8(w.ptr + r * rowBytes, n * rowBytes)
      for (let i = 0; i < n; i++) dst.set(staging.subarray(src[i] * rowBytes, (src[i] + 1) * rowBytes), i * rowBytes)
    } else {
      shifted.set(staging.subarray(0, n * rowBytes), 2)
      scatterBlocks(mem, w, FILE_BLOCK[dtype], staging, shifted, r, src)
    }
  }
  return w
}

/**
 * Scatters the file's q8_0 / q4_0 blocks of held rows [r0, r0 + src.length) into `w`'s 4-row
 * interleaved layout (index.ts): held row r0 + i takes chunk row src[i]. A block is an f16 scale
 * and then its quants, so in a 34- or 18-byte block the quants of every other block start at a
 * 4-byte boundary; `shifted` holds the chunk 2 bytes further on, where the others do. So every
 * block's quants move as 32-bit words.
 */
function scatterBlocks (mem: EngineMemory, w: Matrix, block: { bytes: number, words: number },
  staging: Uint8Array, shifted: Uint8Array, r0: number, src: Int32Array): void {
  const nb = w.cols / QK
  const { bytes, words } = block
  const buffer = mem.memory.buffer
  const data = new Uint32Array(buffer, w.ptr, w.rows * nb * words)
  const scales = new Float32Array(buffer, w.scalesPtr, w.rows * nb)
  const half = new Uint16Array(staging.buffer, 0, staging.length >> 1)
  const oddBlocks = new Uint32Array(staging.buffer, 0, staging.length >> 2) // word-aligned quants of odd blocks
  const evenBlocks = new Uint32Array(shifted.buffer, 0, shifted.length >> 2) // ... of even blocks, 2 bytes on
  for (let i = 0; i < src.length; i++) {
    const row = r0 + i
    const slot0 = (row >>> 2) * nb * 4 + (row & 3) // slot of block b: (g * nb + b) * 4 + lane
    const k0 = src[i] * nb // index in the chunk of the row's first block
    for (let b = 0; b < nb; b++) {
      const k = k0 + b
      const slot = slot0 + b * 4
      scales[slot] = f16ToF32(half[(k * bytes) >> 1])
      const odd = (k & 1) !== 0
      const from = odd ? oddBlocks : evenBlocks
      const s = (k * bytes + (odd ? 2 : 4)) >> 2
      const o = slot * words
      // Unrolled: a 4- or 8-word copy per block is the whole cost of this loop.
      data[o] = from[s]; data[o + 1] = from[s + 1]; data[o + 2] = from[s + 2]; data[o + 3] = from[s + 3]
      if (words === 8) {
        data[o + 4] = from[s + 4]; data[o + 5] = from[s + 5]; data[o + 6] = from[s + 6]; data[o + 7] = from[s + 7]
      }
    }
  }
}
