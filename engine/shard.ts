// Loading a shard: the weights of layers [start, end) (plus the embedding on the first stage and
// the final norm + LM head on the last), read from disk with ranged reads and packed into engine
// memory in the chosen dtype. Other layers' bytes are never read.
import { ShardConfigError } from './errors.ts'
import { createTensorReader, type TensorReader } from './formats/tensor-reader.ts'
import type { ComputeBackend, Matrix, ModelSource, Session, Shard, ShardOptions, TensorRef, WeightDType } from './index.ts'
import { DEFAULT_MAX_BATCH } from './constants.ts'
import { packStacked, packTensor } from './pack-source.ts'
import { quantizable } from './quantize.ts'
import { createReferenceBackend } from './reference-backend.ts'
import { stepBatch } from './batch.ts'
import { createScratch, createShardPass } from './forward.ts'
import { createSession, type SessionState } from './session.ts'
import { createWasmBackend } from './wasm-backend.ts'

export interface LayerWeights {
  attentionNorm: Float32Array // (dim)
  wqkv: Matrix // (dim + 2 kvDim, dim): wq, wk, wv stacked, one matmul for all three
  wo: Matrix // (dim, dim)
  bqkv?: Float32Array // (dim + 2 kvDim) qwen2 only: bq, bk, bv
  ffnNorm: Float32Array // (dim)
  w13: Matrix // (2 hidden, dim): w1 (gate) and w3 (up) stacked
  w2: Matrix // (dim, hidden) down
}

/** Token embedding rows, read from the model file on demand (first stage only). */
export interface EmbeddingTable {
  lookup(token: number, out: Float32Array): void
  close(): void
}

export interface ShardWeights {
  embedding?: EmbeddingTable // (vocab, dim) on disk: first stage
  layers: LayerWeights[] // one per layer in [start, end)
  finalNorm?: Float32Array // (dim): last stage
  output?: Matrix // (vocab, dim): last stage (the embedding matrix when tied)
}

export async function loadShard (source: ModelSource, options: ShardOptions = {}): Promise<Shard> {
  const config = source.config
  const start = options.start ?? 0
  const end = options.end ?? config.nLayers
  const dtype: WeightDType = options.dtype ?? 'f32'
  if (!Number.isInteger(start) || !Number.isInteger(end) || start < 0 || end > config.nLayers || start >= end) {
    throw new ShardConfigError(`layer range [${start}, ${end}) is not inside [0, ${config.nLayers})`)
  }
  const backend: ComputeBackend = options.backend === 'reference'
    ? createReferenceBackend()
    : await createWasmBackend({ threads: options.threads ?? 1 })
  const reader = createTensorReader()
  try {
    const weights = await loadWeights(source, reader, backend, start, end, dtype, options.signal, options.onProgress)
    if (start === 0) weights.embedding = embeddingTable(tensor(source, 'tok_embeddings'))
    const maxBatch = options.maxBatch ?? DEFAULT_MAX_BATCH
    if (!Number.isInteger(maxBatch) || maxBatch < 1) throw new ShardConfigError(`maxBatch ${maxBatch} is not a positive integer`)
    const scratch = createScratch(backend.mem, config, maxBatch, end === config.nLayers)
    const pass = createShardPass({ config, weights, backend, scratch, start, end })
    // the sessions this shard opened, for stepBatch (a closed session stays, marked closed)
    const states = new WeakMap<Session, SessionState>()
    const weightBytes = backend.mem.usedBytes
    const bytesRead = reader.bytesRead
    return {
      config,
      start,
      end,
      isFirst: start === 0,
      isLast: end === config.nLayers,
      dtype,
      backend,
      weightBytes,
      bytesRead,
      maxBatch,
      openSession: (opts = {}) => {
        const { session, state } = createSession(pass, opts.maxLength ?? config.seqLen)
        states.set(session, state)
        return session
      },
      stepBatch: (items) => stepBatch(pass, states, items),
      close: async () => {
        weights.embedding?.close()
        await backend.close()
      }
    }
  } catch (err) {
    await backend.close()
    throw err
  } finally {
    reader.close()
  }
}

/**
 * The embedding table stays on disk: a first stage reads one row per token (a ranged read, served
 * from the page cache once warm) instead of holding vocab × dim weights it mostly never touches.
 * Rows come out exactly as the file stores them, dequantized to f32.
 */
function embeddingTable (ref: TensorRef): EmbeddingTable {
  const reader = createTensorReader()
  return {
    lookup: (token, out) => reader.readRows(ref, token, 1, out),
    close: () => reader.close()
  }
}

function tensor (source: ModelSource, name: string): TensorRef {
  const t = source.tensors.get(name)
  if (t === undefined) throw new ShardConfigError(`${source.path}: tensor ${name} is missing`)
  return t
}

/** The tensors a layer is built from (what loadWeights reads for it). */
function layerTensorNames (l: number, qkvBias: boolean): string[] {
  const p = `layers.${l}.`
  return ['attention_norm', 'wq', 'wk', 'wv', 'wo', ...(qkvBias ? ['bq', 'bk', 'bv'] : []), 'ffn_norm', 'w1', 'w3', 'w2'].map((n) => p + n)
}

/** Loads layer by layer, yielding to the event loop between layers so a load can be aborted. */
async function loadWeights (source: ModelSource, reader: TensorReader, backend: ComputeBackend,
  start: number, end: number, dtype: WeightDType, signal?: AbortSignal,
  onProgress?: (bytesRead: number, totalBytes: number) => void): Promise<ShardWeights> {
  const { config } = source
  const ref = (name: string) => tensor(source, name)
  const isLast = end === config.nLayers
  const headNames = isLast ? ['norm', config.tiedEmbeddings ? 'tok_embeddings' : 'output'] : []
  let total = 0
  if (onProgress !== undefined) {
    for (let l = start; l < end; l++) for (const n of layerTensorNames(l, config.qkvBias)) total += ref(n).byteLength
    for (const n of headNames) total += ref(n).byteLength
  }
  const progress = (): void => { onProgress?.(Math.min(reader.bytesRead, total), total) }
  const vector = (name: string): Float32Array => reader.readAll(ref(name))
  // q8_0 / q4_0 only where the shape tiles (every part of a stack must); otherwise f32.
  const held = (refs: TensorRef[]): WeightDType => dtype === 'q8_0' || dtype === 'q4_0'
    ? (refs.every((t) => quantizable(t.shape[0], t.shape[1])) ? dtype : 'f32')
    : dtype
  const matrix = (name: string): Matrix => packTensor(backend.mem, held([ref(name)]), ref(name), reader)
  const stacked = (...names: string[]): Matrix => {
    const refs = names.map(ref)
    return packStacked(backend.mem, held(refs), refs, reader)
  }
  const concat = (...names: string[]): Float32Array => {
    const parts = names.map(vector)
    const out = new Float32Array(parts.reduce((n, v) => n + v.length, 0))
    parts.reduce((at, v) => { out.set(v, at); return at + v.length }, 0)
    return out
  }
  const layers: LayerWeights[] = []
  for (let l = start; l < end; l++) {
    await new Promise((resolve) => setImmediate(resolve))
    signal?.throwIfAborted()
    const p = `layers.${l}.`
    layers.push({
      attentionNorm: vector(p + 'attention_norm'),
      wqkv: stacked(p + 'wq', p + 'wk', p + 'wv'),
      wo: matrix(p + 'wo'),
      ...(config.qkvBias ? { bqkv: concat(p + 'bq', p + 'bk', p + 'bv') } : {}),
      ffnNorm: vector(p + 'ffn_norm'),
      w13: stacked(p + 'w1', p + 'w3'),
      w2: matrix(p + 'w2')
    })
    progress()
  }
  const weights: ShardWeights = { layers }
  if (isLast) {
    weights.finalNorm = vector(headNames[0])
    weights.output = matrix(headNames[1])
  }
  onProgress?.(total, total)
  return weights
}
