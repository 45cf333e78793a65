// Issue 7's admission on a real multi-process swarm (stories260K, real `mycelium node start`
// daemons): d0 is the anchor (genesis, the API) and serves the whole model; three newcomers join —
// d1 (whole model) and d3 (layers 2–4 in q4_0, checked against a q4_0 copy: an f32 reference
// refuses an honest q4_0 last stage most of the time) honest, d2 (layers 0–1) started with the test-only
// `--test-wrong-stage 1`, whose stage answers EVERYTHING with 1 × RMS noise, the calibration
// challenge included (unlike `--test-corrupt-output`, which behaves while calibrated). The admitted
// nodes calibrate the newcomers (known-answer judging pairs + a stage challenge on the layers each
// serves): d1 and d3 are admitted, get weight and take part in a consensus round (d1's chain
// answers, d3 judges); d2 is refused — never admitted in any ledger, no judging assignment, not
// routed (its would-be chain d2 → d3 gives no answer). d2 then whitewashes (restarts with a fresh
// identity, same wrong stage): the new identity is not admitted before a full calibration of its
// own, which refuses it again. d4 (layers 3–4, --max-memory 10M) is near its memory limit: it
// does not judge, advertises its whole budget, and stays neither admitted nor refused (it cannot
// answer the judging pairs, which is no verdict). Every wait is a poll; every child is killed after.
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { nodeConfig } from '../../node/config.ts'
import { controlRequest } from '../../node/control.ts'
import { CALIBRATION_MAX_RETRY_MS, CALIBRATION_RETRY_MS, CALIBRATION_TASKS, calibrationRetryMs, wholeModelBytes } from '../../node/consensus-judge.ts'
import { openModel } from '../../engine/index.ts'
import { manifestFromSource } from '../../sharding/index.ts'
import { STORIES260K } from '../models.ts'
import { testSeed } from '../seed.ts'
import { cleanupDaemons, pollUntil, readyRecord, runCli, scratch, startDaemon, stopDaemon, tcpAddr, type Started } from './daemons.ts'

const SWARM = 'admission'
const PROMPT = 'Once upon a time, there was a little girl'
const seed = testSeed()
const daemons: Started[] = []
let ids: string[] = []
let url = ''

type Rep = Record<string, { admitted: boolean, refused: boolean, excluded: boolean, weight: number }>
type Calibration = { subject: string, passed: boolean, right: number, pairs: number, stage: { passed: boolean, rows: number, rowsExact: number, reason?: string, range: { start: number, end: number } } }
type Meta = { winner: string, ranking: string[], answers: Array<{ id: string, chain: Array<{ peer: string }> }>, judges: string[], failures: Array<{ judge: string }>, recorded: boolean }

const live = (): Started[] => daemons.filter((d) => d.child.exitCode === null && d.child.signalCode === null)
async function ledgerOf (d: Started): Promise<{ reputation: Rep, rounds: number }> {
  return await controlRequest(join(d.dir, 'control.sock'), { cmd: 'reputation' }) as unknown as { reputation: Rep, rounds: number }
}
const calibrations = (subject: string): Calibration[] => daemons.flatMap((d) => d.events.filter((e) => e.event === 'calibration' && e.subject === subject)) as unknown as Calibration[]
/** Every admission any live ledger ever showed for `peer` while polling (must stay empty for a refused node). */
const admittedSeen = new Map<string, string[]>()
async function ledgers (watch: string[]): Promise<Rep[]> {
  const all = await Promise.all(live().map(async (d) => (await ledgerOf(d)).reputation))
  for (const r of all) for (const p of watch) if (r[p]?.admitted === true) admittedSeen.set(p, [...(admittedSeen.get(p) ?? []), JSON.stringify(r[p])])
  return all
}

beforeAll(async () => {
  const start = async (layers: string, extra: string[] = []): Promise<Started> => await startDaemon(scratch('mycelium-admission-'), ['--swarm', SWARM, '--model', STORIES260K, '--layers', layers, '--threads', '1', ...(daemons.length > 0 ? ['--bootstrap', tcpAddr(daemons[0])] : []), ...extra], 'serving')
  daemons.push(await start('0:5', ['--api-port', '0']))
  // d3 serves q4_0 (its calibrators serve f32): its stage must be checked against a q4_0 copy
  // d4 is near its memory limit: 10 MiB holds its 2 layers, not the consensus copies beside them
  daemons.push(...await Promise.all([start('0:5'), start('0:2', ['--test-wrong-stage', '1']), start('2:5', ['--dtype', 'q4_0']), start('3:5', ['--max-memory', '10M'])]))
  ids = daemons.map((d) => readyRecord(d).peerId as string)
  url = (await pollUntil('the api event', async () => daemons[0].events.find((e) => e.event === 'api'), 10_000)).url as string
}, 60_000)
afterAll(cleanupDaemons)

describe(`admission by calibration on a multi-process swarm (issue 7, TEST_SEED=${seed})`, () => {
  it('honest newcomers are admitted and enter rounds; a newcomer whose stage is wrong is refused, gets no judging and is not routed', async () => {
    const [, d1, d2, d3] = ids
    await pollUntil('every ledger to admit d0, d1, d3 and refuse d2', async () => {
      for (const r of await ledgers([d2])) {
        if (![ids[0], d1, d3].every((id) => r[id]?.admitted === true) || r[d2]?.refused !== true) return undefined
      }
      return true
    }, 30_000, 200)
    // what calibration checked: the honest ones passed pairs and stage; d2 judged its pairs right
    // (its judge is its own whole-model copy) but its stage answered the challenge wrongly
    for (const id of [d1, d3]) {
      const ok = calibrations(id).filter((c) => c.passed)
      expect(ok.length).toBeGreaterThan(0)
      for (const c of ok) expect([c.right, c.stage.passed, c.stage.rowsExact]).toEqual([CALIBRATION_TASKS, true, 8])
    }
    expect(calibrations(d3).find((c) => c.passed)?.stage.range).toMatchObject({ start: 2, end: 5 })
    const bad = calibrations(d2)
    expect(bad.length).toBeGreaterThan(0)
    for (const c of bad) {
      expect(c.passed).toBe(false)
      expect(c.right).toBe(CALIBRATION_TASKS)
      expect(c.stage).toMatchObject({ passed: false, range: { start: 0, end: 2 }, reason: 'hidden states differ' })
    }
    for (const r of await ledgers([d2])) {
      expect(r[d2]).toMatchObject({ admitted: false, refused: true, weight: 0 })
      for (const id of [d1, d3]) expect(r[id].weight).toBeGreaterThan(0) // calibrated newcomers have judging weight
    }
    // a consensus round (k = 3 asked): d2's chain (d2 → d3) is not routed, so two chains answer
    // (d0's and d1's); d3, admitted and no author, judges; d2 is given no judging
    const res = await fetch(`${url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'stories260K', prompt: PROMPT, max_tokens: 24, temperature: 0.4, seed: seed % 1000, consensus: { k: 3, deadline_ms: 30_000 } })
    })
    expect(res.status).toBe(200)
    const c = (await res.json() as { consensus: Meta }).consensus
    const chains = c.answers.map((a) => a.chain.map((h) => h.peer))
    expect(chains).toHaveLength(2)
    for (const chain of chains) expect(chain).not.toContain(d2)
    expect(chains.flat()).toContain(d1) // the honest whole-model newcomer answers
    expect(c.judges).toContain(d3) // the honest stage newcomer judges
    expect(c.judges).not.toContain(d2)
    expect(c.failures.map((f) => f.judge)).not.toContain(d2)
    expect(c.recorded).toBe(true)
    await pollUntil('every ledger to settle the round', async () => {
      for (const d of live()) if ((await ledgerOf(d)).rounds < 1) return undefined
      return true
    }, 20_000, 200)
    for (const r of await ledgers([d2])) expect(r[d2]).toMatchObject({ admitted: false, refused: true, weight: 0 })
    expect(admittedSeen.get(d2)).toBeUndefined() // never admitted in any daemon's ledger, at any poll
  }, 60_000)

  it('whitewashing: d2 restarted with a fresh identity is not admitted until a full calibration of its own, which refuses it again', async () => {
    const old = ids[2]
    expect(await stopDaemon(daemons[2].child)).toBe(0)
    const fresh = await startDaemon(scratch('mycelium-admission-ww-'), ['--swarm', SWARM, '--model', STORIES260K, '--layers', '0:2', '--threads', '1', '--bootstrap', tcpAddr(daemons[0]), '--test-wrong-stage', '1'], 'serving')
    daemons.push(fresh)
    const id = readyRecord(fresh).peerId as string
    expect(id).not.toBe(old)
    // until the ledgers hold a calibration of the new identity it is neither admitted nor refused:
    // the old identity's record does not follow it, and neither does any standing
    await pollUntil('every ledger to refuse the new identity', async () => {
      const all = await ledgers([id])
      if (calibrations(id).length === 0) {
        for (const r of all) expect(r[id]?.refused ?? false).toBe(false)
        return undefined
      }
      return all.every((r) => r[id]?.refused === true) ? true : undefined
    }, 30_000, 100)
    const again = calibrations(id)
    expect(again.length).toBeGreaterThan(0)
    for (const c of again) {
      // a full calibration: every known-answer pair and the stage challenge, again
      expect(c).toMatchObject({ passed: false, pairs: CALIBRATION_TASKS, right: CALIBRATION_TASKS })
      expect(c.stage).toMatchObject({ passed: false, rows: 8, range: { start: 0, end: 2 } })
    }
    for (const r of await ledgers([id])) {
      expect(r[id]).toMatchObject({ admitted: false, refused: true, weight: 0 })
      expect(r[old]).toMatchObject({ admitted: false, refused: true }) // the old identity stays refused
    }
    expect(admittedSeen.get(id)).toBeUndefined()
  }, 60_000)

  it('the judge\'s copies are counted: a judging node advertises its budget less the judge, calibration and verifier copies of the real model; a node near its limit does not judge', async () => {
    const manifest = await manifestFromSource(await openModel(STORIES260K))
    const view = await controlRequest(join(daemons[0].dir, 'control.sock'), { cmd: 'swarm' }) as unknown as { nodes: Record<string, { capabilities: { memoryBytes: number } }> }
    // d4, near its limit (10 MiB: 2 layers with their KV reserve; the copies would leave room for 1)
    const tight = daemons[4].events.find((e) => e.event === 'capability') as { memoryBytes: number, budgetBytes: number, judging: boolean, consensusReserveBytes: number }
    expect(tight).toMatchObject({ judging: false, consensusReserveBytes: 0, budgetBytes: 10 * 1024 ** 2, memoryBytes: 10 * 1024 ** 2 })
    expect(view.nodes[ids[4]]?.capabilities.memoryBytes).toBe(10 * 1024 ** 2)
    // it declined the judging pairs of its calibrations: no verdict, so neither admitted nor refused
    await pollUntil('a calibration of d4 without an answer', async () => daemons.some((d) => d.events.some((e) => e.event === 'calibration-incomplete' && e.subject === ids[4])) ? true : undefined, 20_000, 200)
    expect(calibrations(ids[4])).toEqual([])
    for (const r of await ledgers([ids[4]])) expect(r[ids[4]]?.admitted ?? false).toBe(false)
    for (const r of await ledgers([])) expect(r[ids[4]]?.refused ?? false).toBe(false)
    for (const [i, d] of daemons.entries()) {
      if (i === 4) continue
      const cap = d.events.find((e) => e.event === 'capability') as { dtype: 'f32' | 'q4_0', memoryBytes: number, budgetBytes: number, judging: boolean, consensusReserveBytes: number }
      expect(cap.judging).toBe(true) // no --max-memory: 80 % of free memory holds every layer and the copies
      // judge + verifier copies in the node's dtype, the calibration copy at most f32 (a subject's dtype)
      const reserve = 2 * wholeModelBytes(manifest, cap.dtype) + wholeModelBytes(manifest, 'f32')
      expect(cap.dtype).toBe(i === 3 ? 'q4_0' : 'f32')
      expect(cap.consensusReserveBytes).toBe(reserve)
      expect(cap.memoryBytes).toBe(cap.budgetBytes - reserve)
      if (i !== 2) expect(view.nodes[readyRecord(d).peerId as string]?.capabilities.memoryBytes).toBe(cap.memoryBytes) // what the allocator reads
    }
  })
})

describe('--test-wrong-stage', () => {
  it('is a positive number, and hidden from help', () => {
    expect(nodeConfig({ testWrongStage: '1' }).testWrongStage).toBe(1)
    expect(nodeConfig({}).testWrongStage).toBeUndefined()
    for (const bad of ['0', '-1', 'x', 'Infinity']) expect(() => nodeConfig({ testWrongStage: bad })).toThrow(/--test-wrong-stage/)
    expect(runCli(['node', 'start', '--help']).stdout).not.toContain('wrong')
  })
})

describe('calibrationRetryMs', () => {
  it('a subject that keeps answering wrongly is calibrated again after a doubling wait, at most an hour', () => {
    expect([0, 1, 2, 3].map(calibrationRetryMs)).toEqual([1, 2, 4, 8].map((x) => x * CALIBRATION_RETRY_MS))
    expect(calibrationRetryMs(7)).toBe(CALIBRATION_MAX_RETRY_MS)
    expect(calibrationRetryMs(1e6)).toBe(CALIBRATION_MAX_RETRY_MS)
  })
})
