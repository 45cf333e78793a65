// Spot-checks of sharded execution (issue 7): the bounded StageTap recorder (node/spot-check.ts),
// the /mycelium/<swarm>/spot-check/1.0.0 exchange between in-process libp2p nodes (FETCH of
// recorded states, AUDIT requests, bad input answered with a status), and the verifier's check on
// real stories260K shards: the subject's inputs as its predecessor sent them against its outputs as
// its successor received them — an honest stage passes, a stage that adds 0.1 × RMS noise fails.
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { tcp } from '@libp2p/tcp'
import { pbStream } from '@libp2p/utils'
import { createLibp2p, type Libp2p } from 'libp2p'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { auditSampled } from '../../client/consensus-audit.ts'
import { sampleSpotChecks, spotCheck } from '../../consensus/index.ts'
import { loadModel, type Shard } from '../../engine/index.ts'
import { corruptHidden } from '../../node/spot-check-corrupt.ts'
import { spotCheckGreedy } from '../../consensus/spot-check.ts'
import { SpotRecorder, tokenPositions, traceFromNeighbours, traceFromTokens } from '../../node/spot-check.ts'
import { fetchTrace, requestAudit, SpotCheckService, spotCheckProtocol, spotCheckService, SpotRequest, SpotResponse, type AuditRequest } from '../../protocols/consensus/spot-check.ts'
import { seededRandom, testSeed } from '../seed.ts'
import { STORIES260K, TOK512 } from '../models.ts'

const SWARM = 'test'
const nodes: Libp2p[] = []
const shards: Shard[] = []

async function node (): Promise<Libp2p<{ spot: SpotCheckService }>> {
  const n = await createLibp2p({ addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] }, transports: [tcp()], connectionEncrypters: [noise()], streamMuxers: [yamux()], services: { spot: spotCheckService({ swarm: SWARM }) } })
  nodes.push(n as unknown as Libp2p)
  return n
}
afterAll(async () => {
  for (const n of nodes) await n.stop()
  for (const s of shards) await s.close()
})

const step = (sessionId: string, position: number, T: number, dim: number, fill: number): Parameters<SpotRecorder['tap']>[0] => ({
  sessionId, position, T, start: 2, end: 4, input: { hidden: new Float32Array(T * dim).fill(fill) }, output: { hidden: new Float32Array(T * dim).fill(fill + 1) }
})

describe('spot-check recorder (StageTap)', () => {
  it('keeps copies, caps sessions, bytes per session and bytes in all', () => {
    const r = new SpotRecorder({ sessions: 2, sessionBytes: 3 * 2 * 16 * 4, bytes: 4 * 2 * 16 * 4 })
    const s = step('a', 0, 1, 16, 1)
    r.tap(s)
    ;(s.input as { hidden: Float32Array }).hidden.fill(9) // the stage reuses its buffers: the recorder copied
    expect(new Float32Array(r.fetch('a', 'inputs')?.steps[0].hidden.slice().buffer as ArrayBuffer)[0]).toBe(1)
    r.tap(step('a', 1, 1, 16, 2))
    r.tap(step('a', 2, 1, 16, 3))
    expect(r.fetch('a', 'outputs')?.steps.map((x) => x.position)).toEqual([0, 1, 2])
    r.tap(step('a', 3, 1, 16, 4)) // over the session cap: the session is dropped from answers (incomplete)
    expect(r.fetch('a', 'inputs')).toBeUndefined()
    r.tap(step('b', 0, 1, 16, 1))
    r.tap(step('c', 0, 1, 16, 1)) // a third session evicts the oldest
    expect(r.size.sessions).toBe(2)
    expect(r.fetch('a', 'inputs')).toBeUndefined()
    expect(r.fetch('c', 'inputs')?.steps).toHaveLength(1)
    expect(r.size.bytes).toBeLessThanOrEqual(4 * 2 * 16 * 4)
    // tokens in, logits out (first / last stage alone) record nothing
    r.tap({ sessionId: 'd', position: 0, T: 2, start: 0, end: 5, input: { tokens: [1, 2] }, output: { logits: new Float32Array(8) } })
    expect(r.fetch('d', 'inputs')).toBeUndefined()
  })
})

describe('/mycelium/<swarm>/spot-check/1.0.0', () => {
  let a: Libp2p<{ spot: SpotCheckService }>
  let b: Libp2p<{ spot: SpotCheckService }>
  const audits: Array<{ request: AuditRequest, from: string }> = []
  beforeAll(async () => {
    a = await node()
    b = await node()
    const rec = new SpotRecorder()
    rec.tap(step('s1', 0, 3, 8, 0.5))
    b.services.spot.setHooks({
      fetch: (id, side) => rec.fetch(id, side),
      audit: (request, from) => { audits.push({ request, from }); return request.subject === 'busy' ? SpotResponse.Status.BUSY : SpotResponse.Status.OK }
    })
  })
  const open = async (): Promise<Awaited<ReturnType<Libp2p['dialProtocol']>>> => await a.dialProtocol(b.getMultiaddrs()[0], spotCheckProtocol(SWARM))

  it('FETCH answers the recorded steps, NOT_FOUND otherwise', async () => {
    const got = await fetchTrace(await open(), 's1', 'outputs')
    expect(got).toMatchObject({ start: 2, end: 4, dim: 8 })
    expect(got?.steps).toHaveLength(1)
    expect(got?.steps[0].rows).toBe(3)
    expect(new Float32Array(new Uint8Array(got?.steps[0].hidden ?? []).buffer)[0]).toBe(1.5)
    expect(await fetchTrace(await open(), 'nope', 'inputs')).toBeUndefined()
  })

  it('AUDIT reaches the hook with the requester; bad requests end in MALFORMED', async () => {
    const req: AuditRequest = { sessionId: 's1', subject: 'x', start: 2, end: 4, predecessor: 'p', successor: 'q', model: 'm' }
    expect(await requestAudit(await open(), req)).toBe(SpotResponse.Status.OK)
    expect(await requestAudit(await open(), { ...req, subject: 'busy' })).toBe(SpotResponse.Status.BUSY)
    expect(audits[0].from).toBe(a.peerId.toString())
    expect(audits[0].request).toEqual(req)
    expect(await requestAudit(await open(), { ...req, successor: '' })).toBe(SpotResponse.Status.MALFORMED)
    expect(await requestAudit(await open(), { ...req, end: 2 })).toBe(SpotResponse.Status.MALFORMED)
    // a request frame over 4 KiB, and garbage
    for (const bytes of [new Uint8Array(8192).fill(7), Uint8Array.from([0xff, 0xff, 0xff, 0xff, 0x0f, 1, 2])]) {
      const stream = await open()
      const pb = pbStream(stream, { maxDataLength: 1 << 20 })
      if (bytes.length > 4096) await pb.write({ kind: SpotRequest.Kind.FETCH, sessionId: 'x'.repeat(8000), side: SpotRequest.Side.INPUTS, subject: '', start: 0, end: 0, predecessor: '', successor: '', model: '', tokens: [], promptLength: 0, greedy: false }, SpotRequest)
      else await stream.send(bytes)
      const res = await pb.read(SpotResponse).catch(() => undefined)
      expect(res?.status ?? SpotResponse.Status.MALFORMED).toBe(SpotResponse.Status.MALFORMED)
    }
    expect(b.services.spot.stats.MALFORMED).toBeGreaterThanOrEqual(3)
  })

  it('AUDIT of a first or last stage carries the tokens; without them (or greedy sampling) it is MALFORMED', async () => {
    const first: AuditRequest = { sessionId: 's1', subject: 'f', start: 0, end: 2, predecessor: '', successor: 'q', model: 'm', tokens: [1, 2, 3], promptLength: 2, greedy: false }
    expect(await requestAudit(await open(), first)).toBe(SpotResponse.Status.OK)
    expect(audits.at(-1)?.request).toEqual(first)
    expect(await requestAudit(await open(), { ...first, tokens: [] })).toBe(SpotResponse.Status.MALFORMED)
    expect(await requestAudit(await open(), { ...first, start: 1 })).toBe(SpotResponse.Status.MALFORMED) // no predecessor but not layer 0
    const last: AuditRequest = { sessionId: 's1', subject: 'l', start: 4, end: 5, predecessor: 'p', successor: '', model: 'm', tokens: [1, 2, 3], promptLength: 2, greedy: true }
    expect(await requestAudit(await open(), last)).toBe(SpotResponse.Status.OK)
    expect(await requestAudit(await open(), { ...last, greedy: false })).toBe(SpotResponse.Status.MALFORMED) // seeded sampling: not audited
    expect(await requestAudit(await open(), { ...last, promptLength: 3 })).toBe(SpotResponse.Status.MALFORMED) // nothing generated
    expect(await requestAudit(await open(), { ...last, tokens: Array.from({ length: 20_000 }, () => 1) })).toBe(SpotResponse.Status.MALFORMED) // over AUDIT_MAX_TOKENS
  })
})

describe('the verifier\'s check on real shards', () => {
  it('an honest stage passes, a corrupting one fails (inputs from its predecessor, outputs from its successor)', async () => {
    const load = async (start: number, end: number): Promise<Shard> => { const m = await loadModel(STORIES260K, { start, end, tokenizer: TOK512 }); shards.push(m.shard); return m.shard }
    const head = await load(0, 2)
    const stage = await load(2, 4)
    const verifier = await load(2, 4)
    const dim = stage.config.dim
    const random = seededRandom(testSeed())
    for (const noise of [0, 0.1]) {
      // the predecessor (head) records what it SENT, the successor what it RECEIVED from the stage
      const pred = new SpotRecorder()
      const succ = new SpotRecorder()
      const hs = head.openSession({ maxLength: 64 })
      const ss = stage.openSession({ maxLength: 64 })
      let tokens = [1, 20, 30, 40, 50]
      let position = 0
      for (let i = 0; i < 12; i++) {
        const h = hs.step({ tokens }).hidden as Float32Array
        pred.tap({ sessionId: 's', position, T: tokens.length, start: 0, end: 2, input: { tokens }, output: { hidden: h } })
        const out = ss.step({ hidden: h }).hidden as Float32Array
        if (noise > 0) corruptHidden(out, dim, noise, random)
        succ.tap({ sessionId: 's', position, T: tokens.length, start: 4, end: 5, input: { hidden: out }, output: {} })
        position += tokens.length
        tokens = [60 + i]
      }
      hs.close()
      ss.close()
      const trace = traceFromNeighbours(pred.fetch('s', 'outputs') ?? { start: 0, end: 0, dim, steps: [] }, succ.fetch('s', 'inputs') ?? { start: 0, end: 0, dim, steps: [] })
      expect(trace?.rows).toBe(position)
      const result = spotCheck(verifier, { inputs: trace?.inputs ?? [], fingerprints: trace?.fingerprints ?? [] }, sampleSpotChecks(['s', '2-4'], position, 20))
      expect(result.checked.length).toBeGreaterThan(0)
      expect(result.passed).toBe(noise === 0)
    }
    // misaligned neighbours (a step missing on one side) give no trace
    expect(traceFromNeighbours({ start: 0, end: 2, dim, steps: [{ position: 0, rows: 1, hidden: new Uint8Array(dim * 4) }] }, { start: 4, end: 5, dim, steps: [] })).toBeUndefined()
  })
})

describe('first and last stages on real shards', () => {
  it('first stage: inputs are the owner\'s tokens, outputs its successor\'s record — honest passes, corrupting fails', async () => {
    const load = async (start: number, end: number): Promise<Shard> => { const m = await loadModel(STORIES260K, { start, end, tokenizer: TOK512 }); shards.push(m.shard); return m.shard }
    const stage = await load(0, 2)
    const verifier = await load(0, 2)
    const dim = stage.config.dim
    const random = seededRandom(testSeed())
    const tokens = [1, 20, 30, 40, 50, ...Array.from({ length: 15 }, (_, i) => 60 + i)]
    for (const noise of [0, 0.1]) {
      const succ = new SpotRecorder()
      const ss = stage.openSession({ maxLength: 64 })
      let position = 0
      for (const T of [5, ...Array.from({ length: 14 }, () => 1)]) {
        const out = ss.step({ tokens: tokens.slice(position, position + T) }).hidden as Float32Array
        if (noise > 0) corruptHidden(out, dim, noise, random)
        succ.tap({ sessionId: 's', position, T, start: 2, end: 4, input: { hidden: out }, output: { hidden: out } })
        position += T
      }
      ss.close()
      const received = succ.fetch('s', 'inputs')
      expect(received).toBeDefined()
      const trace = traceFromTokens(tokens, received ?? { start: 2, end: 4, dim, steps: [] })
      expect(trace?.rows).toBe(position)
      const result = spotCheck(verifier, { inputs: trace?.inputs ?? [], fingerprints: trace?.fingerprints ?? [] }, sampleSpotChecks(['s', '0-2'], position, 20))
      expect(result.checked.length).toBeGreaterThan(0)
      expect(result.passed).toBe(noise === 0)
      // the tokens must cover the successor's record
      expect(traceFromTokens(tokens.slice(0, 3), received ?? { start: 2, end: 4, dim, steps: [] })).toBeUndefined()
    }
  })

  it('last stage (greedy): the verifier\'s argmax must be the sampled token — honest passes, wrong tokens fail', async () => {
    const load = async (start: number, end: number): Promise<Shard> => { const m = await loadModel(STORIES260K, { start, end, tokenizer: TOK512 }); shards.push(m.shard); return m.shard }
    const head = await load(0, 4)
    const n = head.config.nLayers
    const stage = await load(4, n)
    const verifier = await load(4, n)
    const prompt = [1, 20, 30, 40, 50]
    // greedy generation through head → last stage; the predecessor records what it sent
    const pred = new SpotRecorder()
    const hs = head.openSession({ maxLength: 64 })
    const ls = stage.openSession({ maxLength: 64 })
    const seq = [...prompt]
    let input = prompt
    let position = 0
    for (let i = 0; i < 16; i++) {
      const h = hs.step({ tokens: input }).hidden as Float32Array
      pred.tap({ sessionId: 's', position, T: input.length, start: 0, end: 4, input: { tokens: input }, output: { hidden: h } })
      const logits = ls.step({ hidden: h }).logits as Float32Array
      const V = stage.config.vocabSize
      const row = logits.subarray(logits.length - V)
      let best = 0
      for (let j = 1; j < V; j++) if (row[j] > row[best]) best = j
      position += input.length
      seq.push(best)
      input = [best]
    }
    hs.close()
    ls.close()
    const sent = pred.fetch('s', 'outputs')
    expect(sent?.steps.length).toBe(16)
    const inputs = (sent?.steps ?? []).map((st) => ({ hidden: new Float32Array(new Uint8Array(st.hidden).buffer) }))
    const expectedOf = (tokens: number[]): Array<number | undefined> => Array.from({ length: position }, (_, p) => p + 1 >= prompt.length && p + 1 < tokens.length ? tokens[p + 1] : undefined)
    const honest = expectedOf(seq)
    const positions = tokenPositions(['s', `4-${n}`], honest)
    expect(positions.length).toBe(16) // every generated token's position (fewer than SPOT_POSITIONS)
    const ok = spotCheckGreedy(verifier, inputs, honest, positions)
    expect(ok.checked).toEqual(positions)
    expect(ok.passed).toBe(true)
    // a last stage that returned other tokens (every third one replaced)
    const random = seededRandom(testSeed())
    const wrong = seq.map((t, i) => i >= prompt.length && (i - prompt.length) % 3 === 1 ? (t + 1 + Math.floor(random() * 100)) % verifier.config.vocabSize : t)
    const bad = spotCheckGreedy(verifier, inputs, expectedOf(wrong), tokenPositions(['s', `4-${n}`], expectedOf(wrong)))
    expect(bad.passed).toBe(false)
    expect(bad.mismatches.length).toBeGreaterThanOrEqual(5)
    expect(bad.mismatches.every((m) => m.claimed !== m.argmax)).toBe(true)
  })
})

describe('sampled audits of plain requests', () => {
  it('auditSampled picks about `rate` of the sessions, the same ones every time', () => {
    const ids = Array.from({ length: 4000 }, (_, i) => `session-${testSeed()}-${i}`)
    const picked = ids.filter((id) => auditSampled(id, 0.1))
    expect(picked.length / ids.length).toBeGreaterThan(0.08)
    expect(picked.length / ids.length).toBeLessThan(0.12)
    expect(ids.filter((id) => auditSampled(id, 0.1))).toEqual(picked)
    expect(ids.some((id) => auditSampled(id, 0))).toBe(false)
    expect(ids.every((id) => auditSampled(id, 1))).toBe(true)
  })
})
