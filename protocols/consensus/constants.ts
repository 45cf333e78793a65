// Defaults of the consensus judging protocol. Durations in milliseconds, sizes in bytes.

/** Protocol name and version under the swarm prefix (`/mycelium/<swarm>/consensus-judge/1.0.0`). */
export const CONSENSUS_JUDGE_NAME = 'consensus-judge'
export const CONSENSUS_JUDGE_VERSION = '1.0.0'

/** Largest frame either side decodes (a JudgeRequest carries the answer texts). */
export const CONSENSUS_MAX_FRAME_BYTES = 1 << 20

/** Answers and ordered pairs one JudgeRequest may carry. */
export const CONSENSUS_MAX_ANSWERS = 64
export const CONSENSUS_MAX_PAIRS = 512

/** A judge's deadline for the whole exchange (judging, then waiting for the reveal request). */
export const CONSENSUS_JUDGE_TIMEOUT_MS = 120_000

/** The owner's deadline for a judge's commitment, and for its reveal once asked. */
export const CONSENSUS_COMMIT_TIMEOUT_MS = 60_000
export const CONSENSUS_REVEAL_TIMEOUT_MS = 10_000
