// Spot-checks of sharded execution on a daemon (issue 7), without changing the inference wire:
// - Recorder: the StageTap handed to the stage service with serve({ shard, model, tap }) keeps, for
//   the most recent sessions, the hidden states each step RECEIVED and the hidden states it SENT
//   (copies). Bounded: at most SPOT_MAX_SESSIONS sessions, SPOT_MAX_SESSION_BYTES per session
//   (a longer session stops being recorded) and SPOT_MAX_BYTES in all (oldest sessions evicted).
//   Only stages feed it; a remote peer cannot grow it by asking (FETCH only reads).
// - Verifier: an AUDIT (from anyone; one at a time, SPOT_MAX_QUEUE queued, else BUSY) names a
//   session, a subject stage [start, end) and the stages around it. The verifier FETCHes what the
//   predecessor SENT (= the subject's inputs) and what the successor RECEIVED (= the subject's
//   true outputs), never trusting the subject; it replays the inputs through its own shard of the
//   same layers (loaded from its model file when they fit the judge's budget, else REFUSED), compares the fingerprints at positions sampled by
//   `sampleSpotChecks([session, range])` (consensus/spot-check.ts, tolerance by dtype), and writes
//   a signed evidence record `round/e/<session>.<range>` (case `<session>:<start>-<end>`). The
//   ledger slashes and excludes once two admitted verifiers confirm (consensus/ledger.ts).
// - A first stage (no predecessor) gets its inputs from the tokens the owner sends in the AUDIT
//   (prompt + generated); a last stage (no successor) is audited only for greedy requests: the
//   verifier's argmax must be the token the owner saw at each checked position (spotCheckGreedy,
//   within the dtype tolerance). Seeded sampling is not audited on the last stage yet.
// - Calibration CHALLENGE (node/consensus-judge.ts asks): answered with the stage this node serves
//   now (the shard last handed to serve()), one at a time, only for that exact range and model.
// Hidden bytes travel as little-endian float32 (Node on x86-64 / arm64).
import { peerIdFromString } from '@libp2p/peer-id'
import type { Logger } from 'pino'
import { answerStageChallenge, fingerprint, recordData, recordId, sampleSpotChecks, spotCheck, type ConsensusRecord } from '../consensus/index.ts'
import { spotCheckGreedy } from '../consensus/spot-check.ts'
import { loadShard } from '../engine/index.ts'
import type { Shard, StageInput } from '../engine/index.ts'
import { fetchTrace, SpotResponse, type AuditRequest, type SpotStep, type SpotTrace } from '../protocols/consensus/spot-check.ts'
import type { StageTap } from '../protocols/index.ts'
import type { MyceliumHost } from './host.ts'
import type { NodeModel, OpenedModel } from './model-startup.ts'
import type { LedgerService } from './reputation.ts'
import { JUDGE_MAX_MODEL_BYTES, lastSeq } from './consensus-judge.ts'

export const SPOT_MAX_SESSIONS = 64
export const SPOT_MAX_SESSION_BYTES = 4 << 20
export const SPOT_MAX_BYTES = 32 << 20
export const SPOT_MAX_QUEUE = 4
/** Positions checked per audit. */
export const SPOT_POSITIONS = 20

interface Recorded { start: number, end: number, dim: number, inputs: SpotStep[], outputs: SpotStep[], bytes: number, full: boolean }

function bytesOf (x: Float32Array): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(x.byteLength)
  out.set(new Uint8Array(x.buffer, x.byteOffset, x.byteLength))
  return out
}

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
    const hiddenIn = 'hidden' in step.input ? step.input.hidden : undefined
    const hiddenOut = step.output.hidden
    if (hiddenIn === undefined && hiddenOut === undefined) return
    const dim = (hiddenIn ?? hiddenOut as Float32Array).length / step.T
    let r = this.sessions.get(step.sessionId)
    if (r === undefined) {
      r = { start: step.start, end: step.end, dim, inputs: [], outputs: [], bytes: 0, full: false }
      this.sessions.set(step.sessionId, r)
    }
    if (r.full) return
    const add = (hiddenIn?.byteLength ?? 0) + (hiddenOut?.byteLength ?? 0)
    if (r.bytes + add > this.limits.sessionBytes) { r.full = true; return }
    if (hiddenIn !== undefined) r.inputs.push({ position: step.position, rows: step.T, hidden: bytesOf(hiddenIn) })
    if (hiddenOut !== undefined) r.outputs.push({ position: step.position, rows: step.T, hidden: bytesOf(hiddenOut) })
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

  fetch (sessionId: string, side: 'inputs' | 'outputs'): SpotTrace | undefined {
    const r = this.sessions.get(sessionId)
    if (r === undefined || r.full) return undefined
    const steps = side === 'inputs' ? r.inputs : r.outputs
    return steps.length === 0 ? undefined : { start: r.start, end: r.end, dim: r.dim, steps }
  }
}

function floats (b: Uint8Array): Float32Array {
  const copy = new Uint8Array(b) // aligned
  return new Float32Array(copy.buffer, 0, copy.byteLength / 4)
}

function inputsOf (sent: SpotTrace): { inputs: StageInput[], rows: number } | undefined {
  const inputs: StageInput[] = []
  let rows = 0
  for (const a of sent.steps) {
    if (a.position !== rows || a.hidden.byteLength !== a.rows * sent.dim * 4) return undefined
    inputs.push({ hidden: floats(a.hidden) })
    rows += a.rows
  }
  return rows === 0 ? undefined : { inputs, rows }
}

/** A greedy last stage's checked positions: SPOT_POSITIONS of those with a known next token. */
export function tokenPositions (seed: string[], expected: ReadonlyArray<number | undefined>): number[] {
  const known = expected.flatMap((t, p) => t === undefined ? [] : [p])
  return sampleSpotChecks(seed, known.length, SPOT_POSITIONS).map((i) => known[i])
}

/** A first stage's trace: its inputs are the session's tokens (the owner's), its outputs what its successor received. */
export function traceFromTokens (tokens: readonly number[], received: SpotTrace): { inputs: StageInput[], fingerprints: Uint8Array[], rows: number } | undefined {
  const inputs: StageInput[] = []
  const fingerprints: Uint8Array[] = []
  let rows = 0
  for (const b of received.steps) {
    if (b.position !== rows || b.position + b.rows > tokens.length || b.hidden.byteLength !== b.rows * received.dim * 4) return undefined
    inputs.push({ tokens: tokens.slice(b.position, b.position + b.rows) })
    fingerprints.push(fingerprint(floats(b.hidden), received.dim))
    rows += b.rows
  }
  return rows === 0 ? undefined : { inputs, fingerprints, rows }
}

/** The subject's trace from its neighbours' records: inputs (predecessor's outputs) and fingerprints of its outputs (successor's inputs). */
export function traceFromNeighbours (sent: SpotTrace, received: SpotTrace): { inputs: StageInput[], fingerprints: Uint8Array[], rows: number } | undefined {
  if (sent.steps.length === 0 || sent.steps.length !== received.steps.length) return undefined
  const inputs: StageInput[] = []
  const fingerprints: Uint8Array[] = []
  let rows = 0
  for (let i = 0; i < sent.steps.length; i++) {
    const a = sent.steps[i]
    const b = received.steps[i]
    if (a.position !== b.position || a.rows !== b.rows || a.hidden.byteLength !== a.rows * sent.dim * 4 || b.hidden.byteLength !== b.rows * received.dim * 4) return undefined
    inputs.push({ hidden: floats(a.hidden) })
    fingerprints.push(fingerprint(floats(b.hidden), received.dim))
    rows += a.rows
  }
  return { inputs, fingerprints, rows }
}

export interface SpotCheckNode {
  recorder: SpotRecorder
  /** Audits finished, by outcome. */
  stats: { passed: number, failed: number, skipped: number }
  stop: () => Promise<void>
}

export function startSpotChecks (host: MyceliumHost, opened: OpenedModel | undefined, modelOf: () => NodeModel | undefined, ledger: LedgerService, log: Logger, maxMemoryBytes?: number): SpotCheckNode {
  const self = host.peerId.toString()
  const state = host.services.swarmSync.state
  const recorder = new SpotRecorder()
  const stats = { passed: 0, failed: 0, skipped: 0 }
  const queue: AuditRequest[] = []
  const seen = new Set<string>()
  let running = false
  let closed = false
  let cached: { key: string, shard: Shard } | undefined

  const open = async (peer: string, signal: AbortSignal): Promise<Awaited<ReturnType<MyceliumHost['dialProtocol']>>> => {
    const id = peerIdFromString(peer)
    return await host.dialProtocol(id, host.services.spotCheck.protocol, { signal })
  }
  const shardFor = async (start: number, end: number): Promise<Shard> => {
    const key = `${start}:${end}`
    if (cached?.key === key) return cached.shard
    if (opened === undefined) throw new Error('no model')
    await cached?.shard.close()
    cached = undefined
    const shard = await loadShard(opened.source, { start, end, dtype: opened.dtype, threads: 1 })
    cached = { key, shard }
    return shard
  }
  const work = async (): Promise<void> => {
    if (running) return
    running = true
    try {
      for (let a = queue.shift(); a !== undefined && !closed; a = queue.shift()) {
        const range = `${a.start}-${a.end}`
        try {
          const signal = AbortSignal.timeout(20_000)
          const first = a.predecessor === ''
          const last = a.successor === ''
          const tokens = a.tokens ?? []
          // inputs: the predecessor's sent states, or (a first stage) the owner's tokens; outputs:
          // the successor's received states, or (a greedy last stage) the tokens it sampled
          const [sent, received] = await Promise.all([
            first ? undefined : fetchTrace(await open(a.predecessor, signal), a.sessionId, 'outputs', { signal }),
            last ? undefined : fetchTrace(await open(a.successor, signal), a.sessionId, 'inputs', { signal })
          ])
          let result: { checked: number[], passed: boolean, mismatches: Array<{ position: number }> } | undefined
          if (!last) {
            const trace = received === undefined || received.start !== a.end
              ? undefined
              : first
                ? (a.start === 0 ? traceFromTokens(tokens, received) : undefined)
                : (sent !== undefined && sent.end === a.start ? traceFromNeighbours(sent, received) : undefined)
            if (trace !== undefined) {
              const shard = await shardFor(a.start, a.end)
              result = spotCheck(shard, { inputs: trace.inputs, fingerprints: trace.fingerprints }, sampleSpotChecks([a.sessionId, range], trace.rows, SPOT_POSITIONS))
            }
          } else if (a.greedy === true && sent !== undefined && sent.end === a.start && a.end === opened?.source.config.nLayers) {
            const inputs = inputsOf(sent)
            if (inputs !== undefined) {
              // the logits at position p chose tokens[p + 1], for every generated token
              const expected = Array.from({ length: inputs.rows }, (_, p) => p + 1 >= (a.promptLength ?? 0) && p + 1 < tokens.length ? tokens[p + 1] : undefined)
              const shard = await shardFor(a.start, a.end)
              result = spotCheckGreedy(shard, inputs.inputs, expected, tokenPositions([a.sessionId, range], expected))
            }
          }
          if (result === undefined) { stats.skipped++; log.info({ event: 'spot-check-skipped', session: a.sessionId, subject: a.subject }, 'spot-check: the neighbours have no matching record'); continue }
          const mismatched = [...new Set(result.mismatches.map((m) => m.position))].sort((x, y) => x - y)
          const rec: ConsensusRecord = { t: 'spot-check', id: `${a.sessionId}.${range}`, seq: lastSeq(() => state.rounds()) + 1, case: `${a.sessionId}:${range}`, subject: a.subject, model: a.model, start: a.start, end: a.end, checked: result.checked, mismatched, passed: result.passed }
          await state.recordRound(recordId(rec), recordData(rec) as never)
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
  // the stage this node serves now (the calibration CHALLENGE is answered with it)
  let current: { shard: Shard, model?: string } | undefined
  let challenging = false
  host.services.spotCheck.setHooks({
    fetch: (sessionId, side) => recorder.fetch(sessionId, side),
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
    audit: (request) => {
      const manifest = modelOf()?.manifest?.id
      const me = ledger.state().nodes.get(self)
      if (closed || opened === undefined || manifest === undefined || request.model !== manifest || request.subject === self || me?.admitted !== true || me.excluded) return SpotResponse.Status.REFUSED
      if (request.end > opened.source.config.nLayers) return SpotResponse.Status.REFUSED
      // the verifier loads its own copy of those layers: only when they fit the judge's budget
      const m = modelOf()?.manifest
      const bytes = m === undefined ? Infinity : (request.end - request.start) * m.layerBytes[modelOf()?.dtype ?? 'f32'] + (request.start === 0 ? m.embeddingBytes : 0) + (request.end === m.nLayers ? m.headBytes : 0)
      if (bytes > (maxMemoryBytes === undefined ? JUDGE_MAX_MODEL_BYTES : Math.min(JUDGE_MAX_MODEL_BYTES, maxMemoryBytes / 4))) return SpotResponse.Status.REFUSED
      const key = `${request.sessionId}:${request.start}-${request.end}`
      if (seen.has(key)) return SpotResponse.Status.OK
      if (queue.length >= SPOT_MAX_QUEUE) return SpotResponse.Status.BUSY
      if (seen.size > 4096) seen.clear()
      seen.add(key)
      queue.push(request)
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
