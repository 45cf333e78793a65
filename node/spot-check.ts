// Spot-checks of sharded execution on a daemon (issue 7):
// - Recorder: the StageTap handed to the stage service with serve({ shard, model, tap }) keeps, for
//   the most recent sessions, each step's frame as the stage RECEIVED it and as it SENT it: the
//   exact payload (encoded hidden states or token ids), its signature and signer (inference frames
//   are signed by their sender, protocols/inference/frame-signature.ts). Bounded: at most
//   SPOT_MAX_SESSIONS sessions, SPOT_MAX_SESSION_BYTES per session (a longer session stops being
//   recorded) and SPOT_MAX_BYTES in all (oldest sessions evicted). Only stages feed it.
// - FETCH (what the recorder holds) is answered only to peers the ledger lists as admitted and not
//   excluded, and to the session's opening client (the signer of its prompt, on a first stage);
//   anyone else is REFUSED, and every peer is rate-limited (SPOT_FETCH_PER_WINDOW per
//   SPOT_FETCH_WINDOW_MS, else BUSY). FETCH only reads: asking cannot grow the node's memory.
// - Verifier: an AUDIT (one at a time, SPOT_MAX_QUEUE queued, else BUSY) names a session, a
//   subject stage [start, end) and the stages around it. The verifier believes only signatures:
//   the subject's inputs are frames signed by its predecessor (fetched from the predecessor, which
//   sent them, and from the subject, which received them), or on a first stage the owner's signed
//   prompt and the last stage's signed tokens (from the AUDIT or the subject's record); its outputs
//   are frames signed by the subject itself (from the successor, and from the subject). A frame
//   whose signature does not verify is dropped and counted (`stats.badSignatures`) — never evidence
//   against the subject. Two different valid frames by one signer at one position are equivocation:
//   an evidence record `round/q/…` (checked again by every node's ledger). It replays the inputs
//   through its own shard of the same layers (loaded from its model file when they fit the judge's
//   budget, else REFUSED), compares the fingerprints at positions sampled by
//   `sampleSpotChecks([session, range])` (consensus/spot-check.ts, tolerance by dtype), and writes
//   a signed evidence record `round/e/<session>.<range>`. The ledger slashes and excludes once two
//   admitted verifiers confirm (consensus/ledger.ts). A greedy last stage: the verifier's argmax
//   must be the token the stage signed at each checked position (spotCheckGreedy). A seeded last
//   stage (temperature > 0): the coin replayed from the seed must fall in the signed token's CDF
//   interval (spotCheckSampled), the sampling believed only when the stage's receipt binds it.
//   The verifier's copy is loaded in the dtype the subject's record names (as calibration does),
//   and compared within that dtype's tolerance: an honest q8_0 stage's logits are ~0.03 of their
//   scale off f32, six times the f32 tolerance, and a q8_0 copy replays it exactly.
// - Calibration CHALLENGE (node/consensus-judge.ts asks): answered with the stage this node serves
//   now (the shard last handed to serve()), one at a time, only for that exact range and model.
import { peerIdFromString } from '@libp2p/peer-id'
import type { Logger } from 'pino'
import { admittedFor, answerStageChallenge, recordData, recordId, type ConsensusRecord } from '../consensus/index.ts'
import type { Equivocation } from '../consensus/signed-frames.ts'
import { loadShard } from '../engine/index.ts'
import type { Shard, WeightDType } from '../engine/index.ts'
import { fetchTrace, SpotResponse, type AuditRequest, type SpotCheckHooks, type SpotStep, type SpotTrace } from '../protocols/consensus/spot-check.ts'
import type { StageTap, TapFrame } from '../protocols/index.ts'
import type { MyceliumHost } from './host.ts'
import type { NodeModel, OpenedModel } from './model-startup.ts'
import type { LedgerService } from './reputation.ts'
import { judgeBudgetBytes, lastSeq, wholeModelBytes } from './consensus-judge.ts'
import { SPOT_POSITIONS, tokenPositions, traceFromNeighbours, traceFromTokens } from './spot-check-trace.ts'
import { auditStage } from './spot-check-audit.ts'

export { SPOT_POSITIONS, tokenPositions, traceFromNeighbours, traceFromTokens }

export const SPOT_MAX_SESSIONS = 64
export const SPOT_MAX_SESSION_BYTES = 4 << 20
export const SPOT_MAX_BYTES = 32 << 20
/** AUDITs queued at once: a round asks a verifier for every stage it is outside of (first, middle, last), two rounds at once 6. */
export const SPOT_MAX_QUEUE = 8
/** FETCH requests one peer may make per window (ms), and the peers tracked at once. */
export const SPOT_FETCH_PER_WINDOW = 32
export const SPOT_FETCH_WINDOW_MS = 10_000
const SPOT_FETCH_PEERS = 1024
/** A recorded frame's bookkeeping bytes beyond its payload (signature, signer, fields). */
const FRAME_OVERHEAD_BYTES = 160

interface Recorded { start: number, end: number, dim: number, inputs: SpotStep[], outputs: SpotStep[], bytes: number, full: boolean, client?: string }

function recorded (f: TapFrame): SpotStep {
  // copies: a received frame's bytes may share a buffer with the rest of its stream chunk
  return { position: f.position, rows: f.rows, hidden: f.hidden === undefined ? new Uint8Array(0) : Uint8Array.from(f.hidden), codec: f.codec, tokens: f.tokens === undefined ? [] : [...f.tokens], signature: Uint8Array.from(f.signature), signer: f.signer, sampled: f.sampled === true }
}

// the bookkeeping covers a plain 64-byte signature; a batch signature's Merkle proof (≤ 520 bytes) counts on top
const sizeOf = (f: TapFrame | undefined): number => f === undefined ? 0 : (f.hidden?.byteLength ?? 0) + 4 * (f.tokens?.length ?? 0) + Math.max(0, f.signature.byteLength - 64) + FRAME_OVERHEAD_BYTES

export class SpotRecorder {
  private readonly sessions = new Map<string, Recorded>()
  private total = 0
  private readonly limits: { sessions: number, sessionBytes: number, bytes: number }

  constructor (limits: Partial<{ sessions: number, sessionBytes: number, bytes: number }> = {}) {
    this.limits = { sessions: limits.sessions ?? SPOT_MAX_SESSIONS, sessionBytes: limits.sessionBytes ?? SPOT_MAX_SESSION_BYTES, bytes: limits.bytes ?? SPOT_MAX_BYTES }
  }

  /** Bytes held now, sessions held. */
  get size (): { bytes: number, sessions: number } { return { bytes: this.total, sessions: this.sessions.size } }

  readonly tap: StageTap = (step) => {
    let r = this.sessions.get(step.sessionId)
    if (r === undefined) {
      r = { start: step.start, end: step.end, dim: step.dim, inputs: [], outputs: [], bytes: 0, full: false }
      this.sessions.set(step.sessionId, r)
    }
    if (r.full) return
    const add = sizeOf(step.input) + sizeOf(step.output)
    if (r.bytes + add > this.limits.sessionBytes) { r.full = true; return }
    // a first stage's prompt is signed by the session's opening client
    if (step.start === 0 && step.input.position === 0 && step.input.tokens !== undefined && !step.input.sampled) r.client = step.input.signer
    r.inputs.push(recorded(step.input))
    if (step.output !== undefined) r.outputs.push(recorded(step.output))
    r.bytes += add
    this.total += add
    this.evict()
  }

  private evict (): void {
    while (this.sessions.size > this.limits.sessions || this.total > this.limits.bytes) {
      const oldest = this.sessions.keys().next()
      if (oldest.done === true) return
      this.total -= this.sessions.get(oldest.value)?.bytes ?? 0
      this.sessions.delete(oldest.value)
    }
  }

  /** The session's opening client, when this node was its first stage and recorded the prompt. */
  clientOf (sessionId: string): string | undefined {
    return this.sessions.get(sessionId)?.client
  }

  fetch (sessionId: string, side: 'inputs' | 'outputs'): SpotTrace | undefined {
    const r = this.sessions.get(sessionId)
    if (r === undefined || r.full) return undefined
    const steps = side === 'inputs' ? r.inputs : r.outputs
    return steps.length === 0 ? undefined : { start: r.start, end: r.end, dim: r.dim, steps }
  }
}

/** Per-peer fixed-window request counter, bounded in peers (the oldest window is dropped first). */
export class PeerRateLimit {
  private readonly windows = new Map<string, { from: number, n: number }>()
  private readonly limit: number
  private readonly windowMs: number
  private readonly now: () => number
  constructor (limit = SPOT_FETCH_PER_WINDOW, windowMs = SPOT_FETCH_WINDOW_MS, now: () => number = Date.now) {
    this.limit = limit
    this.windowMs = windowMs
    this.now = now
  }

  /** Counts one request of `peer`; false when it is over the limit in the current window. */
  take (peer: string): boolean {
    const t = this.now()
    let w = this.windows.get(peer)
    if (w === undefined || t - w.from >= this.windowMs) {
      this.windows.delete(peer)
      w = { from: t, n: 0 }
      if (this.windows.size >= SPOT_FETCH_PEERS) this.windows.delete(this.windows.keys().next().value as string)
      this.windows.set(peer, w)
    }
    w.n++
    return w.n <= this.limit
  }
}

/**
 * The FETCH hook: `recorder`'s answer only for members (admitted, not excluded: the verifiers an
 * owner may ask) and the session's opening client; REFUSED for anyone else, BUSY past the per-peer rate.
 */
export function fetchGate (recorder: SpotRecorder, member: (peer: string) => boolean, stats: { fetchRefused: number, fetchBusy: number }, limit = new PeerRateLimit()): NonNullable<SpotCheckHooks['fetch']> {
  return (sessionId, side, from) => {
    if (!member(from) && recorder.clientOf(sessionId) !== from) { stats.fetchRefused++; return 'refused' }
    if (!limit.take(from)) { stats.fetchBusy++; return 'busy' }
    return recorder.fetch(sessionId, side)
  }
}

export interface SpotCheckNode {
  recorder: SpotRecorder
  /** Audits finished, by outcome; recorded frames ignored for a bad signature; equivocations reported; FETCHes refused (not a member, rate). */
  stats: { passed: number, failed: number, skipped: number, badSignatures: number, equivocations: number, fetchRefused: number, fetchBusy: number }
  stop: () => Promise<void>
}

export function startSpotChecks (host: MyceliumHost, opened: OpenedModel | undefined, modelOf: () => NodeModel | undefined, ledger: LedgerService, log: Logger, maxMemoryBytes?: number): SpotCheckNode {
  const self = host.peerId.toString()
  const state = host.services.swarmSync.state
  const recorder = new SpotRecorder()
  const stats = { passed: 0, failed: 0, skipped: 0, badSignatures: 0, equivocations: 0, fetchRefused: 0, fetchBusy: 0 }
  const queue: Array<{ request: AuditRequest, owner: string }> = []
  const seen = new Set<string>()
  let running = false
  let closed = false
  let cached: { key: string, shard: Shard } | undefined

  const open = async (peer: string, signal: AbortSignal): Promise<Awaited<ReturnType<MyceliumHost['dialProtocol']>>> => {
    const id = peerIdFromString(peer)
    return await host.dialProtocol(id, host.services.spotCheck.protocol, { signal })
  }
  const shardFor = async (start: number, end: number, dtype?: WeightDType): Promise<Shard> => {
    if (opened === undefined) throw new Error('no model')
    const as = dtype ?? opened.dtype
    const key = `${start}:${end}:${as}`
    if (cached?.key === key) return cached.shard
    await cached?.shard.close()
    cached = undefined
    const shard = await loadShard(opened.source, { start, end, dtype: as, threads: 1 })
    cached = { key, shard }
    return shard
  }
  const fetchFrom = async (peer: string, side: 'inputs' | 'outputs', sessionId: string, signal: AbortSignal): Promise<SpotTrace | undefined> =>
    peer === self ? recorder.fetch(sessionId, side) : await fetchTrace(await open(peer, signal), sessionId, side, { signal })
  // the dtype a subject's record says it serves (the verifier's copy is loaded in it)
  const dtypeOf = (peer: string): WeightDType | undefined => {
    const d = state.nodes().get(peer)?.capabilities.dtype
    return d === 'f32' || d === 'f16' || d === 'q8_0' || d === 'q4_0' ? d : undefined
  }
  const record = async (rec: ConsensusRecord): Promise<void> => { await state.recordRound(recordId(rec), recordData(rec) as never) }
  const work = async (): Promise<void> => {
    if (running) return
    running = true
    try {
      for (let job = queue.shift(); job !== undefined && !closed; job = queue.shift()) {
        const { request: a, owner } = job
        const range = `${a.start}-${a.end}`
        try {
          const signal = AbortSignal.timeout(20_000)
          const stageDtype = dtypeOf(a.subject)
          const out = await auditStage(a, owner, {
            fetch: async (peer, side) => await fetchFrom(peer, side, a.sessionId, signal),
            shardFor,
            ...(stageDtype !== undefined ? { stageDtype } : {}),
            nLayers: opened?.source.config.nLayers ?? 0
          })
          stats.badSignatures += out.badSignatures
          if (out.badSignatures > 0) log.info({ event: 'spot-check-bad-signatures', session: a.sessionId, subject: a.subject, frames: out.badSignatures }, 'spot-check: recorded frames whose signature does not verify were ignored')
          for (const e of out.equivocations) await reportEquivocation(e)
          const result = out.result
          if (result === undefined) { stats.skipped++; log.info({ event: 'spot-check-skipped', session: a.sessionId, subject: a.subject }, `spot-check: ${out.skipped ?? 'nothing to check'}`); continue }
          const mismatched = [...new Set(result.mismatches.map((m) => m.position))].sort((x, y) => x - y)
          await record({ t: 'spot-check', id: `${a.sessionId}.${range}`, seq: lastSeq(() => state.rounds()) + 1, case: `${a.sessionId}:${range}`, subject: a.subject, model: a.model, start: a.start, end: a.end, checked: result.checked, mismatched, passed: result.passed })
          if (result.passed) stats.passed++
          else stats.failed++
          log.info({ event: 'spot-check', session: a.sessionId, subject: a.subject, start: a.start, end: a.end, passed: result.passed, mismatched: mismatched.length, checked: result.checked.length }, `spot-check of ${a.subject} [${a.start}, ${a.end}): ${result.passed ? 'passed' : 'FAILED'}`)
        } catch (err) {
          stats.skipped++
          log.warn({ event: 'spot-check-error', session: a.sessionId, err: (err as Error).message }, 'spot-check did not complete')
        }
      }
    } finally {
      running = false
    }
  }
  const reportEquivocation = async (e: Equivocation): Promise<void> => {
    stats.equivocations++
    log.warn({ event: 'equivocation', signer: e.signer, session: e.session, position: e.position, kind: e.kind }, `${e.signer} signed two different ${e.kind} frames at position ${e.position}`)
    await record({ t: 'equivocation', seq: lastSeq(() => state.rounds()) + 1, ...e })
  }
  // the stage this node serves now (the calibration CHALLENGE is answered with it)
  let current: { shard: Shard, model?: string } | undefined
  let challenging = false
  host.services.spotCheck.setHooks({
    fetch: fetchGate(recorder, (peer) => { const rep = ledger.state().nodes.get(peer); return rep?.admitted === true && !rep.excluded }, stats),
    challenge: async (request) => {
      const stage = current
      // one at a time; only the range and model this node serves
      if (closed || challenging || stage === undefined || stage.shard.start !== request.start || stage.shard.end !== request.end || (stage.model ?? modelOf()?.manifest?.id) !== request.model) return undefined
      challenging = true
      try {
        const a = answerStageChallenge(stage.shard, request.input)
        return 'tokens' in a ? a : { hidden: a.hidden, dim: stage.shard.config.dim }
      } finally {
        challenging = false
      }
    },
    audit: (request, from) => {
      const manifest = modelOf()?.manifest?.id
      const me = ledger.state().nodes.get(self)
      // only a verifier admitted for this model: the ledger counts no other's record (consensus/ledger.ts)
      if (closed || opened === undefined || manifest === undefined || request.model !== manifest || request.subject === self || !admittedFor(me, manifest) || me?.excluded === true) return SpotResponse.Status.REFUSED
      if (request.end > opened.source.config.nLayers) return SpotResponse.Status.REFUSED
      // the verifier loads its own copy of those layers in the subject's dtype: only when it fits
      // what the node reserved for it (consensus-judge.ts consensusMemory's verifierBytes: the
      // judge's budget and the whole model in the node's own dtype)
      const m = modelOf()?.manifest
      const own = modelOf()?.dtype ?? 'f32'
      const bytes = m === undefined ? Infinity : (request.end - request.start) * m.layerBytes[dtypeOf(request.subject) ?? own] + (request.start === 0 ? m.embeddingBytes : 0) + (request.end === m.nLayers ? m.headBytes : 0)
      if (m === undefined || bytes > Math.min(judgeBudgetBytes(maxMemoryBytes), wholeModelBytes(m, own))) return SpotResponse.Status.REFUSED
      const key = `${request.sessionId}:${request.start}-${request.end}`
      if (seen.has(key)) return SpotResponse.Status.OK
      if (queue.length >= SPOT_MAX_QUEUE) return SpotResponse.Status.BUSY
      if (seen.size > 4096) seen.clear()
      seen.add(key)
      queue.push({ request, owner: from })
      void work()
      return SpotResponse.Status.OK
    }
  })
  // the stage service gets the recorder as its tap: wrap serve() (serving.ts hands it the shard)
  const svc = host.services.inference
  const serve = svc.serve.bind(svc)
  svc.serve = (stage) => {
    current = stage
    serve(stage === undefined ? undefined : Object.create(stage, { tap: { value: recorder.tap, enumerable: true } }))
  }
  return {
    recorder,
    stats,
    stop: async () => {
      closed = true
      queue.length = 0
      host.services.spotCheck.setHooks(undefined)
      await cached?.shard.close()
      cached = undefined
    }
  }
}
