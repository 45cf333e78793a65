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
  const b = u32Box[0]
  const sign = (b >>> 16) & 0x8000
  const exp = (b >>> 23) & 0xff
  const mant = b & 0x7fffff
  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x200 | (mant >>> 13) : 0)
  const e = exp - 127 + 15
  if (e >= 0x1f) return sign | 0x7c00
  if (e <= 0) {
    // A half subnormal (or zero): value = m * 2^-24 with m = significand >> (14 - e).
    if (e < -10) return sign
    const m = mant | 0x800000
    const shift = 14 - e
    const half = 1 << (shift - 1)
    const rem = m & ((1 << shift) - 1)
    let h = m >>> shift
    if (rem > half || (rem === half && (h & 1) !== 0)) h++
    return sign | h // a carry into bit 10 is the smallest normal, correctly encoded
  }
  let h = (e << 10) | (mant >>> 13)
  const rem = mant & 0x1fff
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1) !== 0)) h++ // may carry up to 0x7c00 = Inf
  return sign | h
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
 * Allocates a [rows, cols] matrix in `mem` and fills it from f32 rows. `fillRows(rowStart,
 * rowCount, out)` writes rows [rowStart, rowStart + rowCount) row-major into `out` (length
 * rowCount * cols); it is called in order with whole 4-row groups (the last call may hold fewer
 * rows for f32 / f16), so a huge matrix is converted a chunk at a time.
 */
export function packMatrix (mem: EngineMemory, dtype: WeightDType, rows: number, cols: number,
  fillRows: (rowStart: number, rowCount: number, out: Float32Array) => void): Matrix {
  if (!Number.isInteger(rows) || !Number.isInteger(cols) || rows <= 0 || cols <= 0) {
    throw new ShapeError(`cannot pack a [${rows}, ${cols}] matrix`)
  }
  if ((dtype === 'q8_0' || dtype === 'q4_0') && !quantizable(rows, cols)) {
    throw new ShapeError(`${dtype} needs rows % 4 == 0 and cols % 32 == 0, got [${rows}, ${cols}]`)
  }
  const { dataBytes, scaleBytes } = matrixBytes(dtype, rows, cols)
  const ptr = mem.alloc(dataBytes)
  const scalesPtr = scaleBytes > 0 ? mem.alloc(scaleBytes) : 0
  const w: Matrix = { dtype, rows, cols, ptr, scalesPtr }
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
      for (let i = 0; i < n * cols; i++) dst[i] = f32ToF16(src[i])
      return
    }
    case 'q8_0':
    case 'q4_0': {
      const nb = cols / QK
      const blockBytes = w.dtype === 'q8_0' ? QK : QK / 2
      const data = new Uint8Array(buffer, w.ptr, w.rows * nb * blockBytes)
      const scales = new Float32Array(buffer, w.scalesPtr, w.rows * nb)
      const quantizeBlock = w.dtype === 'q8_0' ? quantizeBlockQ8 : quantizeBlockQ4
      for (let i = 0; i < n; i++) {
        const row = r0 + i
        const g = row >>> 2
        const lane = row & 3
        for (let b = 0; b < nb; b++) {
          const gb = g * nb + b
          scales[gb * 4 + lane] = quantizeBlock(src, i * cols + b * QK, data, (gb * 4 + lane) * blockBytes)
        }
      }
    }
  }
}

const fround = Math.fround

/** ggml's C roundf: nearest, ties away from zero. */
function roundAway (v: number): number {
  return v < 0 ? -Math.floor(-v + 0.5) : Math.floor(v + 0.5)
}

/** quantize_row_q8_0_ref for one block: 32 int8 at out[at..]; returns the stored scale. */
function quantizeBlockQ8 (x: Float32Array, from: number, out: Uint8Array, at: number): number {
  let amax = 0
  for (let j = 0; j < QK; j++) amax = Math.max(amax, Math.abs(x[from + j]))
  const d = fround(amax / 127)
  const id = d !== 0 ? fround(1 / d) : 0
  for (let j = 0; j < QK; j++) out[at + j] = roundAway(fround(x[from + j] * id)) & 0xff
  return f16ToF32(f32ToF16(d))
}

/** quantize_row_q4_0_ref for one block: 16 bytes at out[at..]; returns the stored scale. */
function quantizeBlockQ4 (x: Float32Array, from: number, out: Uint8Array, at: number): number {
  let amax = 0
  let max = 0
  for (let j = 0; j < QK; j++) {
    const v = x[from + j]
    if (amax < Math.abs(v)) { amax = Math.abs(v); max = v }
  }
  const d = fround(max / -8)
  const id = d !== 0 ? fround(1 / d) : 0
  const nibble = (v: number) => Math.min(15, Math.trunc(fround(fround(v * id) + 8.5)))
  for (let j = 0; j < QK / 2; j++) {
    out[at + j] = nibble(x[from + j]) | (nibble(x[from + j + QK / 2]) << 4)
  }
  return f16ToF32(f32ToF16(d))
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
