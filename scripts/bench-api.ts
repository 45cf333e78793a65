// HTTP API benchmark (`npm run bench:api`):
// 1. Overhead of the HTTP API over the SDK. Two daemons serve stories260K (`--layers 0:3`,
//    `3:5`); this process joins as an SDK client (`connect`) and serves the HTTP API
//    (node/api/server.ts) on top of that same client, so both paths run the same chain from the
//    same peer and differ only by the HTTP layer (fastify, JSON, the loopback socket, the fetch
//    client). Requests alternate SDK / API (non-streaming) / API (SSE), same prompt and tokens,
//    greedy; p50 and p95 of each and the added ms. A daemon's own API (`node start --api-port`)
//    is timed too, for reference (a different topology: its client is a stage of the chain).
// 2. `npm start` (the testnet) from a fresh spawn to its first generated token: a cold run (V8
//    compile cache disabled, as after a fresh clone) and a warm one, with a scratch
//    MYCELIUM_HOME seeded from ../shared/models (`npm run seed-models`).
// Prints a table, writes bench/results/api-<timestamp>.json, ends with one line per target.
//   npm run bench:api -- [--requests 200] [--tokens 8] [--starts 2] [--no-start]
import { spawn, spawnSync } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { createInterface } from 'node:readline'
import { Command } from 'commander'
import { connect } from '../client/index.ts'
import type { MyceliumClient } from '../client/index.ts'
import { startApi } from '../node/api/server.ts'

const ROOT = resolve(new URL('..', import.meta.url).pathname)
const CLI = join(ROOT, 'node/cli.ts')
const MODELS = process.env.MYCELIUM_MODELS ?? resolve(ROOT, '../shared/models')
const MODEL = join(MODELS, 'stories260K/stories260K.bin')
const TOKENIZER = join(MODELS, 'stories260K/tok512.bin')
const SWARM = 'bench-api'
const PROMPT = 'Once upon a time'
const OVERHEAD_GOAL_MS = 5
const FIRST_TOKEN_GOAL_S = 60

interface Options { requests: string, tokens: string, starts: string, start: boolean, resultsDir: string }

interface Daemon { child: ChildProcess, addr: string, events: Array<Record<string, unknown>>, dir: string }

async function startDaemon (extra: string[]): Promise<Daemon> {
  const dir = mkdtempSync(join(tmpdir(), 'mycelium-bench-api-'))
  const child = spawn(process.execPath, [CLI, 'node', 'start', '--data-dir', dir, '--listen', '/ip4/127.0.0.1/tcp/0', '--no-mdns', '--no-upnp', '--swarm', SWARM, '--model', MODEL, '--threads', '1', ...extra], { stdio: ['ignore', 'pipe', 'inherit'] })
  const events: Array<Record<string, unknown>> = []
  const addr = await new Promise<string>((resolve, reject) => {
    child.once('exit', (code) => { reject(new Error(`daemon exited with ${code}`)) })
    let listen: string | undefined
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const record = JSON.parse(line) as Record<string, unknown>
      events.push(record)
      if (record.event === 'ready') listen = (record.listen as string[]).find((a) => a.includes('/tcp/') && !a.includes('/ws'))
      if (record.event === 'serving' && listen !== undefined) resolve(listen)
    })
  })
  return { child, addr, events, dir }
}

function percentile (xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]
}

async function viaSdk (client: MyceliumClient, tokens: number): Promise<string> {
  let text = ''
  for await (const ev of client.generate({ prompt: PROMPT, maxTokens: tokens, temperature: 0 })) if (ev.type === 'done') text = ev.text
  return text
}

/** HTTP time outside the SDK per request: total as the caller sees it − the server's `x-mycelium-generate-ms`. */
const apiOnlyMs: number[] = []

async function viaApi (url: string, model: string, tokens: number, record = false): Promise<string> {
  const t0 = performance.now()
  const res = await fetch(`${url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model, prompt: PROMPT, max_tokens: tokens, temperature: 0 }) })
  const body = await res.json() as { choices?: Array<{ text: string }>, error?: { message: string } }
  if (res.status !== 200 || body.choices === undefined) throw new Error(`API ${res.status}: ${body.error?.message ?? 'no choices'}`)
  if (record) apiOnlyMs.push(performance.now() - t0 - Number(res.headers.get('x-mycelium-generate-ms')))
  return body.choices[0].text
}

async function viaSse (url: string, model: string, tokens: number): Promise<string> {
  const res = await fetch(`${url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model, prompt: PROMPT, max_tokens: tokens, temperature: 0, stream: true }) })
  if (res.status !== 200) throw new Error(`API ${res.status}: ${await res.text()}`)
  let text = ''
  for (const line of (await res.text()).split('\n')) {
    if (!line.startsWith('data: ') || line === 'data: [DONE]') continue
    text += (JSON.parse(line.slice(6)) as { choices: Array<{ text: string }> }).choices[0]?.text ?? ''
  }
  return text
}

interface Series { name: string, ms: number[] }

async function timeSeries (runs: Array<{ name: string, fn: () => Promise<string> }>, n: number): Promise<Series[]> {
  const out = runs.map((r) => ({ name: r.name, ms: [] as number[] }))
  const want = await runs[0].fn()
  for (const r of runs) { const got = await r.fn(); if (got !== want) throw new Error(`${r.name} returned ${JSON.stringify(got)}, the SDK ${JSON.stringify(want)}`) } // warm-up, same text everywhere
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < runs.length; j++) {
      const t0 = performance.now()
      await runs[j].fn()
      out[j].ms.push(performance.now() - t0)
    }
  }
  return out
}

/** `npm start -- --once` in a fresh process; seconds from spawn to the first generated text. */
async function testnetFirstToken (home: string, cold: boolean): Promise<{ firstTokenS: number, reportedS: number | undefined, totalS: number, output: string }> {
  const env = { ...process.env, MYCELIUM_HOME: home, ...(cold ? { NODE_DISABLE_COMPILE_CACHE: '1' } : {}) }
  const t0 = performance.now()
  const child = spawn('npm', ['start', '--silent', '--', '--once', '--api-port', '0'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let firstTokenS: number | undefined
  const marker = `sample    ${JSON.stringify(PROMPT)} →\n${PROMPT}`
  child.stdout.on('data', (b: Buffer) => {
    out += String(b)
    const at = out.indexOf(marker)
    if (firstTokenS === undefined && at >= 0 && out.length > at + marker.length) firstTokenS = (performance.now() - t0) / 1000
  })
  let err = ''
  child.stderr.on('data', (b: Buffer) => { err += String(b) })
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve))
  const totalS = (performance.now() - t0) / 1000
  if (code !== 0 || firstTokenS === undefined) throw new Error(`npm start exited ${code}: ${out}\n${err}`)
  const reported = /first token ([\d.]+) s after the testnet process started/.exec(out)
  return { firstTokenS, reportedS: reported === null ? undefined : Number(reported[1]), totalS, output: out }
}

async function main (): Promise<void> {
  const program = new Command()
    .option('--requests <n>', 'requests per path (alternating)', '200')
    .option('--tokens <n>', 'tokens per request', '8')
    .option('--starts <n>', 'fresh `npm start` runs (the first with a cold compile cache)', '2')
    .option('--no-start', 'skip the npm start measurement')
    .option('--results-dir <dir>', 'where the JSON goes', join(ROOT, 'bench/results'))
  const opts = program.parse().opts<Options>()
  const n = Number(opts.requests)
  const tokens = Number(opts.tokens)
  const results: Record<string, unknown> = { when: new Date().toISOString(), requests: n, tokens, prompt: PROMPT, note: 'shared 2-core machine: figures are noisy' }
  const lines: string[] = []

  const daemons: Daemon[] = []
  let client: MyceliumClient | undefined
  let api: Awaited<ReturnType<typeof startApi>> | undefined
  try {
    daemons.push(await startDaemon(['--layers', '0:3']))
    daemons.push(await startDaemon(['--layers', '3:5', '--bootstrap', daemons[0].addr, '--api-port', '0']))
    client = await connect({ bootstrap: daemons.map((d) => d.addr), swarm: SWARM, tokenizer: TOKENIZER })
    const c = client
    const model = await (async () => { for await (const ev of c.generate({ prompt: PROMPT, maxTokens: 1, temperature: 0 })) if (ev.type === 'done') return ev.model; throw new Error('no done') })()
    api = await startApi({ client, port: 0 })
    const local = api.url
    const daemonApi = daemons[1].events.find((e) => e.event === 'api')?.url as string
    const series = await timeSeries([
      { name: 'SDK generate', fn: async () => await viaSdk(c, tokens) },
      { name: 'HTTP API (same client)', fn: async () => await viaApi(local, model, tokens, true) },
      { name: 'HTTP API SSE (same client)', fn: async () => await viaSse(local, model, tokens) },
      { name: 'daemon API (its own host)', fn: async () => await viaApi(daemonApi, model, tokens) }
    ], n)
    const sdk = series[0]
    const rows = series.map((s) => ({ path: s.name, p50: percentile(s.ms, 50), p95: percentile(s.ms, 95), mean: s.ms.reduce((a, b) => a + b, 0) / s.ms.length, addedP50: percentile(s.ms, 50) - percentile(sdk.ms, 50), addedP95: percentile(s.ms, 95) - percentile(sdk.ms, 95) }))
    process.stdout.write(`\nPer request, ${n} requests per path, ${tokens} tokens, prompt ${JSON.stringify(PROMPT)}, 2 stages (stories260K), greedy\n`)
    process.stdout.write('| path | p50 ms | p95 ms | mean ms | added p50 ms | added p95 ms |\n|---|---|---|---|---|---|\n')
    for (const r of rows) process.stdout.write(`| ${r.path} | ${r.p50.toFixed(2)} | ${r.p95.toFixed(2)} | ${r.mean.toFixed(2)} | ${r.addedP50.toFixed(2)} | ${r.addedP95.toFixed(2)} |\n`)
    // Paired: each API request's own total minus the time its SDK generation took inside the
    // server — what the HTTP layer adds, free of the pipeline's run-to-run variance.
    const measured = apiOnlyMs.slice(-n)
    const paired = { p50: percentile(measured, 50), p95: percentile(measured, 95), mean: measured.reduce((a, b) => a + b, 0) / measured.length }
    process.stdout.write(`\nHTTP layer per request (request total − server's generate time, same request): p50 ${paired.p50.toFixed(2)} ms, p95 ${paired.p95.toFixed(2)} ms, mean ${paired.mean.toFixed(2)} ms\n`)
    results.overhead = { rows, paired, raw: series, pairedRaw: measured }
    lines.push(`HTTP API overhead per request (p50 of request total − in-server SDK time): ${paired.p50.toFixed(2)} ms, goal ≤ ${OVERHEAD_GOAL_MS} ms: ${paired.p50 <= OVERHEAD_GOAL_MS ? 'met' : 'NOT met'} (p95 ${paired.p95.toFixed(2)} ms; unpaired p50 difference API − SDK ${rows[1].addedP50.toFixed(2)} ms, SSE ${rows[2].addedP50.toFixed(2)} ms)`)
  } finally {
    await api?.close()
    await client?.close()
    for (const d of daemons) d.child.kill('SIGKILL')
    for (const d of daemons) rmSync(d.dir, { recursive: true, force: true })
  }

  if (opts.start) {
    const home = mkdtempSync(join(tmpdir(), 'mycelium-bench-home-'))
    try {
      const seeded = spawnSync('npm', ['run', '--silent', 'seed-models'], { cwd: ROOT, env: { ...process.env, MYCELIUM_HOME: home }, encoding: 'utf8' })
      if (seeded.status !== 0) throw new Error(`seed-models failed: ${seeded.stderr}`)
      const runs = []
      for (let i = 0; i < Number(opts.starts); i++) runs.push({ cold: i === 0, ...(await testnetFirstToken(home, i === 0)) })
      process.stdout.write('\n`npm start -- --once` (testnet: a relay + 2 nodes, stories260K) from a fresh spawn\n| run | compile cache | first token s (from spawn) | first token s (testnet\'s own line) | whole run s |\n|---|---|---|---|---|\n')
      runs.forEach((r, i) => { process.stdout.write(`| ${i + 1} | ${r.cold ? 'cold' : 'warm'} | ${r.firstTokenS.toFixed(2)} | ${r.reportedS?.toFixed(1) ?? '-'} | ${r.totalS.toFixed(2)} |\n`) })
      results.npmStart = runs.map(({ output, ...r }) => ({ ...r, output: output.split('\n').filter((l) => /first token|timing/.test(l)) }))
      const worst = Math.max(...runs.map((r) => r.firstTokenS))
      lines.push(`npm start → first generated token (worst of ${runs.length}, cold compile cache included): ${worst.toFixed(2)} s, goal ≤ ${FIRST_TOKEN_GOAL_S} s: ${worst <= FIRST_TOKEN_GOAL_S ? 'met' : 'NOT met'}`)
    } finally {
      rmSync(home, { recursive: true, force: true })
    }
  }

  mkdirSync(opts.resultsDir, { recursive: true })
  const file = join(opts.resultsDir, `api-${new Date().toISOString().replace(/[:.]/g, '-')}.json`)
  writeFileSync(file, JSON.stringify(results, null, 2))
  process.stdout.write(`\nfull results: ${file}\n`)
  for (const l of lines) process.stdout.write(l + '\n')
  process.exit(0)
}

await main()
