// Issue 7 on real daemons: a judge-only node (`--judge-model`, like the testnet relay: it holds the
// whole model, serves no layers) is a spot-check verifier. j is the genesis anchor with
// --judge-model stories260K; it publishes its model as the record's `judgeModel` capability and
// calibrates the serving newcomers d1 ([0,2)), d2 ([2,5)) and d3 (whole model, the API); j2, a
// second judge-only newcomer, is calibrated (by j or an admitted newcomer) on the judging pairs
// alone (it has no stage to check). A greedy
// k = 2 round owned by d3 has the chains {d3} and {d1 → d2}; the admitted holders of the model
// outside the split chain that are not the owner are j and j2, so the owner asks both to audit d1
// (first stage) and d2 (last stage, greedy): they accept, re-execute both on their own copies of
// those layers and write passed evidence records every ledger sees. Before, a judge-only node was
// never asked (no layers in its record), its spot-check service refused (no model shown to it),
// and a judge-only newcomer was never calibrated.
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { controlRequest } from '../../node/control.ts'
import { STORIES260K } from '../models.ts'
import { testSeed } from '../seed.ts'
import { cleanupDaemons, pollUntil, readyRecord, scratch, startDaemon, tcpAddr, type Started } from './daemons.ts'

const SWARM = 'judge-only'
const seed = testSeed()
const daemons: Started[] = []
let ids: string[] = []
let url = ''

type Rep = Record<string, { admitted: boolean }>
type Evidence = { id: string, writer: string, subject: string, start: number, end: number, passed: boolean, checked: number, mismatched: number }
const control = async (d: Started, cmd: string): Promise<Record<string, unknown>> => await controlRequest(join(d.dir, 'control.sock'), { cmd })

beforeAll(async () => {
  const j = await startDaemon(scratch('mycelium-judge-only-'), ['--swarm', SWARM, '--judge-model', STORIES260K])
  daemons.push(j)
  await pollUntil('j to hash its judge model', async () => j.events.find((e) => e.event === 'judge-model-ready'), 20_000)
  const start = async (layers: string, extra: string[] = []): Promise<Started> => await startDaemon(scratch('mycelium-judge-only-'), ['--swarm', SWARM, '--model', STORIES260K, '--layers', layers, '--threads', '1', '--bootstrap', tcpAddr(j), ...extra], 'serving')
  daemons.push(...await Promise.all([start('0:2'), start('2:5'), start('0:5', ['--api-port', '0']), startDaemon(scratch('mycelium-judge-only-'), ['--swarm', SWARM, '--judge-model', STORIES260K, '--bootstrap', tcpAddr(j)])]))
  ids = daemons.map((d) => readyRecord(d).peerId as string)
  url = (await pollUntil('the api event', async () => daemons[3].events.find((e) => e.event === 'api'), 10_000)).url as string
}, 60_000)
afterAll(cleanupDaemons)

describe(`a judge-only node verifies stages (issue 7, TEST_SEED=${seed})`, () => {
  it('judge-only nodes publish judgeModel, a judge-only newcomer is calibrated on judging alone, and both are asked to audit the split chain\'s stages and write passed evidence', async () => {
    const [j, d1, d2, d3, j2] = ids
    const manifest = daemons[0].events.find((e) => e.event === 'judge-model-ready')?.model as string
    await pollUntil('every ledger to admit d1, d2, d3, j2 (calibrated by j) and the judge-only records to name their judge model', async () => {
      for (const d of daemons) {
        const r = (await control(d, 'reputation')).reputation as Rep
        if (![j, d1, d2, d3, j2].every((id) => r[id]?.admitted === true)) return undefined
      }
      const view = await control(daemons[3], 'swarm') as { nodes: Record<string, { capabilities: Record<string, unknown>, layers: unknown[] }> }
      return [j, j2].every((id) => view.nodes[id]?.capabilities.judgeModel === manifest) ? true : undefined
    }, 40_000, 200)
    const view = await control(daemons[3], 'swarm') as { nodes: Record<string, { layers: unknown[] }> }
    for (const id of [j, j2]) expect(view.nodes[id].layers).toEqual([]) // they serve nothing
    // j2's calibration (by j or an admitted newcomer): the judging pairs only, all right
    const cal = daemons.flatMap((d) => d.events.filter((e) => e.event === 'calibration' && e.subject === j2))
    expect(cal.length).toBeGreaterThan(0)
    expect(cal.every((e) => e.passed === true && e.right === e.pairs)).toBe(true)
    const res = await fetch(`${url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'stories260K', prompt: 'Once upon a time', max_tokens: 12, temperature: 0, consensus: { k: 2, deadline_ms: 30_000 } })
    })
    expect(res.status, await res.clone().text()).toBe(200)
    const c = (await res.json() as { consensus: { round: string, answers: Array<{ chain: Array<{ peer: string }> }>, audits: Array<{ subject: string, verifier: string, status: string }> } }).consensus
    expect(c.answers.map((a) => a.chain.map((h) => h.peer).join('>')).sort()).toEqual([`${d1}>${d2}`, d3].sort())
    // the owner asked j and j2 (the only verifier candidates) to check both stages of the split chain
    expect(c.audits.map((a) => [a.subject, a.verifier, a.status]).sort()).toEqual([[d1, j, 'OK'], [d2, j, 'OK'], [d1, j2, 'OK'], [d2, j2, 'OK']].sort())
    const evidence = await pollUntil('j\'s and j2\'s evidence records of d1 [0,2) and d2 [2,5) in d3\'s ledger', async () => {
      const e = ((await control(daemons[3], 'evidence')).evidence as Evidence[]).filter((x) => x.writer === j || x.writer === j2)
      return [j, j2].every((w) => e.some((x) => x.writer === w && x.subject === d1) && e.some((x) => x.writer === w && x.subject === d2)) ? e : undefined
    }, 20_000, 200)
    for (const x of evidence) {
      expect(x).toMatchObject({ passed: true, mismatched: 0 })
      expect(x.checked).toBeGreaterThan(0)
      expect([x.start, x.end]).toEqual(x.subject === d1 ? [0, 2] : [2, 5])
    }
    for (const d of [daemons[0], daemons[4]]) expect(d.events.filter((e) => e.event === 'spot-check' && e.passed === true).length).toBeGreaterThanOrEqual(2)
  }, 60_000)
})
