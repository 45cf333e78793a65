// Writes GGUF v3 files that llama.cpp can load: llama (or qwen2) architecture metadata, an SPM
// ("llama") vocabulary, and tensors in F32, F16, BF16, Q8_0 or Q4_0, each aligned to
// general.alignment. Q8_0 / Q4_0 blocks are produced exactly like ggml's reference quantizers
// (quantize_row_q8_0_ref / quantize_row_q4_0_ref). Tensor data is streamed (see
// safetensors-writer.ts), so the whole model never sits in memory.
import { ShapeError } from '../errors.ts'
import { llama3RopeFactors } from '../ops.ts'
import type { ModelConfig, SourceDType } from '../index.ts'
import { f32ToF16 } from '../quantize.ts'
import { ggufPiece } from '../tokenizer-gguf.ts'
import type { SpmVocab } from '../tokenizer-gguf.ts'
import { GGML_TYPE_ID, GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC, GgufType, ggufTensorName } from './gguf.ts'
import { encodeFloats, modelTensors, rowsCols, streamTensor, writeAll, writeAtomically } from './safetensors-writer.ts'
import type { WritableModel, WritableTensor } from './safetensors-writer.ts'

const QK = 32 // elements per Q8_0 / Q4_0 block
const GGUF_VERSION = 3

/** One metadata entry; arrays name their element type. */
export interface GgufKv {
  key: string
  type: number // GgufType
  value: string | number | boolean | bigint | string[] | ArrayLike<number>
  itemType?: number // for GgufType.ARRAY
}

/** Bytes a [rows, cols] tensor takes as `dtype` in a GGUF / safetensors file. */
export function storedBytes (dtype: SourceDType, shape: number[]): number {
  const [rows, cols] = rowsCols(shape)
  switch (dtype) {
    case 'f32': return rows * cols * 4
    case 'f16': case 'bf16': return rows * cols * 2
    case 'q8_0': return rows * (cols / QK) * 34
    case 'q4_0': return rows * (cols / QK) * 18
  }
}

/**
 * The dtype a tensor gets when `requested` is asked for: vectors (norms, biases) stay f32, as
 * llama.cpp's converter keeps them; a matrix whose rows are not whole 32-element blocks cannot
 * be quantized and stays f32.
 */
export function ggufDtypeFor (requested: SourceDType, shape: number[]): SourceDType {
  if (shape.length === 1) return 'f32'
  if ((requested === 'q8_0' || requested === 'q4_0') && shape[1] % QK !== 0) return 'f32'
  return requested
}

/** ggml's quantize_row_q8_0_ref: per 32 values, f16 d = amax / 127 and int8 round(x / d). */
export function quantizeQ8_0 (x: Float32Array): Uint8Array {
  if (x.length % QK !== 0) throw new ShapeError(`q8_0 needs a multiple of ${QK} values, got ${x.length}`)
  const out = new Uint8Array((x.length / QK) * 34)
  const view = new DataView(out.buffer)
  for (let b = 0; b < x.length / QK; b++) {
    let amax = 0
    for (let j = 0; j < QK; j++) amax = Math.max(amax, Math.abs(x[b * QK + j]))
    const d = Math.fround(amax / 127)
    const id = d !== 0 ? Math.fround(1 / d) : 0
    view.setUint16(b * 34, f32ToF16(d), true)
    for (let j = 0; j < QK; j++) view.setInt8(b * 34 + 2 + j, roundHalfAway(Math.fround(x[b * QK + j] * id)))
  }
  return out
}

/** ggml's quantize_row_q4_0_ref: d = (value of largest magnitude) / -8; nibble = min(15, trunc(x / d + 8.5)). */
export function quantizeQ4_0 (x: Float32Array): Uint8Array {
  if (x.length % QK !== 0) throw new ShapeError(`q4_0 needs a multiple of ${QK} values, got ${x.length}`)
  const out = new Uint8Array((x.length / QK) * 18)
  const view = new DataView(out.buffer)
  for (let b = 0; b < x.length / QK; b++) {
    let amax = 0
    let max = 0
    for (let j = 0; j < QK; j++) {
      const v = x[b * QK + j]
      if (amax < Math.abs(v)) { amax = Math.abs(v); max = v }
    }
    const d = Math.fround(max / -8)
    const id = d !== 0 ? Math.fround(1 / d) : 0
    view.setUint16(b * 18, f32ToF16(d), true)
    for (let j = 0; j < 16; j++) {
      const lo = Math.min(15, Math.trunc(Math.fround(Math.fround(x[b * QK + j] * id) + 8.5)))
      const hi = Math.min(15, Math.trunc(Math.fround(Math.fround(x[b * QK + 16 + j] * id) + 8.5)))
      out[b * 18 + 2 + j] = lo | (hi << 4)
    }
  }
  return out
}

function roundHalfAway (v: number): number {
  return Math.sign(v) * Math.round(Math.abs(v))
}

/** Encodes f32 values in any dtype a GGUF can hold. */
export function encodeTensorData (dtype: SourceDType, values: Float32Array): Uint8Array {
  if (dtype === 'q8_0') return quantizeQ8_0(values)
  if (dtype === 'q4_0') return quantizeQ4_0(values)
  return encodeFloats(dtype, values)
}

/** llama.cpp's general.file_type for a model stored mostly as `dtype`. */
const FILE_TYPE: Record<SourceDType, number> = { f32: 0, f16: 1, q4_0: 2, q8_0: 7, bf16: 32 }

/**
 * Metadata llama.cpp needs for a llama (or qwen2) model with an SPM vocabulary.
 * `arch` is the GGUF architecture the tensors are laid out for.
 */
export function llamaGgufMetadata (config: ModelConfig, vocab: SpmVocab, options: { arch: 'llama' | 'qwen2', dtype: SourceDType, name?: string, alignment?: number }): GgufKv[] {
  const { arch } = options
  if (vocab.pieces.length !== config.vocabSize) throw new ShapeError(`vocabulary has ${vocab.pieces.length} pieces, model has vocab_size ${config.vocabSize}`)
  const u32 = (key: string, value: number): GgufKv => ({ key, type: GgufType.UINT32, value })
  const f32 = (key: string, value: number): GgufKv => ({ key, type: GgufType.FLOAT32, value })
  return [
    { key: 'general.architecture', type: GgufType.STRING, value: arch },
    { key: 'general.name', type: GgufType.STRING, value: options.name ?? 'mycelium' },
    u32('general.alignment', options.alignment ?? GGUF_DEFAULT_ALIGNMENT),
    u32('general.file_type', FILE_TYPE[options.dtype]),
    u32(`${arch}.vocab_size`, config.vocabSize),
    u32(`${arch}.context_length`, config.seqLen),
    u32(`${arch}.embedding_length`, config.dim),
    u32(`${arch}.block_count`, config.nLayers),
    u32(`${arch}.feed_forward_length`, config.hiddenDim),
    u32(`${arch}.attention.head_count`, config.nHeads),
    u32(`${arch}.attention.head_count_kv`, config.nKvHeads),
    u32(`${arch}.rope.dimension_count`, config.headSize),
    f32(`${arch}.rope.freq_base`, config.ropeTheta),
    f32(`${arch}.attention.layer_norm_rms_epsilon`, config.normEps),
    ...spmVocabMetadata(vocab)
  ]
}

/** The tokenizer.ggml.* entries of an SPM ("llama") vocabulary. */
export function spmVocabMetadata (vocab: SpmVocab): GgufKv[] {
  const u32 = (key: string, value: number): GgufKv => ({ key, type: GgufType.UINT32, value })
  return [
    { key: 'tokenizer.ggml.model', type: GgufType.STRING, value: 'llama' },
    { key: 'tokenizer.ggml.tokens', type: GgufType.ARRAY, itemType: GgufType.STRING, value: vocab.pieces.map(ggufPiece) },
    { key: 'tokenizer.ggml.scores', type: GgufType.ARRAY, itemType: GgufType.FLOAT32, value: vocab.scores },
    { key: 'tokenizer.ggml.token_type', type: GgufType.ARRAY, itemType: GgufType.INT32, value: vocab.types },
    u32('tokenizer.ggml.bos_token_id', vocab.bosId),
    u32('tokenizer.ggml.eos_token_id', vocab.eosId),
    u32('tokenizer.ggml.unknown_token_id', vocab.unkId),
    { key: 'tokenizer.ggml.add_bos_token', type: GgufType.BOOL, value: true },
    { key: 'tokenizer.ggml.add_eos_token', type: GgufType.BOOL, value: false }
  ]
}

/** Writes a GGUF v3 file. Tensor names are GGUF names; shapes are [rows, cols] (stored as ne = [cols, rows]). */
export async function writeGguf (file: string, metadata: GgufKv[], tensors: WritableTensor[], options: { signal?: AbortSignal } = {}): Promise<void> {
  const alignKv = metadata.find((kv) => kv.key === 'general.alignment')
  const alignment = typeof alignKv?.value === 'number' ? alignKv.value : GGUF_DEFAULT_ALIGNMENT
  const head = new ByteSink()
  head.u32(GGUF_MAGIC)
  head.u32(GGUF_VERSION)
  head.u64(tensors.length)
  head.u64(metadata.length)
  for (const kv of metadata) {
    head.string(kv.key)
    head.u32(kv.type)
    writeValue(head, kv.type, kv.value, kv.itemType)
  }
  const offsets: number[] = []
  let offset = 0
  for (const t of tensors) {
    const [rows, cols] = rowsCols(t.shape)
    if ((t.dtype === 'q8_0' || t.dtype === 'q4_0') && cols % QK !== 0) throw new ShapeError(`${t.name}: ${t.dtype} needs columns in multiples of ${QK}, got ${cols}`)
    head.string(t.name)
    head.u32(t.shape.length)
    head.u64(cols)
    if (t.shape.length === 2) head.u64(rows)
    head.u32(GGML_TYPE_ID[t.dtype])
    head.u64(offset)
    offsets.push(offset)
    offset = align(offset + storedBytes(t.dtype, t.shape), alignment)
  }
  const header = head.bytes()
  const dataStart = align(header.length, alignment)
  await writeAtomically(file, async (fh) => {
    await writeAll(fh, header, 0)
    for (let i = 0; i < tensors.length; i++) {
      const t = tensors[i]
      const written = await streamTensor(fh, dataStart + offsets[i], t, (v) => encodeTensorData(t.dtype, v), options.signal)
      if (written !== storedBytes(t.dtype, t.shape)) throw new ShapeError(`${t.name}: wrote ${written} bytes, expected ${storedBytes(t.dtype, t.shape)}`)
    }
    // Pad the file to the alignment after the last tensor, as ggml's writer does.
    const lastEnd = tensors.length === 0 ? header.length : dataStart + offsets[tensors.length - 1] + storedBytes(tensors[tensors.length - 1].dtype, tensors[tensors.length - 1].shape)
    const end = dataStart + offset
    if (end > lastEnd) await writeAll(fh, new Uint8Array(end - lastEnd), lastEnd)
  })
}

function align (n: number, alignment: number): number {
  return Math.ceil(n / alignment) * alignment
}

function writeValue (sink: ByteSink, type: number, value: GgufKv['value'], itemType?: number): void {
  switch (type) {
    case GgufType.UINT8: sink.fixed(1, (v, o) => v.setUint8(o, value as number)); return
    case GgufType.INT8: sink.fixed(1, (v, o) => v.setInt8(o, value as number)); return
    case GgufType.UINT16: sink.fixed(2, (v, o) => v.setUint16(o, value as number, true)); return
    case GgufType.INT16: sink.fixed(2, (v, o) => v.setInt16(o, value as number, true)); return
    case GgufType.UINT32: sink.u32(value as number); return
    case GgufType.INT32: sink.fixed(4, (v, o) => v.setInt32(o, value as number, true)); return
    case GgufType.FLOAT32: sink.fixed(4, (v, o) => v.setFloat32(o, value as number, true)); return
    case GgufType.BOOL: sink.fixed(1, (v, o) => v.setUint8(o, value === true ? 1 : 0)); return
    case GgufType.STRING: sink.string(value as string); return
    case GgufType.UINT64: sink.fixed(8, (v, o) => v.setBigUint64(o, BigInt(value as number | bigint), true)); return
    case GgufType.INT64: sink.fixed(8, (v, o) => v.setBigInt64(o, BigInt(value as number | bigint), true)); return
    case GgufType.FLOAT64: sink.fixed(8, (v, o) => v.setFloat64(o, value as number, true)); return
    case GgufType.ARRAY: {
      if (itemType === undefined || itemType === GgufType.ARRAY) throw new ShapeError('GGUF arrays need a scalar itemType')
      const items = value as ArrayLike<string | number>
      sink.u32(itemType)
      sink.u64(items.length)
      for (let i = 0; i < items.length; i++) writeValue(sink, itemType, items[i])
      return
    }
    default: throw new ShapeError(`unknown GGUF value type ${type}`)
  }
}

/** A growable little-endian byte buffer for the header. */
class ByteSink {
  private buf = new Uint8Array(1 << 16)
  private view = new DataView(this.buf.buffer)
  private len = 0

  private reserve (n: number): number {
    if (this.len + n > this.buf.length) {
      const bigger = new Uint8Array(Math.max(this.buf.length * 2, this.len + n))
      bigger.set(this.buf.subarray(0, this.len))
      this.buf = bigger
      this.view = new DataView(bigger.buffer)
    }
    const at = this.len
    this.len += n
    return at
  }

  // reserve() may swap the buffer, so it runs before `this.view` / `this.buf` are read.
  fixed (n: number, set: (view: DataView, offset: number) => void): void { const at = this.reserve(n); set(this.view, at) }
  u32 (v: number): void { const at = this.reserve(4); this.view.setUint32(at, v, true) }
  u64 (v: number): void { const at = this.reserve(8); this.view.setBigUint64(at, BigInt(v), true) }
  string (s: string): void {
    const bytes = Buffer.from(s, 'utf8')
    this.u64(bytes.length)
    const at = this.reserve(bytes.length)
    this.buf.set(bytes, at)
  }

  bytes (): Uint8Array { return this.buf.subarray(0, this.len) }
}

/**
 * Writes a whole model as GGUF: architecture qwen2 for qwen2 configs (q/k rows kept in
 * rotate-half order, as llama.cpp's converter does), llama otherwise (adjacent-pair q/k).
 * Matrices are stored as `dtype` where they can be (see ggufDtypeFor), vectors as f32.
 */
export async function writeGgufModel (file: string, model: WritableModel, vocab: SpmVocab, options: { dtype?: SourceDType, name?: string, signal?: AbortSignal } = {}): Promise<void> {
  const dtype = options.dtype ?? 'f32'
  const arch = model.config.architecture === 'qwen2' ? 'qwen2' : 'llama'
  const metadata = llamaGgufMetadata(model.config, vocab, { arch, dtype, ...(options.name !== undefined ? { name: options.name } : {}) })
  const tensors = modelTensors(model, ggufTensorName, (shape) => ggufDtypeFor(dtype, shape), arch === 'qwen2')
  const scaling = model.config.ropeScaling
  if (scaling !== undefined) {
    // llama.cpp keeps Llama 3 RoPE scaling as rope_freqs: one f32 divisor per frequency.
    const factors = Float32Array.from(scaling.type === 'factors' ? scaling.factors : llama3RopeFactors(model.config.headSize, model.config.ropeTheta, scaling))
    tensors.push({ name: 'rope_freqs.weight', shape: [factors.length], dtype: 'f32', rows: () => factors })
  }
  await writeGguf(file, metadata, tensors, { signal: options.signal })
}
