// The latest presence beacon of each writer, bounded. A beacon counts from the earlier of its own
// timestamp and the moment this replica took it (`seen`), so a writer whose clock runs ahead
// cannot stay online longer, and a relayed old beacon is not refreshed by being relayed.
// Expired entries are dropped by `prune` (the sync service calls it on its heartbeat tick) and
// whenever the table is full. Nothing here is ever persisted.
import type { Beacon } from './index.ts'

export interface PresenceEntry { beacon: Beacon, seen: number }

export class PresenceTable {
  private readonly ttlMs: number
  private readonly maxEntries: number
  private readonly entries = new Map<string, PresenceEntry>()

  constructor (ttlMs: number, maxEntries: number) {
    this.ttlMs = ttlMs
    this.maxEntries = maxEntries
  }

  get (peerId: string): PresenceEntry | undefined {
    return this.entries.get(peerId)
  }

  get size (): number {
    return this.entries.size
  }

  /**
   * Keeps `beacon` as the writer's latest (the caller checked it is newer). When the table is
   * full of live entries, a writer with an envelope chain (`hasChain`) evicts the stalest entry
   * of a writer without one; anyone else is refused (false).
   */
  offer (peerId: string, beacon: Beacon, seen: number, now: number, hasChain: (peerId: string) => boolean): boolean {
    if (!this.entries.has(peerId) && this.entries.size >= this.maxEntries) {
      this.prune(now)
      if (this.entries.size >= this.maxEntries) {
        const victim = hasChain(peerId) ? this.stalest((id) => !hasChain(id)) : undefined
        if (victim === undefined) return false
        this.entries.delete(victim)
      }
    }
    this.entries.set(peerId, { beacon, seen })
    return true
  }

  delete (peerId: string): void {
    this.entries.delete(peerId)
  }

  /** Drops every entry older than the TTL at `now`. */
  prune (now: number): void {
    for (const [peerId, entry] of this.entries) if (!this.live(entry, now)) this.entries.delete(peerId)
  }

  live (entry: PresenceEntry, now: number): boolean {
    return now - entry.seen < this.ttlMs
  }

  /** Every entry, sorted by peer id. */
  sorted (): Array<[string, PresenceEntry]> {
    return [...this.entries].sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0)
  }

  private stalest (eligible: (peerId: string) => boolean): string | undefined {
    let victim: string | undefined
    let oldest = Infinity
    for (const [peerId, entry] of this.entries) {
      if (entry.seen < oldest && eligible(peerId)) { victim = peerId; oldest = entry.seen }
    }
    return victim
  }
}
