// Defaults of consensus/: every number a round, the reputation model or a spot-check depends on.
// Changing one changes what every node derives, so they are part of the protocol version.

/** Domain tags hashed in front of everything consensus/ hashes. */
export const SCHEDULE_DOMAIN = 'mycelium/consensus/schedule/1'
export const COMMIT_DOMAIN = 'mycelium/consensus/commit/1'
export const SPOT_CHECK_DOMAIN = 'mycelium/consensus/spot-check/1'

/** Bradley–Terry: virtual wins and virtual losses of every item against a pseudo-item of strength 1. */
export const BT_PRIOR = 0.5
/** Bradley–Terry: MM iterations at most. */
export const BT_MAX_ITERATIONS = 5000
/** Bradley–Terry: stop when no strength moved by more than this fraction in one iteration. */
export const BT_TOLERANCE = 1e-10

/**
 * Pair schedule: judges per unordered pair (each judges both orders). 10, not 5: the coordination
 * term needs the votes (with 5 its rounds drown in noise and honest nodes pay for false alarms;
 * README.md, "Camouflage"); it doubles judging work per round.
 */
export const JUDGES_PER_PAIR = 10

/** Reputation: evidence kept per round (forgetting factor). */
export const REPUTATION_DECAY = 0.97
/** Reputation: pseudo-evidence in the weight's denominator (how much evidence full weight takes). */
export const REPUTATION_CONFIDENCE = 10
/** Reputation: no judge carries more than this share of a round's total weight. */
export const REPUTATION_MAX_SHARE = 0.1
/** Reputation: negative evidence for a missing, late or mismatched reveal (the judge's stake). */
export const REVEAL_PENALTY = 3
/**
 * Reputation: negative evidence per vote on a comparison the judge was not assigned — signed proof
 * of trying (an honest judge votes only on the pairs it was asked for and checked, so never pays).
 */
export const UNASSIGNED_PENALTY = 10
/**
 * Reputation: weight, per vote, of agreement with the other judges of the same pair, beside
 * agreement with the (reputation-weighted) outcome. Without it 30% colluders among a swarm's
 * founders captured it in 2 of 8 simulated runs; with it in none (README.md).
 */
export const PEER_EVIDENCE = 0.25
/**
 * Reputation: weight of the coordination term — evidence charged, per round, in proportion to how
 * much the round's judges together deviated from their pairs beyond their own records, times the
 * judge's own excess (reputation.ts, coordinate()). Chosen on 16 simulated swarms (README.md).
 */
export const COORDINATION_EVIDENCE = 300
/** Reputation: squared z-score a round's excess deviation must reach before the term applies. */
export const COORDINATION_Z2 = 4
/** Reputation: pseudo-votes at the round's deviation level in a judge's expected deviation. */
export const COORDINATION_PRIOR_VOTES = 2
/** Reputation: positive evidence for the author of the winning answer. */
export const WIN_REWARD = 1
/** Reputation: positive evidence for a spot-check the node passed. */
export const SPOT_PASS_REWARD = 0.5
/** Reputation: negative evidence for a failed spot-check (the node is also excluded). */
export const SPOT_FAIL_PENALTY = 100
/**
 * Spot-checks: distinct admitted verifiers that must report the same case failed (and outnumber
 * those reporting it passed) before the subject is slashed and excluded — one verifier cannot
 * frame a node on its own word.
 */
export const SPOT_FAIL_CONFIRMATIONS = 2
/** Reputation: positive evidence a passed calibration grants. */
export const CALIBRATION_REWARD = 1

/** Calibration: share of known-answer judging pairs a candidate must get right. */
export const CALIBRATION_MIN_PAIR_ACCURACY = 0.8
/** Calibration: distinct admitted verifiers whose passing records admit a node. */
export const CALIBRATION_MIN_VERIFIERS = 1

/** Fingerprint: positions of a hidden state kept (largest magnitudes). */
export const FINGERPRINT_TOP_K = 8
/**
 * Fingerprint: a value may differ by this fraction of the state's largest magnitude when stage and
 * verifier hold the same weight dtype, or f32 and f16. Measured on stories260K over 1,200 honest
 * runs: worst 0.0000 (same dtype, any codec, 1 or 2 threads), 0.0010 (f16 against f32); a skipped
 * layer ≥ 0.086 (200 random prompts × 29 positions); noise of 0.02 × RMS (which already changes greedy tokens) ≈ 0.01.
 */
export const FINGERPRINT_VALUE_TOLERANCE = 0.005
/**
 * Fingerprint: tolerance when one side holds q8_0 and the other f32/f16 (nodes check in the
 * subject's dtype, so only a verifier that cannot do that uses it). Honest stages on stories260K:
 * p99.9 0.028, worst 0.046 over 132,000 positions (3,000 random prompts, every codec), but one
 * test prompt reached 0.054 (TEST_SEED=890585341, which failed the old 0.05); a skipped layer
 * ≥ 0.086.
 */
export const FINGERPRINT_Q8_TOLERANCE = 0.07
/** Fingerprint: claimed top-k positions that may fall outside the verifier's top 2k. */
export const FINGERPRINT_INDEX_SLACK = 1
/**
 * Sampled last stages: a claimed token's coin interval is widened by this much beyond the dtype
 * margin, for the f32 rounding of the sampler's probabilities and cumulative sums (≈ 1e-7).
 */
export const SAMPLED_COIN_SLACK = 1e-5

/** Records: at most this many votes in one ballot, answers in one round. */
export const MAX_BALLOT_VOTES = 512
export const MAX_ROUND_ANSWERS = 64
/** Records: pipeline nodes besides the author listed with one answer. */
export const MAX_COAUTHORS = 32
/**
 * Pair schedule: an admitted judge is drawn with at least this weight, so an identity that just
 * passed calibration (weight 0) still judges and earns evidence — its votes count for nothing
 * until its reputation gives it weight.
 */
export const SCHEDULE_WEIGHT_FLOOR = 0.05
