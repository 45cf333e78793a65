// The wasm attention kernel (SIMD, split by heads across threads) against the reference loops,
// for decode (T = 1) and prefill chunks, with and without grouped-query heads.
import { afterAll, describe, expect, it } from 'vitest'
import type { AttentionShape, ComputeBackend } from '../../engine/index.ts'
import { createReferenceBackend } from '../../engine/reference-backend.ts'
import { createWasmBackend } from '../../engine/wasm-backend.ts'
import { seededRandom, testSeed } from '../seed.ts'

const seed = testSeed()
const backends: ComputeBackend[] = []
afterAll(async () => { for (const b of backends) await b.close() })

describe(`wasm attention (TEST_SEED=${seed})`, () => {
  const shapes: AttentionShape[] = [{ nHeads: 8, nKvHeads: 4, headSize: 8 }, { nHeads: 14, nKvHeads: 2, headSize: 64 }, { nHeads: 4, nKvHeads: 4, headSize: 12 }]
  it.each([1, 2])('matches the reference with %i thread(s)', async (threads) => {
    const wasm = await createWasmBackend({ threads, minParallelWork: 0 })
    backends.push(wasm)
    const ref = createReferenceBackend({ mem: wasm.mem })
    const rand = seededRandom(seed + threads)
    for (const shape of shapes) {
      for (const [T, pos0] of [[1, 0], [1, 37], [17, 0], [9, 100]]) {
        const dim = shape.nHeads * shape.headSize
        const kvDim = shape.nKvHeads * shape.headSize
        const fill = (ptr: number, n: number) => { const v = wasm.mem.f32(ptr, n); for (let i = 0; i < n; i++) v[i] = rand() * 4 - 2 }
        const q = wasm.mem.alloc(T * dim * 4)
        const k = wasm.mem.alloc((pos0 + T) * kvDim * 4)
        const v = wasm.mem.alloc((pos0 + T) * kvDim * 4)
        const outA = wasm.mem.alloc(T * dim * 4)
        const outB = wasm.mem.alloc(T * dim * 4)
        fill(q, T * dim); fill(k, (pos0 + T) * kvDim); fill(v, (pos0 + T) * kvDim)
        wasm.attention(outA, q, k, v, T, pos0, shape)
        ref.attention(outB, q, k, v, T, pos0, shape)
        const a = wasm.mem.f32(outA, T * dim)
        const b = wasm.mem.f32(outB, T * dim)
        // Outputs are convex combinations of values in [-2, 2]; f32 sums in another order.
        for (let i = 0; i < a.length; i++) expect(Math.abs(a[i] - b[i])).toBeLessThan(2e-5)
        for (const p of [q, k, v, outA, outB]) wasm.mem.free(p)
      }
    }
  })

  it('refuses head sizes the kernel cannot tile', async () => {
    const wasm = await createWasmBackend({ threads: 1 })
    backends.push(wasm)
    expect(() => wasm.attention(0, 0, 0, 0, 1, 0, { nHeads: 2, nKvHeads: 2, headSize: 6 })).toThrow(expect.objectContaining({ name: 'ShapeError' }))
  })
})

describe(`wasm swiglu (TEST_SEED=${seed})`, () => {
  it('matches silu(g) * u within a few ulp, including the tails of e^x', async () => {
    const wasm = await createWasmBackend({ threads: 1 })
    backends.push(wasm)
    const rand = seededRandom(seed)
    const n = 1027
    const g = wasm.mem.alloc(n * 4)
    const u = wasm.mem.alloc(n * 4)
    const gv = wasm.mem.f32(g, n)
    const uv = wasm.mem.f32(u, n)
    for (let i = 0; i < n; i++) {
      gv[i] = i < 8 ? [-200, -90, -88, -1e-30, 0, 1e-30, 90, 200][i] : (rand() - 0.5) * 40
      uv[i] = rand() * 4 - 2
    }
    const expected = Array.from(gv, (x, i) => (x / (1 + Math.exp(-x))) * uv[i])
    wasm.swiglu(g, u, n)
    for (let i = 0; i < n; i++) expect(Math.abs(gv[i] - expected[i])).toBeLessThanOrEqual(Math.abs(expected[i]) * 4e-7 + 1e-30)
  })
})
