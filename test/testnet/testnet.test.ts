// `mycelium testnet` (npm start) as a user runs it: real child processes on loopback, a sample
// generation, `generate` and `status` against the running testnet, and no process left behind
// after Ctrl-C, SIGTERM, a crashed child or a killed launcher (checked by pid).
import { spawn, spawnSync } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { afterEach, describe, expect, it } from 'vitest'
import { controlRequest } from '../../node/control.ts'
import { MODELS, STORIES260K } from '../models.ts'
import { cleanupDaemons, pollUntil, scratch, startDaemon } from '../node/daemons.ts'

const root = new URL('../../', import.meta.url).pathname
const cli = join(root, 'node/cli.ts')
const reference = (JSON.parse(readFileSync(join(MODELS, 'stories260K', 'reference-greedy.json'), 'utf8')) as Array<{ prompt: string, output_text: string }>)[0]
const launchers: ChildProcess[] = []
const pids: number[] = []

afterEach(() => {
  for (const l of launchers.splice(0)) if (l.exitCode === null) l.kill('SIGKILL')
  for (const pid of pids.splice(0)) if (alive(pid)) process.kill(pid, 'SIGKILL')
  cleanupDaemons()
})

/** Running and not a zombie (an orphan's zombie lingers where PID 1 does not reap). */
function alive (pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.[0] !== 'Z'
  } catch {
    return false
  }
}

interface Testnet {
  launcher: ChildProcess
  stdout: string[]
  stderr: () => string
  exited: Promise<number | null>
  pids: number[]
  relay: string
  dirs: string[]
  home: string
}

/** Starts `mycelium testnet ARGS` and resolves once it prints that it runs (or rejects if it exits). */
async function startTestnet (args: string[], env: NodeJS.ProcessEnv = {}): Promise<Testnet> {
  const home = env.MYCELIUM_HOME ?? scratch('mycelium-testnet-home-')
  const launcher = spawn(process.execPath, [cli, 'testnet', '--api-port', '0', ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, MYCELIUM_HOME: home, ...env } })
  launchers.push(launcher)
  const stdout: string[] = []
  let stderr = ''
  launcher.stderr!.on('data', (d: Buffer) => { stderr += d.toString() })
  const exited = new Promise<number | null>((resolve) => launcher.once('exit', resolve))
  await new Promise<void>((resolve, reject) => {
    void exited.then((code) => { reject(new Error(`testnet exited with ${code} before it was up: ${stderr}\n${stdout.join('\n')}`)) })
    createInterface({ input: launcher.stdout! }).on('line', (line) => {
      stdout.push(line)
      for (const m of line.matchAll(/pid (\d+)/g)) pids.push(Number(m[1]))
      if (line.startsWith('Ctrl-C stops')) resolve()
    })
  })
  const text = stdout.join('\n')
  return {
    launcher,
    stdout,
    stderr: () => stderr,
    exited,
    pids: [...text.matchAll(/pid (\d+)/g)].map((m) => Number(m[1])),
    relay: /--bootstrap (\S+)/.exec(text)![1],
    dirs: /status --data-dir (.+)$/m.exec(text)![1].split(' '),
    home
  }
}

describe('mycelium testnet', () => {
  it('npm start defaults: the seeded default model over a relay and 2 nodes; sample, generate and status work; Ctrl-C leaves no process', async () => {
    const home = scratch('mycelium-testnet-home-')
    expect(spawnSync(process.execPath, [join(root, 'scripts/seed-models.ts')], { env: { ...process.env, MYCELIUM_HOME: home, MYCELIUM_MODELS: MODELS } }).status).toBe(0)
    const t = await startTestnet([], { MYCELIUM_HOME: home })
    const text = t.stdout.join('\n')
    expect(t.pids).toHaveLength(3) // relay + 2 nodes
    expect(t.pids.every(alive)).toBe(true)
    expect(text).toContain(join(home, 'models', 'stories260K', 'stories260K.bin'))
    expect(text).toMatch(/node 1 {2}pid \d+ {2}layers \[0, 2\)/)
    expect(text).toMatch(/node 2 {2}pid \d+ {2}layers \[2, 5\)/)
    // the sample is the model's greedy continuation (the single-process reference, llama2.c's)
    expect(text).toContain(reference.output_text.split('\n')[0])
    const first = Number(/first token ([\d.]+) s after the testnet process started \(64 tokens/.exec(text)?.[1])
    expect(first).toBeGreaterThan(0)
    expect(first).toBeLessThan(60)
    // the HTTP API (on the last node) answers a greedy completion with the same continuation
    const api = /^HTTP API {2}(http:\/\/127\.0\.0\.1:\d+) {2}\(on node 2;/m.exec(text)?.[1]
    expect(api).toBeDefined()
    expect((await fetch(`${api}/health`)).ok).toBe(true)
    const completion = await (await fetch(`${api}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'stories260K', prompt: reference.prompt, max_tokens: 16, temperature: 0 }) })).json() as { choices: Array<{ text: string }> }
    expect(completion.choices[0].text.length).toBeGreaterThan(10)
    expect(reference.output_text.startsWith(reference.prompt + completion.choices[0].text)).toBe(true)
    expect(text).toMatch(/curl http:\/\/127\.0\.0\.1:\d+\/v1\/completions .*"model":"stories260K"/)

    // a client joining through the relay generates the same greedy text
    const gen = spawnSync(process.execPath, [cli, 'generate', '--bootstrap', t.relay, '--swarm', 'testnet', '--prompt', reference.prompt, '--max-tokens', '40'], { encoding: 'utf8', env: { ...process.env, MYCELIUM_HOME: home }, timeout: 30_000 })
    expect(gen.stderr).toMatch(/40 tokens \(length\); first token [\d.]+ s .* tok\/s; chain \w+\[0,2\) → \w+\[2,5\)/)
    expect(gen.status).toBe(0)
    expect(reference.output_text.startsWith(gen.stdout.trimEnd()) || gen.stdout.startsWith(reference.output_text)).toBe(true)
    expect(gen.stdout.length).toBeGreaterThan(reference.prompt.length + 40)

    // Ctrl-C during a long generation: exit 130, and every stage frees the session
    const long = spawn(process.execPath, [cli, 'generate', '--bootstrap', t.relay, '--swarm', 'testnet', '--prompt', reference.prompt, '--max-tokens', '400'], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, MYCELIUM_HOME: home } })
    launchers.push(long)
    const longExit = new Promise<number | null>((resolve) => long.once('exit', resolve))
    long.stdout!.once('data', () => { long.kill('SIGINT') })
    expect(await longExit).toBe(130)
    for (const dir of t.dirs) {
      await pollUntil(`no session held in ${dir}`, async () => {
        const s = await controlRequest(join(dir, 'control.sock'), { cmd: 'status' }) as { inference: { sessions: number } }
        return s.inference.sessions === 0 ? true : undefined
      }, 15_000)
    }

    // the swarm map shows both ranges covering the model, and the tokens served
    const status = spawnSync(process.execPath, [cli, 'status', '--data-dir', ...t.dirs], { encoding: 'utf8', timeout: 30_000 })
    expect(status.status).toBe(0)
    expect(status.stdout).toMatch(/^swarm testnet: [34] online/m) // the generate client has left (or is leaving)
    expect(status.stdout).toMatch(/5 layers: every layer served/)
    expect(status.stdout).toMatch(/██··· {2}\[0, 2\)/)
    expect(status.stdout).toMatch(/··███ {2}\[2, 5\)/)
    expect(status.stdout).toMatch(/coverage +11111/)
    expect(status.stdout).toMatch(/public +yes/) // the relay
    expect(status.stdout).toMatch(/\d+ tokens, \d+ steps/)
    expect(status.stdout).toMatch(/online +reputation/) // the asked daemon's consensus ledger (issue 7): the relay is genesis, the nodes wait for calibration
    // the same map from a read-only observer joining through the relay (no local daemon)
    const observed = spawnSync(process.execPath, [cli, 'status', '--bootstrap', t.relay, '--swarm', 'testnet'], { encoding: 'utf8', timeout: 30_000 })
    expect(observed.status).toBe(0)
    expect(observed.stdout).toMatch(/5 layers: every layer served/)
    expect(observed.stdout).toMatch(/coverage +11111/)
    expect(observed.stdout).not.toMatch(/served:|tokens, \d+ steps/) // an observer sees no counters

    t.launcher.kill('SIGINT')
    expect(await t.exited).toBe(0)
    await pollUntil('every testnet process gone', async () => (t.pids.some(alive) ? undefined : true), 15_000)
    expect(t.dirs.some((d) => existsSync(d))).toBe(false) // data directories removed
    expect(existsSync(join(home, 'testnet', 'node-1.log'))).toBe(true) // logs kept
  }, 120_000)

  it('consensus on a testnet (issue 7): the relay (genesis, --judge-model) calibrates the nodes and judges a round', async () => {
    const t = await startTestnet(['--nodes', '2', '--model', STORIES260K, '--max-tokens', '8'])
    const api = /^HTTP API {2}(http:\/\/127\.0\.0\.1:\d+)/m.exec(t.stdout.join('\n'))![1]
    // a second, whole-model chain joins, so a round has two disjoint chains
    const whole = await startDaemon(scratch('mycelium-testnet-whole-'), ['--swarm', 'testnet', '--bootstrap', t.relay, '--model', STORIES260K, '--layers', '0:5', '--threads', '1'], 'serving')
    const relayId = t.relay.split('/p2p/')[1]
    const sockets = t.dirs.map((d) => join(d, 'control.sock'))
    const ids = await Promise.all(sockets.map(async (s) => (await controlRequest(s, { cmd: 'status' }) as { peerId: string }).peerId))
    ids.push(whole.events.find((e) => e.event === 'ready')?.peerId as string)
    type Rep = { genesis: string[], reputation: Record<string, { admitted: boolean }> }
    // every testnet daemon's ledger admits every node (calibrated by the relay, the only genesis node)
    await pollUntil('the testnet ledgers to admit every node', async () => {
      for (const s of sockets) {
        const r = await controlRequest(s, { cmd: 'reputation' }) as unknown as Rep
        expect(r.genesis).toEqual([relayId])
        if (!ids.every((id) => r.reputation[id]?.admitted === true)) return undefined
      }
      return true
    }, 30_000, 250)
    // the API node routes over the whole-model node once its presence reached it (503 no_route until then)
    const body = await pollUntil('a consensus round with two chains', async () => {
      const res = await fetch(`${api}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'stories260K', prompt: reference.prompt, max_tokens: 16, temperature: 0.4, seed: 1, consensus: { k: 2, deadline_ms: 30_000 } }) })
      const b = await res.json() as { error?: { code: string } }
      if (res.status === 503 && b.error?.code === 'no_route') return undefined
      expect(res.status, JSON.stringify(b)).toBe(200)
      return b
    }, 20_000, 250)
    const c = (body as { consensus: { ranking: string[], judges: string[], answers: Array<{ id: string }>, failures: unknown[], recorded: boolean } }).consensus
    expect(c.answers).toHaveLength(2)
    expect(c.ranking).toHaveLength(2)
    expect(c.judges.length).toBeGreaterThan(0)
    expect(c.judges).toContain(relayId) // the relay authored no answer: it judges
    expect(c.failures).toEqual([])
    expect(c.recorded).toBe(true)
    t.launcher.kill('SIGINT')
    expect(await t.exited).toBe(0)
  }, 90_000)

  it('SIGTERM stops a 3-node testnet and every process it started', async () => {
    const t = await startTestnet(['--nodes', '3', '--model', STORIES260K, '--max-tokens', '8'])
    expect(t.pids).toHaveLength(4)
    expect(t.stdout.join('\n')).toMatch(/node 3 {2}pid \d+ {2}layers \[3, 5\)/)
    t.launcher.kill('SIGTERM')
    expect(await t.exited).toBe(0)
    await pollUntil('every testnet process gone', async () => (t.pids.some(alive) ? undefined : true), 15_000)
  }, 90_000)

  it('--auto: the nodes serve what the allocator gives them (a split under a small memory budget), and the chain over it gives the reference text', async () => {
    const t = await startTestnet(['--auto', '--nodes', '2', '--max-memory', '16M', '--model', STORIES260K, '--max-tokens', '24'])
    const text = t.stdout.join('\n')
    const ranges = [...text.matchAll(/layers \[(\d+), (\d+)\) \(auto\)/g)].map((m) => [Number(m[1]), Number(m[2])]).sort((a, b) => a[0] - b[0])
    expect(ranges).toHaveLength(2)
    expect(ranges[0][0]).toBe(0) // the two published ranges tile the 5 layers
    expect(ranges[0][1]).toBe(ranges[1][0])
    expect(ranges[1][1]).toBe(5)
    expect(text).toContain(reference.output_text.split(',')[0] + ',')
    expect(text).toMatch(/24 tokens through the SDK over \[0, \d\) → \[\d, 5\)/)
    t.launcher.kill('SIGINT')
    expect(await t.exited).toBe(0)
    await pollUntil('every testnet process gone', async () => (t.pids.some(alive) ? undefined : true), 15_000)
  }, 90_000)

  it('a crashed node makes the launcher stop the rest and exit 1, naming it', async () => {
    const t = await startTestnet(['--nodes', '2', '--model', STORIES260K, '--max-tokens', '8'])
    const [relay, node1, node2] = t.pids
    process.kill(node2, 'SIGKILL')
    expect(await t.exited).toBe(1)
    expect(t.stderr()).toMatch(new RegExp(`node 2 \\(pid ${node2}\\) exited unexpectedly \\(SIGKILL\\); stopping the testnet`))
    await pollUntil('relay and node 1 gone', async () => (alive(relay) || alive(node1) ? undefined : true), 15_000)
  }, 90_000)

  it('a launcher killed with SIGKILL: its nodes notice the closed IPC channel and stop', async () => {
    const t = await startTestnet(['--nodes', '1', '--model', STORIES260K, '--max-tokens', '8'])
    t.launcher.kill('SIGKILL')
    await t.exited
    await pollUntil('the orphaned relay and node stop', async () => (t.pids.some(alive) ? undefined : true), 20_000)
  }, 90_000)

  it('more nodes than layers: one-line error, exit 1, nothing started', () => {
    const r = spawnSync(process.execPath, [cli, 'testnet', '--nodes', '6', '--model', STORIES260K], { encoding: 'utf8', timeout: 30_000, env: { ...process.env, MYCELIUM_HOME: scratch('mycelium-testnet-home-') } })
    expect(r.status).toBe(1)
    expect(r.stderr).toMatch(/^mycelium: --nodes: 6 nodes cannot share the model's 5 layers \(at most 5\)\n$/)
  })
})
