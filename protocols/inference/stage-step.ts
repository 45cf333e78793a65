// One step of a session on a stage: checked (stage-checks.ts), run through the batching scheduler
// (stage-scheduler.ts), its output passed on (stage-session.ts), shown to the StageTap, and the
// received frame's signature checked off the per-hop path (stage-frames.ts). On the first stage a
// sampled token that came back is relayed to the client and run as the next step (`onToken`).
// Any failure ends the session through the service's teardown.
import { decodeHidden } from '../../engine/codecs.ts'
import type { Shard, StageInput, StageOutput } from '../../engine/index.ts'
import { INFERENCE_MAX_PENDING_CHECKS } from './constants.ts'
import { Status } from './inference.pb.js'
import type { Step, Token } from './inference.pb.js'
import type { VerifiedRoots } from './frame-signature.ts'
import { checkStep, Refusal } from './stage-checks.ts'
import { observe, receivedSignatureOk, signerOf } from './stage-frames.ts'
import type { StageTap } from './stage-frames.ts'
import type { StageScheduler } from './stage-scheduler.ts'
import { passOn } from './stage-session.ts'
import type { SentOutput, StageSession } from './stage-session.ts'
import type { InferenceStageInit } from './stage-types.ts'
import { asError, wireCodec } from './wire.ts'

/** What a session's step and stream code uses of its stage service (built once by the service). */
export interface StageContext {
  init: InferenceStageInit
  /** This stage's peer id. */
  self: string
  scheduler: StageScheduler
  /** The service's counters (this code counts steps, tokens and kept rows). */
  counters: { steps: number, tokens: number, keptRows: number }
  /** Batch roots of received frames already verified. */
  roots: VerifiedRoots
  /** The service's shutdown signal (a new one on each `start()`). */
  shutdown: () => AbortSignal
  /** Sessions still running on `shard`. */
  sessionsOn: (shard: Shard) => number
  /** The StageTap the session was opened under, if any. */
  tapOf: (s: StageSession) => StageTap | undefined
  /** Counts a received frame whose signature did not verify. */
  badSignature: () => void
  /** Ends a session once (the service's teardown). */
  teardown: (s: StageSession, status: Status, detail: string, peer?: string) => Promise<void>
}

/**
 * Runs one step (through the batching scheduler) and passes its output on; false when the session
 * ended. `fed`: the Token a first stage runs (the last stage's signature covers the token, not the step).
 */
export async function runStep (ctx: StageContext, s: StageSession, step: Step, fed?: Token): Promise<boolean> {
  const shard = s.shard
  const { dim } = shard.config
  let T: number
  let out: StageOutput
  let input: StageInput
  let position = step.position
  try {
    // a resumed session's replay starts before its KV position: rows it holds are dropped (their
    // outputs were passed on from the kept frames), the rest run; frames stay contiguous
    let at = s.session.position
    if (s.adopted) {
      if (s.expectIn !== undefined && step.position !== s.expectIn) throw new Refusal(Status.OUT_OF_ORDER, `replayed step at ${step.position}, expected ${s.expectIn}`)
      at = Math.min(step.position, s.session.position)
    }
    T = checkStep(step, { id: s.id, shard, codec: s.codec, position: at, maxLength: s.maxLength })
    const skip = s.session.position - at
    if (s.adopted) {
      s.expectIn = at + T
      if (skip >= T) { ctx.counters.keptRows += T; return true }
      s.adopted = false
    }
    input = shard.isFirst ? { tokens: step.tokens.slice(skip) } : { hidden: decodeHidden(s.codec, step.hidden, T * dim).subarray(skip * dim) }
    ctx.counters.keptRows += skip
    T -= skip
    position += skip
    const running = engineStep(ctx, s, input, T)
    s.running = running.catch(() => {})
    out = await running
  } catch (err) {
    if (s.closed) return false
    const r = err instanceof Refusal ? err : new Refusal(Status.INTERNAL, 'step failed')
    await ctx.teardown(s, r.status, r.message)
    return false
  }
  if (s.closed) return false
  ctx.counters.steps++
  let passed: { token?: Token, sent?: SentOutput }
  try {
    passed = await passOn(s, position, T, out)
  } catch (err) {
    await ctx.teardown(s, Status.DOWNSTREAM, `forwarding failed: ${asError(err).message}`, s.nextPeer ?? s.origin ?? '')
    return false
  }
  const self = ctx.self
  const signer = signerOf(s, fed, self)
  const tap = ctx.tapOf(s)
  if (tap !== undefined) observe(tap, s, step, fed, signer, self, { position, T }, passed.sent)
  // the received frame's signature, checked on the thread pool once its output is on its way
  // (off the per-hop path); a session has at most INFERENCE_MAX_PENDING_CHECKS in flight (past
  // that its next step waits), and it ends OK only after all of them (onToken)
  if (ctx.init.verifyFrames !== false) {
    const check = checkFrame(ctx, s, step, fed, signer, self)
    s.checks.add(check)
    void check.then(() => s.checks.delete(check))
    if (s.checks.size > INFERENCE_MAX_PENDING_CHECKS) await Promise.race(s.checks)
    if (s.closed) return false
  }
  return passed.token === undefined || await onToken(ctx, s, passed.token)
}

/** One engine step of `s` through the scheduler; engine and queue errors become Refusals. */
async function engineStep (ctx: StageContext, s: StageSession, input: StageInput, T: number): Promise<StageOutput> {
  try {
    // the first stage of a ring of n splits its sessions into n microbatches (stage-scheduler.ts)
    const microbatch = s.ringSize > 1 ? Math.ceil(ctx.sessionsOn(s.shard) / s.ringSize) : Number.POSITIVE_INFINITY
    return await ctx.scheduler.run(s.shard, s.session, input, T, microbatch)
  } catch (err) {
    const name = (err as Error).name
    if (name === 'SchedulerFullError') throw new Refusal(Status.FULL, 'the stage\'s step queue is full')
    throw new Refusal(Status.INTERNAL, `engine: ${name}`)
  }
}

/** Checks a received frame's signature; a bad one ends the session MALFORMED, naming its sender. Never rejects. */
async function checkFrame (ctx: StageContext, s: StageSession, step: Step, fed: Token | undefined, signer: string, self: string): Promise<void> {
  if (await receivedSignatureOk(s, step, fed, signer, self, ctx.roots) || s.closed) return
  ctx.badSignature()
  await ctx.teardown(s, Status.MALFORMED, `a frame whose signature is not its sender's at position ${step.position}`, s.shard.isFirst && fed === undefined ? '' : signer).catch(() => {})
}

/** First stage: a sampled token came back; tell the client, then run it. False when the session ended. */
export async function onToken (ctx: StageContext, s: StageSession, token: Token): Promise<boolean> {
  ctx.counters.tokens++
  if (token.done) {
    // a session ends OK only once every frame it ran was found validly signed
    await Promise.all(s.checks)
    if (s.closed) return false
    await s.upstream.end({ token })
    await ctx.teardown(s, Status.OK, 'done')
    return false
  }
  // the client's copy is queued, not awaited: it is off the critical path (queued before the
  // next step, so tokens reach the client in order)
  s.upstream.write({ token }).catch(() => { void ctx.teardown(s, Status.OK, 'client went away') })
  // the scheduler runs the step on a later turn of the event loop, with the other sessions'
  // ready steps: a one-stage ring does not recurse synchronously, and I/O gets in between tokens
  if (s.closed) return false
  return await runStep(ctx, s, { sessionId: s.id, position: token.position + 1, tokens: [token.token], hidden: new Uint8Array(0), dtype: wireCodec(s.codec), shape: [], signature: new Uint8Array(0) }, token)
}
