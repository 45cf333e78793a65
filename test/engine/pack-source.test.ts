// packTensor's paths checked against each other and against plain transcriptions: copying a
// file's own dtype (f32, f16, q8_0, q4_0) gives the bytes that decoding to f32 and packing (the
// general path) gives, with q/k rows un-permuted; the general path quantizes exactly like the
// per-block transcription of ggml's reference quantizers, edge values included; decoding to f32
// is exact for every half, bfloat16 and block.
// Repro: TEST_SEED=<seed printed in the describe name> npx vitest run test/engine/pack-source.test.ts
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { createEngineMemory } from '../../engine/engine-memory.ts'
import { encodeTensorData } from '../../engine/formats/gguf-writer.ts'
import { createTensorReader, type TensorReader } from '../../engine/formats/tensor-reader.ts'
import type { EngineMemory, Matrix, SourceDType, TensorRef, WeightDType } from '../../engine/index.ts'
import { packTensor } from '../../engine/pack-source.ts'
import { bf16ToF32, f16ToF32, f32ToF16, matrixBytes, packMatrix } from '../../engine/quantize.ts'
import { seededRandom, testSeed } from '../seed.ts'
import { tempDir } from './formats/fixtures.ts'

const SEED = testSeed()
const { dir, cleanup } = tempDir('pack-source')
afterAll(cleanup)
const fround = Math.fround
const PREFIX = 7 // junk bytes before each tensor: file offsets need not be aligned

let files = 0
/** Writes `bytes` to a fresh file after PREFIX junk bytes; returns the tensor's ref. */
function tensorFile (dtype: SourceDType, shape: number[], bytes: Uint8Array, permuteHeads?: number): TensorRef {
  const file = join(dir, `t${files++}.bin`)
  writeFileSync(file, Buffer.concat([Buffer.alloc(PREFIX, 0xee), bytes]))
  return { name: `t${files}`, file, offset: PREFIX, byteLength: bytes.length, dtype, shape, ...(permuteHeads !== undefined ? { permuteHeads } : {}) }
}

/** The data and scale bytes of a packed matrix. */
function heldBytes (mem: EngineMemory, w: Matrix): [Uint8Array, Uint8Array] {
  const { dataBytes, scaleBytes } = matrixBytes(w.dtype, w.rows, w.cols)
  return [mem.u8(w.ptr, dataBytes).slice(), mem.u8(w.scalesPtr, scaleBytes).slice()]
}

/** The general path: f32 rows from the reader, packed by quantize.ts. */
function generalPack (mem: EngineMemory, dtype: WeightDType, ref: TensorRef, reader: TensorReader): Matrix {
  const [rows, cols] = ref.shape
  return packMatrix(mem, dtype, rows, cols, (r0, n, out) => reader.readRows(ref, r0, n, out))
}

function withReader<T> (body: (reader: TensorReader) => T): T {
  const reader = createTensorReader()
  try {
    return body(reader)
  } finally {
    reader.close()
  }
}

describe(`packTensor (TEST_SEED=${SEED})`, () => {
  const rand = seededRandom(SEED)
  const gaussian = () => Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand()) * 0.05
  const pool = Float32Array.from({ length: 2048 * 4096 }, gaussian)
  const values = (rows: number, cols: number) => pool.subarray(0, rows * cols)

  // Large shapes cross the packer's chunk boundaries (4 MiB of staged file rows, 16 MiB read in
  // place), the q8_0 one in the middle of a 4-row group; the small ones have 2-row heads.
  const cases: Array<[SourceDType & WeightDType, number, number, number | undefined]> = [
    ['f32', 2080, 2048, undefined], ['f32', 1024, 2048, 8], ['f32', 12, 20, 3],
    ['f16', 96, 64, undefined], ['f16', 512, 64, 4], ['f16', 12, 20, 3],
    ['q8_0', 2048, 2048, undefined], ['q8_0', 2048, 2048, 16], ['q8_0', 12, 32, 6],
    ['q4_0', 2048, 4096, undefined], ['q4_0', 256, 4096, 2], ['q4_0', 12, 64, 3]
  ]
  it.each(cases)('%s [%i, %i], permuteHeads %s: copying the file gives the general path\'s bytes', (dtype, rows, cols, heads) => {
    const ref = tensorFile(dtype, [rows, cols], encodeTensorData(dtype, values(rows, cols)), heads)
    const mem = createEngineMemory()
    withReader((reader) => {
      const direct = packTensor(mem, dtype, ref, reader)
      if (heads === undefined) expect(reader.bytesRead).toBe(ref.byteLength) // each byte read once
      const general = generalPack(mem, dtype, ref, reader)
      expect(direct).toMatchObject({ dtype, rows, cols })
      const [data, scales] = heldBytes(mem, direct)
      const [wantData, wantScales] = heldBytes(mem, general)
      expect(Buffer.compare(data, wantData)).toBe(0)
      expect(Buffer.compare(scales, wantScales)).toBe(0)
    })
  })

  it('un-permutes q/k rows: held row 2j + c of a head is its file row c × hd/2 + j', () => {
    const [heads, hd, cols] = [4, 6, 32]
    const rows = heads * hd
    const fileValues = values(rows, cols)
    const mem = createEngineMemory()
    for (const dtype of ['f32', 'f16', 'q8_0', 'q4_0'] as const) {
      const ref = tensorFile(dtype, [rows, cols], encodeTensorData(dtype, fileValues), heads)
      const plain = tensorFile(dtype, [rows, cols], encodeTensorData(dtype, fileValues))
      withReader((reader) => {
        const permuted = new Float32Array(rows * cols)
        reader.readRows(plain, 0, rows, permuted) // the file's own order
        const held = new Float32Array(rows * cols)
        const w = packTensor(mem, 'f32', ref, reader)
        held.set(mem.f32(w.ptr, rows * cols))
        for (let h = 0; h < heads; h++) {
          for (let i = 0; i < hd; i++) {
            const fileRow = h * hd + (i % 2) * (hd / 2) + (i >> 1)
            expect(held.subarray((h * hd + i) * cols, (h * hd + i + 1) * cols)).toEqual(permuted.subarray(fileRow * cols, (fileRow + 1) * cols))
          }
        }
        // ...and the quantized copy holds the same rows as the one packed from permuted f32 rows.
        if (dtype === 'q8_0' || dtype === 'q4_0') {
          expect(heldBytes(mem, packTensor(mem, dtype, ref, reader))).toEqual(heldBytes(mem, generalPack(mem, dtype, ref, reader)))
        }
      })
    }
  })

  it('keeps every f16 bit pattern when f16 is held, and decodes every half and bfloat16 exactly', () => {
    const bits = Uint16Array.from({ length: 65536 }, (_, i) => i)
    const mem = createEngineMemory()
    withReader((reader) => {
      const f16 = tensorFile('f16', [2048, 32], new Uint8Array(bits.buffer))
      const w = packTensor(mem, 'f16', f16, reader)
      expect(new Uint16Array(mem.memory.buffer, w.ptr, 65536)).toEqual(bits)
      const asF32 = packTensor(mem, 'f32', f16, reader)
      expect(mem.f32(asF32.ptr, 65536)).toEqual(Float32Array.from(bits, f16ToF32))
      const bf16 = tensorFile('bf16', [2048, 32], new Uint8Array(bits.buffer))
      const fromBf16 = packTensor(mem, 'f32', bf16, reader)
      expect(mem.f32(fromBf16.ptr, 65536)).toEqual(Float32Array.from(bits, bf16ToF32))
    })
  })

  it.each(['q8_0', 'q4_0'] as const)('decodes %s blocks to q × d exactly when f32 is held', (dtype) => {
    const [rows, cols] = [12, 96]
    const bytes = encodeTensorData(dtype, values(rows, cols))
    const blockBytes = dtype === 'q8_0' ? 34 : 18
    const want = new Float32Array(rows * cols)
    for (let b = 0; b < want.length / 32; b++) {
      const d = f16ToF32(bytes[b * blockBytes] | (bytes[b * blockBytes + 1] << 8))
      for (let j = 0; j < 32; j++) {
        const q = dtype === 'q8_0'
          ? (bytes[b * 34 + 2 + j] << 24) >> 24
          : ((bytes[b * 18 + 2 + (j % 16)] >> (j < 16 ? 0 : 4)) & 0xf) - 8
        want[b * 32 + j] = q * d
      }
    }
    const mem = createEngineMemory()
    withReader((reader) => {
      const w = packTensor(mem, 'f32', tensorFile(dtype, [rows, cols], bytes), reader)
      expect(mem.f32(w.ptr, rows * cols)).toEqual(want)
    })
  })

  // The per-block transcription of quantize_row_q8_0_ref / quantize_row_q4_0_ref that packing
  // used before its loops were flattened: the oracle for the fast quantizers.
  function plainBlock (dtype: 'q8_0' | 'q4_0', x: Float32Array): { d: number, q: Uint8Array } {
    const out = new Uint8Array(dtype === 'q8_0' ? 32 : 16)
    if (dtype === 'q8_0') {
      let amax = 0
      for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[j]))
      const d = fround(amax / 127)
      const id = d !== 0 ? fround(1 / d) : 0
      const roundAway = (v: number) => v < 0 ? -Math.floor(-v + 0.5) : Math.floor(v + 0.5)
      for (let j = 0; j < 32; j++) out[j] = roundAway(fround(x[j] * id)) & 0xff
      return { d: f16ToF32(f32ToF16(d)), q: out }
    }
    let amax = 0
    let max = 0
    for (let j = 0; j < 32; j++) {
      if (amax < Math.abs(x[j])) { amax = Math.abs(x[j]); max = x[j] }
    }
    const d = fround(max / -8)
    const id = d !== 0 ? fround(1 / d) : 0
    const nibble = (v: number) => Math.min(15, Math.trunc(fround(fround(v * id) + 8.5)))
    for (let j = 0; j < 16; j++) out[j] = nibble(x[j]) | (nibble(x[j + 16]) << 4)
    return { d: f16ToF32(f32ToF16(d)), q: out }
  }

  it.each(['q8_0', 'q4_0'] as const)('quantizes f32 rows to %s exactly like the plain transcription, edge values included', (dtype) => {
    const [rows, cols] = [16, 64]
    const x = Float32Array.from(values(rows, cols))
    const edges: number[][] = [
      [0], [-0], [0, -0], [NaN], [1, NaN, -2], [Infinity], [-Infinity, 1], [Infinity, -Infinity], [NaN, Infinity],
      [1e-45, -1e-45], [3e-39, -1e-40, 2e-45], [1e-44, 3e-44], [3e38, -3.4e38, 1],
      [127, 2.5, -3.5, 0.5, -0.5, 6.5, -6.5, 126.5, -126.5], [-8, 2.5, -3.5, 0.5, -0.5, 6.5, -6.5, 7.5, -7.5],
      [0.5, -0.5], [-0.5, 0.5], [1, -1, 1, -1]
    ]
    edges.forEach((e, i) => {
      const at = (i % rows) * cols + Math.floor(i / rows) * 32
      x.fill(0, at, at + 32).set(e, at)
    })
    const mem = createEngineMemory()
    withReader((reader) => {
      const w = packTensor(mem, dtype, tensorFile('f32', [rows, cols], new Uint8Array(x.buffer)), reader)
      const [data, scaleBytes] = heldBytes(mem, w)
      const scales = new Float32Array(scaleBytes.buffer)
      const blockBytes = dtype === 'q8_0' ? 32 : 16
      for (let r = 0; r < rows; r++) {
        for (let b = 0; b < cols / 32; b++) {
          const want = plainBlock(dtype, x.subarray(r * cols + b * 32, r * cols + b * 32 + 32))
          const slot = ((r >> 2) * (cols / 32) + b) * 4 + (r & 3)
          expect(Object.is(scales[slot], want.d), `row ${r} block ${b}: scale ${scales[slot]}, want ${want.d}`).toBe(true)
          expect(data.subarray(slot * blockBytes, (slot + 1) * blockBytes)).toEqual(want.q)
        }
      }
    })
  })

  it('reads raw rows in file order and rejects ranges outside the tensor or the file', () => {
    const bytes = Uint8Array.from({ length: 4 * 34 * 2 }, (_, i) => i)
    const ref = tensorFile('q8_0', [4, 64], bytes, 2)
    withReader((reader) => {
      const out = new Uint8Array(2 * 68)
      reader.readRawRows(ref, 1, 2, out)
      expect(out).toEqual(bytes.subarray(68, 3 * 68))
      expect(() => reader.readRawRows(ref, 3, 2, new Uint8Array(136))).toThrow(expect.objectContaining({ name: 'ShapeError' }))
      expect(() => reader.readRawRows(ref, 0, 2, new Uint8Array(100))).toThrow(expect.objectContaining({ name: 'ShapeError' }))
      const truncated = { ...ref, shape: [8, 64] }
      expect(() => reader.readRawRows(truncated, 0, 8, new Uint8Array(8 * 68))).toThrow(expect.objectContaining({ name: 'ModelFormatError' }))
      expect(() => packTensor(createEngineMemory(), 'q8_0', truncated, reader)).toThrow(expect.objectContaining({ name: 'ModelFormatError' }))
    })
  })
})
