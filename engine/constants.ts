// Defaults of engine/, in one place.

/** Positions per internal prefill chunk: the size of a shard's activation scratch. */
export const DEFAULT_MAX_BATCH = 64
