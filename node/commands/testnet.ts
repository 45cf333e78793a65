// `mycelium testnet` (and `npm start`): a whole swarm on this machine. Spawns a relay (a public
// node) and N serving nodes as child processes on loopback — `node start --bootstrap <relay>
// --model M --layers a:b`, the model's layers split evenly in order — waits for their ready and
// serving log lines, starts the HTTP API on the first node, prints the API URL and a sample
// generation made the way a user would make it (the SDK), then runs until Ctrl-C. Ctrl-C, SIGTERM,
// an error or a crashed child stop every process it started (testnet/children.ts).
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { InvalidArgumentError } from 'commander'
import type { Command } from 'commander'
import { CONFIG_ENV, CONFIG_KEYS, envName } from '../config-sources.ts'
import { CONTROL_SOCKET } from '../constants.ts'
import { controlRequest } from '../control.ts'
import { parseBytes } from '../config.ts'
import { ConfigError } from '../errors.ts'
import { DEFAULT_MODEL, myceliumHome, resolveModel } from '../model-cache.ts'
import { downloadProgress } from '../progress.ts'
import { childProcesses } from '../testnet/children.ts'
import type { Daemon } from '../testnet/children.ts'
import { sampleGeneration } from '../testnet/sample.ts'

const CLI = fileURLToPath(new URL('../cli.ts', import.meta.url))
/** The API port `npm start` asks for; taken → any free port. */
const DEFAULT_API_PORT = 8080
/** How long the children get to stop after SIGTERM before SIGKILL. */
const STOP_GRACE_MS = 10_000
/** Deadline for the daemons' ready and serving lines, and for the API to answer /health. */
const READY_TIMEOUT_MS = 60_000
const HEALTH_POLL_MS = 100

interface TestnetFlags {
  nodes: number
  model: string
  tokenizer?: string
  apiPort?: number
  swarm: string
  prompt: string
  maxTokens: number
  threads: number
  auto?: boolean
  maxMemory?: string
  once?: boolean
}

function int (name: string, min: number, max = Number.MAX_SAFE_INTEGER) {
  return (value: string): number => {
    const n = Number(value)
    if (!Number.isInteger(n) || n < min || n > max) throw new InvalidArgumentError(`${name} must be a whole number in [${min}, ${max}]`)
    return n
  }
}

export function registerTestnetCommand (program: Command): void {
  program.command('testnet')
    .description('run a swarm on this machine: a relay and N nodes as child processes on loopback, the model\'s layers split across them, the HTTP API on the last node and a sample generation; Ctrl-C stops every process')
    .option('--nodes <n>', 'serving nodes (each gets an even, contiguous share of the layers)', int('--nodes', 1, 64), 2)
    .option('--model <path|repo>', `model to serve: a path, a name in $MYCELIUM_HOME/models, or a Hugging Face repo id org/name[:file] (default: ${DEFAULT_MODEL}, from the cache, else downloaded)`, DEFAULT_MODEL)
    .option('--tokenizer <path>', 'tokenizer for the sample generation (default: the one beside the model)')
    .option('--api-port <port>', `HTTP API port on the first node; 0 = any free port (default: ${DEFAULT_API_PORT}, or a free port when that is taken)`, int('--api-port', 0, 65535))
    .option('--swarm <name>', 'swarm name of the testnet', 'testnet')
    .option('--prompt <text>', 'prompt of the sample generation', 'Once upon a time')
    .option('--max-tokens <n>', 'tokens of the sample generation', int('--max-tokens', 1), 64)
    .option('--threads <n>', 'kernel threads per node', int('--threads', 1), 1)
    .option('--auto', 'nodes take the layers the swarm\'s allocator gives them (node start --layers auto) instead of an even split')
    .option('--max-memory <bytes>', 'memory budget of each node, e.g. 10M (with --auto a small budget makes the allocator split the model)')
    .option('--once', 'stop everything after the sample generation (scripts, benchmarks)')
    .addHelpText('after', `
Child logs (pino JSON) go to $MYCELIUM_HOME/testnet/<name>.log; data directories live in a
temporary folder removed on exit. MYCELIUM_* node settings and ${CONFIG_ENV} are not passed to
the children: the testnet decides their flags.`)
    .action(async (flags: TestnetFlags) => { await runTestnet(flags) })
}

/** `[start, end)` of node i of n over `layers` layers: even, contiguous, in order. */
export function splitLayers (layers: number, nodes: number): Array<{ start: number, end: number }> {
  if (nodes > layers) throw new ConfigError(`--nodes: ${nodes} nodes cannot share the model's ${layers} layers (at most ${layers})`)
  return Array.from({ length: nodes }, (_, i) => ({ start: Math.floor(i * layers / nodes), end: Math.floor((i + 1) * layers / nodes) }))
}

async function freePort (wanted: number): Promise<number> {
  const tryPort = async (port: number): Promise<number | undefined> => await new Promise((resolve) => {
    const server = createServer()
    server.once('error', () => { resolve(undefined) })
    server.listen(port, '127.0.0.1', () => {
      const got = (server.address() as { port: number }).port
      server.close(() => { resolve(got) })
    })
  })
  return await tryPort(wanted) ?? await tryPort(0) as number
}

/** The environment for children: ours without node settings (the testnet passes its own flags). */
function childEnv (): NodeJS.ProcessEnv {
  const env = { ...process.env }
  delete env[CONFIG_ENV]
  for (const key of Object.keys(CONFIG_KEYS)) delete env[envName(key)]
  return env
}

function tcpAddr (ready: Record<string, unknown>): string {
  const addr = (ready.listen as string[]).find((a) => a.includes('/tcp/') && !a.includes('/ws') && !a.includes('/p2p-circuit'))
  if (addr === undefined) throw new Error(`no TCP listen address in ${JSON.stringify(ready.listen)}`)
  return addr
}

async function waitHealthy (url: string, signal: AbortSignal): Promise<void> {
  while (!signal.aborted) {
    try {
      const res = await fetch(`${url}/health`, { signal })
      if (res.ok) return
    } catch (err) {
      if (signal.aborted) break
      void err // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, HEALTH_POLL_MS))
  }
  throw new Error(`the HTTP API at ${url} did not answer /health within ${READY_TIMEOUT_MS / 1000} s`)
}

/** A daemon's `swarm` control answer, the parts readiness reads. */
interface SwarmView { self?: string, online?: string[], nodes?: Record<string, { layers?: Array<{ start: number, end: number }> }> }
type Range = { start: number, end: number }

/** The range `peer` publishes in `view` (null: none). */
function publishedRange (view: SwarmView, peer: string): Range | null {
  const l = view.nodes?.[peer]?.layers?.[0]
  return l === undefined ? null : { start: l.start, end: l.end }
}

/** Polls a daemon's swarm view until `ready(view)` holds. */
async function replicaShows (socket: string, ready: (view: SwarmView) => boolean, signal: AbortSignal, why: () => string): Promise<void> {
  while (!signal.aborted) {
    try {
      if (ready(await controlRequest(socket, { cmd: 'swarm' }, { timeoutMs: 5_000 }) as SwarmView)) return
    } catch (err) {
      if (signal.aborted) break
      void err // the daemon is busy or restarting its socket: ask again
    }
    await new Promise((resolve) => setTimeout(resolve, HEALTH_POLL_MS))
  }
  throw new Error(`the swarm did not settle within ${READY_TIMEOUT_MS / 1000} s (every node online with its layers published and served, every layer covered): ${why()} (as ${socket} sees it)`)
}

async function runTestnet (flags: TestnetFlags): Promise<void> {
  const out = (line: string): void => { process.stdout.write(line + '\n') }
  const home = myceliumHome()
  const token = process.env.HF_TOKEN
  const model = await resolveModel(flags.model, { home, onProgress: downloadProgress(), ...(token !== undefined ? { accessToken: token } : {}) })
  const { openModel } = await import('../../engine/index.ts')
  const source = await openModel(model.path, flags.tokenizer !== undefined ? { tokenizer: flags.tokenizer } : {})
  const nLayers = source.config.nLayers
  if (flags.maxMemory !== undefined) parseBytes('--max-memory', flags.maxMemory)
  // explicit: node i of n serves an even share; --auto: whatever the allocator gives it
  const ranges: Array<Range | undefined> = flags.auto === true ? Array.from({ length: flags.nodes }, () => undefined) : splitLayers(nLayers, flags.nodes)
  const apiPort = await freePort(flags.apiPort ?? DEFAULT_API_PORT)
  if (flags.apiPort !== undefined && flags.apiPort !== 0 && apiPort !== flags.apiPort) throw new ConfigError(`--api-port: port ${flags.apiPort} is in use`)

  const dir = mkdtempSync(join(tmpdir(), 'mycelium-testnet-'))
  const logDir = join(home, 'testnet')
  mkdirSync(logDir, { recursive: true })
  const children = childProcesses(CLI, childEnv())
  const stop = new AbortController()
  let exitCode = 0
  let shuttingDown: Promise<void> | undefined
  const shutdown = async (code: number, why?: string): Promise<void> => {
    shuttingDown ??= (async () => {
      exitCode = code
      stop.abort(new Error(why ?? 'stopping'))
      if (why !== undefined) process.stderr.write(`mycelium testnet: ${why}\n`)
      await children.stopAll(STOP_GRACE_MS)
      rmSync(dir, { recursive: true, force: true })
    })()
    await shuttingDown
  }
  children.onUnexpectedExit((d, code, signal) => {
    void shutdown(1, `${d.name} (pid ${d.pid}) exited unexpectedly (${signal ?? `code ${code}`}); stopping the testnet. Its log: ${d.logFile}${d.stderrTail() !== '' ? `\n${d.stderrTail()}` : ''}`)
  })
  let signals = 0
  const onSignal = (signal: NodeJS.Signals): void => {
    if (++signals > 1) process.exit(130) // the exit handler SIGKILLs every child
    process.stderr.write(`mycelium testnet: ${signal}: stopping every node\n`)
    void shutdown(0)
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)

  try {
    const common = (name: string): string[] => ['node', 'start', '--data-dir', join(dir, name), '--listen', '/ip4/127.0.0.1/tcp/0', '--no-mdns', '--no-upnp', '--swarm', flags.swarm]
    const deadline = AbortSignal.any([stop.signal, AbortSignal.timeout(READY_TIMEOUT_MS)])
    out(`mycelium testnet: swarm "${flags.swarm}", a relay and ${flags.nodes} node${flags.nodes === 1 ? '' : 's'} on loopback serving ${model.path} (${source.config.nLayers} layers)`)
    // The relay is the genesis anchor (every node bootstraps from it). It holds the model to judge
    // and calibrate (`--judge-model`, no layers served), so it admits the nodes and consensus
    // rounds have judges — as a real swarm's founding anchor holds its model.
    const relay = children.start('relay', [...common('relay'), '--public', '--judge-model', model.path], join(logDir, 'relay.log'))
    const relayAddr = tcpAddr(await relay.waitFor('ready', deadline))
    const relayReady = performance.now()
    out(`  relay   pid ${relay.pid}  ${relayAddr}`)
    // The API runs on the last node, so with 2+ nodes the API's requests leave the process that
    // answers HTTP for the first stage, as a remote client's would (a daemon that is its own
    // first stage is served in process by node/api; both work).
    const apiNode = ranges.length - 1
    const nodes: Daemon[] = ranges.map((r, i) => children.start(`node ${i + 1}`, [
      ...common(`node-${i + 1}`), '--bootstrap', relayAddr, '--model', model.path, '--layers', r === undefined ? 'auto' : `${r.start}:${r.end}`, '--threads', String(flags.threads),
      ...(flags.maxMemory !== undefined ? ['--max-memory', flags.maxMemory] : []),
      ...(i === apiNode ? ['--api-port', String(apiPort), '--api-host', '127.0.0.1'] : [])
    ], join(logDir, `node-${i + 1}.log`)))
    const readies = await Promise.all(nodes.map(async (n) => await n.waitFor('ready', deadline)))
    const peers = readies.map((r) => String(r.peerId))
    if (flags.auto !== true) await Promise.all(nodes.map(async (n) => await n.waitFor('serving', deadline)))
    const serving = performance.now()
    // What a node serves now (its latest `serving` event; null: nothing).
    const served = (i: number): Range | null => {
      const e = nodes[i].latest('serving')
      return typeof e?.start === 'number' && typeof e.end === 'number' ? { start: e.start, end: e.end } : null
    }
    const same = (a: Range | null, b: Range | null | undefined): boolean => a?.start === b?.start && a?.end === b?.end
    // Settled: every node is online in the view and publishes what it serves (explicit: its own
    // range), and the published ranges cover every layer. Checked on the relay's replica (a client
    // joining through it pulls that state on connect and can route at once) and on the API node's.
    let why = 'no answer yet'
    const show = (r: Range | null | undefined): string => (r == null ? 'nothing' : `[${r.start}, ${r.end})`)
    const settled = (view: SwarmView): boolean => {
      const covered = new Array<boolean>(nLayers).fill(false)
      for (const [i, peer] of peers.entries()) {
        if (peer !== view.self && view.online?.includes(peer) !== true) { why = `node ${i + 1} is not online yet`; return false }
        const p = publishedRange(view, peer)
        if (!same(served(i), p) || (ranges[i] !== undefined && !same(p, ranges[i]))) { why = `node ${i + 1} serves ${show(served(i))}, its record says ${show(p)}`; return false }
        for (let l = p?.start ?? 0; l < (p?.end ?? 0); l++) covered[l] = true
      }
      const missing = covered.flatMap((c, l) => (c ? [] : [l]))
      why = `no node serves layer${missing.length === 1 ? '' : 's'} ${missing.join(', ')}${flags.maxMemory !== undefined ? ` (--max-memory ${flags.maxMemory} may be too small for ${flags.nodes} nodes)` : ''}`
      return missing.length === 0
    }
    let view: SwarmView = {}
    await Promise.all([join(dir, 'relay', CONTROL_SOCKET), join(dir, `node-${apiNode + 1}`, CONTROL_SOCKET)]
      .map(async (socket) => { await replicaShows(socket, (v) => { if (socket.includes('relay')) view = v; return settled(v) }, deadline, () => why) }))
    const replicated = performance.now()
    nodes.forEach((n, i) => {
      const r = publishedRange(view, peers[i])
      out(`  node ${i + 1}  pid ${n.pid}  ${r === null ? 'no layers (the allocation gives it none)' : `layers [${r.start}, ${r.end})`}${flags.auto === true ? ' (auto)' : ''}  ${peers[i]}`)
    })
    const url = `http://127.0.0.1:${apiPort}`
    await waitHealthy(url, deadline)
    const apiReady = performance.now()
    out(`HTTP API  ${url}  (on node ${apiNode + 1}; OpenAI-compatible: ${url}/v1/completions, /v1/chat/completions, /v1/models)`)
    out(`sample    ${JSON.stringify(flags.prompt)} →`)
    process.stdout.write(flags.prompt)
    const sample = await sampleGeneration({
      bootstrap: [relayAddr],
      swarm: flags.swarm,
      model: model.path,
      ...(flags.tokenizer !== undefined ? { tokenizer: flags.tokenizer } : {}),
      prompt: flags.prompt,
      maxTokens: flags.maxTokens,
      onText: (text) => { process.stdout.write(text) },
      signal: stop.signal
    })
    out('')
    const s = (ms: number): string => `${(ms / 1000).toFixed(1)} s`
    out(`first token ${s(sample.firstTokenAt)} after the testnet process started (${sample.tokens} tokens through the SDK over ${sample.chain.map((h) => `[${h.start}, ${h.end})`).join(' → ')})`)
    out(`timing    from process start: relay ready ${s(relayReady)}, nodes ${flags.auto === true ? 'ready' : 'serving'} ${s(serving)}, ranges replicated ${s(replicated)}, API up ${s(apiReady)}, first token ${s(sample.firstTokenAt)}`)
    out(`logs      ${logDir}/*.log`)
    out(`try       npx mycelium generate --bootstrap ${relayAddr} --swarm ${flags.swarm} --prompt "Once upon a time"`)
    const models = await fetch(`${url}/v1/models`, { signal: stop.signal }).then(async (r) => await r.json() as { data?: Array<{ id: string }> }, () => ({ data: [] }))
    const id = models.data?.[0]?.id ?? 'MODEL'
    out(`          curl ${url}/v1/completions -H 'content-type: application/json' -d '${JSON.stringify({ model: id, prompt: 'Once upon a time', max_tokens: 32 })}'`)
    out(`          npx mycelium status --data-dir ${nodes.map((_, i) => join(dir, `node-${i + 1}`)).join(' ')}`)
    if (flags.once === true) {
      await shutdown(0)
    } else {
      out('Ctrl-C stops the testnet and every process it started.')
      await new Promise<void>((resolve) => { stop.signal.addEventListener('abort', () => { resolve() }, { once: true }) })
    }
  } catch (err) {
    if (!stop.signal.aborted) await shutdown(1, (err as Error).message)
  }
  await shuttingDown
  process.exit(exitCode)
}
