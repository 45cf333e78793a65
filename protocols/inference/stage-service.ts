// The stage service: a node holding a shard serves `/mycelium/<swarm>/inference/1.0.0`. Each
// session is one engine Session (its KV cache) and up to three streams (stage-session.ts); every
// engine step goes through the stage's scheduler, which batches the sessions' decode steps
// (stage-scheduler.ts); opens and steps are checked first (stage-checks.ts).
//
// The decode loop is a ring of stages: the first stage runs the token, hidden states go stage to
// stage, the last stage samples and sends the token straight back to the first stage, which runs
// it at once and also forwards it to the client (off the critical path). Any refusal or failure
// is terminal for the session: the stage that saw it answers a Result upstream, every stage tears
// its part down, and closing a stream (EOF or reset) cascades the teardown along the chain.
//
//   services: { inference: inferenceStageService({ swarm }) }  then  services.inference.serve(shard, { model })
import { peerIdFromString } from '@libp2p/peer-id'
import type { Logger, Startable, Stream } from '@libp2p/interface'
import { decodeHidden, encodedHiddenBytes } from '../../engine/codecs.ts'
import type { HiddenCodec as EngineCodec } from '../../engine/codecs.ts'
import type { Session, Shard, StageInput, StageOutput } from '../../engine/index.ts'
import { protocolId } from '../swarm.ts'
import {
  INFERENCE_IDLE_TIMEOUT_MS, INFERENCE_MAX_FRAME_BYTES, INFERENCE_MAX_ID_LENGTH, INFERENCE_MAX_INBOUND_STREAMS,
  INFERENCE_MAX_KV_BYTES, INFERENCE_MAX_PENDING_CHECKS, INFERENCE_MAX_SESSIONS, INFERENCE_MAX_VERIFIED_ROOTS, INFERENCE_OPEN_TIMEOUT_MS, INFERENCE_PROTOCOL_NAME, INFERENCE_PROTOCOL_VERSION, INFERENCE_SESSION_TIMEOUT_MS, INFERENCE_SUSPEND_TIMEOUT_MS
} from './constants.ts'
import { Status } from './inference.pb.js'
import type { Frame, OpenSession, Step, Token } from './inference.pb.js'
import { BatchSigner, frameSigner, VerifiedRoots } from './frame-signature.ts'
import type { FrameSigner } from './frame-signature.ts'
import { checkOpen, checkStep, kvBytesFor, Refusal } from './stage-checks.ts'
import { StageScheduler } from './stage-scheduler.ts'
import { connectOnward, culprit, nextHopEnd, passOn, signedStep, stageSession } from './stage-session.ts'
import type { SentOutput, StageSession } from './stage-session.ts'
import { SuspendedSessions } from './stage-suspend.ts'
import { observe, receivedSignatureOk, signerOf } from './stage-frames.ts'
import type { StageTap } from './stage-frames.ts'
import type { InferenceStageComponents, InferenceStageInit, StageShard, StageStats } from './stage-types.ts'
import { asError, engineCodec, frameChannel, isEndOfStream, isReset, readFailureStatus, wireCodec } from './wire.ts'
import type { FrameChannel } from './wire.ts'

/** `/mycelium/<swarm>/inference/1.0.0`. */
export function inferenceProtocol (swarm?: string): string {
  return protocolId(swarm ?? 'public', INFERENCE_PROTOCOL_NAME, INFERENCE_PROTOCOL_VERSION)
}

export type { InferenceRegistrar, InferenceStageComponents, InferenceStageInit, StageShard, StageStats } from './stage-types.ts'
export type { StageTap, TapFrame } from './stage-frames.ts'

export class InferenceStageService implements Startable {
  readonly protocol: string
  private readonly scheduler: StageScheduler
  private readonly counters = { opened: 0, refused: 0, steps: 0, tokens: 0, resumed: 0, keptRows: 0 }
  /** Failed resumable sessions kept for a resume, by their id (span-only failover; stage-suspend.ts). */
  private readonly suspended = new SuspendedSessions((bytes) => { this.reservedBytes -= bytes })
  private readonly components: InferenceStageComponents
  private readonly init: InferenceStageInit
  private readonly log: Logger
  private readonly sessions = new Map<string, StageSession>()
  private served: StageShard | undefined
  /** Observers of the sessions opened while `serve()` had one (StageTap). */
  private readonly taps = new WeakMap<StageSession, StageTap>()
  private reservedBytes = 0
  private shutdown = new AbortController()
  /** Signs the frames this stage sends (its libp2p identity key). */
  readonly signer: FrameSigner | undefined
  /** `signer`, a scheduler pass's frames at once (one signature per batch). */
  private readonly batchSigner: BatchSigner | undefined
  /** Batch roots of received frames already verified (one verification per sender's batch). */
  private readonly roots = new VerifiedRoots(INFERENCE_MAX_VERIFIED_ROOTS)
  /** Received frames whose signature did not verify (the session was ended, naming the sender). */
  badSignatures = 0

  readonly [Symbol.toStringTag] = 'mycelium/inference'

  constructor (components: InferenceStageComponents, init: InferenceStageInit = {}) {
    this.components = components
    this.init = init
    this.protocol = inferenceProtocol(init.swarm)
    this.log = components.logger.forComponent('mycelium:protocols:inference')
    this.scheduler = new StageScheduler({ maxQueued: init.maxQueuedSteps })
    this.signer = frameSigner(components.privateKey, components.peerId.toString())
    this.batchSigner = this.signer === undefined ? undefined : new BatchSigner(this.signer)
  }

  /** Sessions opened and refused, engine steps run, tokens relayed; and the batching counters. */
  get stats (): StageStats {
    const signing = { signatures: this.batchSigner?.signatures ?? 0, signedFrames: this.batchSigner?.frames ?? 0, verifications: this.roots.verifications, verifiedFromCache: this.roots.hits }
    return { ...this.counters, ...this.scheduler.stats, batchSizes: { ...this.scheduler.stats.batchSizes }, ...signing }
  }

  /**
   * Serves `shard` to new sessions from now on (undefined: refuse them with WRONG_LAYERS). Open
   * sessions finish on the shard they opened on; `sessionsOn` tells when an old shard can close.
   */
  serve (stage: (StageShard & { tap?: StageTap }) | undefined): void {
    this.served = stage
  }

  /** Sessions still running on `shard`. */
  sessionsOn (shard: Shard): number {
    let n = 0
    for (const s of this.sessions.values()) if (s.shard === shard) n++
    return n
  }

  /** Sessions held now, KV bytes reserved for them and held by their caches. */
  get usage (): { sessions: number, reservedBytes: number, kvBytes: number } {
    let kvBytes = 0
    for (const s of this.sessions.values()) kvBytes += s.session.kvBytes
    kvBytes += this.suspended.kvBytes
    // a suspended session holds its memory like a live one
    return { sessions: this.sessions.size + this.suspended.size, reservedBytes: this.reservedBytes, kvBytes }
  }

  async start (): Promise<void> {
    this.shutdown = new AbortController()
    await this.components.registrar.handle(this.protocol, async (stream, connection) => {
      await this.handle(stream, connection.remotePeer.toString())
    }, {
      maxInboundStreams: this.init.maxInboundStreams ?? INFERENCE_MAX_INBOUND_STREAMS,
      // hidden states would eat a relayed circuit's data allowance
      runOnLimitedConnection: false
    })
  }

  async stop (): Promise<void> {
    this.shutdown.abort()
    await this.components.registrar.unhandle(this.protocol)
    await Promise.all([...this.sessions.values()].map(async (s) => { await this.teardown(s, Status.INTERNAL, 'stage stopping') }))
    this.suspended.releaseAll()
  }

  /** Serves one inbound stream (exported through the service for in-memory stream tests). */
  async handle (stream: Stream, remotePeer: string): Promise<void> {
    const ch = frameChannel(stream, this.maxFrameBytes)
    let first: Frame
    try {
      first = await ch.read({ signal: AbortSignal.any([this.shutdown.signal, AbortSignal.timeout(this.openTimeoutMs)]) })
    } catch (err) {
      // a peer that leaves before its first frame (EOF, or a reset: e.g. an older client's liveness
      // probe) is owed no answer, and it is no error
      if (isEndOfStream(err) || (isReset(err) && !this.shutdown.signal.aborted)) { await ch.end(); return }
      const status = this.shutdown.signal.aborted ? Status.INTERNAL : (err as Error).name === 'TimeoutError' || (err as Error).name === 'AbortError' ? Status.TIMEOUT : readFailureStatus(err)
      await this.refuse(ch, status, '', 'unreadable first frame')
      return
    }
    // a liveness probe (the client's failover): answered at once, no session, nothing logged
    if (first.probe !== undefined) await ch.end({ result: { status: Status.OK, sessionId: '', detail: '', peer: '', position: 0 } })
    else if (first.open !== undefined) await this.open(ch, first.open, remotePeer)
    else if (first.attach !== undefined) await this.attach(ch, first.attach.sessionId, remotePeer)
    else if (first.step !== undefined) await this.refuse(ch, Status.UNKNOWN_SESSION, first.step.sessionId, 'no session is open on this stream')
    else await this.refuse(ch, Status.MALFORMED, '', 'a stream starts with open or attach')
  }

  private get openTimeoutMs (): number { return this.init.openTimeoutMs ?? INFERENCE_OPEN_TIMEOUT_MS }

  private async refuse (ch: FrameChannel, status: Status, sessionId: string, detail: string): Promise<void> {
    this.counters.refused++
    this.log('refused %s: %s', status, detail)
    await ch.end({ result: { status, sessionId: sessionId.slice(0, INFERENCE_MAX_ID_LENGTH), detail, peer: '', position: 0 } })
  }

  private async open (upstream: FrameChannel, open: OpenSession, remotePeer: string): Promise<void> {
    const shard = this.served?.shard
    const refusal = checkOpen(open, {
      shard,
      model: this.served?.model,
      isOpen: (id) => this.sessions.has(id),
      sessions: this.sessions.size + this.suspended.size,
      maxSessions: this.init.maxSessions ?? INFERENCE_MAX_SESSIONS,
      reservedBytes: this.reservedBytes,
      maxKvBytes: this.init.maxKvBytes ?? INFERENCE_MAX_KV_BYTES
    })
    if (refusal !== undefined || shard === undefined) {
      await this.refuse(upstream, refusal?.status ?? Status.WRONG_LAYERS, open.sessionId, refusal?.message ?? 'no shard')
      return
    }
    // the frames a resumable session passes on are kept: reserved with its KV
    const kept = this.suspended.adopt(open, shard, remotePeer)
    await kept?.idle
    const sentBytes = open.resumable === true && !shard.isLast ? open.maxLength * encodedHiddenBytes(engineCodec(open.codec) as EngineCodec, shard.config.dim) : 0
    if (this.reservedBytes + kvBytesFor(shard, open.maxLength) + sentBytes > (this.init.maxKvBytes ?? INFERENCE_MAX_KV_BYTES)) {
      kept?.session.close()
      await this.refuse(upstream, Status.FULL, open.sessionId, 'no room for the frames a resumable session keeps')
      return
    }
    let session: Session
    try {
      session = kept?.session ?? shard.openSession({ maxLength: open.maxLength })
    } catch (err) {
      await this.refuse(upstream, Status.INTERNAL, open.sessionId, `engine: ${(err as Error).name}`)
      return
    }
    const s = stageSession(open, shard, session, upstream)
    if (this.batchSigner !== undefined) s.signer = this.batchSigner
    s.reservedBytes += sentBytes
    // span-only failover: keep the positions before the history's end (the last stage one fewer: it
    // must run a row to sample), and before that only whole frames passed on (a replacement after
    // us is fed from them)
    if (kept !== undefined) {
      const to = open.resumeTo ?? 0
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
      this.counters.resumed++
    }
    const tap = (this.served as { tap?: StageTap } | undefined)?.tap
    if (tap !== undefined) this.taps.set(s, tap)
    if (!shard.isFirst) s.prevPeer = remotePeer
    else s.client = remotePeer
    s.expiry = setTimeout(() => { void this.teardown(s, Status.TIMEOUT, 'session expired') }, this.init.sessionTimeoutMs ?? INFERENCE_SESSION_TIMEOUT_MS)
    this.reservedBytes += s.reservedBytes
    this.sessions.set(s.id, s)
    this.counters.opened++
    const signal = AbortSignal.any([this.shutdown.signal, s.done.signal, AbortSignal.timeout(this.openTimeoutMs)])
    try {
      const needs = await connectOnward(s, open, {
        self: this.components.peerId.toString(),
        maxFrameBytes: this.maxFrameBytes,
        openStream: async (peer, options) => await this.components.connectionManager.openStream(peerIdFromString(peer), this.protocol, options)
      }, signal)
      // a resume: the next hop needs the rows from `needs` on; the kept frames before our KV position
      // feed it (a fresh replacement needs them all), what we run from here on follows
      if (s.adopted && s.downstream !== undefined) {
        for (const f of s.sent ?? []) {
          // signed again: the kept frames were signed under the failed session's id
          if (f.position + f.T > needs) await s.downstream.write({ step: await signedStep(s, f.position, f.T, f.hidden as Uint8Array<ArrayBuffer>) })
        }
      }
      await upstream.write({ result: { status: Status.OK, sessionId: s.id, detail: '', peer: '', position: s.adopted ? s.session.position : 0 } })
    } catch (err) {
      // (the token stream to the first stage failing is not pinned on a peer: either side may be at fault)
      const r = err instanceof Refusal ? err : new Refusal(Status.DOWNSTREAM, `opening the chain onward failed: ${asError(err).message}`)
      await this.teardown(s, r.status, r.message, r.peer)
      return
    }
    if (s.downstream !== undefined) void this.watchDownstream(s, s.downstream)
    await this.readUpstream(s)
  }

  private get maxFrameBytes (): number { return this.init.maxFrameBytes ?? INFERENCE_MAX_FRAME_BYTES }

  /** First stage: the last stage attaches the stream its sampled tokens come back on. */
  private async attach (ch: FrameChannel, sessionId: string, remotePeer: string): Promise<void> {
    const s = this.sessions.get(sessionId)
    if (s === undefined || s.lastPeer === undefined || s.back !== undefined || s.lastPeer !== remotePeer) {
      await this.refuse(ch, Status.UNKNOWN_SESSION, sessionId, 'no session awaits a token stream from this peer')
      return
    }
    s.back = ch
    s.onAttach()
    await ch.write({ result: { status: Status.OK, sessionId, detail: '', peer: '', position: 0 } })
    for (;;) {
      let frame: Frame
      const idle = AbortSignal.timeout(this.idleTimeoutMs)
      try {
        frame = await ch.read({ signal: AbortSignal.any([this.shutdown.signal, s.done.signal, idle]) })
      } catch (err) {
        if (s.closed) return
        if (idle.aborted) await this.teardown(s, Status.TIMEOUT, 'no token from the last stage within the idle deadline', remotePeer)
        // a reset or broken stream: the last stage died (or aborted); a clean end: it ended the
        // session deliberately without saying why (it says why in a Result when it knows), so the
        // cause lies elsewhere on the ring and nobody is named
        else if (isEndOfStream(err)) await this.teardown(s, Status.DOWNSTREAM, 'the token stream from the last stage ended')
        else if (!this.shutdown.signal.aborted) await this.teardown(s, Status.DOWNSTREAM, `the token stream from the last stage ${isReset(err) ? 'was reset' : 'broke'}`, remotePeer)
        return
      }
      if (frame.token !== undefined && frame.token.sessionId === s.id) {
        await s.prefillDone
        if (!await this.onToken(s, frame.token)) return
      } else {
        const r = frame.result
        if (r !== undefined && r.status !== Status.OK) await this.teardown(s, r.status, r.detail, culprit(r, remotePeer))
        else await this.teardown(s, Status.MALFORMED, 'unexpected frame on the token stream', remotePeer)
        return
      }
    }
  }

  private get idleTimeoutMs (): number { return this.init.idleTimeoutMs ?? INFERENCE_IDLE_TIMEOUT_MS }

  /** Reads steps (and close) from upstream until the session ends. */
  private async readUpstream (s: StageSession): Promise<void> {
    const shard = s.shard
    for (;;) {
      // the client's stream on the first stage is quiet while tokens flow: only the session
      // deadline bounds it; every other upstream must keep sending hidden states
      const idle = shard.isFirst ? [] : [AbortSignal.timeout(this.idleTimeoutMs)]
      let frame: Frame
      try {
        frame = await s.upstream.read({ signal: AbortSignal.any([this.shutdown.signal, s.done.signal, ...idle]) })
      } catch (err) {
        if (s.closed) return
        // a session ends with a `close` frame; a resumable session's previous stage that vanishes
        // without one (a crash often reaches us as a clean end) failed: keep the KV for a resume
        if (isEndOfStream(err)) await (s.resumable && !shard.isFirst ? this.teardown(s, Status.DOWNSTREAM, 'the previous stage\'s stream ended without a close', s.prevPeer ?? '') : this.teardown(s, Status.OK, 'closed by upstream'))
        else if ((err as Error).name === 'AbortError' || (err as Error).name === 'TimeoutError') await this.teardown(s, Status.TIMEOUT, 'no step within the idle deadline')
        // a reset upstream: on the first stage the client went away (it aborts its stream to cancel);
        // elsewhere the previous stage died or aborted — a failure along the ring, named for the
        // first stage (the last stage's Result reaches it on the token stream)
        else if (isReset(err)) await (shard.isFirst ? this.teardown(s, Status.OK, 'the client reset its stream') : this.teardown(s, Status.DOWNSTREAM, 'the previous stage reset its stream', s.prevPeer ?? ''))
        else await this.teardown(s, readFailureStatus(err), 'unreadable frame')
        return
      }
      if (frame.close !== undefined) { await this.teardown(s, Status.OK, 'closed'); return }
      // the previous stage ended the session with a status (it passes its Result on downstream too)
      const r = frame.result
      if (r !== undefined && r.status !== Status.OK && !shard.isFirst) { await this.teardown(s, r.status, `upstream: ${r.detail}`, culprit(r, s.prevPeer ?? '')); return }
      // the client saw the ring stall and names the stage (its probe found it): a failure along the ring
      if (r !== undefined && r.status === Status.DOWNSTREAM && shard.isFirst && (r.peer ?? '') !== '') { await this.teardown(s, Status.DOWNSTREAM, 'the client reports a stalled stage', r.peer); return }
      if (frame.step === undefined) { await this.teardown(s, Status.MALFORMED, 'expected a step'); return }
      if (shard.isFirst && s.prefilled) { await this.teardown(s, Status.OUT_OF_ORDER, 'the prompt was already sent: decode steps come from the last stage'); return }
      s.prefilled = true
      const ok = await this.step(s, frame.step)
      s.onPrefilled()
      if (!ok) return
    }
  }

  /**
   * Runs one step (through the batching scheduler) and passes its output on; false when the session
   * ended. `fed`: the Token a first stage runs (the last stage's signature covers the token, not the step).
   */
  private async step (s: StageSession, step: Step, fed?: Token): Promise<boolean> {
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
        if (skip >= T) { this.counters.keptRows += T; return true }
        s.adopted = false
      }
      input = shard.isFirst ? { tokens: step.tokens.slice(skip) } : { hidden: decodeHidden(s.codec, step.hidden, T * dim).subarray(skip * dim) }
      this.counters.keptRows += skip
      T -= skip
      position += skip
      const running = this.run(s, input, T)
      s.running = running.catch(() => {})
      out = await running
    } catch (err) {
      if (s.closed) return false
      const r = err instanceof Refusal ? err : new Refusal(Status.INTERNAL, 'step failed')
      await this.teardown(s, r.status, r.message)
      return false
    }
    if (s.closed) return false
    this.counters.steps++
    let passed: { token?: Token, sent?: SentOutput }
    try {
      passed = await passOn(s, position, T, out)
    } catch (err) {
      await this.teardown(s, Status.DOWNSTREAM, `forwarding failed: ${asError(err).message}`, s.nextPeer ?? s.origin ?? '')
      return false
    }
    const self = this.components.peerId.toString()
    const signer = signerOf(s, fed, self)
    const tap = this.taps.get(s)
    if (tap !== undefined) observe(tap, s, step, fed, signer, self, { position, T }, passed.sent)
    // the received frame's signature, checked on the thread pool once its output is on its way
    // (off the per-hop path); a session has at most INFERENCE_MAX_PENDING_CHECKS in flight (past
    // that its next step waits), and it ends OK only after all of them (onToken)
    if (this.init.verifyFrames !== false) {
      const check = this.checkFrame(s, step, fed, signer, self)
      s.checks.add(check)
      void check.then(() => s.checks.delete(check))
      if (s.checks.size > INFERENCE_MAX_PENDING_CHECKS) await Promise.race(s.checks)
      if (s.closed) return false
    }
    return passed.token === undefined || await this.onToken(s, passed.token)
  }

  /** One engine step of `s` through the scheduler; engine and queue errors become Refusals. */
  private async run (s: StageSession, input: StageInput, T: number): Promise<StageOutput> {
    try {
      // the first stage of a ring of n splits its sessions into n microbatches (stage-scheduler.ts)
      const microbatch = s.ringSize > 1 ? Math.ceil(this.sessionsOn(s.shard) / s.ringSize) : Number.POSITIVE_INFINITY
      return await this.scheduler.run(s.shard, s.session, input, T, microbatch)
    } catch (err) {
      const name = (err as Error).name
      if (name === 'SchedulerFullError') throw new Refusal(Status.FULL, 'the stage\'s step queue is full')
      throw new Refusal(Status.INTERNAL, `engine: ${name}`)
    }
  }

  /** Checks a received frame's signature; a bad one ends the session MALFORMED, naming its sender. Never rejects. */
  private async checkFrame (s: StageSession, step: Step, fed: Token | undefined, signer: string, self: string): Promise<void> {
    if (await receivedSignatureOk(s, step, fed, signer, self, this.roots) || s.closed) return
    this.badSignatures++
    await this.teardown(s, Status.MALFORMED, `a frame whose signature is not its sender's at position ${step.position}`, s.shard.isFirst && fed === undefined ? '' : signer).catch(() => {})
  }

  /** First stage: a sampled token came back; tell the client, then run it. False when the session ended. */
  private async onToken (s: StageSession, token: Token): Promise<boolean> {
    this.counters.tokens++
    if (token.done) {
      // a session ends OK only once every frame it ran was found validly signed
      await Promise.all(s.checks)
      if (s.closed) return false
      await s.upstream.end({ token })
      await this.teardown(s, Status.OK, 'done')
      return false
    }
    // the client's copy is queued, not awaited: it is off the critical path (queued before the
    // next step, so tokens reach the client in order)
    s.upstream.write({ token }).catch(() => { void this.teardown(s, Status.OK, 'client went away') })
    // the scheduler runs the step on a later turn of the event loop, with the other sessions'
    // ready steps: a one-stage ring does not recurse synchronously, and I/O gets in between tokens
    if (s.closed) return false
    return await this.step(s, { sessionId: s.id, position: token.position + 1, tokens: [token.token], hidden: new Uint8Array(0), dtype: wireCodec(s.codec), shape: [], signature: new Uint8Array(0) }, token)
  }

  /** Reads the next hop's stream: any Result or end there ends the session (DOWNSTREAM naming the hop, or whom its Result names). */
  private async watchDownstream (s: StageSession, ch: FrameChannel): Promise<void> {
    const end = await nextHopEnd(ch, s.nextPeer ?? '', AbortSignal.any([this.shutdown.signal, s.done.signal]))
    if (end !== undefined && !s.closed) await this.teardown(s, end.status, end.detail, end.peer)
  }

  /**
   * Ends a session once: status to upstream (unless OK; `peer`: the other stage that failed or
   * refused, when known), every stream closed, KV cache freed.
   */
  private async teardown (s: StageSession, status: Status, detail: string, peer = ''): Promise<void> {
    if (s.closed) return
    s.closed = true
    s.done.abort()
    s.onPrefilled()
    clearTimeout(s.expiry)
    this.sessions.delete(s.id)
    this.scheduler.cancel(s.session)
    // span-only failover: a resumable session that failed further along the ring (another stage is
    // named) keeps its KV cache and reservation a while, for the repaired chain to adopt
    // (only for another stage's failure: DOWNSTREAM, or INTERNAL — its engine failed or it is stopping;
    // a refusal of the client's input or an expiry is no reason to keep anything)
    if (s.resumable && (status === Status.DOWNSTREAM || status === Status.INTERNAL) && peer !== '' && peer !== this.components.peerId.toString() && !this.shutdown.signal.aborted && !this.suspended.has(s.id)) {
      this.suspended.keep(s, this.init.suspendTimeoutMs ?? INFERENCE_SUSPEND_TIMEOUT_MS)
    } else {
      this.reservedBytes -= s.reservedBytes
      s.session.close()
    }
    if (status !== Status.OK) {
      this.counters.refused++
      this.log('session %s ended: %s %s%s', s.id, status, detail, peer === '' ? '' : ` (peer ${peer})`)
    }
    const result = status === Status.OK ? undefined : { result: { status, sessionId: s.id, detail: detail.slice(0, 512), peer, position: 0 } }
    await Promise.all([
      s.upstream.end(result),
      // the next hop learns why too (it keeps its KV for a resume when another stage is named)
      s.downstream?.end(result ?? { close: s.id }),
      // the last stage tells the first stage too (its upstream may be what failed)
      s.back?.end(s.shard.isFirst ? undefined : result)
    ])
  }
}

/** libp2p service factory: `services: { inference: inferenceStageService({ swarm }) }`. */
export function inferenceStageService (init: InferenceStageInit = {}): (components: InferenceStageComponents) => InferenceStageService {
  return (components) => new InferenceStageService(components, init)
}
