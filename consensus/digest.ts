// Canonical hashing and the seeded PRNG every node derives from a round id, so schedules and
// spot-check samples are the same everywhere and unknown before the round id exists.
import { createHash } from 'node:crypto'
import { createRng } from '../sharding/sim/random.ts'

const encoder = new TextEncoder()

/** SHA-256 over length-prefixed UTF-8 fields (no field can run into the next). */
export function digestFields (fields: ReadonlyArray<string | Uint8Array>): Uint8Array {
  const hash = createHash('sha256')
  const len = new Uint8Array(4)
  const view = new DataView(len.buffer)
  for (const field of fields) {
    const bytes = typeof field === 'string' ? encoder.encode(field) : field
    view.setUint32(0, bytes.length)
    hash.update(len)
    hash.update(bytes)
  }
  return new Uint8Array(hash.digest())
}

export function toHex (bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('hex')
}

/** mulberry32 seeded by the first 4 bytes of SHA-256(fields). */
export function seededRng (fields: ReadonlyArray<string | Uint8Array>): () => number {
  const d = digestFields(fields)
  return createRng(new DataView(d.buffer, d.byteOffset, 4).getUint32(0))
}

/** Code-unit order (not locale order): the same on every node. */
export function compareText (a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}
