// llama2.c checkpoints: the legacy v0 float32 layout (7 int32 header, then arrays in a fixed
// order; see ../shared/models/stories260K/SOURCE.md) and the versioned v1 float32 export
// (magic "ak42", 256-byte header). Only tensor locations are computed here; nothing is read
// beyond the header until a shard asks for its rows.
import { open } from 'node:fs/promises'
import { ModelFormatError } from '../errors.ts'
import type { ModelConfig, ModelSource, TensorRef } from '../index.ts'

const MAGIC = 0x616b3432 // "ak42"
const V1_HEADER_BYTES = 256
const MAX_DIM = 1 << 16
/** Bounds on header fields, checked before anything is sized from them. */
const MAX_LAYERS = 1024
const MAX_VOCAB = 1 << 22
const MAX_SEQ_LEN = 1 << 24

export async function openLlama2c (path: string, options: { tokenizer?: string } = {}): Promise<ModelSource> {
  let header: Buffer
  let fileSize: number
  try {
    const fh = await open(path, 'r')
    try {
      fileSize = (await fh.stat()).size
      header = Buffer.alloc(Math.min(V1_HEADER_BYTES, fileSize))
      await fh.read(header, 0, header.length, 0)
    } finally {
      await fh.close()
    }
  } catch (err) {
    throw new ModelFormatError(path, `cannot read model: ${(err as Error).message}`)
  }
  if (header.length < 28) throw new ModelFormatError(path, `file is ${fileSize} bytes, shorter than a llama2.c header`)

  const versioned = header.readUInt32LE(0) === MAGIC
  let version = 0
  let dataStart = 28
  let p: number[]
  let shared: boolean
  if (versioned) {
    version = header.readInt32LE(4)
    if (version === 2) throw new ModelFormatError(path, 'llama2.c v2 (int8) checkpoints are not supported; export v0 or v1, or convert to GGUF q8_0')
    if (version !== 1) throw new ModelFormatError(path, `unknown llama2.c checkpoint version ${version}`)
    if (header.length < V1_HEADER_BYTES) throw new ModelFormatError(path, 'truncated v1 header')
    p = Array.from({ length: 7 }, (_, i) => header.readInt32LE(8 + 4 * i))
    shared = header[36] === 1
    dataStart = V1_HEADER_BYTES
  } else {
    p = Array.from({ length: 7 }, (_, i) => header.readInt32LE(4 * i))
    shared = p[5] > 0
    p[5] = Math.abs(p[5])
  }
  const [dim, hiddenDim, nLayers, nHeads, nKvHeads, vocabSize, seqLen] = p
  const sane = p.every((v) => Number.isInteger(v) && v > 0) && dim <= MAX_DIM && hiddenDim <= MAX_DIM * 4 &&
    nLayers <= MAX_LAYERS && vocabSize <= MAX_VOCAB && seqLen <= MAX_SEQ_LEN &&
    nHeads <= dim && dim % nHeads === 0 && nKvHeads <= nHeads && nHeads % nKvHeads === 0 && (dim / nHeads) % 2 === 0
  if (!sane) throw new ModelFormatError(path, `header [${p.join(', ')}] is not a valid llama2.c config (dim, hidden, layers, heads, kv heads, vocab, seq)`)

  const headSize = dim / nHeads
  const kvDim = headSize * nKvHeads
  // The file size the header implies, checked before any tensor is laid out from it.
  const layerFloats = 2 * dim + 2 * dim * dim + 2 * kvDim * dim + 3 * hiddenDim * dim
  const floats = vocabSize * dim * (shared ? 1 : 2) + nLayers * layerFloats + dim + (version === 0 ? seqLen * headSize : 0)
  const expected = dataStart + floats * 4
  if (expected !== fileSize) {
    throw new ModelFormatError(path, `file is ${fileSize} bytes but its header (dim ${dim}, ${nLayers} layers, vocab ${vocabSize}) implies ${expected}: truncated or not a llama2.c v${version} checkpoint`)
  }
  const config: ModelConfig = {
    architecture: 'llama',
    dim,
    hiddenDim,
    nLayers,
    nHeads,
    nKvHeads,
    headSize,
    vocabSize,
    seqLen,
    ropeTheta: 10000,
    normEps: 1e-5,
    tiedEmbeddings: shared,
    qkvBias: false,
    bosId: 1,
    eosId: 2
  }

  const tensors = new Map<string, TensorRef>()
  let off = dataStart
  const add = (name: string, shape: number[]): void => {
    const byteLength = shape.reduce((a, b) => a * b, 1) * 4
    tensors.set(name, { name, file: path, offset: off, byteLength, dtype: 'f32', shape })
    off += byteLength
  }
  /** One [L, ...shape] array: L consecutive per-layer tensors. */
  const perLayer = (suffix: string, shape: number[]): void => {
    for (let l = 0; l < nLayers; l++) add(`layers.${l}.${suffix}`, shape)
  }

  if (version === 0) {
    add('tok_embeddings', [vocabSize, dim])
    perLayer('attention_norm', [dim])
    perLayer('wq', [dim, dim])
    perLayer('wk', [kvDim, dim])
    perLayer('wv', [kvDim, dim])
    perLayer('wo', [dim, dim])
    perLayer('ffn_norm', [dim])
    perLayer('w1', [hiddenDim, dim])
    perLayer('w2', [dim, hiddenDim])
    perLayer('w3', [hiddenDim, dim])
    add('norm', [dim])
    off += seqLen * headSize * 4 // freq_cis_real + freq_cis_imag (headSize / 2 each), unused
  } else {
    perLayer('attention_norm', [dim])
    perLayer('ffn_norm', [dim])
    add('norm', [dim])
    add('tok_embeddings', [vocabSize, dim])
    perLayer('wq', [dim, dim])
    perLayer('wk', [kvDim, dim])
    perLayer('wv', [kvDim, dim])
    perLayer('wo', [dim, dim])
    perLayer('w1', [hiddenDim, dim])
    perLayer('w2', [dim, hiddenDim])
    perLayer('w3', [hiddenDim, dim])
  }
  if (!shared) add('output', [vocabSize, dim])
  return {
    path,
    format: 'llama2c',
    config,
    tensors,
    ...(options.tokenizer !== undefined ? { tokenizer: { kind: 'llama2c' as const, path: options.tokenizer } } : {})
  }
}
