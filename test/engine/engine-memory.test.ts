// The engine-memory allocator: aligned blocks that never overlap, freed space reused (first fit),
// neighbours merged, the top lowered, and a double free refused.
import { describe, expect, it } from 'vitest'
import { createEngineMemory } from '../../engine/engine-memory.ts'
import { seededRandom, testSeed } from '../seed.ts'

const seed = testSeed()

describe(`engine memory (TEST_SEED=${seed})`, () => {
  it('reuses freed blocks and merges neighbours', () => {
    const mem = createEngineMemory({ shared: false })
    const a = mem.alloc(1000)
    const b = mem.alloc(1000)
    const c = mem.alloc(1000)
    const top = mem.topBytes
    mem.free(a)
    mem.free(b)
    expect(mem.alloc(1900)).toBe(a) // a and b merged into one block
    mem.free(c)
    expect(mem.topBytes).toBeLessThan(top)
    expect(() => mem.free(c)).toThrow(expect.objectContaining({ name: 'ShapeError' }))
  })

  it('random alloc/free never hands out overlapping or misaligned blocks', () => {
    const rand = seededRandom(seed)
    const mem = createEngineMemory({ shared: false })
    const blocks = new Map<number, number>()
    for (let i = 0; i < 2000; i++) {
      if (blocks.size > 0 && rand() < 0.45) {
        const ptrs = [...blocks.keys()]
        const p = ptrs[Math.floor(rand() * ptrs.length)]
        mem.free(p)
        blocks.delete(p)
      } else {
        const size = 1 + Math.floor(rand() * 5000)
        const p = mem.alloc(size)
        expect(p % 64).toBe(0)
        for (const [q, n] of blocks) expect(p + size <= q || q + n <= p).toBe(true)
        blocks.set(p, size)
      }
    }
    for (const p of blocks.keys()) mem.free(p)
    expect(mem.usedBytes).toBe(0)
  })
})
