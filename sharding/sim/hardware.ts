// Machine and network distributions of the simulated swarm (documented in README.md).
//
// Spec sheets (nominal peak memory bandwidth GB/s, dense fp16 tensor TFLOPS with fp32
// accumulate for NVIDIA, GPU fp16 for Apple, fp32 SIMD for CPUs; memory):
// consumer NVIDIA GPUs, Apple Silicon laptops/desktops (unified memory, about 2/3 usable by
// the GPU), CPU-only machines (about 3/4 of RAM usable), and a few datacenter cards. Achieved
// efficiency is drawn per machine (drivers, thermals, background load): that is what
// measurement sees and a static table does not. Decode is memory-bound, prefill compute-bound:
//   t_dec = layerBytes / (bandwidth · efficiency) + overhead
//   t_pre = 2 · params_per_layer / (TFLOPS · efficiency)          (per prompt token)
import type { ModelManifest } from '../index.ts'
import type { Hardware, HardwareKind } from './index.ts'
import { logNormal, uniform, weighted } from './random.ts'

const GB = 1e9

interface Spec { kind: HardwareKind, model: string, memGB: number, bwGBs: number, tflops: number }

const CATALOG: Record<string, Spec> = {
  'RTX 3060': { kind: 'gpu', model: 'RTX 3060', memGB: 12, bwGBs: 360, tflops: 25.5 },
  'RTX 3070': { kind: 'gpu', model: 'RTX 3070', memGB: 8, bwGBs: 448, tflops: 40.6 },
  'RTX 3080': { kind: 'gpu', model: 'RTX 3080', memGB: 10, bwGBs: 760, tflops: 59.5 },
  'RTX 3090': { kind: 'gpu', model: 'RTX 3090', memGB: 24, bwGBs: 936, tflops: 71 },
  'RTX 4060 Ti 16GB': { kind: 'gpu', model: 'RTX 4060 Ti 16GB', memGB: 16, bwGBs: 288, tflops: 44.1 },
  'RTX 4070': { kind: 'gpu', model: 'RTX 4070', memGB: 12, bwGBs: 504, tflops: 58.3 },
  'RTX 4080': { kind: 'gpu', model: 'RTX 4080', memGB: 16, bwGBs: 717, tflops: 97.5 },
  'RTX 4090': { kind: 'gpu', model: 'RTX 4090', memGB: 24, bwGBs: 1008, tflops: 165.2 },
  'M1 16GB': { kind: 'apple', model: 'M1 16GB', memGB: 16, bwGBs: 68, tflops: 2.6 },
  'M1 Pro 32GB': { kind: 'apple', model: 'M1 Pro 32GB', memGB: 32, bwGBs: 200, tflops: 5.2 },
  'M2 16GB': { kind: 'apple', model: 'M2 16GB', memGB: 16, bwGBs: 100, tflops: 3.6 },
  'M2 Pro 32GB': { kind: 'apple', model: 'M2 Pro 32GB', memGB: 32, bwGBs: 200, tflops: 6.8 },
  'M3 Max 64GB': { kind: 'apple', model: 'M3 Max 64GB', memGB: 64, bwGBs: 400, tflops: 16.4 },
  'M4 Pro 48GB': { kind: 'apple', model: 'M4 Pro 48GB', memGB: 48, bwGBs: 273, tflops: 9.2 },
  'CPU laptop DDR4 16GB': { kind: 'cpu', model: 'CPU laptop DDR4 16GB', memGB: 16, bwGBs: 34, tflops: 0.4 },
  'CPU desktop DDR4 32GB': { kind: 'cpu', model: 'CPU desktop DDR4 32GB', memGB: 32, bwGBs: 45, tflops: 0.8 },
  'CPU desktop DDR5 64GB': { kind: 'cpu', model: 'CPU desktop DDR5 64GB', memGB: 64, bwGBs: 75, tflops: 1.5 },
  'A10 24GB': { kind: 'datacenter', model: 'A10 24GB', memGB: 24, bwGBs: 600, tflops: 125 },
  'A100 80GB': { kind: 'datacenter', model: 'A100 80GB', memGB: 80, bwGBs: 2039, tflops: 312 }
}

/** Share of memory a machine of each kind can give the model. */
const USABLE: Record<HardwareKind, number> = { gpu: 0.92, apple: 0.67, cpu: 0.75, datacenter: 0.95 }
/** Achieved fraction of peak bandwidth and compute, drawn uniformly per machine. */
const BW_EFF: Record<HardwareKind, [number, number]> = { gpu: [0.55, 0.8], apple: [0.45, 0.75], cpu: [0.4, 0.7], datacenter: [0.7, 0.85] }
const COMPUTE_EFF: Record<HardwareKind, [number, number]> = { gpu: [0.3, 0.6], apple: [0.3, 0.5], cpu: [0.4, 0.7], datacenter: [0.4, 0.6] }
const OVERHEAD_MS: Record<HardwareKind, number> = { gpu: 0.03, apple: 0.05, cpu: 0.05, datacenter: 0.02 }

/** Round-trip times between region cores, ms: NA-West, NA-East, EU-West, Asia-East. */
const REGION_RTT_MS = [
  [10, 65, 140, 120],
  [65, 10, 80, 190],
  [140, 80, 10, 220],
  [120, 190, 220, 10]
]

export type NetworkKind = 'lan' | 'home' | 'datacenter'

/** A population: which machines (weights) on which networks in which regions. */
export interface HardwareMix {
  models: Array<[string, number]>
  network: NetworkKind
  regions: number[]
}

export const HARDWARE_MIXES: Record<string, HardwareMix> = {
  home: {
    models: [['RTX 3060', 8], ['RTX 3070', 5], ['RTX 3080', 5], ['RTX 3090', 6], ['RTX 4060 Ti 16GB', 5], ['RTX 4070', 6], ['RTX 4080', 4], ['RTX 4090', 5], ['M1 16GB', 6], ['M1 Pro 32GB', 4], ['M2 16GB', 5], ['M2 Pro 32GB', 4], ['M3 Max 64GB', 3], ['M4 Pro 48GB', 3], ['CPU laptop DDR4 16GB', 8], ['CPU desktop DDR4 32GB', 8], ['CPU desktop DDR5 64GB', 5]],
    network: 'home',
    regions: [1]
  },
  wan: {
    models: [['RTX 3060', 8], ['RTX 3070', 5], ['RTX 3080', 5], ['RTX 3090', 6], ['RTX 4060 Ti 16GB', 5], ['RTX 4070', 6], ['RTX 4080', 4], ['RTX 4090', 5], ['M1 16GB', 6], ['M1 Pro 32GB', 4], ['M2 16GB', 5], ['M2 Pro 32GB', 4], ['M3 Max 64GB', 3], ['M4 Pro 48GB', 3], ['CPU laptop DDR4 16GB', 8], ['CPU desktop DDR4 32GB', 8], ['CPU desktop DDR5 64GB', 5], ['A10 24GB', 3], ['A100 80GB', 1]],
    network: 'home',
    regions: [0, 1, 2, 3]
  }
}

/** Draws one machine of `model` on a `network` in `region`. */
export function drawMachine (rng: () => number, model: string, network: NetworkKind, region: number): Hardware {
  const s = CATALOG[model]
  if (s === undefined) throw new Error(`unknown machine ${model}`)
  const kind = network === 'datacenter' || s.kind === 'datacenter' ? 'datacenter' : s.kind
  let upMbps: number
  let downMbps: number
  let accessMs: number
  if (network === 'lan') { upMbps = 1000; downMbps = 1000; accessMs = uniform(rng, 0.05, 0.15) } else if (kind === 'datacenter') { upMbps = 5000; downMbps = 5000; accessMs = uniform(rng, 0.5, 2) } else {
    // home broadband: asymmetric cable/DSL, or symmetric fiber one time in four
    downMbps = logNormal(rng, 200, 0.8, 25, 1000)
    upMbps = rng() < 0.25 ? downMbps : logNormal(rng, 25, 0.8, 5, 200)
    accessMs = uniform(rng, 3, 25)
  }
  return {
    kind: s.kind,
    model: s.model,
    memoryBytes: s.memGB * GB * USABLE[s.kind],
    nominalBandwidthGBs: s.bwGBs,
    nominalTflops: s.tflops,
    bandwidthEfficiency: uniform(rng, ...BW_EFF[s.kind]),
    computeEfficiency: uniform(rng, ...COMPUTE_EFF[s.kind]),
    layerOverheadMs: OVERHEAD_MS[s.kind],
    upMbps,
    downMbps,
    region,
    accessMs,
    diskGBs: s.kind === 'cpu' ? uniform(rng, 0.3, 1) : uniform(rng, 0.5, 2)
  }
}

/** Draws a machine from a mix. */
export function drawHardware (rng: () => number, mix: HardwareMix): Hardware {
  const i = weighted(rng, mix.models.map(([, w]) => w))
  const region = mix.regions[Math.floor(rng() * mix.regions.length)]
  return drawMachine(rng, mix.models[i][0], mix.network, region)
}

/** True per-layer times of `hw` for a model held as `dtype`. */
export function nodeSpeed (hw: Hardware, manifest: ModelManifest, dtype: 'q4_0' | 'q8_0' | 'f16'): { decodeLayerMs: number, prefillLayerMsPerToken: number } {
  const bytes = manifest.layerBytes[dtype]
  const params = manifest.layerBytes.f16 / 2
  return {
    decodeLayerMs: (bytes / (hw.nominalBandwidthGBs * hw.bandwidthEfficiency * GB)) * 1000 + hw.layerOverheadMs,
    prefillLayerMsPerToken: ((2 * params) / (hw.nominalTflops * hw.computeEfficiency * 1e12)) * 1000
  }
}

/** Round-trip time between two machines (or a machine and a client at region/access), ms. */
export function hardwareRttMs (a: { region: number, accessMs: number }, b: { region: number, accessMs: number }): number {
  return REGION_RTT_MS[a.region][b.region] * (a.region === b.region && a.accessMs < 1 && b.accessMs < 1 ? 0.01 : 1) + 2 * (a.accessMs + b.accessMs)
}
