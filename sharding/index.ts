// Public surface of sharding/ (see README.md beside this file): the types every allocator,
// router and simulator file shares, and the functions a node calls. Knows nothing of libp2p.
import type { WeightDType } from '../engine/index.ts'

/** A half-open range of transformer layers [start, end). */
export interface LayerRange {
  start: number
  end: number
}

/**
 * What the network needs to know about a model to place and route it, derived from a loaded
 * model's metadata. `id` names the model on the network (see manifest.ts for what it hashes).
 */
export interface ModelManifest {
  id: string // hex sha-256
  architecture: string
  nLayers: number
  dim: number // residual stream width (hidden size)
  hiddenDim: number // feed-forward width
  nHeads: number
  nKvHeads: number
  headSize: number
  vocabSize: number
  seqLen: number
  /** Bytes one decoder layer takes in engine memory, per weight dtype. */
  layerBytes: Record<WeightDType, number>
  /** KV-cache bytes per token per layer as the engine holds it (f32 keys + values). */
  kvBytesPerTokenPerLayer: number
  /** Bytes of the token embedding table and of the LM head (0 when tied) as stored in f32. */
  embeddingBytes: number
  headBytes: number
}

/**
 * What a node publishes about itself for one model and dtype: measured, never looked up.
 * Times are milliseconds per layer on this machine (batch of one sequence).
 */
export interface NodeCapability {
  /** One decode step (one token) through one layer. */
  decodeLayerMs: number
  /** One prompt token through one layer, in a batched prefill chunk. */
  prefillLayerMsPerToken: number
  /** Bytes this node may spend on weights and KV cache. */
  memoryBytes: number
  /** Upload bandwidth estimate, bytes per second (from the probe protocol); optional. */
  bandwidthBytesPerS?: number
}

/** A swarm member as the allocator sees it (from the replicated swarm state). */
export interface Member {
  peerId: string
  capability: NodeCapability
  /** The layers it serves now, if any. */
  current?: LayerRange
  /** It announced a graceful leave: keep it serving until its layers are covered elsewhere. */
  leaving?: boolean
  /**
   * It serves `current` and will not move (`--layers a:b`): rebalance keeps it there and covers
   * the rest with the others. Ignored without `current`.
   */
  pinned?: boolean
}

/** One node's layers in an allocation. */
export interface Assignment extends LayerRange {
  peerId: string
}

/** The allocator's answer: assignments sorted by peer id, and the pipelines it formed. */
export interface Allocation {
  assignments: Assignment[]
  /** Peer ids of each pipeline in stage order (informational; routing may mix pipelines). */
  pipelines: string[][]
  /** Modelled swarm throughput under load, tokens/s: the weakest layer's summed service rate. */
  tokensPerS: number
  /** Every layer in [0, nLayers) is served by someone. */
  covered: boolean
}

/** Options shared by the allocator and rebalancer. */
export interface AllocateOptions {
  /** Round-trip time between two peers in ms (from probes); undefined → unknown. */
  rttMs?: (a: string, b: string) => number | undefined
  /** KV-cache tokens per layer a node keeps free for sessions; default KV_RESERVE_TOKENS. */
  kvReserveTokens?: number
  /** Weight dtype served; default 'q4_0'. */
  dtype?: WeightDType
  /** The load to size for (mean prompt / generated tokens, sessions per batch); defaults in constants. */
  workload?: { promptTokens: number, genTokens: number, batch: number }
}

/** One step of a rebalancing plan: the node's new range, or null to drop its layers. */
export interface Move {
  peerId: string
  from?: LayerRange
  to: LayerRange | null
}

/** A target allocation plus the moves to get there, in waves that keep layers covered. */
export interface Rebalance {
  target: Allocation
  /** Moves grouped into waves: wave k+1 starts after wave k's nodes finished loading. */
  waves: Move[][]
  /** True when the current allocation was kept (hysteresis). */
  kept: boolean
  /** Layers that no order of moves could keep covered (empty when coverage is kept). */
  uncoveredDuringMoves: number[]
}

/** A node as the router sees it: its layers, measured speed and advertised load. */
export interface RouteNode extends LayerRange {
  peerId: string
  decodeLayerMs: number
  prefillLayerMsPerToken: number
  /** Decode cost growth per extra concurrent session (batching), e.g. 0.05; default derived. */
  batchSlowdown?: number
  /** Sessions on it now, running or waiting for KV (advertised, possibly stale). */
  load: number
  /** Sessions it can hold at once (KV slots). */
  slots: number
  /** Its measured mean session duration, ms (for the queueing estimate); default from the request. */
  sessionMs?: number
  /** Its measured recent time a decode token spent there per layer (queue + batch, EWMA), ms:
   * what a token really waits there, batching and prefill chunks included. */
  stepLayerMs?: number
}

/** Everything the router needs: the nodes and the links between them and the client. */
export interface RouteGraph {
  nLayers: number
  nodes: RouteNode[]
  /** Hidden-state bytes per token on the wire (after the codec). */
  hiddenBytesPerToken: number
  /** RTT in ms; `a` or `b` may be the client id CLIENT. */
  rttMs: (a: string, b: string) => number
  /** Bottleneck bandwidth in bytes per second from `a` to `b`. */
  bandwidthBytesPerS: (a: string, b: string) => number
}

/** One request's shape. */
export interface RouteRequest {
  promptTokens: number
  /** Expected generated tokens (decode steps). */
  genTokens: number
  /** Expected duration of one session for queueing estimates, ms; default from constants. */
  sessionMs?: number
  /** The client's latency targets: routes predicted to meet both are preferred. */
  maxTtftMs?: number
  maxTokenMs?: number
}

/** A chain of hops covering [0, nLayers); each hop runs [start, end) on `peerId`. */
export interface Route {
  hops: Assignment[]
  /** Modelled ms: prefill (time to first token), one decode step, and the whole request. */
  prefillMs: number
  decodeMs: number
  costMs: number
}

export const CLIENT = '<client>'

export * from './errors.ts'
export * from './constants.ts'
export { manifestFromConfig, manifestFromSource, layerBytesFor } from './manifest.ts'
export { measureCapability, memoryBudget, createStepTimer } from './capability.ts'
export type { MeasureCapabilityOptions, StepTimer } from './capability.ts'
export { allocate, layerCapacity, loadedLayerMs, placeReplica, waterFill, estimateTokensPerS, isCovered } from './layer-allocator.ts'
export { rebalance } from './rebalance.ts'
export { planMoves, mayGiveUp } from './move-plan.ts'
export type { PlanView, GiveUpVerdict } from './move-plan.ts'
export { routeRequest, chainCost, allChains } from './router.ts'
export type { RouteOptions } from './router.ts'
