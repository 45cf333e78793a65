// Typed reads over the swarm document and the presence table, and validation of local records.
// Every view walks the writers' namespaces (or beacons) in sorted order and skips excluded
// writers, so two replicas with the same document and the same exclusions compute identical
// results. Presence is not in the document: it is the table of signed beacons (beacon.ts).
import * as Y from 'yjs'
import { MAX_PRESENCE_WRITERS, MAX_RECORD_BYTES, NAMESPACE_PREFIX } from './constants.ts'
import { InvalidRecordError } from './errors.ts'
import { PresenceTable } from './presence-table.ts'
import type { ChangeEvent, JsonValue, ModelManifest, NodeRecord, PresenceRecord, ReputationClaim, RoundRecord } from './index.ts'

export class SwarmViews {
  readonly doc: Y.Doc
  readonly peerId: string
  protected readonly now: () => number
  protected readonly presenceTtlMs: number
  /** Latest presence beacon per writer (kept out of the document). */
  protected readonly beacons: PresenceTable
  private readonly excluded = new Set<string>()
  private readonly changeListeners = new Set<(event: ChangeEvent) => void>()
  /** Top-level type → its name (rebuilt when a new top-level type shows up). */
  private readonly typeNames = new WeakMap<Y.AbstractType<unknown>, string>()

  constructor (doc: Y.Doc, peerId: string, now: () => number, presenceTtlMs: number) {
    this.doc = doc
    this.peerId = peerId
    this.now = now
    this.presenceTtlMs = presenceTtlMs
    this.beacons = new PresenceTable(presenceTtlMs, MAX_PRESENCE_WRITERS)
  }

  /** Node records by peer id. */
  nodes (): Map<string, NodeRecord> {
    return this.collect((map) => map.get('node') as NodeRecord | undefined)
  }

  /** Latest beacon timestamp by peer id, sorted (expired ones until the table is pruned). */
  presence (): Map<string, PresenceRecord> {
    const out = new Map<string, PresenceRecord>()
    for (const [peerId, entry] of this.beacons.sorted()) if (!this.excluded.has(peerId)) out.set(peerId, { at: entry.beacon.at })
    return out
  }

  /**
   * Peers whose latest beacon is younger than the TTL by our clock, sorted. A beacon counts from
   * the earlier of its own timestamp and the moment we took it, so a writer's clock running
   * ahead cannot keep it online; a clock running behind only makes it expire early.
   */
  online (now = this.now()): string[] {
    const out: string[] = []
    for (const [peerId, entry] of this.beacons.sorted()) if (!this.excluded.has(peerId) && this.beacons.live(entry, now)) out.push(peerId)
    return out
  }

  /** Every reputation claim, sorted by issuer then subject. Aggregates are derived from these. */
  reputationClaims (): Array<ReputationClaim & { issuer: string }> {
    return this.prefixed<ReputationClaim>('rep/').map(([issuer, claim]) => ({ ...claim, issuer }))
  }

  /** Round records of every participant, sorted by writer then id. */
  rounds (): Array<RoundRecord & { writer: string }> {
    return this.prefixed<RoundRecord>('round/').map(([writer, record]) => ({ ...record, writer }))
  }

  /** Model manifests by publisher, sorted by publisher then id. */
  manifests (): Array<ModelManifest & { publisher: string }> {
    return this.prefixed<ModelManifest>('manifest/').map(([publisher, manifest]) => ({ ...manifest, publisher }))
  }

  /** Everything the views show, as one JSON value (for comparing replicas). */
  snapshot (): JsonValue {
    const out: { [writer: string]: JsonValue } = {}
    for (const [writer, map] of this.namespaces()) {
      const json = map.toJSON() as { [key: string]: JsonValue }
      // An empty namespace equals an absent one: `doc.getMap(ownNamespace)` alone creates one
      // on this replica only, and it must not make replicas differ.
      if (Object.keys(json).length > 0) out[writer] = sortedJson(json)
    }
    return out
  }

  onChange (listener: (event: ChangeEvent) => void): () => void {
    this.changeListeners.add(listener)
    return () => this.changeListeners.delete(listener)
  }

  protected emitChange (event: ChangeEvent): void {
    if (this.excluded.has(event.writer)) return
    for (const listener of this.changeListeners) listener(event)
  }

  protected excludeWriter (peerId: string): void {
    this.excluded.add(peerId)
    this.beacons.delete(peerId)
  }

  protected isExcluded (peerId: string): boolean {
    return this.excluded.has(peerId)
  }

  protected writerOfType (type: Y.AbstractType<unknown>): string | undefined {
    if (!this.typeNames.has(type)) {
      for (const [name, shared] of this.doc.share) this.typeNames.set(shared as Y.AbstractType<unknown>, name)
    }
    const name = this.typeNames.get(type)
    return name?.startsWith(NAMESPACE_PREFIX) === true ? name.slice(NAMESPACE_PREFIX.length) : undefined
  }

  // --- validation of this node's own records ---

  protected checkNode (record: NodeRecord): JsonValue {
    const ok = typeof record.version === 'string' && Array.isArray(record.addresses) && record.addresses.every((a) => typeof a === 'string') &&
      Array.isArray(record.layers) && record.layers.every((l) => typeof l.model === 'string' && Number.isInteger(l.start) && Number.isInteger(l.end) && l.start >= 0 && l.start < l.end)
    if (!ok) throw new InvalidRecordError('node record needs version, addresses[] and layers [{ model, start, end }] with 0 ≤ start < end')
    return this.checkJson(record as unknown as JsonValue)
  }

  protected checkClaim (claim: ReputationClaim): JsonValue {
    if (typeof claim.subject !== 'string' || claim.subject.length === 0 || !Number.isFinite(claim.score)) {
      throw new InvalidRecordError('a reputation claim needs a subject peer id and a finite score')
    }
    return this.checkJson(claim as unknown as JsonValue)
  }

  protected checkJson (value: JsonValue): JsonValue {
    let text: string
    try {
      text = JSON.stringify(value, (_key, v: unknown) => {
        if (typeof v === 'number' && !Number.isFinite(v)) throw new InvalidRecordError('numbers must be finite')
        return v
      })
    } catch (err) {
      throw new InvalidRecordError('record is not plain JSON', { cause: err })
    }
    if (Buffer.byteLength(text) > MAX_RECORD_BYTES) throw new InvalidRecordError(`record of ${Buffer.byteLength(text)} bytes exceeds ${MAX_RECORD_BYTES}`)
    return JSON.parse(text) as JsonValue
  }

  // --- helpers ---

  /** Writers' namespaces, sorted by peer id, excluded writers left out. */
  private namespaces (): Array<[string, Y.Map<JsonValue>]> {
    const out: Array<[string, Y.Map<JsonValue>]> = []
    for (const name of [...this.doc.share.keys()].sort()) {
      if (!name.startsWith(NAMESPACE_PREFIX)) continue
      const writer = name.slice(NAMESPACE_PREFIX.length)
      if (!this.excluded.has(writer)) out.push([writer, this.doc.getMap<JsonValue>(name)])
    }
    return out
  }

  private collect<T> (pick: (map: Y.Map<JsonValue>) => T | undefined): Map<string, T> {
    const out = new Map<string, T>()
    for (const [writer, map] of this.namespaces()) {
      const value = pick(map)
      if (value !== undefined) out.set(writer, value)
    }
    return out
  }

  private prefixed<T> (prefix: string): Array<[string, T]> {
    const out: Array<[string, T]> = []
    for (const [writer, map] of this.namespaces()) {
      for (const key of [...map.keys()].sort()) if (key.startsWith(prefix)) out.push([writer, map.get(key) as T])
    }
    return out
  }
}

function sortedJson (value: JsonValue): JsonValue {
  if (Array.isArray(value)) return value.map(sortedJson)
  if (value === null || typeof value !== 'object') return value
  const out: { [key: string]: JsonValue } = {}
  for (const key of Object.keys(value).sort()) out[key] = sortedJson(value[key])
  return out
}
