// Pipeline benchmark (`npm run bench:pipeline`): a model split over 1, 2 and 4 daemon processes on
// this machine (`node start --layers a:b`, loopback), driven by an in-process client. Per split:
// time to first token, decode tokens/s, per-hop overhead against the one-process figure (the ring
// of n stages has n network hops per token), wire bytes per token per hop for each hidden codec,
// and aggregate decode throughput at 1, 8 and 32 concurrent sessions; one stage with twice the
// threads (the "same total threads" comparison for 2 stages); then failover on a 3-stage chain
// with a spare for the middle range: `kill -9` of the middle daemon, and a stalled one (SIGSTOP;
// killed after), several runs each — detection (last token → failure seen) and resumption
// (failure seen → first token on the repaired chain) separately, tokens checked against a run
// without failure. Prints a table, writes bench/results/pipeline-<timestamp>.json, and ends with
// one line per target.
//   npm run bench:pipeline -- [--model PATH | --shape stories110M] [--stages 1,2,4] [--steps 128]
//     [--concurrency 1,8,32] [--threads 1] [--failover-runs 3] [--no-failover] [--split balanced|even]
// `--split balanced` (default) places the stage boundaries from measured cost: the per-layer decode
// time from sharding's measureCapability, plus the last stage's extra (final norm + LM head, timed
// the same way on a [L-1, L) shard minus one layer) — for stories15M the head is most of the work,
// so an even split leaves the last stage the bottleneck. `--split even` splits layers evenly.
// The 1-stage row with twice the threads also gets the aggregate figures, so "2 stages vs 1 stage
// with the same total threads" is reported for 1 and for 32 sessions.
// `--shape NAME` generates a shape-only llama2.c f32 model of that shape (scripts/model-shapes.ts)
// under the temp directory once, and benchmarks it.
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
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
import { encodedHiddenBytes, loadShard, openModel } from '../engine/index.ts'
import type { HiddenCodec, ModelSource } from '../engine/index.ts'
import { measureCapability } from '../sharding/index.ts'
import { inferenceProtocol, runInference } from '../protocols/index.ts'
import type { ChainHop, InferenceEvent, OpenStream } from '../protocols/index.ts'
import { genModel } from './gen-model.ts'

const ROOT = resolve(new URL('..', import.meta.url).pathname)
const CLI = join(ROOT, 'node/cli.ts')
const SWARM = 'bench'
const PROMPT = [1, 403, 407, 261, 378] // "Once upon a time" in stories260K's vocabulary; ids < every vocab here
const HOP_GOAL_MS = 1
const TWO_STAGE_GOAL = 0.9
const RESUME_GOAL_MS = 1000
const AGGREGATE_GOAL = 4

interface Options { model: string, shape?: string, stages: string, steps: string, concurrency: string, threads: string, resultsDir: string, failoverRuns: string, failover: boolean, split: string }

interface Daemon { child: ChildProcess, peerId: string, addr: string, dir: string, start: number, end: number, events: string[] }

async function startDaemon (model: string, start: number, end: number, threads: string, boot: string[]): Promise<Daemon> {
  const dir = mkdtempSync(join(tmpdir(), 'mycelium-bench-'))
  const child = spawn(process.execPath, [CLI, 'node', 'start', '--data-dir', dir, '--listen', '/ip4/127.0.0.1/tcp/0', '--no-mdns', '--no-upnp', '--swarm', SWARM,
    '--model', model, '--layers', `${start}:${end}`, '--threads', threads, ...(boot.length > 0 ? ['--bootstrap', ...boot] : [])], { stdio: ['ignore', 'pipe', 'inherit'] })
  let ready: Record<string, unknown> | undefined
  // serving, and the start-up work done (model hashed, capability measured in a worker): that
  // work would otherwise compete with the measurements for the two cores
  const seen = new Set<unknown>()
  const events: string[] = [] // every event the daemon logs, also after ready (see settle)
  await new Promise<void>((resolve, reject) => {
    child.once('exit', (code) => { reject(new Error(`daemon for [${start}, ${end}) exited with ${code}`)) })
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const record = JSON.parse(line) as Record<string, unknown>
      if (record.event === 'ready') ready = record
      seen.add(record.event)
      events.push(String(record.event))
      if (seen.has('serving') && seen.has('capability')) resolve()
    })
  })
  const r = ready as Record<string, unknown>
  const addr = (r.listen as string[]).find((a) => a.includes('/tcp/') && !a.includes('/ws')) as string
  return { child, peerId: r.peerId as string, addr, dir, start, end, events }
}

const CALIBRATION_EVENTS = new Set(['calibration', 'calibration-failed'])
const SETTLE_MAX_MS = 20_000

/**
 * Waits (polling, at most SETTLE_MAX_MS) until the consensus start-up work of n daemons is done:
 * an admitted node calibrates each newcomer (n − 1 calibrations), and the subject loads its whole
 * model to judge. That work starts seconds after the daemons meet and takes a core for ~0.5–1 s;
 * unwaited, it lands in whichever generation runs then (the 2-stage f16 row: issue 6's "slow f16").
 */
async function settle (daemons: Daemon[]): Promise<{ settleMs: number, settled: boolean }> {
  const t0 = performance.now()
  const done = (): boolean => daemons.reduce((a, d) => a + d.events.filter((e) => CALIBRATION_EVENTS.has(e)).length, 0) >= daemons.length - 1
  while (!done() && performance.now() - t0 < SETTLE_MAX_MS) await new Promise((resolve) => setTimeout(resolve, 50))
  return { settleMs: Math.round(performance.now() - t0), settled: done() }
}

function stopDaemon (d: Daemon): void {
  d.child.kill('SIGCONT')
  d.child.kill('SIGKILL')
  rmSync(d.dir, { recursive: true, force: true })
}

function bounds (nLayers: number, stages: number): number[] {
  return Array.from({ length: stages + 1 }, (_, i) => Math.round((i * nLayers) / stages))
}

/** Per-layer decode cost on this machine: sharding's measurement, and the last stage's extra (head). */
interface LayerCost { layerMs: number, headMs: number }

function median (xs: number[]): number {
  const v = [...xs].sort((a, b) => a - b)
  return v.length % 2 === 1 ? v[v.length >> 1] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2
}

async function measureLayerCost (source: ModelSource, threads: number): Promise<LayerCost> {
  const { decodeLayerMs } = await measureCapability({ source, dtype: 'f32', threads })
  // the last layer with the final norm and LM head, timed as measureCapability times decode steps
  // (two warm-up steps, then the median of 16); the head's extra is that minus one layer
  const L = source.config.nLayers
  const shard = await loadShard(source, { start: L - 1, end: L, dtype: 'f32', threads })
  try {
    const session = shard.openSession({ maxLength: 24 })
    const hidden = new Float32Array(source.config.dim).map((_, i) => 0.02 * Math.sin(i * 0.37))
    const times: number[] = []
    for (let i = 0; i < 18; i++) {
      const t0 = performance.now()
      session.step(L === 1 ? { tokens: [3] } : { hidden })
      if (i >= 2) times.push(performance.now() - t0)
    }
    session.close()
    return { layerMs: decodeLayerMs, headMs: Math.max(0, median(times) - decodeLayerMs) }
  } finally {
    await shard.close()
  }
}

/**
 * Stage boundaries minimizing the slowest stage's modelled decode time (layers × layerMs, the
 * last stage + headMs): exact over every contiguous split (dynamic programming).
 */
function balancedBounds (nLayers: number, stages: number, cost: LayerCost): number[] {
  const c = Array.from({ length: nLayers }, (_, i) => cost.layerMs + (i === nLayers - 1 ? cost.headMs : 0))
  const prefix = [0]
  for (const x of c) prefix.push(prefix[prefix.length - 1] + x)
  // best[k][j]: the least max stage time covering layers [0, j) with k stages; cut[k][j] its last boundary
  const best = Array.from({ length: stages + 1 }, () => new Array<number>(nLayers + 1).fill(Infinity))
  const cut = Array.from({ length: stages + 1 }, () => new Array<number>(nLayers + 1).fill(0))
  best[0][0] = 0
  for (let k = 1; k <= stages; k++) {
    for (let j = k; j <= nLayers; j++) {
      for (let i = k - 1; i < j; i++) {
        const v = Math.max(best[k - 1][i], prefix[j] - prefix[i])
        if (v < best[k][j]) { best[k][j] = v; cut[k][j] = i }
      }
    }
  }
  const out = [nLayers]
  for (let k = stages, j = nLayers; k > 0; k--) { j = cut[k][j]; out.unshift(j) }
  return out
}

const hop = (d: Daemon): ChainHop => ({ peer: d.peerId, start: d.start, end: d.end })

/** One greedy generation: TTFT, decode time, tokens, and the ids (and failover events). */
async function generateOnce (open: OpenStream, chain: ChainHop[], steps: number, codec: HiddenCodec, extra: { failover?: { replace: (h: ChainHop) => Promise<ChainHop | undefined> }, onToken?: (position: number) => void } = {}): Promise<{ ttftMs: number, decodeMs: number, tokens: number[], events: InferenceEvent[] }> {
  const t0 = performance.now()
  let first: number | undefined
  const tokens: number[] = []
  const events: InferenceEvent[] = []
  for await (const ev of runInference(open, inferenceProtocol(SWARM), { chain, prompt: PROMPT, maxLength: steps, codec, sampling: { temperature: 0 }, ...(extra.failover !== undefined ? { failover: extra.failover } : {}) })) {
    if (ev.type !== 'token') { events.push(ev); continue }
    tokens.push(ev.id)
    first ??= performance.now()
    extra.onToken?.(ev.position)
  }
  const end = performance.now()
  return { ttftMs: (first ?? end) - t0, decodeMs: end - (first ?? end), tokens, events }
}

const pct = (xs: number[], q: number): number => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(q * s.length))] }
const f = (x: number | undefined, d = 2): string => (x === undefined || !Number.isFinite(x) ? '—' : x.toFixed(d))

/** Failover on a 3-stage chain with a spare for the middle range, `runs` times per mode. */
async function failoverRuns (model: string, nLayers: number, o: Options, open: OpenStream, dial: (addr: string) => Promise<void>): Promise<Array<Record<string, unknown>>> {
  const steps = Number(o.steps)
  const b = bounds(nLayers, Math.min(3, nLayers))
  if (b.length < 4) return []
  const rows: Array<Record<string, unknown>> = []
  const ends: Daemon[] = []
  let middle: Daemon | undefined
  let spare: Daemon | undefined
  try {
    ends.push(await startDaemon(model, b[0], b[1], o.threads, []))
    ends.push(await startDaemon(model, b[2], b[3], o.threads, [ends[0].addr]))
    const boot = ends.map((d) => d.addr)
    middle = await startDaemon(model, b[1], b[2], o.threads, boot)
    spare = await startDaemon(model, b[1], b[2], o.threads, boot)
    for (const d of [...ends, middle, spare]) await dial(d.addr)
    const settled = await settle([...ends, middle, spare])
    if (!settled.settled) console.log(JSON.stringify({ failover: true, warning: `consensus start-up work not seen within ${SETTLE_MAX_MS} ms: figures may include it` }))
    const baseline = (await generateOnce(open, [hop(ends[0]), hop(middle), hop(ends[1])], steps, 'f32')).tokens
    const killAt = PROMPT.length - 1 + Math.max(1, Math.min(20, Math.floor((steps - PROMPT.length) / 3)))
    for (const mode of ['kill', 'stall'] as const) {
      for (let run = 0; run < Number(o.failoverRuns); run++) {
        const victim: Daemon = middle
        const replacement: Daemon = spare
        const r = await generateOnce(open, [hop(ends[0]), hop(victim), hop(ends[1])], steps, 'f32', {
          failover: { replace: async (h) => (h.peer === victim.peerId ? hop(replacement) : undefined) },
          onToken: (position) => { if (position === killAt) victim.child.kill(mode === 'kill' ? 'SIGKILL' : 'SIGSTOP') }
        })
        const retry = r.events.find((e) => e.type === 'retry')
        const resumed = r.events.find((e) => e.type === 'resumed')
        const row = {
          failover: mode,
          run,
          status: retry?.type === 'retry' ? retry.status : 'none',
          detectMs: retry?.type === 'retry' ? +retry.detectMs.toFixed(1) : null,
          probeMs: retry?.type === 'retry' ? +retry.probeMs.toFixed(1) : null,
          resumeMs: resumed?.type === 'resumed' ? +resumed.ms.toFixed(1) : null,
          identical: r.tokens.length === baseline.length && r.tokens.every((t, i) => t === baseline[i])
        }
        rows.push(row)
        console.log(JSON.stringify(row))
        // the victim is gone for good; the replacement is the middle now, and a fresh spare joins
        stopDaemon(victim)
        middle = replacement
        spare = undefined
        spare = await startDaemon(model, b[1], b[2], o.threads, boot)
        await dial(spare.addr)
      }
    }
  } finally {
    for (const d of [...ends, ...(middle !== undefined ? [middle] : []), ...(spare !== undefined ? [spare] : [])]) stopDaemon(d)
  }
  return rows
}

async function modelPath (o: Options): Promise<string> {
  if (o.shape === undefined) return resolve(o.model)
  const out = join(tmpdir(), 'mycelium-shapes', o.shape, 'model.bin')
  if (!existsSync(out)) {
    console.log(`generating a shape-only ${o.shape} (llama2.c, f32) at ${out}`)
    await genModel({ shape: o.shape, format: 'llama2c', dtype: 'f32', out })
  }
  return out
}

async function main (o: Options): Promise<void> {
  const model = await modelPath(o)
  const source = await openModel(model)
  const { nLayers, dim } = source.config
  const steps = Number(o.steps)
  const client = await createLibp2p({ addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] }, transports: [tcp()], connectionEncrypters: [noise()], streamMuxers: [yamux()] })
  const open: OpenStream = async (peer, protocol, opts) => await client.dialProtocol(typeof peer === 'string' ? peerIdFromString(peer) : peer, protocol, opts)
  const dial = async (addr: string): Promise<void> => { await client.dial(multiaddr(addr)) }
  const rows: Array<Record<string, unknown>> = []
  const log = (row: Record<string, unknown>): void => { rows.push(row); console.log(JSON.stringify(row)) }
  let oneStageMsPerToken: number | undefined
  const stageCounts = o.stages.split(',').map(Number).filter((x) => x >= 1 && x <= nLayers)
  if (o.split !== 'balanced' && o.split !== 'even') throw new Error(`--split must be balanced or even, not ${o.split}`)
  const cost = o.split === 'balanced' && stageCounts.some((n) => n > 1) ? await measureLayerCost(source, Number(o.threads)) : undefined
  if (cost !== undefined) console.log(JSON.stringify({ split: 'balanced', layerMs: +cost.layerMs.toFixed(4), headMs: +cost.headMs.toFixed(4), headInLayers: +(cost.headMs / cost.layerMs).toFixed(2) }))
  const splitOf = (n: number): number[] => (cost !== undefined && n > 1 ? balancedBounds(nLayers, n, cost) : bounds(nLayers, n))
  // one stage with the total threads of two stages: the "same total threads" comparison
  const splits: Array<{ n: number, threads: string }> = stageCounts.flatMap((n) => (n === 1 && stageCounts.includes(2) ? [{ n, threads: o.threads }, { n, threads: String(2 * Number(o.threads)) }] : [{ n, threads: o.threads }]))
  for (const { n, threads } of splits) {
    const wide = threads !== o.threads
    const b = splitOf(n)
    const daemons: Daemon[] = []
    try {
      for (let i = 0; i < n; i++) daemons.push(await startDaemon(model, b[i], b[i + 1], threads, daemons.map((d) => d.addr)))
      for (const d of daemons) await dial(d.addr)
      const settled = await settle(daemons)
      if (!settled.settled) console.log(JSON.stringify({ stages: n, warning: `consensus start-up work not seen within ${SETTLE_MAX_MS} ms: figures may include it` }))
      const chain = daemons.map(hop)
      for (const codec of (n > 1 ? ['f32', 'f16', 'int8'] : ['f32']) as HiddenCodec[]) {
        await generateOnce(open, chain, steps, codec) // warm-up
        const r = await generateOnce(open, chain, steps, codec)
        const msPerToken = r.decodeMs / Math.max(1, r.tokens.length - 1)
        if (n === 1 && !wide) oneStageMsPerToken = msPerToken
        log({
          stages: n,
          threadsPerStage: Number(threads),
          bounds: b,
          codec,
          ...settled,
          ttftMs: +r.ttftMs.toFixed(2),
          decodeTokensPerS: +(1000 / msPerToken).toFixed(1),
          // against the 1-stage figure of this run (null without one)
          perHopOverheadMs: n === 1 ? 0 : oneStageMsPerToken !== undefined ? +((msPerToken - oneStageMsPerToken) / n).toFixed(3) : null,
          bytesPerTokenPerHop: n > 1 ? encodedHiddenBytes(codec, dim) : 0
        })
      }
      for (const c of o.concurrency.split(',').map(Number)) {
        if (wide && c !== 1 && c !== 32) continue // the same-threads comparison: 1 and 32 sessions
        const t0 = performance.now()
        // an overloaded stage may refuse or time out a session: counted, not fatal
        const runs = await Promise.allSettled(Array.from({ length: c }, async () => await generateOnce(open, chain, steps, 'f32')))
        const s = (performance.now() - t0) / 1000
        const done = runs.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []))
        const failed = runs.flatMap((r) => (r.status === 'rejected' ? [String((r.reason as { status?: string }).status ?? (r.reason as Error).message)] : []))
        log({ stages: n, threadsPerStage: Number(threads), concurrency: c, aggregateTokensPerS: +(done.reduce((a, r) => a + r.tokens.length, 0) / s).toFixed(1), failed: failed.length, ...(failed.length > 0 ? { failures: [...new Set(failed)] } : {}) })
      }
    } finally {
      for (const d of daemons) stopDaemon(d)
    }
  }
  const failover = o.failover ? await failoverRuns(model, nLayers, o, open, dial) : []
  rows.push(...failover)
  await client.stop()

  // --- table, JSON, targets ---
  const speed = rows.filter((r) => r.codec !== undefined)
  console.log('\nstages  threads  codec  TTFT ms  decode tok/s  per-hop ms  B/token/hop')
  for (const r of speed) console.log(`${String(r.stages).padStart(6)}  ${String(r.threadsPerStage).padStart(7)}  ${String(r.codec).padEnd(5)}  ${f(r.ttftMs as number).padStart(7)}  ${f(r.decodeTokensPerS as number, 1).padStart(12)}  ${f(r.perHopOverheadMs as number, 3).padStart(10)}  ${String(r.bytesPerTokenPerHop).padStart(11)}`)
  const allAgg = rows.filter((r) => r.concurrency !== undefined)
  const agg = allAgg.filter((r) => r.threadsPerStage === Number(o.threads))
  console.log('\nstages  threads  sessions  aggregate tok/s  failed')
  for (const r of allAgg) console.log(`${String(r.stages).padStart(6)}  ${String(r.threadsPerStage).padStart(7)}  ${String(r.concurrency).padStart(8)}  ${f(r.aggregateTokensPerS as number, 1).padStart(15)}  ${String(r.failed).padStart(6)}`)
  const summary: Record<string, { runs: number, detectP50Ms: number, detectMaxMs: number, resumeP50Ms: number, resumeMaxMs: number, identical: boolean }> = {}
  if (failover.length > 0) {
    console.log('\nfailover  runs  detect p50 ms  detect max ms  resume p50 ms  resume max ms  identical tokens')
    for (const mode of ['kill', 'stall']) {
      const fr = failover.filter((r) => r.failover === mode)
      const detect = fr.map((r) => (r.detectMs as number | null) ?? NaN)
      const resume = fr.map((r) => (r.resumeMs as number | null) ?? Infinity)
      summary[mode] = { runs: fr.length, detectP50Ms: pct(detect, 0.5), detectMaxMs: Math.max(...detect), resumeP50Ms: pct(resume, 0.5), resumeMaxMs: Math.max(...resume), identical: fr.every((r) => r.identical === true) }
      const s = summary[mode]
      console.log(`${mode.padEnd(8)}  ${String(s.runs).padStart(4)}  ${f(s.detectP50Ms, 1).padStart(13)}  ${f(s.detectMaxMs, 1).padStart(13)}  ${f(s.resumeP50Ms, 1).padStart(13)}  ${f(s.resumeMaxMs, 1).padStart(13)}  ${String(s.identical).padStart(16)}`)
    }
  }
  mkdirSync(o.resultsDir, { recursive: true })
  const file = join(o.resultsDir, `pipeline-${new Date().toISOString().replace(/[:.]/g, '-')}.json`)
  writeFileSync(file, JSON.stringify({ model, nLayers, dim, steps, threadsPerDaemon: Number(o.threads), split: o.split, ...(cost !== undefined ? { layerCost: cost } : {}), rows, failover: summary }, null, 2))
  console.log(`\nwrote ${file}`)

  const hops = speed.filter((r) => (r.stages as number) > 1 && typeof r.perHopOverheadMs === 'number').map((r) => r.perHopOverheadMs as number)
  if (hops.length > 0) console.log(`per-hop overhead: max ${f(Math.max(...hops), 3)} ms (goal ≤ ${HOP_GOAL_MS} ms): ${Math.max(...hops) <= HOP_GOAL_MS ? 'met' : 'not met'}`)
  const two = speed.find((r) => r.stages === 2 && r.codec === 'f32')
  const wide = speed.find((r) => r.stages === 1 && r.threadsPerStage === 2 * Number(o.threads))
  if (two !== undefined && wide !== undefined) {
    const ratio = (two.decodeTokensPerS as number) / (wide.decodeTokensPerS as number)
    console.log(`2-stage decode vs 1 stage with the same total threads (${o.split} split ${JSON.stringify(two.bounds)}): ${f(ratio)}× (goal ≥ ${TWO_STAGE_GOAL}×): ${ratio >= TWO_STAGE_GOAL ? 'met' : 'not met'}`)
    for (const c of [1, 32]) {
      const a2 = allAgg.find((r) => r.stages === 2 && r.threadsPerStage === Number(o.threads) && r.concurrency === c)
      const a1 = allAgg.find((r) => r.stages === 1 && r.threadsPerStage === 2 * Number(o.threads) && r.concurrency === c)
      if (a2 === undefined || a1 === undefined) continue
      const q = (a2.aggregateTokensPerS as number) / (a1.aggregateTokensPerS as number)
      console.log(`2-stage aggregate vs 1 stage with the same total threads at ${c} session(s): ${f(q)}× (goal ≥ ${TWO_STAGE_GOAL}×): ${q >= TWO_STAGE_GOAL ? 'met' : 'not met'}`)
    }
  }
  for (const [mode, s] of Object.entries(summary)) {
    console.log(`failover resume after detection (${mode}): p50 ${f(s.resumeP50Ms, 1)} ms, max ${f(s.resumeMaxMs, 1)} ms over ${s.runs} runs, tokens identical: ${s.identical} (goal < ${RESUME_GOAL_MS} ms): ${s.resumeMaxMs < RESUME_GOAL_MS && s.identical ? 'met' : 'not met'}`)
  }
  for (const n of new Set(agg.map((r) => r.stages as number))) {
    const one = agg.find((r) => r.stages === n && r.concurrency === 1)
    const many = agg.find((r) => r.stages === n && r.concurrency === 32)
    if (one === undefined || many === undefined) continue
    const ratio = (many.aggregateTokensPerS as number) / (one.aggregateTokensPerS as number)
    const lost = (many.failed as number) > 0 ? `, ${String(many.failed)} of 32 sessions failed` : ''
    console.log(`aggregate at 32 sessions vs 1, ${n} stage(s): ${f(ratio)}×${lost} (goal ≥ ${AGGREGATE_GOAL}×): ${ratio >= AGGREGATE_GOAL && lost === '' ? 'met' : 'not met'}`)
  }
  process.exit(0)
}

const program = new Command()
  .option('--model <path>', 'model file or directory', join(ROOT, '../shared/models/stories260K/stories260K.bin'))
  .option('--shape <name>', 'benchmark a generated shape-only model instead (e.g. stories15M, stories110M)')
  .option('--stages <list>', 'stage counts', '1,2,4')
  .option('--steps <n>', 'positions per generation, prompt included', '128')
  .option('--concurrency <list>', 'concurrent sessions for the aggregate figure', '1,8,32')
  .option('--threads <n>', 'kernel threads per daemon', '1')
  .option('--failover-runs <n>', 'failover runs per mode (kill -9, SIGSTOP)', '3')
  .option('--no-failover', 'skip the failover runs')
  .option('--split <how>', 'stage boundaries: balanced (measured per-layer and LM-head cost) or even (equal layer counts)', 'balanced')
  .option('--results-dir <dir>', 'where the JSON goes', join(ROOT, 'bench/results'))
program.parse()
await main(program.opts<Options>())
