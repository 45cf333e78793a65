// One session's KV cache on a shard: a single block of engine memory for all local layers (the
// attention kernel reads it there). Layer i's keys sit at `keysPtr(i)`, its values right after,
// each (capacity, kvDim) f32. The block starts small and doubles as positions are added, up to the
// session's maximum length; `free` returns it.
import type { EngineMemory } from './index.ts'

const INITIAL_KV_POSITIONS = 256

export interface KvCache {
  /** Positions the block holds room for now. */
  readonly capacity: number
  /** Bytes held now (keys and values of every local layer). */
  readonly bytes: number
  keysPtr(layer: number): number
  valuesPtr(layer: number): number
  /** Makes room for `positions` positions, keeping the first `keep` (≤ maxLength, checked by the caller). */
  ensure(positions: number, keep: number): void
  free(): void
}

export function createKvCache (mem: EngineMemory, nLocal: number, kvDim: number, maxLength: number): KvCache {
  let capacity = Math.min(maxLength, INITIAL_KV_POSITIONS)
  let layerBytes = capacity * kvDim * 4
  let ptr = mem.alloc(2 * nLocal * layerBytes)
  return {
    get capacity () { return capacity },
    get bytes () { return 2 * nLocal * layerBytes },
    keysPtr: (i) => ptr + 2 * i * layerBytes,
    valuesPtr: (i) => ptr + (2 * i + 1) * layerBytes,
    ensure (positions, keep) {
      if (positions <= capacity) return
      let next = capacity
      while (next < positions) next *= 2
      next = Math.min(next, maxLength)
      const nextLayerBytes = next * kvDim * 4
      const nextPtr = mem.alloc(2 * nLocal * nextLayerBytes)
      for (let j = 0; j < 2 * nLocal; j++) {
        mem.f32(nextPtr + j * nextLayerBytes, keep * kvDim).set(mem.f32(ptr + j * layerBytes, keep * kvDim))
      }
      mem.free(ptr)
      ptr = nextPtr
      capacity = next
      layerBytes = nextLayerBytes
    },
    free () { mem.free(ptr) }
  }
}
