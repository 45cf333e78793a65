// Issue 7 on real daemons: "a new identity has no weight; it enters rounds only after passing
// calibration". d0 (genesis, the API) and d1 serve the whole stories260K model and judge; d1 is
// calibrated and admitted. d2 serves the whole model too, but with a --max-memory that holds its
// five layers and not the consensus copies beside them, so it cannot answer calibration's judging
// pairs: it stays pending (neither admitted nor refused) for as long as it runs. It is online,
// serves every layer and would make a third disjoint chain; a consensus round asking for k = 3 is
// answered by d0's and d1's chains only (fewer answers than k, not an error), and d2 is no author.
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { controlRequest } from '../../node/control.ts'
import { consensusMemory } from '../../node/consensus-judge.ts'
import { openModel } from '../../engine/index.ts'
import { layerCapacity, manifestFromSource } from '../../sharding/index.ts'
import { STORIES260K } from '../models.ts'
import { testSeed } from '../seed.ts'
import { cleanupDaemons, pollUntil, readyRecord, scratch, startDaemon, tcpAddr, type Started } from './daemons.ts'

const SWARM = 'pending'
const seed = testSeed()
const daemons: Started[] = []
let ids: string[] = []
let url = ''

type Rep = Record<string, { admitted: boolean, refused: boolean, excluded: boolean }>
const ledgerOf = async (d: Started): Promise<Rep> => (await controlRequest(join(d.dir, 'control.sock'), { cmd: 'reputation' }) as unknown as { reputation: Rep }).reputation

beforeAll(async () => {
  // the smallest whole MiB that holds the five layers (KV reserve included) but not the copies
  const manifest = await manifestFromSource(await openModel(STORIES260K))
  let tight = 1
  for (; tight < 256; tight++) {
    const bytes = tight * 1024 * 1024
    if (layerCapacity(manifest, { decodeLayerMs: 1, prefillLayerMsPerToken: 1, memoryBytes: bytes }, { dtype: 'f32' }) >= 5) break
  }
  expect(consensusMemory(manifest, 'f32', { budgetBytes: tight * 1024 * 1024, maxMemoryBytes: tight * 1024 * 1024, servedLayers: 5 }).judging).toBe(false)
  const start = async (extra: string[] = []): Promise<Started> => await startDaemon(scratch('mycelium-pending-'), ['--swarm', SWARM, '--model', STORIES260K, '--layers', '0:5', '--threads', '1', ...(daemons.length > 0 ? ['--bootstrap', tcpAddr(daemons[0])] : []), ...extra], 'serving')
  daemons.push(await start(['--api-port', '0']))
  daemons.push(...await Promise.all([start(), start(['--max-memory', `${tight}M`])]))
  ids = daemons.map((d) => readyRecord(d).peerId as string)
  url = (await pollUntil('the api event', async () => daemons[0].events.find((e) => e.event === 'api'), 10_000)).url as string
}, 60_000)
afterAll(cleanupDaemons)

describe(`consensus rounds route only calibrated nodes (issue 7, TEST_SEED=${seed})`, () => {
  it('a pending newcomer that serves every layer authors no answer; k = 3 asked, 2 admitted chains answer', async () => {
    const [d0, d1, d2] = ids
    await pollUntil('d0 and d1 admitted everywhere, a calibration of d2 without an answer', async () => {
      if (!daemons.some((d) => d.events.some((e) => e.event === 'calibration-incomplete' && e.subject === d2))) return undefined
      for (const d of daemons) {
        const r = await ledgerOf(d)
        if (r[d0]?.admitted !== true || r[d1]?.admitted !== true) return undefined
      }
      return true
    }, 30_000, 200)
    for (const d of daemons) expect((await ledgerOf(d))[d2] ?? { admitted: false, refused: false }).toMatchObject({ admitted: false, refused: false })
    expect(daemons[2].events.find((e) => e.event === 'capability')).toMatchObject({ judging: false })
    const res = await fetch(`${url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'stories260K', prompt: 'Once upon a time', max_tokens: 16, temperature: 0.4, seed: seed % 1000, consensus: { k: 3, deadline_ms: 30_000 } })
    })
    expect(res.status, await res.clone().text()).toBe(200)
    const c = (await res.json() as { consensus: { k: number, answers: Array<{ chain: Array<{ peer: string }> }>, judges: string[], recorded: boolean } }).consensus
    const chains = c.answers.map((a) => a.chain.map((h) => h.peer))
    expect(c.k).toBe(3)
    expect(chains.map((ch) => ch.join('>')).sort(), JSON.stringify(c)).toEqual([d0, d1].sort())
    expect(chains.flat()).not.toContain(d2)
    expect(c.judges).not.toContain(d2)
    expect(c.recorded).toBe(true)
  }, 60_000)
})
