// The read loops of a session's streams on a stage: its upstream (the client's prompt step, or the
// previous stage's hidden states; a close or a Result ends it), the token stream the last stage
// attached (first stage: each token comes back here and runs at once), and the next hop's stream
// (anything on it ends the session). A break, a deadline or an unexpected frame on any of them
// tears the session down with the status and culprit README.md's "Status and bounds" gives.
import { INFERENCE_IDLE_TIMEOUT_MS } from './constants.ts'
import { Status } from './inference.pb.js'
import type { Frame } from './inference.pb.js'
import { culprit, nextHopEnd } from './stage-session.ts'
import type { StageSession } from './stage-session.ts'
import { onToken, runStep } from './stage-step.ts'
import type { StageContext } from './stage-step.ts'
import { isEndOfStream, isReset, readFailureStatus } from './wire.ts'
import type { FrameChannel } from './wire.ts'

function idleTimeoutMs (ctx: StageContext): number { return ctx.init.idleTimeoutMs ?? INFERENCE_IDLE_TIMEOUT_MS }

/** Reads steps (and close) from upstream until the session ends. */
export async function readUpstream (ctx: StageContext, s: StageSession): Promise<void> {
  const shard = s.shard
  for (;;) {
    // the client's stream on the first stage is quiet while tokens flow: only the session
    // deadline bounds it; every other upstream must keep sending hidden states
    const idle = shard.isFirst ? [] : [AbortSignal.timeout(idleTimeoutMs(ctx))]
    let frame: Frame
    try {
      frame = await s.upstream.read({ signal: AbortSignal.any([ctx.shutdown(), s.done.signal, ...idle]) })
    } catch (err) {
      if (s.closed) return
      // a session ends with a `close` frame; a resumable session's previous stage that vanishes
      // without one (a crash often reaches us as a clean end) failed: keep the KV for a resume
      if (isEndOfStream(err)) await (s.resumable && !shard.isFirst ? ctx.teardown(s, Status.DOWNSTREAM, 'the previous stage\'s stream ended without a close', s.prevPeer ?? '') : ctx.teardown(s, Status.OK, 'closed by upstream'))
      else if ((err as Error).name === 'AbortError' || (err as Error).name === 'TimeoutError') await ctx.teardown(s, Status.TIMEOUT, 'no step within the idle deadline')
      // a reset upstream: on the first stage the client went away (it aborts its stream to cancel);
      // elsewhere the previous stage died or aborted — a failure along the ring, named for the
      // first stage (the last stage's Result reaches it on the token stream)
      else if (isReset(err)) await (shard.isFirst ? ctx.teardown(s, Status.OK, 'the client reset its stream') : ctx.teardown(s, Status.DOWNSTREAM, 'the previous stage reset its stream', s.prevPeer ?? ''))
      else await ctx.teardown(s, readFailureStatus(err), 'unreadable frame')
      return
    }
    if (frame.close !== undefined) { await ctx.teardown(s, Status.OK, 'closed'); return }
    // the previous stage ended the session with a status (it passes its Result on downstream too)
    const r = frame.result
    if (r !== undefined && r.status !== Status.OK && !shard.isFirst) { await ctx.teardown(s, r.status, `upstream: ${r.detail}`, culprit(r, s.prevPeer ?? '')); return }
    // the client saw the ring stall and names the stage (its probe found it): a failure along the ring
    if (r !== undefined && r.status === Status.DOWNSTREAM && shard.isFirst && (r.peer ?? '') !== '') { await ctx.teardown(s, Status.DOWNSTREAM, 'the client reports a stalled stage', r.peer); return }
    if (frame.step === undefined) { await ctx.teardown(s, Status.MALFORMED, 'expected a step'); return }
    if (shard.isFirst && s.prefilled) { await ctx.teardown(s, Status.OUT_OF_ORDER, 'the prompt was already sent: decode steps come from the last stage'); return }
    s.prefilled = true
    const ok = await runStep(ctx, s, frame.step)
    s.onPrefilled()
    if (!ok) return
  }
}

/** First stage: reads the sampled tokens the last stage (`remotePeer`) sends on its attached stream `ch`, until the session ends. */
export async function readTokens (ctx: StageContext, s: StageSession, ch: FrameChannel, remotePeer: string): Promise<void> {
  for (;;) {
    let frame: Frame
    const idle = AbortSignal.timeout(idleTimeoutMs(ctx))
    try {
      frame = await ch.read({ signal: AbortSignal.any([ctx.shutdown(), s.done.signal, idle]) })
    } catch (err) {
      if (s.closed) return
      if (idle.aborted) await ctx.teardown(s, Status.TIMEOUT, 'no token from the last stage within the idle deadline', remotePeer)
      // a reset or broken stream: the last stage died (or aborted); a clean end: it ended the
      // session deliberately without saying why (it says why in a Result when it knows), so the
      // cause lies elsewhere on the ring and nobody is named
      else if (isEndOfStream(err)) await ctx.teardown(s, Status.DOWNSTREAM, 'the token stream from the last stage ended')
      else if (!ctx.shutdown().aborted) await ctx.teardown(s, Status.DOWNSTREAM, `the token stream from the last stage ${isReset(err) ? 'was reset' : 'broke'}`, remotePeer)
      return
    }
    if (frame.token !== undefined && frame.token.sessionId === s.id) {
      await s.prefillDone
      if (!await onToken(ctx, s, frame.token)) return
    } else {
      const r = frame.result
      if (r !== undefined && r.status !== Status.OK) await ctx.teardown(s, r.status, r.detail, culprit(r, remotePeer))
      else await ctx.teardown(s, Status.MALFORMED, 'unexpected frame on the token stream', remotePeer)
      return
    }
  }
}

/** Reads the next hop's stream: any Result or end there ends the session (DOWNSTREAM naming the hop, or whom its Result names). */
export async function watchDownstream (ctx: StageContext, s: StageSession, ch: FrameChannel): Promise<void> {
  const end = await nextHopEnd(ch, s.nextPeer ?? '', AbortSignal.any([ctx.shutdown(), s.done.signal]))
  if (end !== undefined && !s.closed) await ctx.teardown(s, end.status, end.detail, end.peer)
}
