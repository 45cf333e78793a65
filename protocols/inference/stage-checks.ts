// What a stage checks before it opens a session or runs a step: each failed check is a Refusal
// carrying the status the stage answers with. Pure functions of the request and the stage's state.
import { encodedHiddenBytes } from '../../engine/codecs.ts'
import type { HiddenCodec as EngineCodec } from '../../engine/codecs.ts'
import type { Shard } from '../../engine/index.ts'
import { INFERENCE_MAX_CHAIN, INFERENCE_MAX_ID_LENGTH } from './constants.ts'
import { Status } from './inference.pb.js'
import type { OpenSession, Step } from './inference.pb.js'
import { engineCodec } from './wire.ts'

/** A refusal inside the service: becomes a Result on the wire. */
export class Refusal extends Error {
  readonly status: Status
  /** The peer that failed or refused, when it is not this stage (Result.peer). */
  readonly peer: string
  constructor (status: Status, detail: string, peer = '') { super(detail); this.status = status; this.peer = peer }
}

/** What an open is checked against: the stage's shard and model, and its session and KV budget. */
export interface OpenLimits {
  shard: Shard | undefined
  model: string | undefined
  isOpen: (sessionId: string) => boolean
  sessions: number
  maxSessions: number
  reservedBytes: number
  maxKvBytes: number
}

/** Checks an OpenSession against what this stage holds; returns the refusal, if any. */
export function checkOpen (open: OpenSession, limits: OpenLimits): Refusal | undefined {
  const { shard, model } = limits
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
  if (limits.isOpen(open.sessionId)) return new Refusal(Status.MALFORMED, 'session id already open on this stage')
  const reserve = kvBytesFor(shard, open.maxLength)
  if (limits.sessions >= limits.maxSessions || limits.reservedBytes + reserve > limits.maxKvBytes) {
    return new Refusal(Status.FULL, `stage full: ${limits.sessions} sessions, ${limits.reservedBytes} of ${limits.maxKvBytes} KV bytes reserved`)
  }
  return undefined
}

/** What a step is checked against: the session's shard, codec, next position and length. */
export interface StepLimits {
  id: string
  shard: Shard
  codec: EngineCodec
  position: number
  maxLength: number
}

/** Checks a Step for a session before anything is decoded; returns its T (positions) or throws a Refusal. */
export function checkStep (step: Step, s: StepLimits): number {
  const { dim, vocabSize } = s.shard.config
  let T: number
  if (step.sessionId !== s.id) throw new Refusal(Status.UNKNOWN_SESSION, 'step for another session')
  if (step.position !== s.position) throw new Refusal(Status.OUT_OF_ORDER, `expected position ${s.position}, got ${step.position}`)
  if (s.shard.isFirst) {
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
  if (!s.shard.isFirst && step.hidden.byteLength !== encodedHiddenBytes(s.codec, T * dim)) throw new Refusal(Status.WRONG_SHAPE, `hidden states of ${step.hidden.byteLength} bytes do not hold [${T}, ${dim}]`)
  return T
}

/** Bytes a session's KV cache takes at `maxLength` positions on this shard (keys and values, f32). */
export function kvBytesFor (shard: Shard, maxLength: number): number {
  const c = shard.config
  return maxLength * (shard.end - shard.start) * c.nKvHeads * c.headSize * 2 * 4
}
