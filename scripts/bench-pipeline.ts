// Pipeline benchmark (`npm run bench:pipeline`): a model split over 1, 2 and 4 daemon processes on
// this machine (`node start --layers a:b`, loopback), driven by an in-process client. Per split:
// time to first token, decode tokens/s, per-hop overhead against the one-process figure (the ring
// of n stages has n network hops per token), wire bytes per token per hop for each hidden codec,
// and aggregate decode throughput at 1, 8 and 32 concurrent sessions. Writes
// bench/results/pipeline-<timestamp>.json. Failover timing is not measured yet.
//   npm run bench:pipeline -- [--model PATH] [--stages 1,2,4] [--steps 128] [--concurrency 1,8,32] [--threads 1]
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { createInterface } from 'node:readline'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { peerIdFromString } from '@libp2p/peer-id'
import { tcp } from '@libp2p/tcp'
import { multiaddr } from '@multiformats/multiaddr'
import { Command } from 'commander'
import { createLibp2p } from 'libp2p'
import { encodedHiddenBytes, openModel } from '../engine/index.ts'
import type { HiddenCodec } from '../engine/index.ts'
import { inferenceProtocol, runInference } from '../protocols/index.ts'
import type { ChainHop } from '../protocols/index.ts'

const ROOT = resolve(new URL('..', import.meta.url).pathname)
const CLI = join(ROOT, 'node/cli.ts')
const SWARM = 'bench'
const PROMPT = [1, 403, 407, 261, 378] // "Once upon a time" in stories260K's vocabulary; ids < every vocab here

interface Options { model: string, stages: string, steps: string, concurrency: string, threads: string, resultsDir: string }

interface Daemon { child: ChildProcess, peerId: string, addr: string, dir: string }

async function startDaemon (model: string, start: number, end: number, threads: string, boot: string[]): Promise<Daemon> {
  const dir = mkdtempSync(join(tmpdir(), 'mycelium-bench-'))
  const child = spawn(process.execPath, [CLI, 'node', 'start', '--data-dir', dir, '--listen', '/ip4/127.0.0.1/tcp/0', '--no-mdns', '--no-upnp', '--swarm', SWARM,
    '--model', model, '--layers', `${start}:${end}`, '--threads', threads, ...(boot.length > 0 ? ['--bootstrap', ...boot] : [])], { stdio: ['ignore', 'pipe', 'inherit'] })
  let ready: Record<string, unknown> | undefined
  await new Promise<void>((resolve, reject) => {
    child.once('exit', (code) => { reject(new Error(`daemon for [${start}, ${end}) exited with ${code}`)) })
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const record = JSON.parse(line) as Record<string, unknown>
      if (record.event === 'ready') ready = record
      if (record.event === 'serving') resolve()
    })
  })
  const r = ready as Record<string, unknown>
  const addr = (r.listen as string[]).find((a) => a.includes('/tcp/') && !a.includes('/ws')) as string
  return { child, peerId: r.peerId as string, addr, dir }
}

function bounds (nLayers: number, stages: number): number[] {
  return Array.from({ length: stages + 1 }, (_, i) => Math.round((i * nLayers) / stages))
}

async function main (o: Options): Promise<void> {
  const model = resolve(o.model)
  const source = await openModel(model)
  const { nLayers, dim } = source.config
  const steps = Number(o.steps)
  const client = await createLibp2p({ addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] }, transports: [tcp()], connectionEncrypters: [noise()], streamMuxers: [yamux()] })
  const open = async (peer: ChainHop['peer'], protocol: string, opts: { signal?: AbortSignal }): ReturnType<typeof client.dialProtocol> =>
    await client.dialProtocol(typeof peer === 'string' ? peerIdFromString(peer) : peer, protocol, opts)
  const rows: Array<Record<string, unknown>> = []
  let oneStageMsPerToken: number | undefined
  for (const n of o.stages.split(',').map(Number).filter((x) => x >= 1 && x <= nLayers)) {
    const b = bounds(nLayers, n)
    const daemons: Daemon[] = []
    try {
      for (let i = 0; i < n; i++) daemons.push(await startDaemon(model, b[i], b[i + 1], o.threads, daemons.map((d) => d.addr)))
      for (const d of daemons) await client.dial(multiaddr(d.addr))
      const chain = daemons.map((d, i) => ({ peer: d.peerId, start: b[i], end: b[i + 1] }))
      const one = async (codec: HiddenCodec): Promise<{ ttftMs: number, decodeMs: number, tokens: number }> => {
        const t0 = performance.now()
        let first: number | undefined
        let tokens = 0
        for await (const ev of runInference(open, inferenceProtocol(SWARM), { chain, prompt: PROMPT, maxLength: steps, codec, sampling: { temperature: 0 } })) {
          if (ev.type !== 'token') continue
          tokens++
          first ??= performance.now()
        }
        const end = performance.now()
        return { ttftMs: (first ?? end) - t0, decodeMs: end - (first ?? end), tokens }
      }
      for (const codec of (n > 1 ? ['f32', 'f16', 'int8'] : ['f32']) as HiddenCodec[]) {
        await one(codec) // warm-up
        const r = await one(codec)
        const msPerToken = r.decodeMs / Math.max(1, r.tokens - 1)
        if (n === 1) oneStageMsPerToken = msPerToken
        const row = {
          stages: n,
          codec,
          ttftMs: +r.ttftMs.toFixed(2),
          decodeTokensPerS: +(1000 / msPerToken).toFixed(1),
          perHopOverheadMs: n > 1 && oneStageMsPerToken !== undefined ? +((msPerToken - oneStageMsPerToken) / n).toFixed(3) : 0,
          bytesPerTokenPerHop: n > 1 ? encodedHiddenBytes(codec, dim) : 0
        }
        rows.push(row)
        console.log(JSON.stringify(row))
      }
      for (const c of o.concurrency.split(',').map(Number)) {
        const t0 = performance.now()
        const runs = await Promise.all(Array.from({ length: c }, async () => await one('f32')))
        const s = (performance.now() - t0) / 1000
        const row = { stages: n, concurrency: c, aggregateTokensPerS: +(runs.reduce((a, r) => a + r.tokens, 0) / s).toFixed(1) }
        rows.push(row)
        console.log(JSON.stringify(row))
      }
    } finally {
      for (const d of daemons) { d.child.kill('SIGKILL'); rmSync(d.dir, { recursive: true, force: true }) }
    }
  }
  await client.stop()
  mkdirSync(o.resultsDir, { recursive: true })
  const file = join(o.resultsDir, `pipeline-${new Date().toISOString().replace(/[:.]/g, '-')}.json`)
  writeFileSync(file, JSON.stringify({ model, nLayers, dim, steps, threadsPerDaemon: Number(o.threads), rows }, null, 2))
  console.log(`wrote ${file}`)
  process.exit(0)
}

const program = new Command()
  .option('--model <path>', 'model file or directory', join(ROOT, '../shared/models/stories260K/stories260K.bin'))
  .option('--stages <list>', 'stage counts', '1,2,4')
  .option('--steps <n>', 'positions per generation, prompt included', '128')
  .option('--concurrency <list>', 'concurrent sessions for the aggregate figure', '1,8,32')
  .option('--threads <n>', 'kernel threads per daemon', '1')
  .option('--results-dir <dir>', 'where the JSON goes', join(ROOT, 'bench/results'))
program.parse()
await main(program.opts<Options>())
