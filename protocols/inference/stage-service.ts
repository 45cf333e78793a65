// The stage service: a node holding a shard serves `/mycelium/<swarm>/inference/1.0.0`. Each
// session is one engine Session (its KV cache) and up to three streams (stage-session.ts); every
// engine step goes through the stage's scheduler, which batches the sessions' decode steps
// (stage-scheduler.ts); opens and steps are checked first (stage-checks.ts). This file holds the
// service's lifecycle, the open and attach handshakes and the teardown; a session's steps are
// stage-step.ts, the read loops of its streams stage-streams.ts, failover's kept sessions
// stage-suspend.ts.
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
import { encodedHiddenBytes } from '../../engine/codecs.ts'
import type { HiddenCodec as EngineCodec } from '../../engine/codecs.ts'
import type { Session, Shard } from '../../engine/index.ts'
import { protocolId } from '../swarm.ts'
import {
  INFERENCE_MAX_FRAME_BYTES, INFERENCE_MAX_ID_LENGTH, INFERENCE_MAX_INBOUND_STREAMS, INFERENCE_MAX_KV_BYTES, INFERENCE_MAX_SESSIONS,
  INFERENCE_MAX_VERIFIED_ROOTS, INFERENCE_OPEN_TIMEOUT_MS, INFERENCE_PROTOCOL_NAME, INFERENCE_PROTOCOL_VERSION, INFERENCE_SESSION_TIMEOUT_MS, INFERENCE_SUSPEND_TIMEOUT_MS
} from './constants.ts'
import { Status } from './inference.pb.js'
import type { Frame, OpenSession } from './inference.pb.js'
import { BatchSigner, frameSigner, VerifiedRoots } from './frame-signature.ts'
import type { FrameSigner } from './frame-signature.ts'
import { checkOpen, kvBytesFor, Refusal } from './stage-checks.ts'
import { StageScheduler } from './stage-scheduler.ts'
import { connectOnward, stageSession } from './stage-session.ts'
import type { StageSession } from './stage-session.ts'
import type { StageContext } from './stage-step.ts'
import { readTokens, readUpstream, watchDownstream } from './stage-streams.ts'
import { resendKept, resumeKept, SuspendedSessions } from './stage-suspend.ts'
import type { StageTap } from './stage-frames.ts'
import type { InferenceStageComponents, InferenceStageInit, StageShard, StageStats } from './stage-types.ts'
import { asError, engineCodec, frameChannel, isEndOfStream, isReset, readFailureStatus } from './wire.ts'
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
  /** What a session's steps and stream loops use of this service (stage-step.ts, stage-streams.ts). */
  private readonly ctx: StageContext

  readonly [Symbol.toStringTag] = 'mycelium/inference'

  constructor (components: InferenceStageComponents, init: InferenceStageInit = {}) {
    this.components = components
    this.init = init
    this.protocol = inferenceProtocol(init.swarm)
    this.log = components.logger.forComponent('mycelium:protocols:inference')
    this.scheduler = new StageScheduler({ maxQueued: init.maxQueuedSteps })
    this.signer = frameSigner(components.privateKey, components.peerId.toString())
    this.batchSigner = this.signer === undefined ? undefined : new BatchSigner(this.signer)
    this.ctx = {
      init,
      self: components.peerId.toString(),
      scheduler: this.scheduler,
      counters: this.counters,
      roots: this.roots,
      shutdown: () => this.shutdown.signal,
      sessionsOn: (shard) => this.sessionsOn(shard),
      tapOf: (s) => this.taps.get(s),
      badSignature: () => { this.badSignatures++ },
      teardown: this.teardown.bind(this)
    }
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
    // span-only failover: the kept KV and frames, truncated to what the resume keeps (stage-suspend.ts)
    if (kept !== undefined) {
      resumeKept(s, kept, open.resumeTo ?? 0)
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
      // a resume: the kept frames the next hop needs, re-signed (stage-suspend.ts)
      if (s.adopted && s.downstream !== undefined) await resendKept(s, s.downstream, needs)
      await upstream.write({ result: { status: Status.OK, sessionId: s.id, detail: '', peer: '', position: s.adopted ? s.session.position : 0 } })
    } catch (err) {
      // (the token stream to the first stage failing is not pinned on a peer: either side may be at fault)
      const r = err instanceof Refusal ? err : new Refusal(Status.DOWNSTREAM, `opening the chain onward failed: ${asError(err).message}`)
      await this.teardown(s, r.status, r.message, r.peer)
      return
    }
    if (s.downstream !== undefined) void watchDownstream(this.ctx, s, s.downstream)
    await readUpstream(this.ctx, s)
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
    await readTokens(this.ctx, s, ch, remotePeer)
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
