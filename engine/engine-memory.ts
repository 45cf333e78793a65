// The allocator over one WebAssembly.Memory. Weights and per-shard scratch live here so that
// WebAssembly kernels (and the workers that share the memory) can read them in place, and so do
// session KV caches, which come and go: freed blocks go to a first-fit free list (adjacent free
// blocks merge; a free block at the top lowers it). Weights are allocated once and never freed.
import type { EngineMemory } from './index.ts'
import { ShapeError } from './errors.ts'

const PAGE_BYTES = 65536
const MAX_PAGES = 65536 // wasm32: 4 GiB

export interface EngineMemoryInit {
  /** First byte the allocator may hand out (above the wasm module's data and stacks). */
  base?: number
  /** Shared memory is needed when worker threads run kernels over it. */
  shared?: boolean
  memory?: WebAssembly.Memory
}

interface Block {
  start: number
  end: number
}

export function createEngineMemory (init: EngineMemoryInit = {}): EngineMemory {
  const memory = init.memory ?? new WebAssembly.Memory({ initial: 1, maximum: MAX_PAGES, shared: init.shared ?? true })
  let top = Math.max(init.base ?? 16, 16)
  const live = new Map<number, Block>() // ptr → the whole block it was carved from (alignment padding included)
  const free: Block[] = [] // sorted by start, never adjacent to each other or to `top`
  let inUse = 0

  function grow (end: number): void {
    const have = memory.buffer.byteLength
    if (end <= have) return
    const pages = Math.ceil((end - have) / PAGE_BYTES)
    if (have / PAGE_BYTES + pages > MAX_PAGES) {
      throw new RangeError(`engine memory would exceed 4 GiB (wasm32 limit): need ${end} bytes`)
    }
    memory.grow(pages)
  }

  function alloc (bytes: number, align = 64): number {
    if (!Number.isInteger(bytes) || bytes < 0) throw new ShapeError(`cannot allocate ${bytes} bytes`)
    let block: Block | undefined
    let ptr = 0
    for (let i = 0; i < free.length; i++) {
      const f = free[i]
      const p = Math.ceil(f.start / align) * align
      if (p + bytes <= f.end) {
        ptr = p
        block = { start: f.start, end: p + bytes }
        if (block.end === f.end) free.splice(i, 1)
        else f.start = block.end
        break
      }
    }
    if (block === undefined) {
      ptr = Math.ceil(top / align) * align
      grow(ptr + bytes)
      block = { start: top, end: ptr + bytes }
      top = block.end
    }
    live.set(ptr, block)
    inUse += block.end - block.start
    return ptr
  }

  function release (ptr: number): void {
    const block = live.get(ptr)
    if (block === undefined) throw new ShapeError(`free(${ptr}): not an allocated block`)
    live.delete(ptr)
    inUse -= block.end - block.start
    let i = 0
    while (i < free.length && free[i].start < block.start) i++
    const before = free[i - 1]
    const after = free[i]
    let merged = block
    if (before !== undefined && before.end === block.start) {
      before.end = block.end
      merged = before
    } else {
      free.splice(i, 0, block)
    }
    if (after !== undefined && after.start === merged.end) {
      merged.end = after.end
      free.splice(free.indexOf(after), 1)
    }
    if (merged.end === top) {
      top = merged.start
      free.splice(free.indexOf(merged), 1)
    }
  }

  return {
    memory,
    alloc,
    free: release,
    f32: (ptr, length) => new Float32Array(memory.buffer, ptr, length),
    u8: (ptr, length) => new Uint8Array(memory.buffer, ptr, length),
    get usedBytes () { return inUse },
    get topBytes () { return top }
  }
}
