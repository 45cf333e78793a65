// The client side of `/mycelium/<swarm>/inference/1.0.0`: open a session on a chain of stages
// (the first stage opens the rest, hop by hop), send the prompt once, and read the tokens the
// first stage relays from the ring of stages, as an async generator of typed events; with
// `failover`, repair the chain when it fails or stalls and continue where it stopped
// (client-failover.ts: the stall deadline, probes, splicing replacements).
//
//   for await (const ev of runInference(openStream, protocol, { chain, prompt, maxLength: 64 })) …
import type { Stream } from '@libp2p/interface'
import { FAILOVER_MAX_ATTEMPTS, FAILOVER_PROBE_TIMEOUT_FACTOR, FAILOVER_PROBE_TIMEOUT_FLOOR_MS, INFERENCE_MAX_FRAME_BYTES } from './constants.ts'
import { InferenceFailedError } from './errors.ts'
import { Status } from './inference.pb.js'
import type { Frame } from './inference.pb.js'
import { stepMessage } from './frame-signature.ts'
import { Pace, reachable, splice } from './client-failover.ts'
import type { StallWatch } from './client-failover.ts'
import type { InferenceEvent, InferenceRequest, OpenStream } from './client-types.ts'
import { asError, frameChannel, isEndOfStream, isReset, readFailureStatus, wireCodec } from './wire.ts'

export type { ChainHop, FailoverOptions, InferenceEvent, InferenceRequest, OpenStream } from './client-types.ts'

/**
 * Refusals the first stage gives for itself when a session opens (a refusal further down arrives
 * as DOWNSTREAM): it no longer serves those layers or that model, or it is full. Failover replaces
 * it even though it answers the liveness probe.
 */
const FIRST_STAGE_REFUSALS: ReadonlySet<string> = new Set([Status.WRONG_LAYERS, Status.WRONG_MODEL, Status.FULL])

/** Errors of sessions whose first stage refused the open for itself (see FIRST_STAGE_REFUSALS). */
const refusedByFirstStage = new WeakSet<Error>()

/**
 * Runs one generation over a chain of stages; yields the session's open, each token, and done
 * (and `retry` / `resumed` when failover repaired the chain).
 */
export async function * runInference (openStream: OpenStream, protocol: string, request: InferenceRequest): AsyncGenerator<InferenceEvent> {
  const failover = request.failover
  let chain = request.chain
  const generated: number[] = []
  const pace = new Pace()
  let resuming: { attempt: number, detectedAt: number } | undefined
  // span-only failover: every session is resumable, and a repair names the failed session, so the
  // stages that kept its KV cache adopt it (only the replaced span re-runs the history)
  let sessionId = request.sessionId ?? crypto.randomUUID()
  let failedSession = ''
  for (let attempt = 0; ; attempt++) {
    const history = [...request.prompt, ...generated]
    const maxTokens = request.sampling?.maxTokens ?? 0
    const probeTimeoutMs = (): number => failover?.probeTimeoutMs ?? Math.max(FAILOVER_PROBE_TIMEOUT_FLOOR_MS, FAILOVER_PROBE_TIMEOUT_FACTOR * pace.openMs)
    const probe = async (): Promise<boolean[]> => await Promise.all(chain.map(async (hop) => await reachable(openStream, protocol, hop, probeTimeoutMs(), request.signal)))
    // a token half the deadline late starts the probes, so a stall's culprit is known when it is declared
    let early: Promise<boolean[]> | undefined
    let probed: boolean[] | undefined
    const watch = failover === undefined
      ? undefined
      : {
          deadline: (first: boolean) => pace.deadline(failover.tokenTimeoutMs, first),
          slow: () => {
            if (early !== undefined) return
            const started = probe()
            early = started
            void started.then((alive) => { if (early === started) probed = alive })
          },
          token: () => { early = undefined; probed = undefined },
          // the stalled stage after the first, when the early probes already found it
          culprit: () => { const i = probed?.findIndex((ok, k) => k > 0 && !ok) ?? -1; return i > 0 ? chain[i].peer.toString() : undefined }
        }
    try {
      for await (const ev of runSession(openStream, protocol, {
        ...request,
        chain,
        prompt: history,
        ...(request.sampling !== undefined ? { sampling: { ...request.sampling, maxTokens: maxTokens > 0 ? maxTokens - generated.length : 0, skipDraws: generated.length } } : {}),
        sessionId
      }, pace, watch, failover === undefined ? undefined : { resume: failedSession })) {
        if (ev.type === 'token') {
          generated.push(ev.id)
          if (resuming !== undefined) { yield { type: 'resumed', attempt: resuming.attempt, ms: performance.now() - resuming.detectedAt }; resuming = undefined }
        }
        if (ev.type === 'done') { yield { ...ev, tokens: generated.length }; return }
        if (ev.type !== 'open' || attempt === 0) yield ev
      }
      return
    } catch (err) {
      const detectedAt = performance.now()
      const status = err instanceof InferenceFailedError ? err.status : 'ERROR'
      if (failover === undefined || attempt >= (failover.maxAttempts ?? FAILOVER_MAX_ATTEMPTS) || status === 'CANCELLED' || request.signal?.aborted === true) throw err
      // a stage that saw the failure names the peer (Result.peer): no probe needed; else probe every hop
      const named = err instanceof InferenceFailedError && err.peer !== undefined ? chain.findIndex((h) => h.peer.toString() === err.peer) : -1
      const alive = named >= 0 ? chain.map((_, i) => i !== named) : await (status === 'STALLED' && early !== undefined ? early : probe())
      if (refusedByFirstStage.has(err as Error)) alive[0] = false
      const replaced: number[] = []
      const next = [...chain]
      for (let i = 0; i < chain.length; i++) {
        // a hop already swept away by a wider replacement needs none of its own
        if (alive[i] || !next.includes(chain[i])) continue
        const hop = await failover.replace(chain[i], i)
        if (hop === undefined || (Array.isArray(hop) && hop.length === 0)) throw err
        if (!splice(next, chain[i], Array.isArray(hop) ? hop : [hop])) throw new InferenceFailedError(status, `the replacement for hop ${i} does not tile a span of the chain around [${chain[i].start}, ${chain[i].end})`, { cause: err })
        replaced.push(i)
      }
      chain = next
      failedSession = sessionId
      sessionId = crypto.randomUUID()
      resuming = { attempt: attempt + 1, detectedAt }
      yield { type: 'retry', attempt: attempt + 1, status, replaced, replayed: request.prompt.length + generated.length, detectMs: detectedAt - pace.last, probeMs: performance.now() - detectedAt, culprit: named >= 0 ? 'named' : 'probed' }
    }
  }
}

/** The seed as the wire carries it: a safe non-negative integer (RangeError otherwise). */
function wireSeed (seed: number | bigint): number {
  const n = Number(seed)
  if (!Number.isSafeInteger(n) || n < 0 || BigInt(n) !== BigInt(seed)) throw new RangeError(`seed must be an integer in [0, 2^53), got ${seed}`)
  return n
}

/**
 * One session on one chain, no failover. With `watch`, a watchdog aborts the session (status
 * STALLED) when the next token (the first: `first` true) is later than its deadline.
 */
async function * runSession (openStream: OpenStream, protocol: string, request: InferenceRequest, pace: Pace, watch?: StallWatch, resumable?: { resume: string }): AsyncGenerator<InferenceEvent> {
  const { chain, prompt, signal } = request
  if (chain.length === 0) throw new RangeError('a chain needs at least one stage')
  if (prompt.length === 0 || prompt.length > request.maxLength) throw new RangeError('the prompt needs 1 to maxLength tokens')
  const seed = wireSeed(request.sampling?.seed ?? 1)
  const sessionId = request.sessionId ?? crypto.randomUUID()
  const t0 = performance.now()
  let stream: Stream
  try {
    stream = await openStream(chain[0].peer, protocol, { signal })
  } catch (err) {
    throw new InferenceFailedError('DIAL', `cannot reach the first stage ${chain[0].peer.toString()}`, { cause: err })
  }
  const ch = frameChannel(stream, INFERENCE_MAX_FRAME_BYTES)
  const onAbort = (): void => { stream.abort(new Error('inference cancelled')) }
  signal?.addEventListener('abort', onAbort, { once: true })
  let stalledAfter: number | undefined
  let watchdog: ReturnType<typeof setTimeout> | undefined
  let halfway: ReturnType<typeof setTimeout> | undefined
  const arm = (first: boolean): void => {
    if (watch === undefined) return
    const ms = watch.deadline(first)
    halfway = setTimeout(watch.slow, ms / 2)
    watchdog = setTimeout(() => {
      stalledAfter = ms
      const peer = watch.culprit()
      if (peer === undefined) { stream.abort(new Error('no token within the deadline')); return }
      // the probes found the stalled stage: tell the first stage, which keeps its KV for the repair
      // (span-only replay) and passes it on to the stages before the stalled one; then end
      void ch.end({ result: { status: Status.DOWNSTREAM, sessionId, detail: 'no token within the deadline', peer } })
        .finally(() => { stream.abort(new Error('no token within the deadline')) })
    }, ms)
  }
  const disarm = (): void => { clearTimeout(halfway); clearTimeout(watchdog) }
  // the deadline runs only while we wait for the stage, not while the caller holds a token
  const read = async (first = false): Promise<Frame> => {
    arm(first)
    try {
      return await ch.read({ signal })
    } catch (err) {
      if (signal?.aborted === true) throw new InferenceFailedError('CANCELLED', 'inference cancelled', { cause: err })
      if (stalledAfter !== undefined) throw new InferenceFailedError('STALLED', `no token within ${Math.round(stalledAfter)} ms`, { cause: err })
      const status = isEndOfStream(err) ? 'CLOSED' : isReset(err) ? 'RESET' : readFailureStatus(err)
      throw new InferenceFailedError(status, `the first stage's stream failed: ${asError(err).message}`, { cause: err })
    } finally {
      disarm()
    }
  }
  const failed = (frame: Frame): InferenceFailedError => {
    const r = frame.result
    return new InferenceFailedError(r?.status ?? Status.MALFORMED, r === undefined ? 'unexpected frame from the first stage' : `${r.status}: ${r.detail}`, { peer: r?.peer })
  }
  let finished = false
  try {
    const s = request.sampling ?? {}
    await ch.write({
      open: {
        sessionId,
        model: request.model ?? '',
        start: chain[0].start,
        end: chain[0].end,
        maxLength: request.maxLength,
        codec: wireCodec(request.codec ?? 'f32'),
        chain: chain.slice(1).map((h) => ({ peer: h.peer.toString(), start: h.start, end: h.end })),
        origin: '',
        sampling: { temperature: s.temperature ?? 0, topP: s.topP ?? 1, topK: s.topK ?? 0, seed, maxTokens: s.maxTokens ?? 0, skipDraws: s.skipDraws ?? 0 },
        resumable: resumable !== undefined,
        resume: resumable?.resume ?? '',
        resumeTo: resumable !== undefined && resumable.resume !== '' ? prompt.length : 0
      }
    })
    const opened = await read(true)
    if (opened.result?.status !== Status.OK) {
      const err = failed(opened)
      if (FIRST_STAGE_REFUSALS.has(err.status)) refusedByFirstStage.add(err)
      throw err
    }
    pace.openMs = performance.now() - t0
    yield { type: 'open', sessionId, ms: pace.openMs }
    const dtype = wireCodec('f32')
    const signature = request.signer?.sign(stepMessage(sessionId, 0, { tokens: prompt, dtype, shape: [] })) ?? new Uint8Array(0)
    await ch.write({ step: { sessionId, position: 0, tokens: prompt, hidden: new Uint8Array(0), dtype, shape: [], signature } })
    let tokens = 0
    for (;;) {
      const frame = await read(tokens === 0)
      const token = frame.token
      if (token === undefined) throw stalledAfter !== undefined ? new InferenceFailedError('STALLED', `no token within ${Math.round(stalledAfter)} ms`) : failed(frame)
      pace.token(tokens > 0)
      watch?.token()
      if (!token.bos) {
        tokens++
        yield { type: 'token', id: token.token, position: token.position, signature: token.signature }
      }
      if (token.done) {
        finished = true
        yield { type: 'done', reason: token.bos ? 'bos' : 'steps', tokens, receipt: token.receipt, first: token.first, sessionId }
        return
      }
    }
  } finally {
    disarm()
    signal?.removeEventListener('abort', onAbort)
    // an early return by the caller, or an error, cancels the session: closing cascades down the chain
    if (finished) await ch.end()
    else stream.abort(new Error('inference ended early'))
  }
}
