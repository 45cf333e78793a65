// One session on a stage: its engine Session (KV cache), sampler (last stage) and up to three
// streams, and the plumbing that connects it onward when it opens:
//
//   upstream   the stream the OpenSession came in on (the client's, or the previous stage's)
//   downstream our stream to the next hop (absent on the last stage)
//   back       first stage: the last stage's Attach stream, carrying sampled tokens;
//              last stage: our Attach stream to the first stage (the `origin`)
import type { Stream } from '@libp2p/interface'
import type { HiddenCodec as EngineCodec } from '../../engine/codecs.ts'
import { encodeHidden } from '../../engine/codecs.ts'
import type { Session, Shard, StageOutput } from '../../engine/index.ts'
import { createSampler } from '../../engine/sampler.ts'
import type { Sampler } from '../../engine/sampler.ts'
import { Status } from './inference.pb.js'
import type { Frame, HiddenCodec, OpenSession, Token } from './inference.pb.js'
import { receiptMessage, receiptSampling, stepMessage, tokenMessage } from './frame-signature.ts'
import type { ReceiptSampling } from './frame-signature.ts'
import type { BatchSigner } from './frame-signature.ts'
import { kvBytesFor, Refusal } from './stage-checks.ts'
import { asError, engineCodec, frameChannel, isEndOfStream, isReset, wireCodec } from './wire.ts'
import type { FrameChannel } from './wire.ts'

export interface StageSession {
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
  /** Stages in the session's ring (first stage only; 1 elsewhere): its decode microbatches. */
  ringSize: number
  /** First stage only: the peer that must attach the token stream (the last hop). */
  lastPeer?: string
  /** The next hop's peer id (absent on the last stage). */
  nextPeer?: string
  /** Last stage (not first): the first stage, where the token stream goes. */
  origin?: string
  /** Stages after the first: the peer the session's upstream stream came from (the previous stage). */
  prevPeer?: string
  /** Failover: keep the KV cache (and `sent`) when the session fails further along the ring. */
  resumable: boolean
  /** Resumable sessions with a next hop: the step frames passed on, so a replacement can be fed. */
  sent?: SentFrame[]
  /** A resumed session's replay: positions replayed; no token is sampled before row replayTo − 1 (0: none). */
  replayTo: number
  /** The session adopted a failed session's KV: its first step may start before the KV position. */
  adopted: boolean
  /** While `adopted`: the position the next replayed step must start at (after the first). */
  expectIn?: number
  /** The session's engine step in flight, if any (settles, never rejects). */
  running?: Promise<unknown>
  /** Signature checks of received frames still on the thread pool (settle, never reject). */
  checks: Set<Promise<void>>
  /** First stage: the peer that opened the session (the client). */
  client?: string
  /** Signs the frames this stage sends, a scheduler pass's frames at once (absent: they go unsigned). */
  signer?: BatchSigner
  /** Last stage: the tokens sampled in this session (for the done token's receipt) and the position of the first. */
  sampled: number[]
  firstSampled: number
  /** Last stage: the sampling its sampler draws with (the receipt binds it). */
  sampling?: ReceiptSampling
  /** First stage: resolves when the last stage's token stream attaches. */
  attached: Promise<void>
  onAttach: () => void
  /**
   * First stage: resolves when the prompt step ran (or the session ended). A resumed ring can
   * sample its first token before that (the stages after us feed it from their kept frames).
   */
  prefillDone: Promise<void>
  onPrefilled: () => void
  upstream: FrameChannel
  downstream?: FrameChannel
  back?: FrameChannel
  closed: boolean
  done: AbortController
  expiry?: ReturnType<typeof setTimeout>
}

/** A session's state for an open that passed `checkOpen` (the engine session is already open). */
export function stageSession (open: OpenSession, shard: Shard, session: Session, upstream: FrameChannel): StageSession {
  let onAttach = (): void => {}
  const attached = new Promise<void>((resolve) => { onAttach = resolve })
  let onPrefilled = (): void => {}
  const prefillDone = new Promise<void>((resolve) => { onPrefilled = resolve })
  const s: StageSession = {
    id: open.sessionId,
    shard,
    session,
    codec: engineCodec(open.codec) as EngineCodec,
    maxLength: open.maxLength,
    reservedBytes: kvBytesFor(shard, open.maxLength),
    maxTokens: open.sampling?.maxTokens ?? 0,
    generated: 0,
    prefilled: false,
    ringSize: shard.isFirst ? open.chain.length + 1 : 1,
    attached,
    onAttach,
    prefillDone,
    onPrefilled,
    upstream,
    closed: false,
    done: new AbortController(),
    resumable: open.resumable === true,
    replayTo: (open.resume ?? '') !== '' ? (open.resumeTo ?? 0) : 0,
    adopted: false,
    checks: new Set(),
    sampled: [],
    firstSampled: 0
  }
  if (open.resumable === true && !shard.isLast) s.sent = []
  if (!shard.isLast && open.chain.length > 0) s.nextPeer = open.chain[0].peer
  if (shard.isLast && !shard.isFirst) s.origin = open.origin
  if (shard.isLast) {
    const p = open.sampling
    s.sampling = receiptSampling(p)
    s.sampler = createSampler({ temperature: p?.temperature ?? 0, topP: p?.topP === 0 ? 1 : (p?.topP ?? 1), topK: p?.topK ?? 0, seed: p?.seed ?? 1 })
    // a failover replay continues the PRNG where the failed session left it: every non-greedy
    // sample draws exactly one coin, whatever the logits, so a one-logit sample advances it by one
    if ((p?.temperature ?? 0) > 0) for (let i = 0; i < (p?.skipDraws ?? 0); i++) s.sampler.sample(new Float32Array(1))
  }
  // the last stage attaches before it answers, so its Attach arrives before the chain's OK
  if (shard.isFirst && !shard.isLast) s.lastPeer = open.chain[open.chain.length - 1].peer
  return s
}

/** A step frame a stage passed on (kept for a resume: the exact bytes the next hop got). */
export interface SentFrame {
  position: number
  T: number
  hidden: Uint8Array
}

/** What a stage sent for one step (the StageTap's output): a step frame, or a sampled token. */
export interface SentOutput {
  /** Encoded hidden states (a step frame), with the wire codec. */
  hidden?: Uint8Array
  codec: HiddenCodec
  /** A last stage's sampled token (its Token frame). */
  token?: Token
  /** The frame's signature ('' bytes: unsigned). */
  signature: Uint8Array
}

/** A step frame to the next hop, signed by `s`'s signer (in a batch with the other frames the stage sends meanwhile). */
export async function signedStep (s: StageSession, position: number, T: number, hidden: Uint8Array<ArrayBuffer>): Promise<NonNullable<Frame['step']>> {
  const dtype = wireCodec(s.codec)
  const shape = [T, s.shard.config.dim]
  const signature = await s.signer?.sign(stepMessage(s.id, position, { hidden, dtype, shape })) ?? new Uint8Array(0)
  return { sessionId: s.id, position, tokens: [], hidden, dtype, shape, signature }
}

export interface OnwardDeps {
  /** This stage's peer id (the origin the next hops attach to). */
  self: string
  maxFrameBytes: number
  /** Opens a stream of the inference protocol to `peer` (a peer id string). */
  openStream: (peer: string, options: { signal: AbortSignal }) => Promise<Stream>
}

/**
 * Connects a new session onward: opens the rest of the chain on the next hop (and waits for its
 * OK), or on the last stage attaches the token stream to the first stage; the first stage then
 * waits for that attach. Throws a Refusal (DOWNSTREAM) when the chain cannot be completed.
 */
export async function connectOnward (s: StageSession, open: OpenSession, deps: OnwardDeps, signal: AbortSignal): Promise<number> {
  let needs = 0
  const shard = s.shard
  if (!shard.isLast) {
    const [next, ...rest] = open.chain
    let answer: Frame['result']
    try {
      s.downstream = frameChannel(await deps.openStream(next.peer, { signal }), deps.maxFrameBytes)
      const origin = shard.isFirst ? deps.self : open.origin
      await s.downstream.write({ open: { ...open, start: next.start, end: next.end, chain: rest, origin } })
      answer = (await s.downstream.read({ signal })).result
    } catch (err) {
      // our own deadline or shutdown is not the next hop's fault
      if (signal.aborted) throw new Refusal(Status.TIMEOUT, `opening the next hop ${next.peer} took too long`)
      throw new Refusal(Status.DOWNSTREAM, `opening the next hop ${next.peer} failed: ${asError(err).message}`, next.peer)
    }
    if (answer?.status !== Status.OK) {
      throw new Refusal(Status.DOWNSTREAM, `next hop ${next.peer} answered ${answer?.status ?? 'no result'}: ${answer?.detail ?? ''}`, culprit(answer, next.peer))
    }
    needs = answer.position ?? 0
  } else if (!shard.isFirst) {
    s.back = frameChannel(await deps.openStream(open.origin, { signal }), deps.maxFrameBytes)
    await s.back.write({ attach: { sessionId: s.id } })
    const answer = (await s.back.read({ signal })).result
    if (answer?.status !== Status.OK) throw new Refusal(Status.DOWNSTREAM, `first stage ${open.origin} refused the token stream: ${answer?.status ?? 'no result'}`)
  }
  if (s.lastPeer !== undefined) await raceAbort(s.attached, signal)
  return needs
}

/**
 * Who failed, from a non-OK Result the next hop (`next`) sent: the peer it names, else the hop
 * itself — unless it is an unattributed DOWNSTREAM (the hop saw a failure beyond it it could not
 * pin on a peer, e.g. the token stream to the first stage): then nobody.
 */
export function culprit (result: { status: Status, peer?: string } | undefined, next: string): string {
  if (result?.peer !== undefined && result.peer !== '') return result.peer
  return result?.status === Status.DOWNSTREAM ? '' : next
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

/**
 * Passes a step's output on: hidden states to the next hop; on the last stage, samples the token
 * and sends it back to the first stage — or, when this stage is also the first (a one-stage
 * ring), returns it for the caller to run. Throws when a write fails.
 */
export async function passOn (s: StageSession, position: number, T: number, out: StageOutput): Promise<{ token?: Token, sent?: SentOutput }> {
  const { bosId } = s.shard.config
  if (s.downstream !== undefined) {
    const hidden = encodeHidden(s.codec, out.hidden as Float32Array) as Uint8Array<ArrayBuffer>
    s.sent?.push({ position, T, hidden })
    const step = await signedStep(s, position, T, hidden)
    await s.downstream.write({ step })
    return { sent: { hidden, codec: step.dtype, signature: step.signature } }
  }
  const last = position + T - 1
  // a resumed session's replay: the tokens up to the history's end are known already
  if (s.replayTo > 0 && last < s.replayTo - 1) return {}
  s.replayTo = 0
  const token = (s.sampler as Sampler).sample(out.logits as Float32Array)
  s.generated++
  const bos = token === bosId
  const done = bos || last + 1 >= s.maxLength || (s.maxTokens > 0 && s.generated >= s.maxTokens)
  if (s.sampled.length === 0) s.firstSampled = last
  // the receipt covers the output tokens (a BOS that ends the session is not one)
  if (!bos && s.sampled.length < s.maxLength) s.sampled.push(token)
  const none = new Uint8Array(0)
  const signature = await s.signer?.sign(tokenMessage(s.id, last, token)) ?? none
  // the done token carries the receipt over every token sampled in the session (the answer's proof of authorship)
  const receipt = done ? (s.signer?.signAlone(receiptMessage(s.id, s.firstSampled, s.sampled, s.sampling ?? receiptSampling(undefined))) ?? none) : none
  const event: Token = { sessionId: s.id, token, position: last, done, bos, signature, receipt, first: done ? s.firstSampled : 0 }
  const sent: SentOutput = { codec: wireCodec(s.codec), token: event, signature }
  if (s.shard.isFirst) return { token: event, sent }
  await (s.back as FrameChannel).write({ token: event })
  return { sent }
}

/**
 * Waits for the next hop's (`peer`'s) stream to carry anything: a Result, any other frame or its
 * end all end the session. A broken stream (EOF, reset, an unreadable frame) is DOWNSTREAM naming
 * the hop; a Result keeps its status and names whom it names (`culprit`). Undefined when `signal`
 * aborted the read (the session is ending here anyway).
 */
export async function nextHopEnd (ch: FrameChannel, peer: string, signal: AbortSignal): Promise<{ status: Status, detail: string, peer: string } | undefined> {
  let frame: Frame
  try {
    frame = await ch.read({ signal })
  } catch (err) {
    if (signal.aborted) return undefined
    const how = isEndOfStream(err) ? 'closed' : isReset(err) ? 'reset' : 'sent an unreadable frame on'
    return { status: Status.DOWNSTREAM, detail: `the next hop ${how} its stream`, peer }
  }
  const r = frame.result
  if (r === undefined || r.status === Status.OK) return { status: Status.DOWNSTREAM, detail: `next hop: ${r === undefined ? 'unexpected frame' : 'OK mid-session'}`, peer }
  return { status: r.status, detail: `next hop: ${r.detail}`, peer: culprit(r, peer) }
}
