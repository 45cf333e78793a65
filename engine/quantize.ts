// Weight formats of the kernels: IEEE half / bfloat16 conversion, and packing f32 rows into the
// layouts of `Matrix` (engine/index.ts) — f32, f16, and q8_0 / q4_0 in 4-row interleaved groups.
//
// q8_0 and q4_0 quantize every 32-column block exactly as ggml's quantize_row_q8_0_ref and
// quantize_row_q4_0_ref do, in f32 arithmetic: the quants come from the unrounded scale d (via its
// reciprocal), and the stored scale is d rounded through f16, which is what a GGUF block holds.
// So packing f32 weights gives the bytes llama.cpp would write, and packing the dequantized
// values of a GGUF q8_0 / q4_0 block gives back that block's quants and scale unchanged. The
// scale is kept as f32 in memory, so the kernels never convert it.
import { ShapeError } from './errors.ts'
import type { EngineMemory, Matrix, WeightDType } from './index.ts'

const QK = 32 // elements per quantization block
const GROUP_ROWS = 4 // rows interleaved per group in q8_0 / q4_0
/** packMatrix converts at most this many f32 values per fillRows call (4 MiB of staging). */
const PACK_CHUNK_VALUES = 1 << 20
const PACK_MAX_CHUNK_ROWS = 256

const f32Box = new Float32Array(1)
const u32Box = new Uint32Array(f32Box.buffer)

/** f32 → IEEE binary16 bits, rounding to nearest even; overflow → ±Inf, NaN stays a quiet NaN. */
export function f32ToF16 (x: number): number {
  f32Box[0] = x
  return f32BitsToF16(u32Box[0])
}

/** f32ToF16 on the bits of an f32 (so a Uint32Array view of f32 data needs no boxing). */
function f32BitsToF16 (b: number): number {
  const sign = (b >>> 16) & 0x8000
  const m = b & 0x7fffffff
  if (m >= 0x38800000 && m < 0x47800000) {
    // A normal half (biased exponent 1..30 before rounding): rebias by 127 - 15, then round the
    // 13 dropped bits to nearest even by addition; a carry runs into the exponent, up to 0x7c00
    // = Inf. No branch on the dropped bits, which are noise on real weights.
    return sign | ((m - 0x38000000 + 0xfff + ((m >>> 13) & 1)) >>> 13)
  }
  const exp = m >>> 23
  const mant = m & 0x7fffff
  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x200 | (mant >>> 13) : 0)
  const e = exp - 127 + 15
  if (e >= 0x1f) return sign | 0x7c00
  // A half subnormal (or zero): value = h * 2^-24 with h = significand >> (14 - e).
  if (e < -10) return sign
  const sig = mant | 0x800000
  const shift = 14 - e
  const half = 1 << (shift - 1)
  const rem = sig & ((1 << shift) - 1)
  let h = sig >>> shift
  if (rem > half || (rem === half && (h & 1) !== 0)) h++
  return sign | h // a carry into bit 10 is the smallest normal, correctly encoded
}

let f16Table: Float32Array | undefined

function buildF16Table (): Float32Array {
  const t = new Float32Array(65536)
  for (let h = 0; h < 65536; h++) {
    const sign = (h & 0x8000) !== 0 ? -1 : 1
    const e = (h >>> 10) & 0x1f
    const m = h & 0x3ff
    if (e === 0) t[h] = sign * m * 2 ** -24
    else if (e === 0x1f) t[h] = m !== 0 ? NaN : sign * Infinity
    else t[h] = sign * (1024 + m) * 2 ** (e - 25)
  }
  return t
}

/** IEEE binary16 bits → number (exact). */
export function f16ToF32 (h: number): number {
  f16Table ??= buildF16Table()
  return f16Table[h & 0xffff]
}

/** bfloat16 bits → number (exact: the top half of an f32). */
export function bf16ToF32 (h: number): number {
  u32Box[0] = (h & 0xffff) << 16
  return f32Box[0]
}

/** Whether a [rows, cols] matrix can be held as q8_0 / q4_0 (otherwise it stays f32). */
export function quantizable (rows: number, cols: number): boolean {
  return rows > 0 && cols > 0 && rows % GROUP_ROWS === 0 && cols % QK === 0
}

/** Bytes of the data and scale arrays of a [rows, cols] matrix in `dtype`. */
export function matrixBytes (dtype: WeightDType, rows: number, cols: number): { dataBytes: number, scaleBytes: number } {
  const n = rows * cols
  switch (dtype) {
    case 'f32': return { dataBytes: n * 4, scaleBytes: 0 }
    case 'f16': return { dataBytes: n * 2, scaleBytes: 0 }
    case 'q8_0': return { dataBytes: n, scaleBytes: (n / QK) * 4 }
    case 'q4_0': return { dataBytes: n / 2, scaleBytes: (n / QK) * 4 }
  }
}

/** Rows per fillRows call: whole 4-row groups, at most PACK_CHUNK_VALUES values. */
function chunkRows (rows: number, cols: number): number {
  const byValues = Math.floor(PACK_CHUNK_VALUES / cols / GROUP_ROWS) * GROUP_ROWS
  return Math.min(rows, PACK_MAX_CHUNK_ROWS, Math.max(GROUP_ROWS, byValues))
}

/**
 * Allocates an unfilled [rows, cols] matrix in `mem` (data, then scales for q8_0 / q4_0), after
 * checking that `dtype` can hold that shape. Views over it must be made after the last alloc:
 * growing the memory replaces its buffer.
 */
export function allocMatrix (mem: EngineMemory, dtype: WeightDType, rows: number, cols: number): Matrix {
  if (!Number.isInteger(rows) || !Number.isInteger(cols) || rows <= 0 || cols <= 0) {
    throw new ShapeError(`cannot pack a [${rows}, ${cols}] matrix`)
  }
  if ((dtype === 'q8_0' || dtype === 'q4_0') && !quantizable(rows, cols)) {
    throw new ShapeError(`${dtype} needs rows % 4 == 0 and cols % 32 == 0, got [${rows}, ${cols}]`)
  }
  const { dataBytes, scaleBytes } = matrixBytes(dtype, rows, cols)
  const ptr = mem.alloc(dataBytes)
  const scalesPtr = scaleBytes > 0 ? mem.alloc(scaleBytes) : 0
  return { dtype, rows, cols, ptr, scalesPtr }
}

/**
 * Allocates a [rows, cols] matrix in `mem` and fills it from f32 rows. `fillRows(rowStart,
 * rowCount, out)` writes rows [rowStart, rowStart + rowCount) row-major into `out` (length
 * rowCount * cols); it is called in order with whole 4-row groups (the last call may hold fewer
 * rows for f32 / f16), so a huge matrix is converted a chunk at a time. `into`: an already
 * allocated matrix (of that dtype and shape) to fill instead.
 */
export function packMatrix (mem: EngineMemory, dtype: WeightDType, rows: number, cols: number,
  fillRows: (rowStart: number, rowCount: number, out: Float32Array) => void, into?: Matrix): Matrix {
  const w = into ?? allocMatrix(mem, dtype, rows, cols)
  const step = chunkRows(rows, cols)
  const staging = new Float32Array(step * cols)
  for (let r = 0; r < rows; r += step) {
    const n = Math.min(step, rows - r)
    const chunk = staging.subarray(0, n * cols)
    fillRows(r, n, chunk)
    packRows(mem, w, r, n, chunk) // views are made after fillRows: it may have grown memory
  }
  return w
}

function packRows (mem: EngineMemory, w: Matrix, r0: number, n: number, src: Float32Array): void {
  const { cols } = w
  const buffer = mem.memory.buffer
  switch (w.dtype) {
    case 'f32':
      new Float32Array(buffer, w.ptr + r0 * cols * 4, n * cols).set(src)
      return
    case 'f16': {
      const dst = new Uint16Array(buffer, w.ptr + r0 * cols * 2, n * cols)
      const bits = new Uint32Array(src.buffer, src.byteOffset, n * cols)
      for (let i = 0; i < n * cols; i++) dst[i] = f32BitsToF16(bits[i])
      return
    }
    case 'q8_0':
      quantizeRowsQ8(src, r0, n, cols / QK, new Int8Array(buffer, w.ptr, w.rows * cols), new Float32Array(buffer, w.scalesPtr, w.rows * cols / QK))
      return
    case 'q4_0':
      quantizeRowsQ4(src, r0, n, cols / QK, new Uint8Array(buffer, w.ptr, w.rows * cols / 2), new Float32Array(buffer, w.scalesPtr, w.rows * cols / QK))
  }
}

const fround = Math.fround

// The two quantizers below are ggml's quantize_row_q8_0_ref / quantize_row_q4_0_ref, one block
// of 32 values at a time, written as flat loops over whole rows: rows [r0, r0 + n) sit row-major
// in `x`, and block b of row r goes to slot (g * nb + b) * 4 + lane (g = r >> 2, lane = r & 3)
// of the interleaved layout. Every step is f32 arithmetic as in C (`fround` after each operation)
// and NaN / Inf / subnormal inputs give the same bytes as the plain per-block transcription
// (test/engine/pack-source.test.ts keeps it as the oracle). The inner loops are unrolled and
// branch-free where the data would make branches unpredictable: this is the load-time cost of
// quantizing an f32 / f16 / bf16 checkpoint.

/** max |x[at..at + 32)| as the bits of an f32: with the sign bit cleared, integer order is
 * magnitude order, and a NaN (above Inf) wins, as it does in Math.max. */
function blockAmaxBits (bits: Uint32Array, at: number): number {
  let m = 0
  for (let j = at; j < at + QK; j += 8) {
    m = Math.max(m, bits[j] & 0x7fffffff, bits[j + 1] & 0x7fffffff, bits[j + 2] & 0x7fffffff, bits[j + 3] & 0x7fffffff,
      bits[j + 4] & 0x7fffffff, bits[j + 5] & 0x7fffffff, bits[j + 6] & 0x7fffffff, bits[j + 7] & 0x7fffffff)
  }
  return m
}

/** roundf(v) for an f32 v: floor(v + 0.5) (exact in double), minus one at a negative tie. The
 * tie test is rare, so no branch depends on the sign. A NaN / ±Inf result stores as 0 in an
 * Int8Array, and larger values wrap, exactly as `& 0xff` of the C-style rounding did. */
function roundAway (v: number): number {
  const h = v + 0.5
  const r = Math.floor(h)
  return r === h && v < 0 ? r - 1 : r
}

/** quantize_row_q8_0_ref: d = amax / 127 rounded to f16; q = roundf(x / d) (ties away from 0). */
function quantizeRowsQ8 (x: Float32Array, r0: number, n: number, nb: number, q: Int8Array, scales: Float32Array): void {
  const bits = new Uint32Array(x.buffer, x.byteOffset, x.length)
  let at = 0 // first value of the current block in x
  for (let row = r0; row < r0 + n; row++) {
    const slot0 = (row >>> 2) * nb * GROUP_ROWS + (row & 3)
    for (let b = 0; b < nb; b++, at += QK) {
      u32Box[0] = blockAmaxBits(bits, at)
      const d = fround(f32Box[0] / 127)
      const id = d !== 0 ? fround(1 / d) : 0
      const slot = slot0 + b * GROUP_ROWS
      for (let j = at, o = slot * QK; j < at + QK; j += 4, o += 4) {
        q[o] = roundAway(fround(x[j] * id))
        q[o + 1] = roundAway(fround(x[j + 1] * id))
        q[o + 2] = roundAway(fround(x[j + 2] * id))
        q[o + 3] = roundAway(fround(x[j + 3] * id))
      }
      scales[slot] = f16ToF32(f32ToF16(d))
    }
  }
}

/** The value of largest magnitude in x[at..at + 32), the first one on a tie, NaNs skipped
 * (quantize_row_q4_0_ref's `if (amax < fabsf(v))` scan); +0 when all are zero. */
function blockMax (x: Float32Array, bits: Uint32Array, at: number): number {
  const m = blockAmaxBits(bits, at)
  if (m === 0) return 0
  if (m > 0x7f800000) {
    // A NaN is in the block: the plain scan, which skips it.
    let amax = 0
    let max = 0
    for (let j = at; j < at + QK; j++) {
      if (amax < Math.abs(x[j])) { amax = Math.abs(x[j]); max = x[j] }
    }
    return max
  }
  let j = at
  while ((bits[j] & 0x7fffffff) !== m) j++
  return x[j]
}

/** (int)(v + 8.5) clamped to 15, for v = x / d in f32; the clamp is on the float, so +Inf gives 15. */
function nibble (v: number): number {
  const t = fround(v + 8.5)
  return t >= 15 ? 15 : t | 0
}

/** quantize_row_q4_0_ref: d = max / -8 (blockMax), rounded to f16; nibble(x / d); byte j holds
 * elements j (low) and j + 16 (high). */
function quantizeRowsQ4 (x: Float32Array, r0: number, n: number, nb: number, q: Uint8Array, scales: Float32Array): void {
  const bits = new Uint32Array(x.buffer, x.byteOffset, x.length)
  let at = 0
  for (let row = r0; row < r0 + n; row++) {
    const slot0 = (row >>> 2) * nb * GROUP_ROWS + (row & 3)
    for (let b = 0; b < nb; b++, at += QK) {
      const d = fround(blockMax(x, bits, at) / -8)
      const id = d !== 0 ? fround(1 / d) : 0
      const slot = slot0 + b * GROUP_ROWS
      for (let j = at, o = slot * (QK / 2); j < at + QK / 2; j += 2, o += 2) {
        q[o] = nibble(fround(x[j] * id)) | (nibble(fround(x[j + 16] * id)) << 4)
        q[o + 1] = nibble(fround(x[j + 1] * id)) | (nibble(fround(x[j + 17] * id)) << 4)
      }
      scales[slot] = f16ToF32(f32ToF16(d))
    }
  }
}

/** Row `row` of `w` as f32 into out[0..cols) (the embedding lookup). */
export function dequantizeRow (mem: EngineMemory, w: Matrix, row: number, out: Float32Array): void {
  const { cols } = w
  if (!Number.isInteger(row) || row < 0 || row >= w.rows) throw new ShapeError(`row ${row} is outside [0, ${w.rows})`)
  if (out.length < cols) throw new ShapeError(`output holds ${out.length} values, row has ${cols}`)
  const buffer = mem.memory.buffer
  switch (w.dtype) {
    case 'f32':
      out.set(new Float32Array(buffer, w.ptr + row * cols * 4, cols))
      return
    case 'f16': {
      const h = new Uint16Array(buffer, w.ptr + row * cols * 2, cols)
      for (let c = 0; c < cols; c++) out[c] = f16ToF32(h[c])
      return
    }
    case 'q8_0':
    case 'q4_0': {
      const nb = cols / QK
      const g = row >>> 2
      const lane = row & 3
      const scales = new Float32Array(buffer, w.scalesPtr + g * nb * 16, nb * 4)
      if (w.dtype === 'q8_0') {
        const q = new Int8Array(buffer, w.ptr + g * nb * 128, nb * 128)
        for (let b = 0; b < nb; b++) {
          const d = scales[b * 4 + lane]
          const at = b * 128 + lane * QK
          for (let j = 0; j < QK; j++) out[b * QK + j] = q[at + j] * d
        }
      } else {
        const q = new Uint8Array(buffer, w.ptr + g * nb * 64, nb * 64)
        for (let b = 0; b < nb; b++) {
          const d = scales[b * 4 + lane]
          const at = b * 64 + lane * (QK / 2)
          for (let j = 0; j < QK / 2; j++) {
            out[b * QK + j] = ((q[at + j] & 0xf) - 8) * d
            out[b * QK + j + QK / 2] = ((q[at + j] >>> 4) - 8) * d
          }
        }
      }
    }
  }
}
