// The benchmark scenarios of `npm run bench:sched` (and smaller ones for tests). Model shapes are
// the published architectures (Llama 3 70B / 8B, Qwen2.5 32B); weights never exist here, only
// their sizes matter. Every scenario is a pure function of its seed.
import type { ModelConfig } from '../../engine/index.ts'
import type { ModelManifest } from '../index.ts'
import { manifestFromConfig } from '../manifest.ts'
import type { Hardware, LengthDistribution, Scenario } from './index.ts'
import { drawHardware, drawMachine, HARDWARE_MIXES, nodeSpeed } from './hardware.ts'
import { createRng } from './random.ts'

function shape (name: string, dim: number, hiddenDim: number, nLayers: number, nHeads: number, nKvHeads: number, vocabSize: number): ModelConfig {
  return { architecture: name.startsWith('qwen') ? 'qwen2' : 'llama', dim, hiddenDim, nLayers, nHeads, nKvHeads, headSize: dim / nHeads, vocabSize, seqLen: 8192, ropeTheta: 500000, normEps: 1e-5, tiedEmbeddings: false, qkvBias: name.startsWith('qwen'), bosId: 1, eosId: 2 }
}

export const MODELS: Record<string, ModelManifest> = {
  'llama3-70b': manifestFromConfig(shape('llama3-70b', 8192, 28672, 80, 64, 8, 128256)),
  'qwen2.5-32b': manifestFromConfig(shape('qwen2.5-32b', 5120, 27648, 64, 40, 8, 152064)),
  'llama3-8b': manifestFromConfig(shape('llama3-8b', 4096, 14336, 32, 32, 8, 128256))
}

const CHAT_PROMPT: LengthDistribution = { median: 256, sigma: 0.8, min: 16, max: 2048 }
const CHAT_GENERATION: LengthDistribution = { median: 128, sigma: 0.6, min: 16, max: 512 }

interface Base { name: string, description: string, seed: number, model: string, load: number, durationMs?: number, warmupMs?: number, sloTtftMs: number, sloTokenMs: number, clientRegions: number[] }

function build (b: Base, hardware: (rng: () => number) => Hardware[], joinMix: (rng: () => number) => Hardware, churn?: { meanLifetimeMs: number, crashShare: number }): Scenario {
  const rng = createRng(b.seed ^ 0x2545f491)
  const hw = hardware(rng)
  return {
    name: b.name,
    description: b.description,
    seed: b.seed,
    manifest: MODELS[b.model],
    dtype: 'q4_0',
    hardware: hw,
    joinMix,
    durationMs: b.durationMs ?? 420_000,
    warmupMs: b.warmupMs ?? 120_000,
    requestsPerS: b.load * capacityBound(MODELS[b.model], hw),
    prompt: CHAT_PROMPT,
    generation: CHAT_GENERATION,
    clientRegions: b.clientRegions,
    clientAccessMs: 10,
    sloTtftMs: b.sloTtftMs,
    sloTokenMs: b.sloTokenMs,
    meanLifetimeMs: churn?.meanLifetimeMs ?? 0,
    crashShare: churn?.crashShare ?? 0,
    joinsPerS: churn !== undefined ? hw.length / (churn.meanLifetimeMs / 1000) : 0
  }
}

/** Mean of a clamped log-normal, ignoring the clamp: median · e^(σ²/2). */
function mean (d: LengthDistribution): number { return d.median * Math.exp((d.sigma * d.sigma) / 2) }

/**
 * An algorithm-independent upper bound on requests per second: with unbounded batching a token
 * costs about one prefill token on each layer (t_pre), so node i finishes the per-layer work of
 * 1000 / ((P̄ + Ḡ) · t_pre_i) requests per second and the swarm Σ_i of that over L layers. It
 * ignores memory, the weight-read floor of a decode step and the network, so real capacity is
 * lower. Scenarios offer a fixed fraction of it (`load`), the same for every scheduler.
 */
export function capacityBound (manifest: ModelManifest, hw: Hardware[]): number {
  const tokens = mean(CHAT_PROMPT) + mean(CHAT_GENERATION)
  let perLayer = 0
  for (const h of hw) perLayer += 1000 / (tokens * nodeSpeed(h, manifest, 'q4_0').prefillLayerMsPerToken)
  return perLayer / manifest.nLayers
}

const lanClient = (hw: Hardware[]): Hardware[] => hw

/** The five scenarios of the issue, by name. `scale` < 1 shrinks durations for quick runs. */
export function scenario (name: string, seed = 1): Scenario {
  const home = HARDWARE_MIXES.home
  const wan = HARDWARE_MIXES.wan
  switch (name) {
    case 'lan-4-equal':
      return build({ name, description: '4 × RTX 3090 on a 1 Gbit/s LAN, Llama-3-70B q4_0', seed, model: 'llama3-70b', load: 0.15, sloTtftMs: 10_000, sloTokenMs: 500, clientRegions: [1] },
        (rng) => lanClient([0, 1, 2, 3].map(() => drawMachine(rng, 'RTX 3090', 'lan', 1))), (rng) => drawMachine(rng, 'RTX 3090', 'lan', 1))
    case 'home-16':
      return build({ name, description: '16 heterogeneous home machines (GPUs, Macs, CPU-only) in one region, Qwen2.5-32B q4_0', seed, model: 'qwen2.5-32b', load: 0.15, sloTtftMs: 10_000, sloTokenMs: 750, clientRegions: [1] },
        (rng) => Array.from({ length: 16 }, () => drawHardware(rng, home)), (rng) => drawHardware(rng, home))
    case 'wan-64':
      return build({ name, description: '64 machines on home broadband across 4 regions (NA-W, NA-E, EU, Asia), Llama-3-70B q4_0', seed, model: 'llama3-70b', load: 0.15, sloTtftMs: 20_000, sloTokenMs: 1500, clientRegions: [0, 1, 2, 3] },
        (rng) => Array.from({ length: 64 }, () => drawHardware(rng, wan)), (rng) => drawHardware(rng, wan))
    case 'churn-256':
      return build({ name, description: '256 machines across 4 regions with churn (mean lifetime 30 min, half of departures crashes), Llama-3-70B q4_0', seed, model: 'llama3-70b', load: 0.15, durationMs: 600_000, sloTtftMs: 20_000, sloTokenMs: 1500, clientRegions: [0, 1, 2, 3] },
        (rng) => Array.from({ length: 256 }, () => drawHardware(rng, wan)), (rng) => drawHardware(rng, wan), { meanLifetimeMs: 30 * 60_000, crashShare: 0.5 })
    case 'one-fast':
      return build({ name, description: '1 × RTX 4090 among 15 CPU-only laptops on home broadband, Llama-3-8B q4_0', seed, model: 'llama3-8b', load: 0.15, sloTtftMs: 10_000, sloTokenMs: 500, clientRegions: [1] },
        (rng) => [drawMachine(rng, 'RTX 4090', 'home', 1), ...Array.from({ length: 15 }, () => drawMachine(rng, 'CPU laptop DDR4 16GB', 'home', 1))], (rng) => drawMachine(rng, 'CPU laptop DDR4 16GB', 'home', 1))
    default:
      throw new Error(`unknown scenario ${name}`)
  }
}

export const SCENARIOS = ['lan-4-equal', 'home-16', 'wan-64', 'churn-256', 'one-fast']

/** A small, fast scenario for tests: `nodes` home machines, Llama-3-8B, optional churn. */
export function smallScenario (seed: number, options: { nodes?: number, durationMs?: number, churn?: boolean } = {}): Scenario {
  const home = HARDWARE_MIXES.home
  return build({ name: 'small', description: 'test swarm', seed, model: 'llama3-8b', load: 0.15, durationMs: options.durationMs ?? 120_000, warmupMs: 20_000, sloTtftMs: 10_000, sloTokenMs: 750, clientRegions: [1] },
    (rng) => Array.from({ length: options.nodes ?? 6 }, () => drawHardware(rng, home)), (rng) => drawHardware(rng, home),
    options.churn === true ? { meanLifetimeMs: 60_000, crashShare: 0.5 } : undefined)
}
