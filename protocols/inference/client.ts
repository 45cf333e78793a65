// The client side of `/mycelium/<swarm>/inference/1.0.0`: open a session on a chain of stages
// (the first stage opens the rest, hop by hop), send the prompt once, and read the tokens the
// first stage relays from the ring of stages, as an async generator of typed events.
//
//   for await (const ev of runInference(openStream, { chain, prompt, maxLength: 64 })) …
import type { AbortOptions, PeerId, Stream } from '@libp2p/interface'
import type { HiddenCodec as EngineCodec } from '../../engine/codecs.ts'
import { INFERENCE_MAX_FRAME_BYTES } from './constants.ts'
import { InferenceFailedError } from './errors.ts'
import { Status } from './inference.pb.js'
import type { Frame } from './inference.pb.js'
import { frameChannel, isEndOfStream, readFailureStatus, wireCodec } from './wire.ts'

/** One stage of a chain: who serves it and its layer range [start, end). */
export interface ChainHop {
  peer: PeerId | string
  start: number
  end: number
}

export interface InferenceRequest extends AbortOptions {
  /** Stages in order; their ranges must tile the model's layers. */
  chain: ChainHop[]
  /** Prompt token ids, BOS first. */
  prompt: number[]
  /** Positions to run, prompt included (llama2.c's steps). */
  maxLength: number
  /** Session id (default: random). */
  sessionId?: string
  /** Manifest id the stages must serve ('' skips the check). */
  model?: string
  /** Hidden-state codec between stages (default f32). */
  codec?: EngineCodec
  sampling?: {
    temperature?: number
    topP?: number
    topK?: number
    seed?: number | bigint
    maxTokens?: number
    /** PRNG draws to skip (failover sets it to the tokens already sampled; default 0). */
    skipDraws?: number
  }
  /**
   * Failover: when the session fails, stages that no longer accept a stream are replaced by
   * `replace(hop, index)` (e.g. from the router; undefined gives up) and the history (prompt and
   * tokens so far) is replayed as one prefill on the new chain, so generation continues where it
   * stopped. The tokens equal a run without failure: greedy, and seeded sampling too (the last
   * stage skips the PRNG draws already made).
   */
  failover?: { replace: (hop: ChainHop, index: number) => Promise<ChainHop | undefined>, maxAttempts?: number, probeTimeoutMs?: number }
}

export type InferenceEvent =
  | { type: 'open', sessionId: string, ms: number }
  | { type: 'token', id: number, position: number }
  | { type: 'retry', attempt: number, status: string, replaced: number[], replayed: number }
  | { type: 'done', reason: 'steps' | 'bos', tokens: number }

/** Opens a stream to a peer for a protocol (libp2p's `dialProtocol` or a connection manager's `openStream`). */
export type OpenStream = (peer: PeerId | string, protocol: string, options: AbortOptions) => Promise<Stream>

/**
 * Runs one generation over a chain of stages; yields the session's open, each token, and done
 * (and `retry` when failover re-opened the chain).
 */
export async function * runInference (openStream: OpenStream, protocol: string, request: InferenceRequest): AsyncGenerator<InferenceEvent> {
  const failover = request.failover
  let chain = request.chain
  const generated: number[] = []
  for (let attempt = 0; ; attempt++) {
    const history = [...request.prompt, ...generated]
    const maxTokens = request.sampling?.maxTokens ?? 0
    try {
      for await (const ev of runSession(openStream, protocol, {
        ...request,
        chain,
        prompt: history,
        ...(request.sampling !== undefined ? { sampling: { ...request.sampling, maxTokens: maxTokens > 0 ? maxTokens - generated.length : 0, skipDraws: generated.length } } : {}),
        ...(attempt > 0 ? { sessionId: crypto.randomUUID() } : {})
      })) {
        if (ev.type === 'token') generated.push(ev.id)
        if (ev.type === 'done') { yield { ...ev, tokens: generated.length }; return }
        if (ev.type !== 'open' || attempt === 0) yield ev
      }
      return
    } catch (err) {
      const status = err instanceof InferenceFailedError ? err.status : 'ERROR'
      if (failover === undefined || attempt >= (failover.maxAttempts ?? 3) || status === 'CANCELLED' || request.signal?.aborted === true) throw err
      const replaced: number[] = []
      const next = [...chain]
      for (let i = 0; i < chain.length; i++) {
        if (await reachable(openStream, protocol, chain[i], failover.probeTimeoutMs ?? 2000, request.signal)) continue
        const hop = await failover.replace(chain[i], i)
        if (hop === undefined) throw err
        next[i] = hop
        replaced.push(i)
      }
      chain = next
      yield { type: 'retry', attempt: attempt + 1, status, replaced, replayed: request.prompt.length + generated.length }
    }
  }
}

/** True when the hop still accepts a stream of the protocol (the stream is dropped at once). */
async function reachable (openStream: OpenStream, protocol: string, hop: ChainHop, timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
  try {
    const stream = await openStream(hop.peer, protocol, { signal: AbortSignal.any([AbortSignal.timeout(timeoutMs), ...(signal !== undefined ? [signal] : [])]) })
    stream.abort(new Error('liveness probe'))
    return true
  } catch {
    return false // reason: any failure to open a stream means the hop must be replaced
  }
}

/** One session on one chain, no failover. */
async function * runSession (openStream: OpenStream, protocol: string, request: InferenceRequest): AsyncGenerator<InferenceEvent> {
  const { chain, prompt, signal } = request
  if (chain.length === 0) throw new RangeError('a chain needs at least one stage')
  if (prompt.length === 0 || prompt.length > request.maxLength) throw new RangeError('the prompt needs 1 to maxLength tokens')
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
  const read = async (): Promise<Frame> => {
    try {
      return await ch.read({ signal })
    } catch (err) {
      if (signal?.aborted === true) throw new InferenceFailedError('CANCELLED', 'inference cancelled', { cause: err })
      const status = isEndOfStream(err) ? 'CLOSED' : readFailureStatus(err)
      throw new InferenceFailedError(status, `the first stage's stream failed: ${(err as Error).message}`, { cause: err })
    }
  }
  const failed = (frame: Frame): InferenceFailedError => {
    const r = frame.result
    return new InferenceFailedError(r?.status ?? Status.MALFORMED, r === undefined ? 'unexpected frame from the first stage' : `${r.status}: ${r.detail}`)
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
        sampling: { temperature: s.temperature ?? 0, topP: s.topP ?? 1, topK: s.topK ?? 0, seed: BigInt(s.seed ?? 1), maxTokens: s.maxTokens ?? 0, skipDraws: s.skipDraws ?? 0 }
      }
    })
    const opened = await read()
    if (opened.result?.status !== Status.OK) throw failed(opened)
    yield { type: 'open', sessionId, ms: performance.now() - t0 }
    await ch.write({ step: { sessionId, position: 0, tokens: prompt, hidden: new Uint8Array(0), dtype: wireCodec('f32'), shape: [] } })
    let tokens = 0
    for (;;) {
      const frame = await read()
      const token = frame.token
      if (token === undefined) throw failed(frame)
      if (!token.bos) {
        tokens++
        yield { type: 'token', id: token.token, position: token.position }
      }
      if (token.done) {
        finished = true
        yield { type: 'done', reason: token.bos ? 'bos' : 'steps', tokens }
        return
      }
    }
  } finally {
    signal?.removeEventListener('abort', onAbort)
    // an early return by the caller, or an error, cancels the session: closing cascades down the chain
    if (finished) await ch.end()
    else stream.abort(new Error('inference ended early'))
  }
}
