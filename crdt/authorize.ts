// Write authorization: decode a Yjs update and accept it only when everything it creates or
// deletes belongs to the writer. The rules and why they suffice are in README.md ("Acceptance
// rules"); in short, by induction every struct with the writer's clientID lives under the
// writer's namespace, so checking clientIDs, origins, parents and delete ranges is enough.
import * as Y from 'yjs'
import { MAX_UPDATE_BYTES } from './constants.ts'
import type { RejectReason } from './index.ts'

/** What an update may touch: the writer's clientID, namespace, and next expected clock. */
export interface UpdateScope {
  clientId: number
  namespace: string
  /**
   * The writer's state-vector entry before this update (all its earlier structs exist).
   * Undefined for a pre-check of an envelope held ahead of a gap: everything but the clock.
   */
  clock: number | undefined
}

export type UpdateCheck = { ok: true, clockAfter: number, deletes: number } | { ok: false, reason: RejectReason, detail: string }

const reject = (reason: RejectReason, detail: string): UpdateCheck => ({ ok: false, reason, detail })

/** Checks an update against the acceptance rules without touching any document. */
export function authorizeUpdate (update: Uint8Array, scope: UpdateScope): UpdateCheck {
  if (update.length > MAX_UPDATE_BYTES) return reject('oversize', `update of ${update.length} bytes exceeds ${MAX_UPDATE_BYTES}`)
  // One client, so at most one struct section: Yjs keeps only the last section per client and
  // would hold the rest as invisible pending structs, which a flattened decode would not show.
  if (update.length > 0 && update[0] > 1) return reject('malformed', `update with ${update[0] & 0x7f}+ struct sections`)
  let decoded: ReturnType<typeof Y.decodeUpdate>
  try {
    decoded = Y.decodeUpdate(update)
  } catch (err) {
    return reject('malformed', `update does not decode: ${(err as Error).message}`)
  }
  // An empty section would name a client we never see in the structs.
  if (update[0] === 1 && decoded.structs.length === 0) return reject('malformed', 'empty struct section')
  const { clientId, namespace } = scope
  let clock = scope.clock ?? decoded.structs[0]?.id.clock ?? 0
  const start = clock
  for (const struct of decoded.structs) {
    const { client, clock: at } = struct.id
    if (client !== clientId) return reject('foreign-client', `struct of clientID ${client}, writer is ${clientId}`)
    // Contiguous: no gap Yjs would hold as pending, no rewrite of a clock already applied.
    if (at !== clock) return reject('clock-gap', `struct at clock ${at}, expected ${clock}`)
    if (struct instanceof Y.Skip) return reject('malformed', 'skip struct in an envelope')
    if (struct.length < 1) return reject('malformed', 'zero-length struct (two structs would share one id)')
    if (struct instanceof Y.Item) {
      if (struct.content instanceof Y.ContentDoc) return reject('forbidden-content', 'subdocuments are not allowed')
      const own = (id: Y.ID | null): boolean => id === null || (id.client === clientId && id.clock < at)
      if (!own(struct.origin) || !own(struct.rightOrigin)) return reject('foreign-origin', 'item placed next to a struct the writer does not own')
      if (struct.origin === null && struct.rightOrigin === null) {
        // Parent written out: a top-level name (decodeUpdate leaves it a string) or an item id.
        const parent = struct.parent as unknown
        if (typeof parent === 'string') {
          if (parent !== namespace) return reject('foreign-namespace', `write to top-level ${JSON.stringify(parent)}`)
        } else if (parent instanceof Y.ID) {
          if (!own(parent)) return reject('foreign-namespace', 'write into a type the writer does not own')
        } else {
          return reject('malformed', 'item without parent')
        }
      }
    }
    clock += struct.length
  }
  let deletes = 0
  for (const [client, ranges] of decoded.ds.clients) {
    if (client !== clientId) return reject('foreign-delete', `deletes items of clientID ${client}`)
    for (const range of ranges) {
      if (scope.clock !== undefined && range.clock + range.len > clock) return reject('foreign-delete', 'deletes items that do not exist yet')
      deletes += range.len
    }
  }
  if (clock === start && deletes === 0) return reject('malformed', 'empty update')
  return { ok: true, clockAfter: clock, deletes }
}
