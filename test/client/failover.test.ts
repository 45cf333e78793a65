// SDK failover over real daemons: four `node start --layers` processes — [0, 2), two for [2, 4),
// [4, 5) — and a client that joined through connect(). The stage of [2, 4) the router picked is
// killed (SIGKILL) at the 20th token: the SDK's router re-routes that span to the other one, and
// the tokens equal the single-process engine's.
import { join } from 'node:path'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { connect } from '../../client/index.ts'
import type { MyceliumClient } from '../../client/index.ts'
import { controlRequest } from '../../node/control.ts'
import { STORIES260K, TOK512 } from '../models.ts'
import { cleanupDaemons, scratch, startDaemon } from '../node/daemons.ts'
import type { Started } from '../node/daemons.ts'
import { addrOf, readyOf, reference } from './swarm.ts'

const SWARM = 'sdk-failover'
let ref: Awaited<ReturnType<typeof reference>>
let client: MyceliumClient
const daemons: Started[] = []

beforeAll(async () => {
  ref = await reference('Once upon a time', 64)
  for (const range of ['0:2', '2:4', '2:4', '4:5']) {
    const boot = daemons.length > 0 ? ['--bootstrap', ...daemons.map(addrOf)] : [] // a full mesh: no DHT server here to find peers by id
    daemons.push(await startDaemon(scratch('mycelium-sdk-fo-'), ['--swarm', SWARM, '--model', STORIES260K, '--layers', range, '--threads', '1', ...boot], 'serving'))
  }
  client = await connect({ bootstrap: [addrOf(daemons[0])], swarm: SWARM, tokenizer: TOK512, routeWaitMs: 20_000 })
}, 60_000)
afterAll(async () => {
  await client?.close()
  cleanupDaemons()
})

async function opened (d: Started): Promise<number> {
  const s = await controlRequest(join(d.dir, 'control.sock'), { cmd: 'status' }) as { inference: { opened: number } }
  return s.inference.opened
}

it('a stage killed at token 20 is replaced by the other node serving its range; tokens unchanged', async () => {
  const n = ref.tokens.length
  // the router is deterministic (no rng): learn which [2, 4) node it picks
  let probe: string | undefined
  for await (const ev of client.generate({ prompt: 'Once upon a time', maxTokens: 2, temperature: 0 })) if (ev.type === 'done') probe = String(ev.chain.find((h) => h.start === 2)?.peer)
  const victim = daemons.find((d) => readyOf(d).peerId === probe) as Started
  const spare = daemons.find((d) => d !== victim && d.events.some((e) => e.event === 'serving' && e.start === 2)) as Started
  expect(victim).toBeDefined()
  const spareBefore = await opened(spare)
  const ids: number[] = []
  let chain: string[] = []
  for await (const ev of client.generate({ prompt: 'Once upon a time', maxTokens: n, temperature: 0 })) {
    if (ev.type === 'token') {
      ids.push(ev.id)
      if (ids.length === 20) victim.child.kill('SIGKILL')
    } else chain = ev.chain.map((h) => String(h.peer))
  }
  expect(ids).toEqual(ref.tokens)
  expect(await opened(spare)).toBeGreaterThan(spareBefore) // the spare took over the span
  expect(chain).toContain(String(readyOf(spare).peerId)) // done.chain is the repaired chain
  expect(chain).not.toContain(probe)
}, 60_000)
