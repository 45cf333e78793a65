// Public surface of the swarm simulator (see README.md beside this file): a seeded
// discrete-event model of a volunteer swarm serving one model, into which any allocator + router
// pair (a `Scheduler`) plugs. Virtual time in milliseconds; no wall clock anywhere.
import type { Assignment, LayerRange, ModelManifest, Move, NodeCapability } from '../index.ts'

export type HardwareKind = 'gpu' | 'apple' | 'cpu' | 'datacenter'

/** A machine as it really is in the simulation (the truth the schedulers never see directly). */
export interface Hardware {
  kind: HardwareKind
  model: string // e.g. 'RTX 3090'
  /** Memory usable for weights and KV cache, bytes. */
  memoryBytes: number
  /** Spec-sheet peak memory bandwidth (GB/s) and fp16 TFLOPS: what a static table would say. */
  nominalBandwidthGBs: number
  nominalTflops: number
  /** Achieved fraction of the peak, for memory-bound decode and compute-bound prefill. */
  bandwidthEfficiency: number
  computeEfficiency: number
  /** Per-layer fixed cost (kernel launches, framework), ms. */
  layerOverheadMs: number
  upMbps: number
  downMbps: number
  region: number
  /** One-way latency from the machine to its region's core, ms. */
  accessMs: number
  /** Bandwidth at which it loads weights from its disk cache, GB/s. */
  diskGBs: number
}

/** A node as a scheduler sees it: published (measured) numbers and swarm state. */
export interface NodeView {
  id: string
  /** What the node measured and published (true speed with measurement noise). */
  measured: NodeCapability
  /** The static-table view (spec sheet): what Parallax-style schedulers use. */
  nominal: { tflops: number, bandwidthGBs: number, memoryBytes: number }
  /** Its range: assigned and loaded (serving) or being loaded. */
  range?: LayerRange
  serving: boolean
  leaving: boolean
  /** Sessions running on it, as last advertised (refreshed every scheduler.loadRefreshMs). */
  load: number
  /** Of those, sessions waiting for KV memory (the node is full while this is > 0). */
  queued: number
  /** Recent time a decode token spent there (queue + batch) per layer (EWMA), ms; 0 before any. */
  stepLayerMs: number
  /** Mean duration of its recent sessions (EWMA), ms; 0 before any finished. */
  meanSessionMs: number
  /** KV-cache bytes free, as last advertised. */
  freeKvBytes: number
  upMbps: number
  downMbps: number
}

export interface SimRequest {
  id: number
  client: string
  /** Virtual time the client sent it, ms. */
  arrivedAt: number
  promptTokens: number
  genTokens: number
}

/** What the simulator tells a scheduler. */
export type SchedulerEvent =
  | { type: 'init' }
  | { type: 'join', id: string }
  | { type: 'leave', id: string }
  | { type: 'crash', id: string }
  | { type: 'tick' }
  | { type: 'landed' } // a wave of moves finished loading

/** The simulator's state offered to schedulers. */
export interface SwarmView {
  now: number
  manifest: ModelManifest
  /** Nodes the scheduler believes alive, sorted by id. */
  nodes: NodeView[]
  rttMs: (a: string, b: string) => number
  /** Bottleneck bandwidth a → b, bytes per second. */
  bandwidthBytesPerS: (a: string, b: string) => number
  hiddenBytesPerToken: number
  rng: () => number
  /** The latency targets clients state with their requests (the scenario's SLO). */
  slo: { ttftMs: number, tokenMs: number }
}

/** An allocator + router pair. */
export interface Scheduler {
  readonly name: string
  /** After a failure mid-generation: replay history to a new chain, or give up on the stream. */
  readonly recovery: 'replay' | 'restart'
  /** How long the allocator takes to notice a crash, ms (routing notices on first failure). */
  readonly crashDetectMs: number
  /** How stale advertised load is (0 = live, a central scheduler). */
  readonly loadRefreshMs: number
  /** A leaving node keeps accepting sessions until a move drops it (else it stops at once). */
  readonly servesWhileLeaving: boolean
  /** Period of 'tick' events, ms; 0 = none. */
  readonly tickMs: number
  /** KV-cache bytes relative to the manifest's (our engine holds f32 KV: 1; f16 KV: 0.5). */
  readonly kvBytesFactor: number
  /** Moves to apply, in waves (replaces any waves still pending). undefined = no change. */
  plan(view: SwarmView, event: SchedulerEvent): Move[][] | undefined
  /** The chain for one request, avoiding `exclude`; undefined = nothing available now. */
  route(view: SwarmView, request: SimRequest, exclude: ReadonlySet<string>): Assignment[] | undefined
}

/** A log-normal draw clamped to [min, max]: median and the spread factor sigma. */
export interface LengthDistribution {
  median: number
  sigma: number
  min: number
  max: number
}

export interface Scenario {
  name: string
  description: string
  seed: number
  manifest: ModelManifest
  dtype: 'q4_0' | 'q8_0' | 'f16'
  /** Initial machines, and the mix new machines are drawn from (with the simulator's world PRNG). */
  hardware: Hardware[]
  joinMix: (rng: () => number) => Hardware
  durationMs: number
  warmupMs: number
  /** Poisson request rate, per second. */
  requestsPerS: number
  prompt: LengthDistribution
  generation: LengthDistribution
  /** Clients live in these regions (uniform). */
  clientRegions: number[]
  clientAccessMs: number
  /** Latency SLO: a request's tokens count as delivered only if both hold. */
  sloTtftMs: number
  sloTokenMs: number
  /** Churn: mean node lifetime (ms; 0 = none), share of departures that are crashes. */
  meanLifetimeMs: number
  crashShare: number
  /** Joins per second (steady state: nodes / mean lifetime). */
  joinsPerS: number
}

export interface SimResult {
  scheduler: string
  scenario: string
  /** Tokens per second delivered by requests meeting the SLO, over the measured window. */
  goodputTokensPerS: number
  /** All tokens delivered per second (SLO or not). */
  tokensPerS: number
  p50TokenMs: number
  p95TokenMs: number
  p50TtftMs: number
  p95TtftMs: number
  /** Seconds some layer had no node accepting sessions, after warm-up. */
  uncoveredS: number
  requests: { arrived: number, completed: number, failed: number, metSlo: number }
  moves: number
  events: number
  /** Per node, with `detail`: busy share of the window, largest batch, sessions at the end. */
  nodes?: Array<{ id: string, model: string, range?: LayerRange, alive: boolean, busyShare: number, maxBatch: number, admitted: number, waiting: number }>
}

export { simulate } from './simulator.ts'
export { drawHardware, HARDWARE_MIXES, nodeSpeed, hardwareRttMs } from './hardware.ts'
export type { HardwareMix } from './hardware.ts'
export { SCENARIOS, scenario, smallScenario, capacityBound } from './scenarios.ts'
export { myceliumScheduler } from './schedulers/mycelium.ts'
export { petalsScheduler } from './schedulers/petals.ts'
export { parallaxScheduler } from './schedulers/parallax.ts'
export { exoScheduler } from './schedulers/exo.ts'
