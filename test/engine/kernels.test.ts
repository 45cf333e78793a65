// The WASM kernels against the TS reference backend on seeded random matrices, for every dtype,
// odd shapes and token counts, on 1 and 2 threads; plus weight packing and half conversion.
// Repro: TEST_SEED=<seed printed in the describe name> npx vitest run test/engine/kernels.test.ts
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { ComputeBackend, Matrix, WeightDType } from '../../engine/index.ts'
import { bf16ToF32, dequantizeRow, f16ToF32, f32ToF16, packMatrix } from '../../engine/quantize.ts'
import { createReferenceBackend } from '../../engine/reference-backend.ts'
import { createWasmBackend } from '../../engine/wasm-backend.ts'
import { seededRandom, testSeed } from '../seed.ts'

const SEED = testSeed()
const EPS = 2 ** -24 // f32 unit roundoff
const fround = Math.fround

function gaussian (rand: () => number): () => number {
  return () => Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand())
}

function pack (be: ComputeBackend, dtype: WeightDType, rows: number, cols: number, data: Float32Array): Matrix {
  return packMatrix(be.mem, dtype, rows, cols, (r0, n, out) => out.set(data.subarray(r0 * cols, (r0 + n) * cols)))
}

function place (be: ComputeBackend, values: Float32Array): number {
  const ptr = be.mem.alloc(values.length * 4)
  be.mem.f32(ptr, values.length).set(values)
  return ptr
}

function run (be: ComputeBackend, w: Matrix, x: Float32Array, T: number): Float32Array {
  const xPtr = place(be, x)
  const out = be.mem.alloc(T * w.rows * 4)
  be.matmul(out, w, xPtr, T)
  return be.mem.f32(out, T * w.rows).slice()
}

/** wasm f32x4.nearest: round half to even. */
function roundEven (v: number): number {
  const r = Math.round(v)
  return Math.abs(v % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r
}

/**
 * The quantized kernels' arithmetic, step for step in f32 (kernels.c): activations quantized per
 * 32-block (d = amax / 127, nearest-even), integer block dots, acc += f32(dot) * (w_scale * d)
 * in block order. The kernels must reproduce this bit for bit.
 */
function emulateQuantized (wq: Int32Array, scales: Float32Array, x: Float32Array, rows: number, cols: number, T: number): Float32Array {
  const nb = cols / 32
  const out = new Float32Array(T * rows)
  for (let t = 0; t < T; t++) {
    const q = new Int32Array(cols)
    const d = new Float32Array(nb)
    for (let b = 0; b < nb; b++) {
      let amax = 0
      for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[t * cols + b * 32 + j]))
      d[b] = fround(amax / 127)
      const id = d[b] !== 0 ? fround(1 / d[b]) : 0
      for (let j = 0; j < 32; j++) q[b * 32 + j] = roundEven(fround(x[t * cols + b * 32 + j] * id))
    }
    for (let r = 0; r < rows; r++) {
      let acc = 0
      for (let b = 0; b < nb; b++) {
        let dot = 0
        for (let j = 0; j < 32; j++) dot += wq[r * cols + b * 32 + j] * q[b * 32 + j]
        acc = fround(acc + fround(fround(dot) * fround(scales[r * nb + b] * d[b])))
      }
      out[t * rows + r] = acc
    }
  }
  return out
}

describe(`WASM kernels vs reference (TEST_SEED=${SEED})`, () => {
  const backends: ComputeBackend[] = []
  beforeAll(async () => {
    // minParallelWork 0: even the smallest matmul is split between the threads.
    for (const threads of [1, 2]) backends.push(await createWasmBackend({ threads, minParallelWork: 0 }))
  })
  afterAll(async () => { for (const be of backends) await be.close() })

  const shapes: Record<WeightDType, Array<[number, number]>> = {
    f32: [[1, 1], [5, 7], [13, 37], [3, 9], [64, 100], [8, 896]],
    f16: [[1, 1], [5, 7], [13, 37], [3, 9], [64, 100], [8, 896]],
    q8_0: [[4, 32], [8, 64], [12, 96], [20, 320], [64, 896]],
    q4_0: [[4, 32], [8, 64], [12, 96], [20, 320], [64, 896]]
  }
  const cases = (Object.keys(shapes) as WeightDType[]).flatMap((dtype) => shapes[dtype].map(([rows, cols]) => ({ dtype, rows, cols })))

  it.each(cases)('$dtype [$rows, $cols] for T = 1, 3, 17, 128 on 1 and 2 threads', ({ dtype, rows, cols }) => {
    const rand = gaussian(seededRandom(SEED ^ (rows * 7919 + cols)))
    const data = Float32Array.from({ length: rows * cols }, rand)
    for (const T of [1, 3, 17, 128]) {
      const x = Float32Array.from({ length: T * cols }, rand)
      const outs = backends.map((be) => run(be, pack(be, dtype, rows, cols, data), x, T))
      const be = backends[0]
      const w = pack(be, dtype, rows, cols, data)
      const ref = run(createReferenceBackend({ mem: be.mem }), w, x, T)
      const wd = new Float32Array(rows * cols) // the weights as the kernels see them
      for (let r = 0; r < rows; r++) dequantizeRow(be.mem, w, r, wd.subarray(r * cols, (r + 1) * cols))
      // Every thread count gives bitwise the same result (rows are split, never a row's sum).
      expect(outs[1]).toEqual(outs[0])
      const got = outs[0]
      const quantized = dtype === 'q8_0' || dtype === 'q4_0'
      const exact = quantized ? emulateQuantized(...readQuants(be, w), x, rows, cols, T) : undefined
      for (let t = 0; t < T; t++) {
        for (let r = 0; r < rows; r++) {
          let abs = 0
          let w2 = 0
          let x2 = 0
          for (let c = 0; c < cols; c++) {
            abs += Math.abs(wd[r * cols + c] * x[t * cols + c])
            w2 += wd[r * cols + c] ** 2
            x2 += x[t * cols + c] ** 2
          }
          const i = t * rows + r
          const err = Math.abs(got[i] - ref[i])
          let bound: number
          if (!quantized) {
            // Each f32x4 lane sums ceil(cols / 4) rounded products, then 2 reduction adds and
            // the scalar tail: |error| <= (cols / 4 + 8) * eps * sum |w x|, plus the reference's
            // own final rounding to f32.
            bound = (cols / 4 + 8) * EPS * abs + EPS * Math.abs(ref[i]) + 1e-30
          } else {
            // Activations are quantized per 32-block with step d = amax / 127, so each x moves
            // by <= amax / 254 and ||x - x_q|| <= sqrt(32) / 254 * ||x|| (amax <= block norm).
            // Cauchy-Schwarz: |error| <= sqrt(32) / 254 * ||w|| * ||x||, plus f32 rounding.
            bound = Math.sqrt(32) / 254 * Math.sqrt(w2 * x2) * (1 + 1e-5) + 1e-6 * abs
            // ...and the exact arithmetic of the quantized path is reproduced bit for bit.
            if (got[i] !== exact?.[i]) expect.fail(`${dtype} t=${t} r=${r}: ${got[i]} != emulated ${exact?.[i]}`)
          }
          if (!(err <= bound)) expect.fail(`${dtype} [${rows}, ${cols}] T=${T} t=${t} r=${r}: |${got[i]} - ${ref[i]}| > ${bound}`)
        }
      }
      // A token's result does not depend on T or its place in a tile: prefill == decode.
      if (T > 1) {
        const last = run(be, w, x.subarray((T - 1) * cols), 1)
        expect(last).toEqual(got.subarray((T - 1) * rows))
      }
    }
  })

  it('f16 kernel converts all 65536 halves exactly (Inf and NaN included)', () => {
    const be = backends[1]
    const rows = 8192
    const cols = 8
    const h = new Uint16Array(rows * cols).map((_, i) => i)
    const w: Matrix = { dtype: 'f16', rows, cols, ptr: be.mem.alloc(h.byteLength), scalesPtr: 0 }
    new Uint16Array(be.mem.memory.buffer, w.ptr, h.length).set(h)
    const x = new Float32Array(cols * cols).map((_, i) => (i % (cols + 1) === 0 ? 1 : 0)) // identity
    const got = run(be, w, x, cols)
    const ref = run(createReferenceBackend({ mem: be.mem }), w, x, cols)
    for (let i = 0; i < got.length; i++) {
      if (!Object.is(got[i] + 0, ref[i] + 0)) expect.fail(`out[${i}] = ${got[i]}, reference ${ref[i]}`)
    }
    // The same halves as a [65536, 1] matrix go through the scalar tail (sum = +0 + w * 1).
    const column = run(be, { ...w, rows: 65536, cols: 1 }, new Float32Array([1]), 1)
    for (let i = 0; i < 65536; i++) {
      if (!Object.is(column[i], f16ToF32(i) + 0)) expect.fail(`half 0x${i.toString(16)}: ${column[i]}`)
    }
  })

  it('keeps working after the shared memory grows (workers see the new pages)', async () => {
    const be = backends[1]
    be.mem.alloc(64 << 20)
    const rand = gaussian(seededRandom(SEED))
    const data = Float32Array.from({ length: 64 * 256 }, rand)
    const x = Float32Array.from({ length: 2 * 256 }, rand)
    const w = pack(be, 'q8_0', 64, 256, data)
    expect(w.ptr).toBeGreaterThan(64 << 20)
    expect(run(be, w, x, 2)).toEqual(run(backends[0], pack(backends[0], 'q8_0', 64, 256, data), x, 2))
  })

  it('gives the same bits on 2 threads as on 1 over many back-to-back small jobs', () => {
    const rand = gaussian(seededRandom(SEED + 2))
    const dtypes: WeightDType[] = ['f32', 'q8_0', 'f16', 'q4_0']
    const data = dtypes.map((_, i) => Float32Array.from({ length: (8 + 8 * i) * 64 }, rand))
    const mats = backends.map((be) => dtypes.map((dtype, i) => pack(be, dtype, 8 + 8 * i, 64, data[i])))
    const x = Float32Array.from({ length: 3 * 64 }, rand)
    const xPtrs = backends.map((be) => place(be, x))
    const outs = backends.map((be) => be.mem.alloc(3 * 32 * 4))
    for (let i = 0; i < 2000; i++) {
      const k = i % dtypes.length
      const T = 1 + (i % 3)
      const got = backends.map((be, b) => { be.matmul(outs[b], mats[b][k], xPtrs[b], T); return be.mem.f32(outs[b], T * mats[b][k].rows) })
      if (!got[0].every((v, j) => Object.is(v, got[1][j]))) expect.fail(`job ${i} (${dtypes[k]}, T=${T}) differs between 1 and 2 threads`)
    }
  })

  it('reports a kernel trap as a WebAssembly.RuntimeError, and keeps working', () => {
    for (const be of backends) {
      const bad: Matrix = { dtype: 'f32', rows: 64, cols: 64, ptr: 2 ** 32 - 1024, scalesPtr: 0 }
      const x = place(be, new Float32Array(64))
      expect(() => be.matmul(be.mem.alloc(64 * 4), bad, x, 1)).toThrow(WebAssembly.RuntimeError)
      const w = pack(be, 'f32', 64, 64, new Float32Array(64 * 64).fill(1))
      expect(run(be, w, new Float32Array(64).fill(2), 1)).toEqual(new Float32Array(64).fill(128))
    }
  })

  it('rejects shapes the kernels cannot run', () => {
    const be = backends[0]
    const w: Matrix = { dtype: 'q8_0', rows: 6, cols: 32, ptr: 64, scalesPtr: 64 }
    expect(() => be.matmul(0, w, 0, 1)).toThrow(expect.objectContaining({ name: 'ShapeError' }))
    expect(() => be.matmul(0, { ...w, rows: 8 }, 0, 0)).toThrow(expect.objectContaining({ name: 'ShapeError' }))
  })
})

/**
 * Integer weights and per (row, block) scales of a q8_0 / q4_0 matrix, read straight from the
 * layout documented on `Matrix` (engine/index.ts): group g, block b at (g * nb + b) * 128 (q8_0)
 * or * 64 (q4_0), row lane r at + r * 32 (or + r * 16), scales at ((g * nb + b) * 4 + r) * 4.
 */
function readQuants (be: ComputeBackend, w: Matrix): [Int32Array, Float32Array] {
  const { rows, cols } = w
  const nb = cols / 32
  const bytes = new Uint8Array(be.mem.memory.buffer)
  const sc = new Float32Array(be.mem.memory.buffer, w.scalesPtr, rows * nb)
  const q = new Int32Array(rows * cols)
  const scales = new Float32Array(rows * nb)
  for (let row = 0; row < rows; row++) {
    const g = row >> 2
    const lane = row & 3
    for (let b = 0; b < nb; b++) {
      scales[row * nb + b] = sc[(g * nb + b) * 4 + lane]
      for (let j = 0; j < 32; j++) {
        q[row * cols + b * 32 + j] = w.dtype === 'q8_0'
          ? (bytes[w.ptr + (g * nb + b) * 128 + lane * 32 + j] << 24) >> 24
          : ((bytes[w.ptr + (g * nb + b) * 64 + lane * 16 + (j & 15)] >> (j < 16 ? 0 : 4)) & 15) - 8
      }
    }
  }
  return [q, scales]
}

describe('half and bfloat16 conversion', () => {
  const box = new Float32Array(1)
  const bits = new Uint32Array(box.buffer)
  const nextF32 = (v: number, dir: 1 | -1) => { box[0] = v; bits[0] += dir; return box[0] } // v > 0

  it('round-trips every half exactly, and NaN stays NaN', () => {
    for (let h = 0; h < 65536; h++) {
      const v = f16ToF32(h)
      if ((h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0) {
        expect(Number.isNaN(v)).toBe(true)
        const back = f32ToF16(v)
        expect([back & 0x7c00, back & 0x3ff ? 1 : 0]).toEqual([0x7c00, 1])
      } else if (f32ToF16(v) !== h) {
        expect.fail(`half 0x${h.toString(16)} -> ${v} -> 0x${f32ToF16(v).toString(16)}`)
      }
    }
  })

  it('rounds to nearest even at every midpoint between adjacent halves, and exactly around it', () => {
    for (let h = 0; h < 0x7bff; h++) {
      const mid = (f16ToF32(h) + f16ToF32(h + 1)) / 2 // exact in f32: 12 significant bits at most
      const even = (h & 1) === 0 ? h : h + 1
      const got = [f32ToF16(mid), f32ToF16(nextF32(mid, -1)), f32ToF16(nextF32(mid, 1)), f32ToF16(-mid)]
      if (got.join() !== [even, h, h + 1, even | 0x8000].join()) expect.fail(`around 0x${h.toString(16)}: ${got.join()}`)
    }
  })

  it('overflows to Inf and underflows to (signed) zero where IEEE says', () => {
    expect(f32ToF16(65504)).toBe(0x7bff)
    expect(f32ToF16(nextF32(65520, -1))).toBe(0x7bff)
    expect(f32ToF16(65520)).toBe(0x7c00) // the tie goes to the even neighbour: Inf
    expect(f32ToF16(1e10)).toBe(0x7c00)
    expect(f32ToF16(-Infinity)).toBe(0xfc00)
    expect(f32ToF16(2 ** -25)).toBe(0) // half the smallest subnormal: tie to even zero
    expect(f32ToF16(nextF32(2 ** -25, 1))).toBe(1)
    expect(f32ToF16(-(2 ** -26))).toBe(0x8000)
    expect(f32ToF16(-0)).toBe(0x8000)
  })

  it('reads bfloat16 as the top half of an f32', () => {
    expect([0x3f80, 0xc000, 0x0001, 0x7f80, 0xff80].map(bf16ToF32)).toEqual([1, -2, 2 ** -133, Infinity, -Infinity])
    expect(bf16ToF32(0x7fc0)).toBeNaN()
  })
})

describe(`packMatrix and dequantizeRow (TEST_SEED=${SEED})`, () => {
  const be = createReferenceBackend()
  const rand = gaussian(seededRandom(SEED))
  const randomMatrix = (rows: number, cols: number) => Float32Array.from({ length: rows * cols }, rand)
  const dequantized = (w: Matrix) => {
    const out = new Float32Array(w.rows * w.cols)
    for (let r = 0; r < w.rows; r++) dequantizeRow(be.mem, w, r, out.subarray(r * w.cols, (r + 1) * w.cols))
    return out
  }

  it('keeps f32 exactly and f16 as the nearest half', () => {
    const data = randomMatrix(7, 13)
    expect(dequantized(pack(be, 'f32', 7, 13, data))).toEqual(data)
    expect(dequantized(pack(be, 'f16', 7, 13, data))).toEqual(data.map((v) => f16ToF32(f32ToF16(v))))
  })

  // ggml's quantize_row_q8_0_ref / quantize_row_q4_0_ref for one block, transcribed from ggml.
  function ggmlBlock (dtype: 'q8_0' | 'q4_0', x: Float32Array): { d: number, q: number[] } {
    let amax = 0
    let max = 0
    for (const v of x) if (amax < Math.abs(v)) { amax = Math.abs(v); max = v }
    const d = dtype === 'q8_0' ? fround(amax / 127) : fround(max / -8)
    const id = d !== 0 ? fround(1 / d) : 0
    const q = Array.from(x, (v) => dtype === 'q8_0'
      ? Math.sign(v * id) * Math.floor(Math.abs(fround(v * id)) + 0.5) + 0 // roundf: ties away from 0
      : Math.min(15, Math.trunc(fround(fround(v * id) + 8.5))) - 8)
    return { d: f16ToF32(f32ToF16(d)), q }
  }

  it.each(['q8_0', 'q4_0'] as const)('%s quantizes like ggml and stores the documented layout', (dtype) => {
    const rows = 12
    const cols = 96
    const data = randomMatrix(rows, cols)
    // Block 0 of row 3 (q8_0) and row 7 (q4_0) has scale 1 and values exactly halfway between
    // quants (q8_0 rounds them away from zero, q4_0 up, clamping at 7); row 2, block 1 is zero.
    const ties = [2.5, -3.5, 0.5, -0.5, 6.5, -6.5, 7.5, -7.5]
    data.fill(0, 3 * cols, 3 * cols + 32).set([127, ...ties], 3 * cols)
    data.fill(0, 7 * cols, 7 * cols + 32).set([-8, ...ties], 7 * cols)
    data.fill(0, 2 * cols + 32, 2 * cols + 64)
    const w = pack(be, dtype, rows, cols, data)
    const [q, scales] = readQuants(be, w)
    const deq = dequantized(w)
    for (let r = 0; r < rows; r++) {
      for (let b = 0; b < cols / 32; b++) {
        const at = r * cols + b * 32
        const want = ggmlBlock(dtype, data.subarray(at, at + 32))
        expect(scales[r * 3 + b]).toBe(want.d)
        expect(Array.from(q.subarray(at, at + 32))).toEqual(want.q)
        expect(Array.from(deq.subarray(at, at + 32))).toEqual(want.q.map((v) => fround(v * want.d)))
      }
    }
  })

  it.each(['q8_0', 'q4_0'] as const)('%s gives a GGUF block back from its dequantized values', (dtype) => {
    const rows = 8
    const cols = 64
    const rnd = seededRandom(SEED + 1)
    const q = new Int32Array(rows * cols).map(() => dtype === 'q8_0' ? Math.floor(rnd() * 255) - 127 : Math.floor(rnd() * 16) - 8)
    // q8_0 scales are amax / 127 >= 0; q4_0 scales carry the sign of the block's extreme value.
    const d = new Float32Array(rows * 2).map(() => f16ToF32(f32ToF16((dtype === 'q8_0' ? rnd() : rnd() - 0.5) * 0.02)))
    // ggml's own output always holds the scale-defining quant: +-127 (q8_0) or -8 (q4_0).
    for (let i = 0; i < d.length; i++) q[i * 32 + (i % 32)] = dtype === 'q8_0' ? (i % 2 === 0 ? 127 : -127) : -8
    const values = Float32Array.from(q, (v, i) => v * d[Math.floor(i / 32)])
    const [q2, d2] = readQuants(be, pack(be, dtype, rows, cols, values))
    expect(q2).toEqual(q)
    expect(d2).toEqual(d)
  })

  it('asks for rows in order, in whole 4-row groups, a bounded chunk at a time', () => {
    for (const [dtype, rows, cols] of [['f32', 1002, 4096], ['q4_0', 1000, 2048], ['q8_0', 8, 32]] as const) {
      const calls: Array<[number, number, number]> = []
      packMatrix(be.mem, dtype, rows, cols, (r0, n, out) => { calls.push([r0, n, out.length]); out.fill(1) })
      let next = 0
      for (const [r0, n, length] of calls) {
        expect([r0, r0 % 4, length, n <= 256]).toEqual([next, 0, n * cols, true])
        if (r0 + n < rows) expect(n % 4).toBe(0)
        next += n
      }
      expect(next).toBe(rows)
    }
  })

  it('rejects shapes that cannot be quantized, and rows out of range', () => {
    expect(() => pack(be, 'q8_0', 6, 32, new Float32Array(192))).toThrow(expect.objectContaining({ name: 'ShapeError' }))
    expect(() => pack(be, 'q4_0', 4, 48, new Float32Array(192))).toThrow(expect.objectContaining({ name: 'ShapeError' }))
    const w = pack(be, 'f32', 2, 2, new Float32Array(4))
    expect(() => dequantizeRow(be.mem, w, 2, new Float32Array(2))).toThrow(expect.objectContaining({ name: 'ShapeError' }))
  })
})
