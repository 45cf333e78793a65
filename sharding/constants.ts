// Defaults of sharding/, each named for what it bounds. Durations in milliseconds.

/** KV-cache tokens per layer an allocator leaves free on every node for sessions. */
export const KV_RESERVE_TOKENS = 16_384

/** Fraction of a node's memory budget kept back for activations and runtime overhead. */
export const MEMORY_OVERHEAD_FRACTION = 0.08

/** Hysteresis: a new allocation replaces a covering one only if it models this much more throughput. */
export const REBALANCE_MIN_GAIN = 0.15

/** Largest move count for which the move planner searches every order (2^n states). */
export const MOVE_PLAN_EXACT_LIMIT = 14

/** Largest pipeline for which stage order is chosen by trying every permutation. */
export const STAGE_ORDER_EXACT_LIMIT = 6

/** RTT assumed between peers that have not been probed. */
export const DEFAULT_RTT_MS = 100

/** Session duration assumed by the router's queueing estimate when a request does not say. */
export const DEFAULT_SESSION_MS = 20_000

/** Alternatives the router returns for failover (node-disjoint where the graph allows). */
export const ROUTE_ALTERNATIVES = 4

/** Router beam: predecessors tried per entry layer, cheapest first (exact below this many). */
export const ROUTE_BEAM = 8

/** Power of two choices: candidates within this cost ratio of the best take part. */
export const ROUTE_SPREAD_SLACK = 0.25

/** Decode cost growth per extra concurrent session when a node does not publish one. */
export const DEFAULT_BATCH_SLOWDOWN = 0.05

/** Capability measurement: decode steps timed, prompt tokens per prefill, and layers loaded. */
export const MEASURE_DECODE_STEPS = 16
export const MEASURE_PREFILL_TOKENS = 32
export const MEASURE_LAYERS = 2

/** Smoothing of the live step-time average (weight of the newest sample). */
export const STEP_EWMA_ALPHA = 0.2

/** Fraction of free memory a node offers when no limit is given. */
export const FREE_MEMORY_FRACTION = 0.8

/** The load allocations are sized for: mean prompt and generated tokens, sessions per batch. */
export const WORKLOAD_PROMPT_TOKENS = 350
export const WORKLOAD_GEN_TOKENS = 150
export const WORKLOAD_BATCH = 8
