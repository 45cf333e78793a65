// /mycelium/<swarm>/spot-check/1.0.0 (issue 7): spot-checks of sharded execution without touching
// the inference wire protocol. One request and one answer per stream (spot-check.proto):
//   FETCH  verifier → stage:    what the stage recorded of a session (its StageTap buffer): the
//                               hidden states it received (INPUTS) or sent (OUTPUTS), per step
//   AUDIT  owner → verifier:    spot-check `subject`'s layers [start, end) in a session, fetching
//                               the subject's inputs from its predecessor (what it sent) and its
//                               outputs from its successor (what it received) — never from the
//                               subject itself; the verifier writes the evidence record later.
//                               A first stage's inputs / a last stage's outputs are the
//                               session's tokens, which the owner sends (`tokens`); a last stage
//                               that sampled with temperature > 0 comes with its sampling and
//                               the receipt that binds it (`sampling`, `receipt`)
// Everything a peer sends is bounded before decoding (SPOT_MAX_FRAME_BYTES); answering reads only
// what the node recorded anyway, so asking cannot grow the node's memory.
import { pbStream } from '@libp2p/utils'
import type { AbortOptions, PeerId, Startable, Stream } from '@libp2p/interface'
import { protocolId } from '../swarm.ts'
import { SpotRequest, SpotResponse, type SpotStep } from './spot-check.pb.js'

export { SpotRequest, SpotResponse }
export type { SpotStep }

export const SPOT_CHECK_NAME = 'spot-check'
export const SPOT_CHECK_VERSION = '1.0.0'
/** Largest frame either side decodes (a FETCH answer carries a session's hidden states). */
export const SPOT_MAX_FRAME_BYTES = 16 << 20
/** Largest request a node decodes (a CHALLENGE carries one step of hidden states). */
export const SPOT_MAX_REQUEST_BYTES = 1 << 20
/** Most rows one CHALLENGE asks for. */
export const CHALLENGE_MAX_ROWS = 64
/** Deadline of one exchange (ms). */
export const SPOT_TIMEOUT_MS = 10_000

export function spotCheckProtocol (swarm: string): string {
  return protocolId(swarm, SPOT_CHECK_NAME, SPOT_CHECK_VERSION)
}

/** A recorded session side, as FETCH answers it. */
export interface SpotTrace { start: number, end: number, dim: number, steps: SpotStep[] }

/** Most tokens an AUDIT carries (a first or last stage's known tokens). */
export const AUDIT_MAX_TOKENS = 16_384

/**
 * predecessor '' = a first stage (inputs: `tokens`), successor '' = a last stage (outputs: the
 * `tokens` it sampled: `greedy`, or seeded with `sampling` and its `receipt`). `tokens` = prompt +
 * generated, `promptLength` of them the prompt.
 */
export interface AuditRequest {
  sessionId: string
  subject: string
  start: number
  end: number
  predecessor: string
  successor: string
  model: string
  tokens?: number[]
  promptLength?: number
  greedy?: boolean
  /** The proofs behind `tokens`: the owner's signature of its prompt step, the last stage's of each generated token. */
  promptSignature?: Uint8Array<ArrayBuffer>
  tokenSignatures?: Array<Uint8Array<ArrayBuffer>>
  /** The chain's last stage (who signed the generated tokens). */
  last?: string
  /** A last stage that sampled (temperature > 0): the sampling it was asked for (skipDraws 0 for a round's own session). */
  sampling?: AuditSampling
  /** Its done token's receipt: the signature over the generated tokens and `sampling`, the first from the logits at `first`. */
  receipt?: { signature: Uint8Array<ArrayBuffer>, first: number }
}

/** The sampling an AUDIT names for a seeded last stage (temperature and topP travel as float32). */
export interface AuditSampling { temperature: number, topP: number, topK: number, seed: number, skipDraws: number }

/** Whether an AUDIT's receipt comes with a sampling a verifier can check it against (temperature finite ≥ 0, top-p in [0, 1], fewer skipped draws than prompt tokens, a 64-byte receipt). */
function receiptOk (req: SpotRequest): boolean {
  return Number.isFinite(req.temperature) && req.temperature >= 0 && req.topP >= 0 && req.topP <= 1 && Number.isSafeInteger(req.seed) && req.seed >= 0 &&
    req.skipDraws < req.promptLength && req.receipt.length === 64
}

/** Whether an AUDIT's seeded sampling is one a verifier can replay (a receipt as above, temperature > 0). */
function sampledOk (req: SpotRequest): boolean {
  return receiptOk(req) && req.temperature > 0
}

/**
 * How many generated tokens an AUDIT without a receipt may carry with their signatures (up to
 * 584 bytes each with a batch signature's Merkle proof) and stay within SPOT_MAX_REQUEST_BYTES:
 * the owner sends that prefix (a first stage is checked on it, a greedy last stage's argmax too).
 * With a receipt no per-token signature is needed (node/spot-check-trace.ts receiptStart).
 */
export function auditTokensThatFit (promptLength: number, signatures: ReadonlyArray<{ byteLength: number }>): number {
  // the rest of the request (ids, names, prompt signature, receipt) stays well below this
  let room = SPOT_MAX_REQUEST_BYTES - AUDIT_HEADROOM_BYTES - 4 * promptLength
  let n = 0
  for (const s of signatures) {
    room -= s.byteLength + 3 + 4 // the signature with its tag and length, the token id
    if (room < 0) break
    n++
  }
  return n
}
/** What an AUDIT holds besides its tokens and their signatures, at most (ids and peer names ≤ 128 characters, one receipt, one prompt signature). */
const AUDIT_HEADROOM_BYTES = 4096

/** A calibration challenge (CHALLENGE): run layers [start, end) of `model` on `input`. */
export interface ChallengeRequest { model: string, start: number, end: number, rows: number, input: { tokens: number[] } | { hidden: Float32Array } }
/** The newcomer's outputs: greedy tokens per row (a last stage) or hidden states. */
export type ChallengeAnswer = { tokens: number[] } | { hidden: Float32Array, dim: number }

export interface SpotCheckHooks {
  /** Answer a calibration challenge with this node's own stage (undefined: not served here → REFUSED). */
  challenge?: (request: ChallengeRequest, from: string) => Promise<ChallengeAnswer | undefined>
  /** What this node recorded of `sessionId` for `from` (undefined: nothing; 'refused': `from` may not see it; 'busy': `from` asks too often). */
  fetch?: (sessionId: string, side: 'inputs' | 'outputs', from: string) => SpotTrace | 'refused' | 'busy' | undefined
  /** Queue an audit (resolve OK, BUSY or REFUSED; the work happens after the answer). */
  audit?: (request: AuditRequest, from: string) => SpotResponse.Status
}

export interface SpotCheckComponents {
  peerId: PeerId
  registrar: {
    handle: (protocol: string, handler: (stream: Stream, connection: { remotePeer: PeerId }) => Promise<void>, options: { maxInboundStreams: number, runOnLimitedConnection: boolean }) => Promise<void>
    unhandle: (protocol: string) => Promise<void>
  }
}

const EMPTY: Omit<SpotResponse, 'status'> = { start: 0, end: 0, dim: 0, steps: [], tokens: [] }

/** Answers one inbound spot-check stream. Never throws. */
export async function serveSpotCheck (stream: Stream, from: string, hooks: SpotCheckHooks, options: AbortOptions = {}): Promise<SpotResponse.Status | 'CLOSED'> {
  const signal = AbortSignal.any([AbortSignal.timeout(SPOT_TIMEOUT_MS), ...(options.signal != null ? [options.signal] : [])])
  const pb = pbStream(stream, { maxDataLength: SPOT_MAX_REQUEST_BYTES }) // bounded before decoding
  let status: SpotResponse.Status = SpotResponse.Status.MALFORMED
  let body: Omit<SpotResponse, 'status'> = EMPTY
  try {
    let req: SpotRequest | undefined
    try { req = await pb.read(SpotRequest, { signal }) } catch { req = undefined }
    if (req !== undefined && req.kind === SpotRequest.Kind.CHALLENGE) {
      const tokens = req.inputTokens
      const hidden = req.input.byteLength > 0 && req.input.byteLength % 4 === 0 && req.rows > 0 ? new Float32Array(new Uint8Array(req.input).buffer) : undefined
      const rows = tokens.length > 0 ? tokens.length : req.rows
      if (req.model !== '' && req.end > req.start && rows > 0 && rows <= CHALLENGE_MAX_ROWS && (tokens.length > 0) !== (hidden !== undefined) && (hidden === undefined || hidden.length % rows === 0)) {
        const answer = await hooks.challenge?.({ model: req.model, start: req.start, end: req.end, rows, input: hidden !== undefined ? { hidden } : { tokens: [...tokens] } }, from).catch(() => undefined)
        status = answer === undefined ? SpotResponse.Status.REFUSED : SpotResponse.Status.OK
        if (answer !== undefined) {
          body = 'tokens' in answer
            ? { ...EMPTY, tokens: answer.tokens }
            : { ...EMPTY, dim: answer.dim, steps: [{ position: 0, rows, hidden: new Uint8Array(Float32Array.from(answer.hidden).buffer), codec: 0, tokens: [], signature: new Uint8Array(0), signer: '', sampled: false }] }
        }
      }
    } else if (req !== undefined && req.sessionId !== '' && req.sessionId.length <= 128) {
      if (req.kind === SpotRequest.Kind.FETCH) {
        const trace = hooks.fetch?.(req.sessionId, req.side === SpotRequest.Side.OUTPUTS ? 'outputs' : 'inputs', from)
        status = trace === undefined ? SpotResponse.Status.NOT_FOUND : trace === 'refused' ? SpotResponse.Status.REFUSED : trace === 'busy' ? SpotResponse.Status.BUSY : SpotResponse.Status.OK
        if (typeof trace === 'object') body = { ...EMPTY, ...trace }
      } else if (req.end > req.start && req.subject !== '' && req.model !== '' && req.tokens.length <= AUDIT_MAX_TOKENS && req.promptLength <= req.tokens.length &&
        // a first stage needs the tokens, a last stage the tokens and greedy sampling
        (req.predecessor !== '' || (req.start === 0 && req.tokens.length > 0)) && (req.successor !== '' || ((req.greedy || sampledOk(req)) && req.tokens.length > req.promptLength && req.promptLength > 0)) &&
        // at most one signature per generated token; a receipt only with a sampling to check it against
        req.tokenSignatures.length <= req.tokens.length - req.promptLength && (req.receipt.length === 0 || receiptOk(req))) {
        const proofs = req.promptSignature.length > 0 || req.tokenSignatures.length > 0 || req.last !== '' ? { promptSignature: req.promptSignature, tokenSignatures: [...req.tokenSignatures], last: req.last } : {}
        // a seeded last stage's sampling and receipt; with a greedy or first stage the receipt binds the generated tokens
        const sampled = (req.successor === '' && !req.greedy) || receiptOk(req)
          ? { sampling: { temperature: req.temperature, topP: req.topP, topK: req.topK, seed: req.seed, skipDraws: req.skipDraws }, receipt: { signature: req.receipt, first: req.receiptFirst } }
          : {}
        const known = req.tokens.length > 0 ? { tokens: [...req.tokens], promptLength: req.promptLength, greedy: req.greedy, ...proofs, ...sampled } : {}
        status = hooks.audit?.({ sessionId: req.sessionId, subject: req.subject, start: req.start, end: req.end, predecessor: req.predecessor, successor: req.successor, model: req.model, ...known }, from) ?? SpotResponse.Status.REFUSED
      }
    }
    await pb.write({ status, ...body }, SpotResponse, { signal })
    await stream.close({ signal })
    return status
  } catch (err) {
    stream.abort(err instanceof Error ? err : new Error(String(err)))
    return 'CLOSED'
  }
}

async function exchange (stream: Stream, req: SpotRequest, options: AbortOptions): Promise<SpotResponse> {
  const signal = AbortSignal.any([AbortSignal.timeout(SPOT_TIMEOUT_MS), ...(options.signal != null ? [options.signal] : [])])
  try {
    const pb = pbStream(stream, { maxDataLength: SPOT_MAX_FRAME_BYTES })
    await pb.write(req, SpotRequest, { signal })
    const res = await pb.read(SpotResponse, { signal })
    await stream.close({ signal }).catch(() => {})
    return res
  } catch (err) {
    stream.abort(err instanceof Error ? err : new Error(String(err)))
    throw err
  }
}

/** FETCH: a stage's recorded inputs or outputs of a session (undefined when it has none). */
export async function fetchTrace (stream: Stream, sessionId: string, side: 'inputs' | 'outputs', options: AbortOptions = {}): Promise<SpotTrace | undefined> {
  const res = await fetchAnswer(stream, sessionId, side, options)
  return res.status === SpotResponse.Status.OK ? { start: res.start, end: res.end, dim: res.dim, steps: res.steps } : undefined
}

/** FETCH with the answer's status (REFUSED: this peer may not see the session; BUSY: rate-limited). */
export async function fetchAnswer (stream: Stream, sessionId: string, side: 'inputs' | 'outputs', options: AbortOptions = {}): Promise<SpotResponse> {
  return await exchange(stream, { ...NO_CHALLENGE, ...NO_TOKENS, kind: SpotRequest.Kind.FETCH, sessionId, side: side === 'outputs' ? SpotRequest.Side.OUTPUTS : SpotRequest.Side.INPUTS, subject: '', start: 0, end: 0, predecessor: '', successor: '', model: '' }, options)
}

/** AUDIT: asks a verifier to spot-check a stage; resolves with its answer (OK = queued). */
export async function requestAudit (stream: Stream, audit: AuditRequest, options: AbortOptions = {}): Promise<SpotResponse.Status> {
  const { sampling, receipt, ...rest } = audit
  const res = await exchange(stream, {
    ...NO_CHALLENGE,
    ...NO_TOKENS,
    kind: SpotRequest.Kind.AUDIT,
    side: SpotRequest.Side.INPUTS,
    ...rest,
    tokens: audit.tokens ?? [],
    promptLength: audit.promptLength ?? 0,
    greedy: audit.greedy ?? false,
    promptSignature: audit.promptSignature ?? new Uint8Array(0),
    tokenSignatures: audit.tokenSignatures ?? [],
    last: audit.last ?? '',
    ...(sampling !== undefined ? sampling : {}),
    ...(receipt !== undefined ? { receipt: receipt.signature, receiptFirst: receipt.first } : {})
  }, options)
  return res.status
}

const NO_CHALLENGE = { rows: 0, input: new Uint8Array(0), inputTokens: [] as number[] }
const NO_TOKENS = { tokens: [] as number[], promptLength: 0, greedy: false, promptSignature: new Uint8Array(0), tokenSignatures: [] as Array<Uint8Array<ArrayBuffer>>, last: '', temperature: 0, topP: 0, topK: 0, seed: 0, skipDraws: 0, receipt: new Uint8Array(0), receiptFirst: 0 }

/** CHALLENGE: asks a newcomer to run its layers on challenge inputs; its outputs, or undefined when it refused. */
export async function requestChallenge (stream: Stream, challenge: ChallengeRequest, options: AbortOptions = {}): Promise<ChallengeAnswer | undefined> {
  const { input } = challenge
  const res = await exchange(stream, {
    kind: SpotRequest.Kind.CHALLENGE, sessionId: '', side: SpotRequest.Side.INPUTS, subject: '', predecessor: '', successor: '', model: challenge.model, start: challenge.start, end: challenge.end, rows: challenge.rows,
    input: 'hidden' in input ? new Uint8Array(Float32Array.from(input.hidden).buffer) : new Uint8Array(0),
    inputTokens: 'tokens' in input ? input.tokens : [],
    ...NO_TOKENS
  }, options)
  if (res.status !== SpotResponse.Status.OK) return undefined
  if (res.tokens.length > 0) return { tokens: res.tokens }
  const step = res.steps[0]
  if (step === undefined || res.dim === 0 || step.hidden.byteLength % 4 !== 0) return undefined
  return { hidden: new Float32Array(new Uint8Array(step.hidden).buffer), dim: res.dim }
}

export class SpotCheckService implements Startable {
  readonly protocol: string
  readonly stats: Partial<Record<SpotResponse.Status | 'CLOSED', number>> = {}
  private readonly components: SpotCheckComponents
  private hooks: SpotCheckHooks = {}
  private shutdown = new AbortController()
  readonly [Symbol.toStringTag] = 'mycelium/spot-check'

  constructor (components: SpotCheckComponents, init: { swarm: string }) {
    this.components = components
    this.protocol = spotCheckProtocol(init.swarm)
  }

  /** Sets what the node answers (node/spot-check.ts); before, FETCH finds nothing and AUDIT is refused. */
  setHooks (hooks: SpotCheckHooks | undefined): void {
    this.hooks = { ...(hooks ?? {}) }
  }

  async start (): Promise<void> {
    this.shutdown = new AbortController()
    await this.components.registrar.handle(this.protocol, async (stream, connection) => {
      const r = await serveSpotCheck(stream, connection.remotePeer.toString(), this.hooks, { signal: this.shutdown.signal })
      this.stats[r] = (this.stats[r] ?? 0) + 1
    }, { maxInboundStreams: 8, runOnLimitedConnection: false })
  }

  async stop (): Promise<void> {
    this.shutdown.abort()
    await this.components.registrar.unhandle(this.protocol)
  }
}

export function spotCheckService (init: { swarm: string }): (components: SpotCheckComponents) => SpotCheckService {
  return (components) => new SpotCheckService(components, init)
}
