// The client's failover helpers (client.ts): the decode pace that sets the stall deadline, the
// liveness probe of a hop, and splicing replacement hops into a chain.
import {
  FAILOVER_FIRST_TOKEN_TIMEOUT_MS, FAILOVER_GAP_WINDOW, FAILOVER_TOKEN_TIMEOUT_FACTOR, FAILOVER_TOKEN_TIMEOUT_FLOOR_MS, FAILOVER_TOKEN_TIMEOUT_MIN_SAMPLES, INFERENCE_PROBE_MAX_FRAME_BYTES
} from './constants.ts'
import type { Stream } from '@libp2p/interface'
import type { ChainHop, OpenStream } from './client-types.ts'
import { asError, frameChannel } from './wire.ts'

/** Decode pace of one request: when the last token came, and the recent gaps between tokens. */
export class Pace {
  last = performance.now()
  openMs = 0
  private readonly gaps: number[] = []
  private next = 0
  /** A token arrived; `decode` when it followed another token of the same session. */
  token (decode: boolean): void {
    const now = performance.now()
    if (decode) {
      this.gaps[this.next] = now - this.last
      this.next = (this.next + 1) % FAILOVER_GAP_WINDOW
    }
    this.last = now
  }

  /** The per-token deadline: `fixed`, else max(floor, factor × median gap) once enough gaps were seen. */
  deadline (fixed: number | undefined, first: boolean): number {
    if (fixed !== undefined) return first ? Math.max(fixed, FAILOVER_FIRST_TOKEN_TIMEOUT_MS) : fixed
    if (first || this.gaps.length < FAILOVER_TOKEN_TIMEOUT_MIN_SAMPLES) return FAILOVER_FIRST_TOKEN_TIMEOUT_MS
    const sorted = [...this.gaps].sort((a, b) => a - b)
    return Math.max(FAILOVER_TOKEN_TIMEOUT_FLOOR_MS, FAILOVER_TOKEN_TIMEOUT_FACTOR * sorted[sorted.length >> 1])
  }
}

/**
 * Puts `hops` into `chain` in place of the hops they cover: they must be contiguous and span
 * `[a, b)` ⊇ the failed hop's layers, with a and b on hop boundaries of the chain (one hop
 * replaced by several, or a wider span — the whole chain when the router re-routed it). False
 * when they do not fit.
 */
export function splice (chain: ChainHop[], failed: ChainHop, hops: ChainHop[]): boolean {
  for (let k = 1; k < hops.length; k++) if (hops[k].start !== hops[k - 1].end) return false
  const a = hops[0].start
  const b = hops[hops.length - 1].end
  const from = chain.findIndex((h) => h.start === a)
  const to = chain.findIndex((h) => h.end === b)
  if (a > failed.start || b < failed.end || from < 0 || to < from) return false
  chain.splice(from, to - from + 1, ...hops)
  return true
}

/**
 * True when the hop answers a liveness probe within the deadline: a stream of the protocol carrying
 * one `probe` frame, answered by the stage's handler (a Result; any frame counts) — the stage's
 * event loop runs and it serves the protocol. The stream then closes gracefully (a probe is no
 * error on the stage and is not logged).
 */
export async function reachable (openStream: OpenStream, protocol: string, hop: ChainHop, timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
  const deadline = AbortSignal.any([AbortSignal.timeout(timeoutMs), ...(signal !== undefined ? [signal] : [])])
  let stream: Stream | undefined
  try {
    stream = await openStream(hop.peer, protocol, { signal: deadline })
    const ch = frameChannel(stream, INFERENCE_PROBE_MAX_FRAME_BYTES)
    await ch.write({ probe: {} })
    await ch.read({ signal: deadline })
    void ch.end()
    return true
  } catch (err) {
    // reason: no answer within the deadline (dead, unreachable or stalled) means the hop must be replaced
    stream?.abort(asError(err))
    return false
  }
}

/** Stall watch of a session: the deadline for the next token, and hooks when it is half gone and when a token came. */
export interface StallWatch {
  deadline: (first: boolean) => number
  slow: () => void
  token: () => void
  culprit: () => string | undefined
}
