// The stage service: a node holding a shard serves `/mycelium/<swarm>/inference/1.0.0`. Each
// session is one engine Session (its KV cache) and up to three streams:
//
//   upstream   the stream the OpenSession came in on (the client's, or the previous stage's)
//   downstream our stream to the next hop (absent on the last stage)
//   back       first stage: the last stage's Attach stream, carrying sampled tokens;
//              last stage: our Attach stream to the first stage (the `origin`)
//
// The decode loop is a ring of stages: the first stage runs the token, hidden states go stage to
// stage, the last stage samples and sends the token straight back to the first stage, which runs
// it at once and also forwards it to the client (off the critical path). Any refusal or failure
// is terminal for the session: the stage that saw it answers a Result upstream, every stage tears
// its part down, and closing a stream (EOF or reset) cascades the teardown along the chain.
//
//   services: { inference: inferenceStageService({ swarm }) }  then  services.inference.serve(shard, { model })
import { peerIdFromString } from '@libp2p/peer-id'
import type { ComponentLogger, Connection, Logger, PeerId, Startable, Stream } from '@libp2p/interface'
import type { ConnectionManager } from '@libp2p/interface-internal'
import { decodeHidden, encodedHiddenBytes, encodeHidden } from '../../engine/codecs.ts'
import type { HiddenCodec as EngineCodec } from '../../engine/codecs.ts'
import type { Session, Shard, StageOutput } from '../../engine/index.ts'
import { createSampler } from '../../engine/sampler.ts'
import type { Sampler } from '../../engine/sampler.ts'
import { protocolId } from '../swarm.ts'
import {
  INFERENCE_IDLE_TIMEOUT_MS, INFERENCE_MAX_CHAIN, INFERENCE_MAX_FRAME_BYTES, INFERENCE_MAX_ID_LENGTH, INFERENCE_MAX_INBOUND_STREAMS,
  INFERENCE_MAX_KV_BYTES, INFERENCE_MAX_SESSIONS, INFERENCE_OPEN_TIMEOUT_MS, INFERENCE_PROTOCOL_NAME, INFERENCE_PROTOCOL_VERSION, INFERENCE_SESSION_TIMEOUT_MS
} from './constants.ts'
import { Status } from './inference.pb.js'
import type { Frame, OpenSession, Step, Token } from './inference.pb.js'
import { engineCodec, frameChannel, isEndOfStream, readFailureStatus, wireCodec } from './wire.ts'
import type { FrameChannel } from './wire.ts'

/** `/mycelium/<swarm>/inference/1.0.0`. */
export function inferenceProtocol (swarm?: string): string {
  return protocolId(swarm ?? 'public', INFERENCE_PROTOCOL_NAME, INFERENCE_PROTOCOL_VERSION)
}

export interface InferenceStageInit {
  /** Swarm whose protocol id is served (default `public`). */
  swarm?: string
  /** Largest frame accepted (default INFERENCE_MAX_FRAME_BYTES). */
  maxFrameBytes?: number
  /** Sessions held at once (default INFERENCE_MAX_SESSIONS) and KV bytes reserved for them (INFERENCE_MAX_KV_BYTES). */
  maxSessions?: number
  maxKvBytes?: number
  /** Deadlines (defaults in constants.ts). */
  openTimeoutMs?: number
  idleTimeoutMs?: number
  sessionTimeoutMs?: number
  /** Concurrent inbound streams per connection (default INFERENCE_MAX_INBOUND_STREAMS). */
  maxInboundStreams?: number
}

/** The part of libp2p's registrar the service uses. */
export interface InferenceRegistrar {
  handle: (protocol: string, handler: (stream: Stream, connection: Connection) => Promise<void>, options: { maxInboundStreams: number, runOnLimitedConnection: boolean }) => Promise<void>
  unhandle: (protocol: string) => Promise<void>
}

export interface InferenceStageComponents {
  peerId: PeerId
  registrar: InferenceRegistrar
  connectionManager: Pick<ConnectionManager, 'openStream'>
  logger: ComponentLogger
}

/** What the stage serves: a loaded shard and the manifest id of its model. */
export interface StageShard {
  shard: Shard
  /** Manifest id clients must name ("" or absent: any). */
  model?: string
}

interface StageSession {
  id: string
  /** The shard the session was opened on: `serve()` may switch the stage's shard meanwhile. */
  shard: Shard
  session: Session
  codec: EngineCodec
  maxLength: number
  reservedBytes: number
  sampler?: Sampler
  maxTokens: number
  generated: number
  /** First stage: the client may send one prefill step; every later step comes from the ring. */
  prefilled: boolean
  /** First stage only: the peer that must attach the token stream (the last hop). */
  lastPeer?: string
  /** First stage: called when the last stage's token stream attaches. */
  onAttach: () => void
  upstream: FrameChannel
  downstream?: FrameChannel
  back?: FrameChannel
  closed: boolean
  done: AbortController
  expiry: ReturnType<typeof setTimeout>
}

/** A refusal inside the service: becomes a Result on the wire. */
class Refusal extends Error {
  readonly status: Status
  constructor (status: Status, detail: string) { super(detail); this.status = status }
}

export class InferenceStageService implements Startable {
  readonly protocol: string
  readonly stats = { opened: 0, refused: 0, steps: 0, tokens: 0 }
  private readonly components: InferenceStageComponents
  private readonly init: InferenceStageInit
  private readonly log: Logger
  private readonly sessions = new Map<string, StageSession>()
  private served: StageShard | undefined
  private reservedBytes = 0
  private shutdown = new AbortController()

  readonly [Symbol.toStringTag] = 'mycelium/inference'

  constructor (components: InferenceStageComponents, init: InferenceStageInit = {}) {
    this.components = components
    this.init = init
    this.protocol = inferenceProtocol(init.swarm)
    this.log = components.logger.forComponent('mycelium:protocols:inference')
  }

  /**
   * Serves `shard` to new sessions from now on (undefined: refuse them with WRONG_LAYERS). Open
   * sessions finish on the shard they opened on; `sessionsOn` tells when an old shard can close.
   */
  serve (stage: StageShard | undefined): void {
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
    return { sessions: this.sessions.size, reservedBytes: this.reservedBytes, kvBytes }
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
  }

  /** Serves one inbound stream (exported through the service for in-memory stream tests). */
  async handle (stream: Stream, remotePeer: string): Promise<void> {
    const ch = frameChannel(stream, this.init.maxFrameBytes ?? INFERENCE_MAX_FRAME_BYTES)
    let first: Frame
    try {
      first = await ch.read({ signal: AbortSignal.any([this.shutdown.signal, AbortSignal.timeout(this.openTimeoutMs)]) })
    } catch (err) {
      if (isEndOfStream(err)) { await ch.end(); return }
      const status = this.shutdown.signal.aborted ? Status.INTERNAL : (err as Error).name === 'TimeoutError' || (err as Error).name === 'AbortError' ? Status.TIMEOUT : readFailureStatus(err)
      await this.refuse(ch, status, '', 'unreadable first frame')
      return
    }
    if (first.open !== undefined) await this.open(ch, first.open)
    else if (first.attach !== undefined) await this.attach(ch, first.attach.sessionId, remotePeer)
    else if (first.step !== undefined) await this.refuse(ch, Status.UNKNOWN_SESSION, first.step.sessionId, 'no session is open on this stream')
    else await this.refuse(ch, Status.MALFORMED, '', 'a stream starts with open or attach')
  }

  private get openTimeoutMs (): number { return this.init.openTimeoutMs ?? INFERENCE_OPEN_TIMEOUT_MS }

  private async refuse (ch: FrameChannel, status: Status, sessionId: string, detail: string): Promise<void> {
    this.stats.refused++
    this.log('refused %s: %s', status, detail)
    await ch.end({ result: { status, sessionId: sessionId.slice(0, INFERENCE_MAX_ID_LENGTH), detail } })
  }

  /** Checks an OpenSession against what this stage holds; returns the refusal, if any. */
  private check (open: OpenSession, shard: Shard | undefined, model: string | undefined): Refusal | undefined {
    if (open.sessionId === '' || open.sessionId.length > INFERENCE_MAX_ID_LENGTH) return new Refusal(Status.MALFORMED, 'session id must be 1-128 characters')
    if (open.model.length > INFERENCE_MAX_ID_LENGTH || open.origin.length > INFERENCE_MAX_ID_LENGTH) return new Refusal(Status.MALFORMED, 'model or origin too long')
    if (open.chain.length > INFERENCE_MAX_CHAIN) return new Refusal(Status.TOO_LARGE, `chain longer than ${INFERENCE_MAX_CHAIN}`)
    if (engineCodec(open.codec) === undefined) return new Refusal(Status.MALFORMED, 'unknown hidden codec')
    if (shard === undefined) return new Refusal(Status.WRONG_LAYERS, 'this node serves no shard')
    if (model !== undefined && model !== '' && open.model !== '' && open.model !== model) return new Refusal(Status.WRONG_MODEL, `this stage serves ${model}`)
    if (open.start !== shard.start || open.end !== shard.end) return new Refusal(Status.WRONG_LAYERS, `this stage holds layers [${shard.start}, ${shard.end})`)
    if (open.maxLength < 1 || open.maxLength > shard.config.seqLen) return new Refusal(Status.OUT_OF_RANGE, `max_length must be 1-${shard.config.seqLen}`)
    if (shard.isLast !== (open.chain.length === 0)) return new Refusal(Status.MALFORMED, shard.isLast ? 'the last stage has no next hop' : 'a next hop is needed after this stage')
    let prevEnd = shard.end
    for (const hop of open.chain) {
      if (hop.peer === '' || hop.peer.length > INFERENCE_MAX_ID_LENGTH || hop.start !== prevEnd || hop.end <= hop.start) return new Refusal(Status.MALFORMED, 'the chain must continue the layer range without gaps')
      prevEnd = hop.end
    }
    if (!shard.isFirst && open.chain.length === 0 && open.origin === '') return new Refusal(Status.MALFORMED, 'the last stage needs the origin (first stage) peer id')
    const s = open.sampling
    if (shard.isLast && s !== undefined && (!(s.temperature >= 0) || !(s.topP >= 0 && s.topP <= 1) || s.skipDraws > open.maxLength)) return new Refusal(Status.MALFORMED, 'bad sampling parameters')
    if (this.sessions.has(open.sessionId)) return new Refusal(Status.MALFORMED, 'session id already open on this stage')
    const reserve = kvBytesFor(shard, open.maxLength)
    const maxKv = this.init.maxKvBytes ?? INFERENCE_MAX_KV_BYTES
    if (this.sessions.size >= (this.init.maxSessions ?? INFERENCE_MAX_SESSIONS) || this.reservedBytes + reserve > maxKv) {
      return new Refusal(Status.FULL, `stage full: ${this.sessions.size} sessions, ${this.reservedBytes} of ${maxKv} KV bytes reserved`)
    }
    return undefined
  }

  private async open (upstream: FrameChannel, open: OpenSession): Promise<void> {
    const shard = this.served?.shard
    const refusal = this.check(open, shard, this.served?.model)
    if (refusal !== undefined || shard === undefined) {
      await this.refuse(upstream, refusal?.status ?? Status.WRONG_LAYERS, open.sessionId, refusal?.message ?? 'no shard')
      return
    }
    const codec = engineCodec(open.codec) as EngineCodec
    const reservedBytes = kvBytesFor(shard, open.maxLength)
    let session: Session
    try {
      session = shard.openSession({ maxLength: open.maxLength })
    } catch (err) {
      await this.refuse(upstream, Status.INTERNAL, open.sessionId, `engine: ${(err as Error).name}`)
      return
    }
    this.reservedBytes += reservedBytes
    const s: StageSession = {
      id: open.sessionId,
      shard,
      session,
      codec,
      maxLength: open.maxLength,
      reservedBytes,
      maxTokens: open.sampling?.maxTokens ?? 0,
      generated: 0,
      prefilled: false,
      upstream,
      closed: false,
      onAttach: () => {},
      done: new AbortController(),
      expiry: setTimeout(() => { void this.teardown(s, Status.TIMEOUT, 'session expired') }, this.init.sessionTimeoutMs ?? INFERENCE_SESSION_TIMEOUT_MS)
    }
    if (shard.isLast) {
      const p = open.sampling
      s.sampler = createSampler({ temperature: p?.temperature ?? 0, topP: p?.topP === 0 ? 1 : (p?.topP ?? 1), topK: p?.topK ?? 0, seed: p?.seed ?? 1n })
      // a failover replay continues the PRNG where the failed session left it: every non-greedy
      // sample draws exactly one coin, whatever the logits, so a one-logit sample advances it by one
      if ((p?.temperature ?? 0) > 0) for (let i = 0; i < (p?.skipDraws ?? 0); i++) s.sampler.sample(new Float32Array(1))
    }
    // the last stage attaches before it answers, so its Attach arrives before the chain's OK
    const attached = new Promise<void>((resolve) => { s.onAttach = resolve })
    if (shard.isFirst && !shard.isLast) s.lastPeer = open.chain[open.chain.length - 1].peer
    this.sessions.set(s.id, s)
    this.stats.opened++
    const signal = AbortSignal.any([this.shutdown.signal, s.done.signal, AbortSignal.timeout(this.openTimeoutMs)])
    try {
      if (!shard.isLast) {
        const [next, ...rest] = open.chain
        const stream = await this.components.connectionManager.openStream(peerIdFromString(next.peer), this.protocol, { signal })
        s.downstream = frameChannel(stream, this.init.maxFrameBytes ?? INFERENCE_MAX_FRAME_BYTES)
        const origin = shard.isFirst ? this.components.peerId.toString() : open.origin
        await s.downstream.write({ open: { ...open, start: next.start, end: next.end, chain: rest, origin } })
        const answer = (await s.downstream.read({ signal })).result
        if (answer?.status !== Status.OK) throw new Refusal(Status.DOWNSTREAM, `next hop ${next.peer} answered ${answer?.status ?? 'no result'}: ${answer?.detail ?? ''}`)
      } else if (!shard.isFirst) {
        const stream = await this.components.connectionManager.openStream(peerIdFromString(open.origin), this.protocol, { signal })
        s.back = frameChannel(stream, this.init.maxFrameBytes ?? INFERENCE_MAX_FRAME_BYTES)
        await s.back.write({ attach: { sessionId: s.id } })
        const answer = (await s.back.read({ signal })).result
        if (answer?.status !== Status.OK) throw new Refusal(Status.DOWNSTREAM, `first stage ${open.origin} refused the token stream: ${answer?.status ?? 'no result'}`)
      }
      if (s.lastPeer !== undefined) await raceAbort(attached, signal)
      await upstream.write({ result: { status: Status.OK, sessionId: s.id, detail: '' } })
    } catch (err) {
      const r = err instanceof Refusal ? err : new Refusal(Status.DOWNSTREAM, `opening the next hop failed: ${(err as Error).message}`)
      await this.teardown(s, r.status, r.message)
      return
    }
    if (s.downstream !== undefined) void this.watchDownstream(s, s.downstream)
    await this.readUpstream(s)
  }

  /** First stage: the last stage attaches the stream its sampled tokens come back on. */
  private async attach (ch: FrameChannel, sessionId: string, remotePeer: string): Promise<void> {
    const s = this.sessions.get(sessionId)
    if (s === undefined || s.lastPeer === undefined || s.back !== undefined || s.lastPeer !== remotePeer) {
      await this.refuse(ch, Status.UNKNOWN_SESSION, sessionId, 'no session awaits a token stream from this peer')
      return
    }
    s.back = ch
    s.onAttach()
    await ch.write({ result: { status: Status.OK, sessionId, detail: '' } })
    for (;;) {
      let frame: Frame
      try {
        frame = await ch.read({ signal: AbortSignal.any([this.shutdown.signal, s.done.signal, AbortSignal.timeout(this.idleTimeoutMs)]) })
      } catch (err) {
        if (!s.closed) await this.teardown(s, isEndOfStream(err) ? Status.DOWNSTREAM : Status.TIMEOUT, 'the token stream from the last stage ended')
        return
      }
      if (frame.token !== undefined && frame.token.sessionId === s.id) {
        if (!await this.onToken(s, frame.token)) return
      } else {
        const r = frame.result
        await this.teardown(s, r !== undefined && r.status !== Status.OK ? r.status : Status.MALFORMED, r?.detail ?? 'unexpected frame on the token stream')
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
        if (isEndOfStream(err)) await this.teardown(s, Status.OK, 'closed by upstream')
        else if ((err as Error).name === 'AbortError' || (err as Error).name === 'TimeoutError') await this.teardown(s, Status.TIMEOUT, 'no step within the idle deadline')
        else await this.teardown(s, readFailureStatus(err), 'unreadable frame')
        return
      }
      if (frame.close !== undefined) { await this.teardown(s, Status.OK, 'closed'); return }
      if (frame.step === undefined) { await this.teardown(s, Status.MALFORMED, 'expected a step'); return }
      if (shard.isFirst && s.prefilled) { await this.teardown(s, Status.OUT_OF_ORDER, 'the prompt was already sent: decode steps come from the last stage'); return }
      s.prefilled = true
      if (!await this.step(s, frame.step)) return
    }
  }

  /** Runs one step and passes its output on; false when the session ended. */
  private async step (s: StageSession, step: Step): Promise<boolean> {
    const shard = s.shard
    const { dim, vocabSize, bosId } = shard.config
    let T: number
    let out: StageOutput
    try {
      if (step.sessionId !== s.id) throw new Refusal(Status.UNKNOWN_SESSION, 'step for another session')
      if (step.position !== s.session.position) throw new Refusal(Status.OUT_OF_ORDER, `expected position ${s.session.position}, got ${step.position}`)
      if (shard.isFirst) {
        if (step.hidden.byteLength > 0 || step.tokens.length === 0) throw new Refusal(Status.WRONG_SHAPE, 'the first stage takes token ids')
        for (const t of step.tokens) if (t >= vocabSize) throw new Refusal(Status.OUT_OF_RANGE, `token ${t} is not below ${vocabSize}`)
        T = step.tokens.length
      } else {
        T = step.shape[0] ?? 0
        if (step.tokens.length > 0 || step.shape.length !== 2 || step.shape[1] !== dim || T < 1 || engineCodec(step.dtype) !== s.codec) {
          throw new Refusal(Status.WRONG_SHAPE, `expected ${s.codec} hidden states of shape [T, ${dim}]`)
        }
      }
      if (step.position + T > s.maxLength) throw new Refusal(Status.OUT_OF_RANGE, `positions ${step.position}+${T} pass max_length ${s.maxLength}`)
      if (!shard.isFirst && step.hidden.byteLength !== encodedHiddenBytes(s.codec, T * dim)) throw new Refusal(Status.WRONG_SHAPE, `hidden states of ${step.hidden.byteLength} bytes do not hold [${T}, ${dim}]`)
      try {
        out = shard.isFirst ? s.session.step({ tokens: step.tokens }) : s.session.step({ hidden: decodeHidden(s.codec, step.hidden, T * dim) })
      } catch (err) {
        throw new Refusal(Status.INTERNAL, `engine: ${(err as Error).name}`)
      }
    } catch (err) {
      const r = err instanceof Refusal ? err : new Refusal(Status.INTERNAL, 'step failed')
      await this.teardown(s, r.status, r.message)
      return false
    }
    this.stats.steps++
    try {
      if (s.downstream !== undefined) {
        await s.downstream.write({ step: { sessionId: s.id, position: step.position, tokens: [], hidden: encodeHidden(s.codec, out.hidden as Float32Array) as Uint8Array<ArrayBuffer>, dtype: wireCodec(s.codec), shape: [T, dim] } })
        return true
      }
      const position = step.position + T - 1
      const token = (s.sampler as Sampler).sample(out.logits as Float32Array)
      s.generated++
      const bos = token === bosId
      const done = bos || position + 1 >= s.maxLength || (s.maxTokens > 0 && s.generated >= s.maxTokens)
      const event: Token = { sessionId: s.id, token, position, done, bos }
      if (shard.isFirst) return await this.onToken(s, event)
      await (s.back as FrameChannel).write({ token: event })
      return true
    } catch (err) {
      await this.teardown(s, Status.DOWNSTREAM, `forwarding failed: ${(err as Error).message}`)
      return false
    }
  }

  /** First stage: a sampled token came back; tell the client, then run it. False when the session ended. */
  private async onToken (s: StageSession, token: Token): Promise<boolean> {
    this.stats.tokens++
    if (token.done) {
      await s.upstream.end({ token })
      await this.teardown(s, Status.OK, 'done')
      return false
    }
    // the client's copy is queued, not awaited: it is off the critical path (queued first, so
    // tokens reach the client in order even when a one-stage ring recurses synchronously)
    s.upstream.write({ token }).catch(() => { void this.teardown(s, Status.OK, 'client went away') })
    // a one-stage ring would otherwise run the whole generation in one synchronous recursion:
    // let I/O (a cancel, other sessions' steps) in between tokens
    if (s.back === undefined) await new Promise((resolve) => setImmediate(resolve))
    if (s.closed) return false
    return await this.step(s, { sessionId: s.id, position: token.position + 1, tokens: [token.token], hidden: new Uint8Array(0), dtype: wireCodec(s.codec), shape: [] })
  }

  /** Reads the next hop's stream: any Result or end there ends the session. */
  private async watchDownstream (s: StageSession, ch: FrameChannel): Promise<void> {
    let frame: Frame | undefined
    try {
      frame = await ch.read({ signal: AbortSignal.any([this.shutdown.signal, s.done.signal]) })
    } catch (err) {
      if (!s.closed) await this.teardown(s, isEndOfStream(err) ? Status.DOWNSTREAM : readFailureStatus(err), 'the next hop closed its stream')
      return
    }
    const r = frame.result
    await this.teardown(s, r !== undefined && r.status !== Status.OK ? r.status : Status.DOWNSTREAM, `next hop: ${r?.detail ?? 'unexpected frame'}`)
  }

  /** Ends a session once: status to upstream (unless OK), every stream closed, KV cache freed. */
  private async teardown (s: StageSession, status: Status, detail: string): Promise<void> {
    if (s.closed) return
    s.closed = true
    s.done.abort()
    clearTimeout(s.expiry)
    this.sessions.delete(s.id)
    this.reservedBytes -= s.reservedBytes
    s.session.close()
    if (status !== Status.OK) {
      this.stats.refused++
      this.log('session %s ended: %s %s', s.id, status, detail)
    }
    await Promise.all([
      s.upstream.end(status === Status.OK ? undefined : { result: { status, sessionId: s.id, detail: detail.slice(0, 512) } }),
      s.downstream?.end(),
      s.back?.end()
    ])
  }
}

/** Bytes a session's KV cache takes at `maxLength` positions on this shard (keys and values, f32). */
function kvBytesFor (shard: Shard, maxLength: number): number {
  const c = shard.config
  return maxLength * (shard.end - shard.start) * c.nKvHeads * c.headSize * 2 * 4
}

/** `promise`, or a rejection when `signal` aborts first. */
async function raceAbort (promise: Promise<void>, signal: AbortSignal): Promise<void> {
  signal.throwIfAborted()
  await new Promise<void>((resolve, reject) => {
    const onAbort = (): void => { reject(signal.reason as Error) }
    signal.addEventListener('abort', onAbort, { once: true })
    promise.then(() => { signal.removeEventListener('abort', onAbort); resolve() }, reject)
  })
}

/** libp2p service factory: `services: { inference: inferenceStageService({ swarm }) }`. */
export function inferenceStageService (init: InferenceStageInit = {}): (components: InferenceStageComponents) => InferenceStageService {
  return (components) => new InferenceStageService(components, init)
}
