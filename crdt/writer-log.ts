// One writer's accepted envelopes: the hash chain, the Yjs clock it has reached, signatures
// (always the head's), and envelopes that arrived ahead of a gap. Anti-entropy reads runs from
// here; nothing in this file touches the Yjs document.
import { GENESIS_HASH } from './envelope.ts'
import { ENVELOPE_OVERHEAD_BYTES, MAX_PENDING_PER_WRITER, MAX_RUN_ENVELOPES } from './constants.ts'
import type { Envelope, Run, WriterIdentity } from './index.ts'

interface Entry { update: Uint8Array, hash: Uint8Array, signature?: Uint8Array }

export class WriterLog {
  readonly identity: WriterIdentity
  /** entries[i] is the envelope with seq i + 1. */
  private readonly entries: Entry[] = []
  /** Verified envelopes waiting for an earlier seq, keyed by seq. */
  private readonly pending = new Map<number, { envelope: Envelope, hash: Uint8Array }>()
  /** Update bytes held in `pending`. */
  pendingBytes = 0
  /** The writer's Yjs state-vector entry after all accepted envelopes. */
  clock = 0
  /** Bytes of all accepted updates (for delta accounting). */
  bytes = 0
  /** What the accepted envelopes count against the writer's quota (MAX_WRITER_BYTES). */
  envelopeBytes = 0

  constructor (identity: WriterIdentity) {
    this.identity = identity
  }

  get seq (): number {
    return this.entries.length
  }

  get headHash (): Uint8Array {
    return this.entries.length === 0 ? GENESIS_HASH : this.entries[this.entries.length - 1].hash
  }

  hashAt (seq: number): Uint8Array | undefined {
    return this.entries[seq - 1]?.hash
  }

  append (update: Uint8Array, hash: Uint8Array, clockAfter: number, signature?: Uint8Array): void {
    this.entries.push({ update, hash, signature })
    this.clock = clockAfter
    this.bytes += update.length
    this.envelopeBytes += quotaBytes(update)
  }

  setSignature (seq: number, signature: Uint8Array): void {
    const entry = this.entries[seq - 1]
    if (entry !== undefined) entry.signature = signature
  }

  /** The full envelope at seq, when its own signature is known (gossip-received or local). */
  envelopeAt (seq: number): Envelope | undefined {
    const entry = this.entries[seq - 1]
    if (entry?.signature === undefined) return undefined
    return { writer: this.identity.publicKey, seq, prev: this.hashAt(seq - 1) ?? GENESIS_HASH, update: entry.update, signature: entry.signature }
  }

  /** Stored form of the envelope at seq: the signature only where known. */
  storedAt (seq: number): Envelope {
    const entry = this.entries[seq - 1]
    return { writer: this.identity.publicKey, seq, prev: this.hashAt(seq - 1) ?? GENESIS_HASH, update: entry.update, signature: entry.signature ?? new Uint8Array(0) }
  }

  /**
   * Envelopes after `fromSeq - 1` as runs, each ending on an envelope whose signature we hold,
   * at most `maxBytes` of updates in total (always at least one run if any is missing).
   */
  runsFrom (fromSeq: number, maxBytes: number): Run[] {
    const runs: Run[] = []
    let start = Math.max(1, fromSeq)
    let budget = maxBytes
    while (start <= this.seq && budget > 0) {
      let end = start - 1
      let lastSigned = -1
      let size = 0
      while (end < this.seq && end - start + 1 < MAX_RUN_ENVELOPES && (size < budget || lastSigned < 0)) {
        end++
        size += this.entries[end - 1].update.length
        if (this.entries[end - 1].signature !== undefined) lastSigned = end
      }
      if (lastSigned < 0) break // no signature covers the rest (cannot happen: the head is signed)
      const updates = this.entries.slice(start - 1, lastSigned).map((e) => e.update)
      runs.push({
        writer: this.identity.publicKey,
        fromSeq: start,
        prev: this.hashAt(start - 1) ?? GENESIS_HASH,
        updates,
        signature: this.entries[lastSigned - 1].signature as Uint8Array
      })
      budget -= updates.reduce((n, u) => n + u.length, 0)
      start = lastSigned + 1
    }
    return runs
  }

  /** Buffers a verified envelope that is ahead of the chain; false when the buffer is full. */
  hold (envelope: Envelope, hash: Uint8Array): boolean {
    if (this.pending.has(envelope.seq)) return true
    if (this.pending.size >= MAX_PENDING_PER_WRITER) return false
    this.pending.set(envelope.seq, { envelope, hash })
    this.pendingBytes += envelope.update.length
    return true
  }

  /** Takes the buffered envelope that would extend the chain now, dropping stale ones. */
  takeNext (): { envelope: Envelope, hash: Uint8Array } | undefined {
    for (const [seq, held] of this.pending) {
      if (seq <= this.seq) {
        this.pending.delete(seq)
        this.pendingBytes -= held.envelope.update.length
      }
    }
    const next = this.pending.get(this.seq + 1)
    if (next !== undefined) {
      this.pending.delete(this.seq + 1)
      this.pendingBytes -= next.envelope.update.length
    }
    return next
  }

  get pendingCount (): number {
    return this.pending.size
  }
}

/** What one envelope carrying `update` counts against its writer's quota. */
export function quotaBytes (update: Uint8Array): number {
  return update.length + ENVELOPE_OVERHEAD_BYTES
}
