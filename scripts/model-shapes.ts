// Named model shapes for shape-only random weights (gen-model.ts) and the benchmarks. The
// numbers are the published architectures' (stories15M/110M: llama2.c's TinyStories models;
// SmolLM2-135M, Qwen2.5-0.5B, Llama-3.2-1B: their config.json), so speed and memory measured on
// them are the real models'. Generated weights always use a synthetic SentencePiece vocabulary
// with <s> = 1 and </s> = 2.
import type { ModelConfig } from '../engine/index.ts'

export interface ModelShape {
  architecture: ModelConfig['architecture']
  dim: number
  hiddenDim: number
  nLayers: number
  nHeads: number
  nKvHeads: number
  vocabSize: number
  seqLen: number
  ropeTheta: number
  normEps: number
  tiedEmbeddings: boolean
  qkvBias: boolean
}

export const MODEL_SHAPES: Record<string, ModelShape> = {
  stories15M: { architecture: 'llama', dim: 288, hiddenDim: 768, nLayers: 6, nHeads: 6, nKvHeads: 6, vocabSize: 32000, seqLen: 256, ropeTheta: 10000, normEps: 1e-5, tiedEmbeddings: true, qkvBias: false },
  stories110M: { architecture: 'llama', dim: 768, hiddenDim: 2048, nLayers: 12, nHeads: 12, nKvHeads: 12, vocabSize: 32000, seqLen: 1024, ropeTheta: 10000, normEps: 1e-5, tiedEmbeddings: true, qkvBias: false },
  'smollm2-135m': { architecture: 'llama', dim: 576, hiddenDim: 1536, nLayers: 30, nHeads: 9, nKvHeads: 3, vocabSize: 49152, seqLen: 8192, ropeTheta: 100000, normEps: 1e-5, tiedEmbeddings: true, qkvBias: false },
  'qwen2.5-0.5b': { architecture: 'qwen2', dim: 896, hiddenDim: 4864, nLayers: 24, nHeads: 14, nKvHeads: 2, vocabSize: 151936, seqLen: 32768, ropeTheta: 1000000, normEps: 1e-6, tiedEmbeddings: true, qkvBias: true },
  'llama-1b': { architecture: 'llama', dim: 2048, hiddenDim: 8192, nLayers: 16, nHeads: 32, nKvHeads: 8, vocabSize: 128256, seqLen: 131072, ropeTheta: 500000, normEps: 1e-5, tiedEmbeddings: true, qkvBias: false }
}

/** The ModelConfig of a named shape; `layers` overrides the layer count. */
export function shapeConfig (name: string, options: { layers?: number } = {}): ModelConfig {
  const s = MODEL_SHAPES[name]
  if (s === undefined) throw new Error(`unknown shape ${name} (known: ${Object.keys(MODEL_SHAPES).join(', ')})`)
  return { ...s, nLayers: options.layers ?? s.nLayers, headSize: s.dim / s.nHeads, bosId: 1, eosId: 2 }
}
