// Ranged reads of one tensor from its file, converted to f32 rows. Only the bytes of the rows
// asked for are read (fs.read at an offset), so a shard never touches other layers' weights.
// Hugging Face q/k rows (permuted for rotate-half RoPE) are put back in adjacent-pair order.
// `readRawRows` hands back the stored bytes of a row range untouched (no conversion, no
// un-permutation), for packers that copy a block format straight into its held layout.
import { closeSync, openSync, readSync } from 'node:fs'
import { ModelFormatError, ShapeError } from '../errors.ts'
import type { SourceDType, TensorRef } from '../index.ts'
import { f16ToF32 } from '../quantize.ts'

const BLOCK = 32
const MAX_READ_BYTES = 1 << 30 // per readSync call (Node caps one read at 2 GiB - 1)

/** Bytes one row of `cols` elements takes in a file of this dtype. */
export function sourceRowBytes (dtype: SourceDType, cols: number): number {
  switch (dtype) {
    case 'f32': return cols * 4
    case 'f16': case 'bf16': return cols * 2
    case 'q8_0': return (cols / BLOCK) * 34
    case 'q4_0': return (cols / BLOCK) * 18
  }
}

export interface TensorReader {
  /** Reads rows [rowStart, rowStart + rowCount) as f32 into `out` (length ≥ rowCount × cols). */
  readRows(ref: TensorRef, rowStart: number, rowCount: number, out: Float32Array): void
  /**
   * Reads the bytes of file rows [rowStart, rowStart + rowCount) as stored (`sourceRowBytes` each),
   * in file order — `permuteHeads` is not undone — into out[0..). `out` may be a view of engine
   * memory, so the bytes land in place with no staging copy.
   */
  readRawRows(ref: TensorRef, rowStart: number, rowCount: number, out: Uint8Array): void
  /** Reads a whole (small) tensor as f32: norms, biases. */
  readAll(ref: TensorRef): Float32Array
  /** Total bytes read from disk so far. */
  readonly bytesRead: number
  close(): void
}

export function createTensorReader (): TensorReader {
  const fds = new Map<string, number>()
  let bytesRead = 0
  let scratch = Buffer.alloc(0)

  function fd (file: string): number {
    let f = fds.get(file)
    if (f === undefined) {
      try {
        f = openSync(file, 'r')
      } catch (err) {
        throw new ModelFormatError(file, `cannot open: ${(err as Error).message}`)
      }
      fds.set(file, f)
    }
    return f
  }

  /** Reads exactly out.length bytes at `offset` into `out`. */
  function readInto (file: string, offset: number, out: Uint8Array): void {
    const f = fd(file)
    let got = 0
    while (got < out.length) {
      // readSync moves at most 2 GiB per call and may return less than asked; 0 is end of file.
      const n = readSync(f, out, got, Math.min(out.length - got, MAX_READ_BYTES), offset + got)
      if (n === 0) break
      got += n
    }
    bytesRead += got
    if (got !== out.length) throw new ModelFormatError(file, `truncated: wanted ${out.length} bytes at offset ${offset}, file ends after ${got}`)
  }

  function readBytes (file: string, offset: number, length: number): Buffer {
    if (scratch.length < length) scratch = Buffer.alloc(Math.max(length, 4096)) // ≥ 4 KiB: never pooled
    readInto(file, offset, scratch.subarray(0, length))
    return scratch
  }

  /** Reads file rows [first, first + count) as f32 into out (no permutation). */
  function readFileRows (ref: TensorRef, first: number, count: number, out: Float32Array, outOffset: number): void {
    const cols = ref.shape.length === 1 ? ref.shape[0] : ref.shape[1]
    const rowBytes = sourceRowBytes(ref.dtype, cols)
    if (ref.dtype === 'f32') {
      // Already f32: read straight into `out`, no staging copy.
      readInto(ref.file, ref.offset + first * rowBytes, new Uint8Array(out.buffer, out.byteOffset + outOffset * 4, count * rowBytes))
      return
    }
    const buf = readBytes(ref.file, ref.offset + first * rowBytes, count * rowBytes)
    decode(ref.dtype, buf, count * cols, out, outOffset)
  }

  return {
    readRawRows (ref, rowStart, rowCount, out) {
      const [rows, cols] = ref.shape.length === 1 ? [1, ref.shape[0]] : ref.shape
      if (!Number.isInteger(rowStart) || !Number.isInteger(rowCount) || rowStart < 0 || rowCount < 0 || rowStart + rowCount > rows) {
        throw new ShapeError(`${ref.name}: rows [${rowStart}, ${rowStart + rowCount}) outside [0, ${rows})`)
      }
      const rowBytes = sourceRowBytes(ref.dtype, cols)
      if (out.length < rowCount * rowBytes) throw new ShapeError(`${ref.name}: output buffer too small`)
      readInto(ref.file, ref.offset + rowStart * rowBytes, out.subarray(0, rowCount * rowBytes))
    },
    readRows (ref, rowStart, rowCount, out) {
      const [rows, cols] = ref.shape.length === 1 ? [1, ref.shape[0]] : ref.shape
      if (rowStart < 0 || rowStart + rowCount > rows) throw new ShapeError(`${ref.name}: rows [${rowStart}, ${rowStart + rowCount}) outside [0, ${rows})`)
      if (out.length < rowCount * cols) throw new ShapeError(`${ref.name}: output buffer too small`)
      if (ref.permuteHeads === undefined) {
        readFileRows(ref, rowStart, rowCount, out, 0)
        return
      }
      // Rotate-half order → adjacent pairs: within a head of size hd, our row 2j + c is the
      // file's row c × hd/2 + j. Read the heads that cover the range, then gather.
      const hd = rows / ref.permuteHeads
      const firstHead = Math.floor(rowStart / hd)
      const lastHead = Math.floor((rowStart + rowCount - 1) / hd)
      const heads = new Float32Array((lastHead - firstHead + 1) * hd * cols)
      readFileRows(ref, firstHead * hd, (lastHead - firstHead + 1) * hd, heads, 0)
      for (let r = 0; r < rowCount; r++) {
        const row = rowStart + r
        const h = Math.floor(row / hd)
        const i = row - h * hd
        const src = (h - firstHead) * hd + (i % 2) * (hd / 2) + (i >> 1)
        out.set(heads.subarray(src * cols, (src + 1) * cols), r * cols)
      }
    },
    readAll (ref) {
      const n = ref.shape.reduce((a, b) => a * b, 1)
      const out = new Float32Array(n)
      if (ref.shape.length === 1 && ref.permuteHeads !== undefined) {
        // A permuted vector (qwen2's q/k biases) is permuted element by element: read it as a column.
        this.readRows({ ...ref, shape: [n, 1] }, 0, n, out)
      } else {
        this.readRows(ref, 0, ref.shape.length === 1 ? 1 : ref.shape[0], out)
      }
      return out
    },
    get bytesRead () { return bytesRead },
    close () {
      for (const f of fds.values()) closeSync(f)
      fds.clear()
    }
  }
}

/** Converts `n` elements stored as `dtype` in `buf` to f32 at out[outOffset...]. */
function decode (dtype: SourceDType, buf: Buffer, n: number, out: Float32Array, outOffset: number): void {
  // `buf` is an unpooled Buffer (byteOffset 0), so aligned typed views over it are valid; block
  // scales sit at even offsets (34- and 18-byte blocks), so a Uint16Array reaches them too.
  switch (dtype) {
    case 'f32':
      out.set(new Float32Array(buf.buffer, buf.byteOffset, n), outOffset)
      return
    case 'f16': {
      // A normal half is rebiased (exponent + 127 - 15) and shifted into place; zeros,
      // subnormals, Inf and NaN go through the exact table.
      const h = new Uint16Array(buf.buffer, buf.byteOffset, n)
      const o = new Uint32Array(out.buffer, out.byteOffset + outOffset * 4, n)
      for (let i = 0; i < n; i++) {
        const x = h[i]
        const e = x & 0x7c00
        if (e !== 0 && e !== 0x7c00) o[i] = ((x & 0x8000) << 16) | (((x & 0x7fff) + 0x1c000) << 13)
        else out[outOffset + i] = f16ToF32(x)
      }
      return
    }
    case 'bf16': {
      // bfloat16 is the top half of an f32: shift the bits into place (exact, NaNs included).
      const h = new Uint16Array(buf.buffer, buf.byteOffset, n)
      const o = new Uint32Array(out.buffer, out.byteOffset + outOffset * 4, n)
      for (let i = 0; i < n; i++) o[i] = h[i] << 16
      return
    }
    case 'q8_0': {
      const q = new Int8Array(buf.buffer, buf.byteOffset, (n / BLOCK) * 34)
      const h = new Uint16Array(buf.buffer, buf.byteOffset, (n / BLOCK) * 17)
      for (let b = 0, o = outOffset; b < n / BLOCK; b++) {
        const d = f16ToF32(h[b * 17])
        for (let j = b * 34 + 2; j < b * 34 + 34; j++) out[o++] = q[j] * d
      }
      return
    }
    case 'q4_0': {
      const h = new Uint16Array(buf.buffer, buf.byteOffset, (n / BLOCK) * 9)
      for (let b = 0; b < n / BLOCK; b++) {
        const d = f16ToF32(h[b * 9])
        const o = outOffset + b * BLOCK
        for (let j = 0; j < 16; j++) {
          const q = buf[b * 18 + 2 + j]
          out[o + j] = ((q & 0x0f) - 8) * d
          out[o + j + 16] = ((q >> 4) - 8) * d
        }
      }
    }
  }
}
