// Per-peer token buckets of the swarm-sync rate limits, on an injected clock.
import { describe, expect, it } from 'vitest'
import { TokenBuckets } from '../../protocols/sync/token-bucket.ts'

describe('token buckets', () => {
  it('allow a burst, then the rate, per peer', () => {
    let now = 0
    const buckets = new TokenBuckets(3, 2, () => now)
    expect([1, 2, 3, 4].map(() => buckets.take('a'))).toEqual([true, true, true, false])
    expect(buckets.take('b')).toBe(true) // another peer has its own bucket
    now += 499
    expect(buckets.take('a')).toBe(false)
    now += 1 // 500 ms at 2/s: one token
    expect(buckets.take('a')).toBe(true)
    expect(buckets.take('a')).toBe(false)
    now += 60_000 // refills up to the burst, not beyond
    expect([1, 2, 3, 4].map(() => buckets.take('a'))).toEqual([true, true, true, false])
  })
})
