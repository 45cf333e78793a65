// Per-peer token buckets: `burst` tokens, refilled at `perSecond`. The clock is injected.

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
    const bucket = this.buckets.get(key) ?? { tokens: this.burst, at: now }
    bucket.tokens = Math.min(this.burst, bucket.tokens + (now - bucket.at) * this.perMs)
    bucket.at = now
    this.buckets.set(key, bucket)
    if (bucket.tokens < 1) return false
    bucket.tokens -= 1
    return true
  }

  forget (key: string): void {
    this.buckets.delete(key)
  }
}
