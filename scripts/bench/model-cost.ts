// What one token costs a shard, counted from the model config and the engine's own layout rules
// (engine/quantize.ts: which matrices can be held quantized, and their bytes with f32 scales):
// - decode bytes per token: every matrix of the held layers (wq, wk, wv, wo, w1, w2, w3) plus the
//   LM head on the last stage, each read once, in the held dtype. The embedding lookup reads one
//   row, and norms, biases and the KV cache (short context here) are left out: they are < 1 % at
//   these shapes, so the roofline is a slight over-estimate of the attainable speed.
// - matmul FLOPs: 2 per multiply-add over the same matrices; prefill of T tokens runs the layer
//   matrices T times and the LM head once (only the last position's logits are computed).
//   Attention score/value products (QKᵀ, AV) are NOT counted, so GFLOP/s is conservative.
import type { ModelConfig, WeightDType } from '../../engine/index.ts'
import { ggufDtypeFor, storedBytes } from '../../engine/formats/gguf-writer.ts'
import { matrixBytes, quantizable } from '../../engine/quantize.ts'

export interface ModelCost {
  /** Weights in the layer matrices of [start, end). */
  layerParams: number
  /** Weights in the LM head (0 unless the shard is the last stage). */
  lmHeadParams: number
  /** Bytes read per decoded token: layer matrices + LM head, in the held dtype. */
  decodeBytesPerToken: number
}

export type Shape = [rows: number, cols: number]

export function layerMatrixShapes (c: ModelConfig): Shape[] {
  const kvDim = c.nKvHeads * c.headSize
  return [
    [c.dim, c.dim], // wq
    [kvDim, c.dim], // wk
    [kvDim, c.dim], // wv
    [c.dim, c.dim], // wo
    [c.hiddenDim, c.dim], // w1 (gate)
    [c.dim, c.hiddenDim], // w2 (down)
    [c.hiddenDim, c.dim] // w3 (up)
  ]
}

/** Bytes of a matrix as the engine holds it: quantized only where the shape tiles, else f32. */
export function heldBytes (dtype: WeightDType, [rows, cols]: Shape): number {
  const held: WeightDType = (dtype === 'q8_0' || dtype === 'q4_0') && !quantizable(rows, cols) ? 'f32' : dtype
  const { dataBytes, scaleBytes } = matrixBytes(held, rows, cols)
  return dataBytes + scaleBytes
}

/** Bytes of a matrix as a GGUF file stores it (q8_0/q4_0 with f16 scales), which llama.cpp reads. */
export function ggufBytes (dtype: WeightDType, shape: Shape): number {
  return storedBytes(ggufDtypeFor(dtype, shape), shape)
}

/** `bytes` says how a matrix is held: the engine's layout (default) or the GGUF file's. */
export function modelCost (c: ModelConfig, dtype: WeightDType, start = 0, end = c.nLayers,
  bytes: (dtype: WeightDType, shape: Shape) => number = heldBytes): ModelCost {
  const layers = end - start
  const shapes = layerMatrixShapes(c)
  const params = (s: Shape) => s[0] * s[1]
  const layerParams = layers * shapes.reduce((sum, s) => sum + params(s), 0)
  const layerBytes = layers * shapes.reduce((sum, s) => sum + bytes(dtype, s), 0)
  const head: Shape = [c.vocabSize, c.dim]
  const isLast = end === c.nLayers
  return {
    layerParams,
    lmHeadParams: isLast ? params(head) : 0,
    decodeBytesPerToken: layerBytes + (isLast ? bytes(dtype, head) : 0)
  }
}

/** Matmul FLOPs of a T-token prefill: layers T times, LM head once. */
export function prefillFlops (cost: ModelCost, tokens: number): number {
  return 2 * (cost.layerParams * tokens + cost.lmHeadParams)
}

/** Decode speed limit at `gbps` (1e9 B/s): bandwidth ÷ bytes read per token. */
export function rooflineTokPerS (cost: ModelCost, gbps: number): number {
  return gbps * 1e9 / cost.decodeBytesPerToken
}
