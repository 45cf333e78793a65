// Span-only failover on a stage: the sessions that failed further along the ring, kept a while
// (their engine session = KV cache, and the frames they passed on) so the repaired chain can adopt
// them (`OpenSession.resume`). The stage service keeps the KV reservation accounting; this map
// hands back the bytes a released or adopted session had reserved. A new session that adopts one
// truncates it to what the resume keeps (`resumeKept`) and re-sends the kept frames its next hop
// needs (`resendKept`).
import type { HiddenCodec as EngineCodec } from '../../engine/codecs.ts'
import type { Session, Shard } from '../../engine/index.ts'
import type { OpenSession } from './inference.pb.js'
import { signedStep } from './stage-session.ts'
import type { SentFrame, StageSession } from './stage-session.ts'
import { engineCodec } from './wire.ts'
import type { FrameChannel } from './wire.ts'

/** A failed resumable session kept for a resume: its engine session (KV) and the frames it passed on. */
export interface Suspended {
  shard: Shard
  session: Session
  codec: EngineCodec
  maxLength: number
  sent?: SentFrame[]
  reservedBytes: number
  timer: ReturnType<typeof setTimeout>
  /** Settles when the failed session's last engine step is done (it may still run when it fails). */
  idle: Promise<unknown>
  /** First stage: the client that opened it (only it may resume it). */
  client?: string
}

/** The kept sessions of one stage, by the failed session's id. */
export class SuspendedSessions {
  private readonly kept = new Map<string, Suspended>()
  /** Called with the reservation a session frees when it is released (not when adopted). */
  private readonly onRelease: (reservedBytes: number) => void

  constructor (onRelease: (reservedBytes: number) => void) {
    this.onRelease = onRelease
  }

  get size (): number { return this.kept.size }

  has (id: string): boolean { return this.kept.has(id) }

  /** KV bytes the kept sessions' caches hold. */
  get kvBytes (): number {
    let n = 0
    for (const k of this.kept.values()) n += k.session.kvBytes
    return n
  }

  /** Keeps `s` (it failed further along the ring) for `timeoutMs`, then releases it. */
  keep (s: StageSession, timeoutMs: number): void {
    const timer = setTimeout(() => { this.release(s.id) }, timeoutMs)
    this.kept.set(s.id, { shard: s.shard, session: s.session, codec: s.codec, maxLength: s.maxLength, sent: s.sent, reservedBytes: s.reservedBytes, timer, idle: s.running ?? Promise.resolve(), ...(s.shard.isFirst && s.client !== undefined ? { client: s.client } : {}) })
  }

  /** Frees a kept session's KV cache and reservation. */
  release (id: string): void {
    const k = this.kept.get(id)
    if (k === undefined) return
    this.kept.delete(id)
    clearTimeout(k.timer)
    this.onRelease(k.reservedBytes)
    k.session.close()
  }

  releaseAll (): void {
    for (const id of [...this.kept.keys()]) this.release(id)
  }

  /**
   * A kept session `open` may adopt: same shard and codec, room for the new max length. It leaves
   * the map (its reservation freed through `onRelease`: the new session reserves its own).
   */
  adopt (open: OpenSession, shard: Shard, remotePeer: string): Suspended | undefined {
    const id = open.resume ?? ''
    const k = id === '' ? undefined : this.kept.get(id)
    // anything that does not fit stays kept until its deadline (the rightful resume may still come)
    if (k === undefined || k.shard !== shard || k.codec !== engineCodec(open.codec) || k.maxLength < open.maxLength || (open.resumeTo ?? 0) === 0) return undefined
    if (k.client !== undefined && k.client !== remotePeer) return undefined
    this.kept.delete(id)
    clearTimeout(k.timer)
    this.onRelease(k.reservedBytes)
    return k
  }
}

/**
 * A new session `s` adopts `kept` (its engine session is kept's): keep the positions before the
 * history's end `to` (the last stage one fewer: it must run a row to sample), and before that
 * only whole frames passed on (a replacement after us is fed from them).
 */
export function resumeKept (s: StageSession, kept: Suspended, to: number): void {
  const { shard, session } = s
  let have = Math.min(session.position, shard.isLast ? to - 1 : to)
  if (!shard.isLast && s.sent === undefined) have = 0 // nothing kept to feed a replacement after us
  if (s.sent !== undefined) {
    let end = 0
    for (const f of kept.sent ?? []) { if (f.position !== end || f.position + f.T > have) break; end += f.T }
    have = Math.min(have, end)
    s.sent = (kept.sent ?? []).filter((f) => f.position + f.T <= have)
  }
  session.truncate(have)
  s.adopted = true
}

/**
 * A resume: the next hop (`downstream`) needs the rows from `needs` on; the kept frames before our
 * KV position feed it (a fresh replacement needs them all), what we run from here on follows.
 */
export async function resendKept (s: StageSession, downstream: FrameChannel, needs: number): Promise<void> {
  for (const f of s.sent ?? []) {
    // signed again: the kept frames were signed under the failed session's id
    if (f.position + f.T > needs) await downstream.write({ step: await signedStep(s, f.position, f.T, f.hidden as Uint8Array<ArrayBuffer>) })
  }
}
