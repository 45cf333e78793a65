// Issue 7's integration test on a real multi-process testnet: six `mycelium node start` daemons
// serving stories260K — d0 (the anchor, genesis, API) and d1 the whole model, d2 and d5 layers
// 0–2, d3 layers 2–4 started with the test-only `--test-corrupt-output 1` (noise of 1 × RMS on the
// hidden states it sends), d4 layers 4–5. d0 calibrates the others (known-answer judging over the
// judge protocol) until every daemon's ledger admits all six. Then consensus rounds with k = 3
// (through the OpenAI API and through the SDK's connect()) fan out to the three chains with
// distinct nodes: {d0}, {d1}, {d2|d5, d3, d4}; the judges' likelihood votes rank the corrupting
// pipeline's answer last; its first stage's audits (inputs: the round's tokens) run and pass (the
// verifiers' `<session>.0-2` evidence records, `{"cmd":"evidence"}`), and so do its last stage's:
// the rounds sample with temperature 0.4, so d4's tokens are checked against the coins of the
// chain's seed, which d4's receipt binds (`<session>.4-5`; d4 is honest on the corrupted hidden
// states d3 sent it); the spot-check of d3 by two admitted verifiers catches it, and every
// daemon's ledger ends up excluding d3 (polled, no sleeps). Every child is killed after.
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { nodeConfig } from '../../node/config.ts'
import { connect } from '../../client/index.ts'
import { controlRequest } from '../../node/control.ts'
import { STORIES260K, TOK512 } from '../models.ts'
import { addrOf, readyOf } from '../client/swarm.ts'
import { cleanupDaemons, pollUntil, runCli, scratch, startDaemon, type Started } from './daemons.ts'

const SWARM = 'consensus'
const PROMPT = 'Once upon a time, there was a little girl'
const daemons: Started[] = []
let ids: string[] = []
let url = ''

type Rep = Record<string, { admitted: boolean, excluded: boolean, positive: number, negative: number, weight: number }>
type Evidence = { id: string, writer: string, subject: string, start: number, end: number, passed: boolean, checked: number, mismatched: number }
async function reputation (d: Started): Promise<{ reputation: Rep, rounds: number, genesis: string[] }> {
  return await controlRequest(join(d.dir, 'control.sock'), { cmd: 'reputation' }) as unknown as { reputation: Rep, rounds: number, genesis: string[] }
}

beforeAll(async () => {
  const ranges: Array<[string, string[]]> = [['0:5', ['--api-port', '0']], ['0:5', []], ['0:2', []], ['2:4', ['--test-corrupt-output', '1']], ['4:5', []], ['0:2', []]]
  for (const [layers, extra] of ranges) {
    const boot = daemons.length > 0 ? ['--bootstrap', addrOf(daemons[0])] : []
    daemons.push(await startDaemon(scratch('mycelium-consensus-'), ['--swarm', SWARM, '--model', STORIES260K, '--layers', layers, '--threads', '1', ...boot, ...extra], 'serving'))
  }
  ids = daemons.map((d) => readyOf(d).peerId as string)
  url = (await pollUntil('the api event', async () => daemons[0].events.find((e) => e.event === 'api'), 10_000)).url as string
  // genesis is the anchor alone (the bootstrap list; the anchor names itself)
  for (const d of daemons) expect((await reputation(d)).genesis).toEqual([ids[0]])
  // calibration: the anchor calibrates the others until every daemon's ledger admits all six
  await pollUntil('every daemon to admit all six', async () => {
    for (const d of daemons) {
      const r = (await reputation(d)).reputation
      if (!ids.every((id) => r[id]?.admitted === true)) return undefined
    }
    return true
  }, 120_000, 250)
}, 180_000)
afterAll(cleanupDaemons)

type Meta = { round: string, winner: string, ranking: string[], answers: Array<{ id: string, chain: Array<{ peer: string }>, text: string }>, judges: string[], failures: Array<{ judge: string, reason: string }>, recorded: boolean, audits: Array<{ subject: string, verifier: string, status: string }> }

async function apiRound (seed: number): Promise<{ text: string, consensus: Meta }> {
  const res = await fetch(`${url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'stories260K', prompt: PROMPT, max_tokens: 40, temperature: 0.4, seed, consensus: { k: 3, deadline_ms: 60_000 } })
  })
  expect(res.status).toBe(200)
  const body = await res.json() as { choices: Array<{ text: string }>, consensus: Meta }
  return { text: body.choices[0].text, consensus: body.consensus }
}

async function sdkRound (seed: number): Promise<Meta | undefined> {
  const client = await connect({ bootstrap: [addrOf(daemons[0])], swarm: SWARM, tokenizer: TOK512, routeWaitMs: 30_000 })
  try {
    // the light client schedules with its own replica's ledger: wait until it admits all six
    await pollUntil('the client to admit all six', async () => ids.every((id) => client.reputation()[id]?.admitted === true) ? true : undefined, 30_000, 100)
    let meta: Meta | undefined
    for await (const ev of client.generate({ prompt: PROMPT, maxTokens: 40, temperature: 0.4, seed, consensus: { k: 3, deadlineMs: 60_000 } })) {
      if (ev.type === 'done') meta = ev.consensus as Meta | undefined
    }
    return meta
  } finally {
    await client.close()
  }
}

describe('consensus on a multi-process testnet with a corrupting stage (issue 7)', () => {
  it('calibration asked each newcomer for its own stage outputs on challenge inputs (CHALLENGE) and checked them', () => {
    const events = daemons.flatMap((d) => d.events.filter((e) => e.event === 'calibration')) as Array<{ subject: string, passed: boolean, stage: { passed: boolean, rows: number, rowsExact: number, range: { start: number, end: number } } }>
    const subjects = new Set(events.filter((e) => e.passed).map((e) => e.subject))
    for (const id of ids.slice(1)) expect(subjects.has(id)).toBe(true) // everyone but genesis was calibrated
    for (const e of events.filter((x) => x.passed)) {
      expect(e.stage.passed).toBe(true)
      expect(e.stage.rows).toBe(8)
      expect(e.stage.rowsExact).toBe(8)
      expect(e.stage.range.end).toBeGreaterThan(e.stage.range.start)
    }
  })
  it('k = 3 through the API and through the SDK (at once): chains with distinct nodes, the corrupting pipeline\'s answer ranks last', async () => {
    const [api, sdk] = await Promise.all([apiRound(1), sdkRound(7)])
    for (const c of [api.consensus, sdk]) {
      expect(c?.answers).toHaveLength(3)
      const peers = c?.answers.flatMap((a) => a.chain.map((h) => h.peer)) ?? []
      expect(new Set(peers).size).toBe(peers.length) // distinct nodes
      const bad = c?.answers.find((a) => a.chain.some((h) => h.peer === ids[3]))
      expect(bad).toBeDefined()
      expect(c?.ranking.at(-1)).toBe(bad?.id)
      expect(c?.winner).not.toBe(bad?.id)
      expect(c?.judges.length).toBeGreaterThan(0)
      // the corrupting stage (a middle stage) is audited by two verifiers outside its chain
      expect(c?.audits.filter((a) => a.subject === ids[3] && a.status === 'OK').length).toBeGreaterThanOrEqual(2)
      // so is the chain's first stage (d2 or d5, layers 0–2: its inputs are the round's tokens)
      expect(c?.audits.filter((a) => a.subject === bad?.chain[0].peer && a.status === 'OK').length).toBeGreaterThanOrEqual(2)
      // and its seeded last stage (d4, layers 4–5: its outputs are the tokens it sampled at temperature 0.4)
      expect(bad?.chain.at(-1)?.peer).toBe(ids[4])
      expect(c?.audits.filter((a) => a.subject === ids[4] && a.status === 'OK').length).toBeGreaterThanOrEqual(2)
    }
    // the first stages' audits ran and passed: two verifiers' evidence records `<session>.0-2`
    // for each round's first stage, none failed (d2 and d5 are honest; d3 corrupts only what it sends)
    const firsts = [api.consensus, sdk].map((c) => c?.answers.find((a) => a.chain.some((h) => h.peer === ids[3]))?.chain[0].peer)
    const evidence = await pollUntil('two passed evidence records for each round\'s first stage', async () => {
      const e = (await controlRequest(join(daemons[0].dir, 'control.sock'), { cmd: 'evidence' }) as unknown as { evidence: Evidence[] }).evidence
      const first = e.filter((x) => x.start === 0 && x.end === 2)
      const sessions = new Set(first.map((x) => x.id))
      // one session per round (the API's and the SDK's), each checked by two verifiers
      return sessions.size >= 2 && [...sessions].every((id) => first.filter((x) => x.id === id).length >= 2) ? first : undefined
    }, 30_000, 250)
    for (const x of evidence) {
      expect(x.id).toMatch(/^[^.]+\.0-2$/) // `<session>.<start>-<end>`
      expect(firsts).toContain(x.subject)
      expect(x.writer).not.toBe(x.subject)
      expect(x).toMatchObject({ passed: true, mismatched: 0 })
      expect(x.checked).toBeGreaterThan(0)
    }
    // the seeded last stages' audits ran and passed: two verifiers' `<session>.4-5` records per round,
    // each checking the sampled tokens' coins at up to 20 positions (39 tokens after the prompt's last)
    const lasts = await pollUntil('two passed evidence records for each round\'s seeded last stage', async () => {
      const e = (await controlRequest(join(daemons[0].dir, 'control.sock'), { cmd: 'evidence' }) as unknown as { evidence: Evidence[] }).evidence
      const last = e.filter((x) => x.start === 4 && x.end === 5)
      const sessions = new Set(last.map((x) => x.id))
      return sessions.size >= 2 && [...sessions].every((id) => last.filter((x) => x.id === id).length >= 2) ? last : undefined
    }, 30_000, 250)
    for (const x of lasts) {
      expect(x.id).toMatch(/^[^.]+\.4-5$/)
      expect(x.subject).toBe(ids[4])
      expect(x.writer).not.toBe(x.subject)
      expect(x).toMatchObject({ passed: true, mismatched: 0 })
      expect(x.checked).toBeGreaterThanOrEqual(10)
    }
    const c = api.consensus
    expect(api.text).toBe(c.answers.find((a) => a.id === c.winner)?.text)
    expect(c.judges).not.toContain(ids[0]) // the owner does not judge
    expect(c.recorded).toBe(true)
    expect(sdk?.recorded).toBe(false) // a light client is not a writer
    // every daemon re-settles the API round from the signed records
    await pollUntil('every ledger to hold the round', async () => {
      for (const d of daemons) if ((await reputation(d)).rounds < 1) return undefined
      return true
    }, 30_000, 250)
  }, 180_000)

  it('the spot-checks catch the corrupting stage: every daemon\'s ledger excludes it, nobody else', async () => {
    await pollUntil('every daemon to exclude d3', async () => {
      for (const d of daemons) {
        const r = (await reputation(d)).reputation
        if (r[ids[3]]?.excluded !== true) return undefined
      }
      return true
    }, 120_000, 250)
    const view = await controlRequest(join(daemons[1].dir, 'control.sock'), { cmd: 'swarm' }) as unknown as { reputation: Rep }
    expect(view.reputation[ids[3]].excluded).toBe(true) // the swarm view carries the ledger too
    for (const d of daemons) {
      const r = (await reputation(d)).reputation
      for (const [i, id] of ids.entries()) if (i !== 3) expect(r[id].excluded).toBe(false)
      expect(r[ids[3]].weight).toBe(0)
      expect(r[ids[3]].negative).toBeGreaterThan(r[ids[3]].positive) // its reputation fell
    }
  }, 180_000)

  it('an excluded node is not routed: the next round (API, and `mycelium generate --consensus 3`) runs on the chains without it', async () => {
    const { consensus: c } = await apiRound(3)
    expect(c.answers.length).toBeGreaterThanOrEqual(2)
    for (const a of c.answers) expect(a.chain.map((h) => h.peer)).not.toContain(ids[3])
    // streaming (SSE): the winner's text, and the ranking on the finish chunk
    const sse = await (await fetch(`${url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'stories260K', prompt: PROMPT, max_tokens: 24, temperature: 0.4, seed: 4, stream: true, consensus: { k: 3 } }) })).text()
    const chunks = sse.split('\n\n').filter((l) => l.startsWith('data: {')).map((l) => JSON.parse(l.slice(6)) as { choices: Array<{ text: string, finish_reason: string | null }>, consensus?: Meta })
    const fin = chunks.find((x) => x.consensus !== undefined)
    expect(fin?.choices[0].finish_reason).not.toBeNull()
    expect(chunks.map((x) => x.choices[0]?.text ?? '').join('')).toBe(fin?.consensus?.answers.find((a) => a.id === fin.consensus?.winner)?.text)
    const cli = runCli(['generate', '--bootstrap', addrOf(daemons[0]), '--swarm', SWARM, '--prompt', PROMPT, '--max-tokens', '24', '--temperature', '0.4', '--seed', '5', '--tokenizer', TOK512, '--consensus', '3', '--json'])
    expect(cli.status).toBe(0)
    const out = JSON.parse(cli.stdout) as { text: string, consensus: Meta }
    expect(out.consensus.answers.length).toBeGreaterThanOrEqual(2)
    expect(out.text).toBe(out.consensus.answers.find((a) => a.id === out.consensus.winner)?.text)
    for (const a of out.consensus.answers) expect(a.chain.map((h) => h.peer)).not.toContain(ids[3])
    expect(out.consensus.failures).toEqual([]) // every judge took part (the client's ledger caught up)
  }, 180_000)
})

describe('--test-corrupt-output', () => {
  it('is a positive number, and hidden from help', () => {
    expect(nodeConfig({ testCorruptOutput: '0.5' }).testCorruptOutput).toBe(0.5)
    expect(nodeConfig({}).testCorruptOutput).toBeUndefined()
    for (const bad of ['0', '-1', 'x', 'Infinity']) expect(() => nodeConfig({ testCorruptOutput: bad })).toThrow(/--test-corrupt-output/)
    expect(runCli(['node', 'start', '--help']).stdout).not.toContain('corrupt')
  })
})
