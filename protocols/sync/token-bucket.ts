// Per-peer token buckets: `burst` tokens, refilled at `perSecond`. The clock is injected.
// Buckets outlive disconnections (a reconnect must not refill one); the oldest are dropped
// beyond RATE_LIMIT_MAX_PEERS.
import { RATE_LIMIT_MAX_PEERS } from './constants.ts'

export class TokenBuckets {
  private readonly burst: number
  private readonly perMs: number
  private readonly now: () => number
  private readonly buckets = new Map<string, { tokens: number, at: number }>()

  constructor (burst: number, perSecond: number, now: () => number) {
    this.burst = burst
    this.perMs = perSecond / 1000
    this.now = now
  }

  /** Takes one token for `key`; false when the bucket is empty. */
  take (key: string): boolean {
    const now = this.now()
    let bucket = this.buckets.get(key)
    if (bucket === undefined) {
      if (this.buckets.size >= RATE_LIMIT_MAX_PEERS) this.buckets.delete(this.buckets.keys().next().value as string)
      bucket = { tokens: this.burst, at: now }
    }
    bucket.tokens = Math.min(this.burst, bucket.tokens + (now - bucket.at) * this.perMs)
    bucket.at = now
    this.buckets.set(key, bucket)
    if (bucket.tokens < 1) return false
    bucket.tokens -= 1
    return true
  }
}
