// Hidden-state codecs for the wire: how a stage's [T, dim] float32 activations travel to the next
// stage. f32 is exact; f16 halves the bytes (relative error ≤ 2⁻¹¹ for normal values); int8
// blockwise takes 28% of f32: per block of HIDDEN_INT8_BLOCK values one f32 scale = max|x| / 127 and
// int8 quants, so each value is off by at most scale / 2.
// Layout of int8: [nBlocks × f32 scale][n × int8]. All little-endian.
import { ShapeError } from './errors.ts'
import { f16ToF32, f32ToF16 } from './quantize.ts'

export type HiddenCodec = 'f32' | 'f16' | 'int8'
export const HIDDEN_CODECS: readonly HiddenCodec[] = ['f32', 'f16', 'int8']
export const HIDDEN_INT8_BLOCK = 32

/** Bytes `n` values take in `codec`. */
export function encodedHiddenBytes (codec: HiddenCodec, n: number): number {
  switch (codec) {
    case 'f32': return n * 4
    case 'f16': return n * 2
    case 'int8': return Math.ceil(n / HIDDEN_INT8_BLOCK) * 4 + n
  }
}

export function encodeHidden (codec: HiddenCodec, x: Float32Array): Uint8Array {
  const n = x.length
  const bytes = new Uint8Array(encodedHiddenBytes(codec, n))
  const view = new DataView(bytes.buffer)
  switch (codec) {
    case 'f32':
      for (let i = 0; i < n; i++) view.setFloat32(i * 4, x[i], true)
      break
    case 'f16':
      for (let i = 0; i < n; i++) view.setUint16(i * 2, f32ToF16(x[i]), true)
      break
    case 'int8': {
      const nBlocks = Math.ceil(n / HIDDEN_INT8_BLOCK)
      const q = new Int8Array(bytes.buffer, nBlocks * 4, n)
      for (let b = 0; b < nBlocks; b++) {
        const lo = b * HIDDEN_INT8_BLOCK
        const hi = Math.min(n, lo + HIDDEN_INT8_BLOCK)
        let amax = 0
        for (let i = lo; i < hi; i++) amax = Math.max(amax, Math.abs(x[i]))
        const scale = Math.fround(amax / 127)
        view.setFloat32(b * 4, scale, true)
        const inv = scale === 0 ? 0 : 1 / scale
        for (let i = lo; i < hi; i++) q[i] = Math.round(x[i] * inv)
      }
    }
  }
  return bytes
}

/** Decodes `n` values; a byte length that does not match `n` is a ShapeError. */
export function decodeHidden (codec: HiddenCodec, bytes: Uint8Array, n: number): Float32Array {
  if (!Number.isInteger(n) || n < 0 || bytes.length !== encodedHiddenBytes(codec, n)) {
    throw new ShapeError(`${codec} hidden state of ${bytes.length} bytes does not hold ${n} values`)
  }
  const out = new Float32Array(n)
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  switch (codec) {
    case 'f32':
      for (let i = 0; i < n; i++) out[i] = view.getFloat32(i * 4, true)
      break
    case 'f16':
      for (let i = 0; i < n; i++) out[i] = f16ToF32(view.getUint16(i * 2, true))
      break
    case 'int8': {
      const nBlocks = Math.ceil(n / HIDDEN_INT8_BLOCK)
      for (let b = 0; b < nBlocks; b++) {
        const scale = view.getFloat32(b * 4, true)
        const hi = Math.min(n, (b + 1) * HIDDEN_INT8_BLOCK)
        for (let i = b * HIDDEN_INT8_BLOCK; i < hi; i++) out[i] = view.getInt8(nBlocks * 4 + i) * scale
      }
    }
  }
  return out
}
