// A bump allocator over one WebAssembly.Memory. Weights and per-shard scratch buffers live here
// so that WebAssembly kernels (and the workers that share the memory) can read them in place.
// Nothing is freed individually: a shard owns its memory and drops it whole when closed.
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

export function createEngineMemory (init: EngineMemoryInit = {}): EngineMemory {
  const memory = init.memory ?? new WebAssembly.Memory({ initial: 1, maximum: MAX_PAGES, shared: init.shared ?? true })
  let top = Math.max(init.base ?? 16, 16)

  function alloc (bytes: number, align = 64): number {
    if (!Number.isInteger(bytes) || bytes < 0) throw new ShapeError(`cannot allocate ${bytes} bytes`)
    const ptr = Math.ceil(top / align) * align
    const end = ptr + bytes
    const have = memory.buffer.byteLength
    if (end > have) {
      const pages = Math.ceil((end - have) / PAGE_BYTES)
      if (have / PAGE_BYTES + pages > MAX_PAGES) {
        throw new RangeError(`engine memory would exceed 4 GiB (wasm32 limit): need ${end} bytes`)
      }
      memory.grow(pages)
    }
    top = end
    return ptr
  }

  return {
    memory,
    alloc,
    f32: (ptr, length) => new Float32Array(memory.buffer, ptr, length),
    u8: (ptr, length) => new Uint8Array(memory.buffer, ptr, length),
    get usedBytes () { return top }
  }
}
