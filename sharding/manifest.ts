// Model manifests: what the swarm needs to know about a model to place and route it, and the
// content hash that names it. The id is sha-256 over a canonical encoding of the config, the
// tensor index (name, dtype, shape, byte length, sorted by name) and, by default, the sha-256 of
// every tensor's bytes as stored. It therefore names the file content: the same weights in
// another format (or another quantization) get another id. Making it format-independent would
// mean hashing dequantized values, which costs a full decode of the model; we do not.
import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import type { ModelConfig, ModelSource, WeightDType } from '../engine/index.ts'
import type { ModelManifest } from './index.ts'
import { AllocationInputError } from './errors.ts'

const DTYPES: WeightDType[] = ['f32', 'f16', 'q8_0', 'q4_0']
const BLOCK = 32 // q8_0 / q4_0 block length
const GROUP_ROWS = 4 // the engine packs quantized rows in groups of four

/** Bytes of a [rows, cols] matrix held as `dtype` (shapes the engine cannot tile stay f32). */
function matrixBytes (dtype: WeightDType, rows: number, cols: number): number {
  const n = rows * cols
  const tiles = rows % GROUP_ROWS === 0 && cols % BLOCK === 0
  if (dtype === 'f16') return n * 2
  if (dtype === 'q8_0' && tiles) return n + (n / BLOCK) * 4
  if (dtype === 'q4_0' && tiles) return n / 2 + (n / BLOCK) * 4
  return n * 4
}

/** Bytes one decoder layer of `config` takes in engine memory when held as `dtype`. */
export function layerBytesFor (config: ModelConfig, dtype: WeightDType): number {
  const qDim = config.nHeads * config.headSize
  const kvDim = config.nKvHeads * config.headSize
  const matrices: Array<[number, number]> = [
    [qDim, config.dim], [kvDim, config.dim], [kvDim, config.dim], [config.dim, qDim], // wq wk wv wo
    [config.hiddenDim, config.dim], [config.hiddenDim, config.dim], [config.dim, config.hiddenDim] // w1 w3 w2
  ]
  let bytes = 2 * config.dim * 4 // attention_norm, ffn_norm
  if (config.qkvBias) bytes += (qDim + 2 * kvDim) * 4
  for (const [rows, cols] of matrices) bytes += matrixBytes(dtype, rows, cols)
  return bytes
}

function canonicalConfig (config: ModelConfig): string {
  const entries = Object.entries(config).filter(([, v]) => v !== undefined).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
  return JSON.stringify(entries)
}

function sizes (config: ModelConfig): Omit<ModelManifest, 'id'> {
  if (!(config.nLayers > 0) || !(config.dim > 0)) throw new AllocationInputError(`model has ${config.nLayers} layers of width ${config.dim}`)
  const layerBytes = {} as Record<WeightDType, number>
  for (const dtype of DTYPES) layerBytes[dtype] = layerBytesFor(config, dtype)
  const embeddingBytes = config.vocabSize * config.dim * 4
  return {
    architecture: config.architecture,
    nLayers: config.nLayers,
    dim: config.dim,
    hiddenDim: config.hiddenDim,
    nHeads: config.nHeads,
    nKvHeads: config.nKvHeads,
    headSize: config.headSize,
    vocabSize: config.vocabSize,
    seqLen: config.seqLen,
    layerBytes,
    kvBytesPerTokenPerLayer: 2 * config.nKvHeads * config.headSize * 4,
    embeddingBytes,
    headBytes: config.tiedEmbeddings ? 0 : embeddingBytes
  }
}

/**
 * A manifest from a config alone (simulations, shape-only models). Its id hashes the config
 * only, so it names an architecture, not weights.
 */
export function manifestFromConfig (config: ModelConfig): ModelManifest {
  const id = createHash('sha256').update('mycelium-manifest-config/1\n').update(canonicalConfig(config)).digest('hex')
  return { id, ...sizes(config) }
}

async function hashRange (file: string, start: number, length: number, signal?: AbortSignal): Promise<string> {
  const h = createHash('sha256')
  if (length > 0) {
    const stream = createReadStream(file, { start, end: start + length - 1, ...(signal !== undefined ? { signal } : {}) })
    for await (const chunk of stream) h.update(chunk as Buffer)
  }
  return h.digest('hex')
}

/**
 * The manifest of an opened model. `hash: 'weights'` (default) reads every tensor once;
 * `'index'` hashes config and tensor index only (cheap, but two files with the same shapes and
 * different values collide).
 */
export async function manifestFromSource (source: ModelSource, options: { hash?: 'weights' | 'index', signal?: AbortSignal } = {}): Promise<ModelManifest> {
  const h = createHash('sha256').update('mycelium-manifest/1\n').update(canonicalConfig(source.config)).update('\n')
  const names = [...source.tensors.keys()].sort()
  for (const name of names) {
    const t = source.tensors.get(name)
    if (t === undefined) continue
    h.update(`${name}\t${t.dtype}\t${t.shape.join('x')}\t${t.byteLength}`)
    if (options.hash !== 'index') h.update(`\t${await hashRange(t.file, t.offset, t.byteLength, options.signal)}`)
    h.update('\n')
  }
  return { id: h.digest('hex'), ...sizes(source.config) }
}
