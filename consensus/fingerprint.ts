// Activation fingerprints in the spirit of TOPLOC: per position of a stage's output hidden state,
// the k largest-magnitude coordinates (index + value quantized against the row's largest
// magnitude) and that magnitude. A second holder of the same layers recomputes the stage from the
// same inputs and accepts when the claimed coordinates are (almost all) among its own top 2k and
// every claimed value is within a tolerance of its own, relative to the row's scale. The tolerance
// absorbs wire codecs (int8 blockwise is off by ≤ 1/254 of a block's max), weight dtypes and
// summation order (thread count, batched vs one-token steps); a skipped layer or a corrupted state
// moves the top coordinates far beyond it (measured in README.md / bench:consensus on stories260K).
// Layout of one position: [f32 scale][k × (u16 index, i16 value × 32767 / scale)], little-endian.
import type { WeightDType } from '../engine/index.ts'
import { FINGERPRINT_INDEX_SLACK, FINGERPRINT_Q8_TOLERANCE, FINGERPRINT_TOP_K, FINGERPRINT_VALUE_TOLERANCE } from './constants.ts'
import { ConsensusInputError } from './errors.ts'

export interface FingerprintOptions {
  topK?: number
}

export interface FingerprintCheck {
  valueTolerance?: number
  indexSlack?: number
}

const Q = 32767

/**
 * Value tolerance for a stage holding `stage` weights checked by a verifier holding `verifier`
 * weights; undefined when the pair cannot be checked (q4_0 against another dtype: honest errors
 * reach 0.17 of the scale, more than a skipped layer's minimum of 0.086) — pick a verifier with
 * the same dtype.
 */
export function fingerprintTolerance (stage: WeightDType, verifier: WeightDType): number | undefined {
  if (stage === verifier) return FINGERPRINT_VALUE_TOLERANCE
  const pair = new Set([stage, verifier])
  if (pair.has('q4_0')) return undefined
  if (pair.has('q8_0')) return FINGERPRINT_Q8_TOLERANCE
  return FINGERPRINT_VALUE_TOLERANCE
}

/** Bytes of one position's fingerprint. */
export function fingerprintBytes (topK: number = FINGERPRINT_TOP_K): number {
  return 4 + 4 * topK
}

/** Indices of the k largest |x[i]| in row [off, off + dim), larger first, lower index on ties. */
function topIndices (x: Float32Array, off: number, dim: number, k: number): number[] {
  const order = Array.from({ length: dim }, (_, i) => i)
  order.sort((a, b) => Math.abs(x[off + b]) - Math.abs(x[off + a]) || a - b)
  return order.slice(0, k)
}

/** Fingerprints of every position of hidden states [T, dim]: T × fingerprintBytes(k) bytes. */
export function fingerprint (hidden: Float32Array, dim: number, options: FingerprintOptions = {}): Uint8Array {
  const k = options.topK ?? FINGERPRINT_TOP_K
  if (!Number.isInteger(dim) || dim <= 0 || hidden.length % dim !== 0) throw new ConsensusInputError(`hidden of ${hidden.length} values is not [T, ${dim}]`)
  if (!Number.isInteger(k) || k < 1 || k > dim || dim > 65536) throw new ConsensusInputError(`top-k ${k} does not fit dim ${dim}`)
  const T = hidden.length / dim
  const size = fingerprintBytes(k)
  const out = new Uint8Array(T * size)
  const view = new DataView(out.buffer)
  for (let t = 0; t < T; t++) {
    const off = t * dim
    const top = topIndices(hidden, off, dim, k)
    const scale = Math.abs(hidden[off + top[0]])
    view.setFloat32(t * size, scale, true)
    for (let j = 0; j < k; j++) {
      const i = top[j]
      view.setUint16(t * size + 4 + j * 4, i, true)
      view.setInt16(t * size + 6 + j * 4, scale === 0 ? 0 : Math.round(hidden[off + i] / scale * Q), true)
    }
  }
  return out
}

export interface FingerprintMismatch {
  position: number
  /** Claimed indices outside the verifier's top 2k, and the largest value error / scale. */
  missingIndices: number
  valueError: number
}

/**
 * Compares claimed fingerprints (all positions of a step, or of a sequence) with hidden states
 * the verifier computed itself. Returns the positions that do not match (empty: accepted).
 */
export function checkFingerprint (claimed: Uint8Array, hidden: Float32Array, dim: number, topK: number = FINGERPRINT_TOP_K, check: FingerprintCheck = {}): FingerprintMismatch[] {
  const tolerance = check.valueTolerance ?? FINGERPRINT_VALUE_TOLERANCE
  const slack = check.indexSlack ?? FINGERPRINT_INDEX_SLACK
  return fingerprintDistances(claimed, hidden, dim, topK).filter((d) => d.missingIndices > slack || !(d.valueError <= tolerance))
}

/** Per position: claimed indices outside the verifier's top 2k, and the largest value error / scale. */
export function fingerprintDistances (claimed: Uint8Array, hidden: Float32Array, dim: number, topK: number = FINGERPRINT_TOP_K): FingerprintMismatch[] {
  const size = fingerprintBytes(topK)
  const T = hidden.length / dim
  if (!Number.isInteger(T) || claimed.length !== T * size) throw new ConsensusInputError(`fingerprint of ${claimed.length} bytes does not cover ${T} positions of top-${topK}`)
  const view = new DataView(claimed.buffer, claimed.byteOffset, claimed.byteLength)
  const all: FingerprintMismatch[] = []
  for (let t = 0; t < T; t++) {
    const off = t * dim
    const mine = new Set(topIndices(hidden, off, dim, Math.min(dim, 2 * topK)))
    const myScale = Math.abs(hidden[off + topIndices(hidden, off, dim, 1)[0]])
    const scale = view.getFloat32(t * size, true)
    let missing = 0
    let worst = myScale === 0 ? (scale === 0 ? 0 : Infinity) : Math.abs(scale - myScale) / myScale
    for (let j = 0; j < topK; j++) {
      const i = view.getUint16(t * size + 4 + j * 4, true)
      if (i >= dim) { missing = topK; worst = Infinity; break }
      if (!mine.has(i)) missing++
      const value = view.getInt16(t * size + 6 + j * 4, true) / Q * scale
      const err = myScale === 0 ? Math.abs(value) : Math.abs(value - hidden[off + i]) / myScale
      if (!(err <= worst)) worst = err
    }
    all.push({ position: t, missingIndices: missing, valueError: worst })
  }
  return all
}
