// GGUF (llama.cpp) model files: header, metadata key/values and tensor infos, read through a
// small bounded cursor (only the header region is read; tensor data is left for ranged reads).
// We read the header ourselves rather than with @huggingface/gguf because that library pads a
// short read with zeros (a truncated file parses as zeros), reopens the file per 2 MB chunk and
// reports errors without the file name; here every count and length is bounded by the bytes the
// file actually has before anything is allocated.
// Layout (v2/v3, little-endian): "GGUF", u32 version, u64 tensor_count, u64 kv_count, kv pairs
// (string key, u32 type, value), tensor infos (string name, u32 n_dims, u64 ne[n_dims], u32 ggml
// type, u64 offset), padding to general.alignment (default 32), tensor data. ne[0] is the
// fastest-varying dimension (columns), so a matrix [rows, cols] is stored as ne = [cols, rows].
import { closeSync, fstatSync, openSync, readSync } from 'node:fs'
import { ModelFormatError } from '../errors.ts'
import type { ModelConfig, ModelSource, SourceDType, TensorRef } from '../index.ts'
import { checkModelTensors } from './hf.ts'

export const GGUF_MAGIC = 0x46554747 // "GGUF" read as a little-endian u32
export const GGUF_DEFAULT_ALIGNMENT = 32
const READ_CHUNK = 1 << 20
const MAX_DIMS = 4
const MAX_ARRAY_DEPTH = 4

/** Metadata value types (gguf_type). */
export const GgufType = {
  UINT8: 0, INT8: 1, UINT16: 2, INT16: 3, UINT32: 4, INT32: 5, FLOAT32: 6, BOOL: 7,
  STRING: 8, ARRAY: 9, UINT64: 10, INT64: 11, FLOAT64: 12
} as const

/** ggml tensor types we know the block size of (id → name, elements per block, bytes per block). */
const GGML_TYPES: Record<number, { name: string, block: number, bytes: number }> = {
  0: { name: 'F32', block: 1, bytes: 4 },
  1: { name: 'F16', block: 1, bytes: 2 },
  2: { name: 'Q4_0', block: 32, bytes: 18 },
  3: { name: 'Q4_1', block: 32, bytes: 20 },
  6: { name: 'Q5_0', block: 32, bytes: 22 },
  7: { name: 'Q5_1', block: 32, bytes: 24 },
  8: { name: 'Q8_0', block: 32, bytes: 34 },
  9: { name: 'Q8_1', block: 32, bytes: 36 },
  10: { name: 'Q2_K', block: 256, bytes: 84 },
  11: { name: 'Q3_K', block: 256, bytes: 110 },
  12: { name: 'Q4_K', block: 256, bytes: 144 },
  13: { name: 'Q5_K', block: 256, bytes: 176 },
  14: { name: 'Q6_K', block: 256, bytes: 210 },
  15: { name: 'Q8_K', block: 256, bytes: 292 },
  24: { name: 'I8', block: 1, bytes: 1 },
  25: { name: 'I16', block: 1, bytes: 2 },
  26: { name: 'I32', block: 1, bytes: 4 },
  27: { name: 'I64', block: 1, bytes: 8 },
  28: { name: 'F64', block: 1, bytes: 8 },
  30: { name: 'BF16', block: 1, bytes: 2 }
}

/** ggml type ids of the dtypes the engine loads. */
export const GGML_TYPE_ID: Record<SourceDType, number> = { f32: 0, f16: 1, q4_0: 2, q8_0: 8, bf16: 30 }
const LOADABLE: Record<number, SourceDType> = { 0: 'f32', 1: 'f16', 2: 'q4_0', 8: 'q8_0', 30: 'bf16' }

export type GgufArray = string[] | boolean[] | bigint[] | number[] | Float32Array | Int32Array | Uint32Array | GgufArray[]
export type GgufValue = number | bigint | boolean | string | GgufArray

export interface GgufTensorInfo {
  name: string
  ne: number[] // dims as stored: ne[0] = columns
  type: number // ggml type id
  offset: number // absolute byte offset in the file
  byteLength: number // -1 when the type's block size is unknown
}

export interface GgufFile {
  file: string
  version: number
  metadata: Map<string, GgufValue>
  tensors: Map<string, GgufTensorInfo>
  alignment: number
  dataStart: number
  fileSize: number
}

/** Bounded, buffered reads from a file descriptor; every read past EOF is a ModelFormatError. */
class Cursor {
  pos = 0
  private buf = Buffer.alloc(0)
  private bufStart = 0
  private readonly fd: number
  readonly file: string
  readonly size: number

  constructor (fd: number, file: string, size: number) {
    this.fd = fd
    this.file = file
    this.size = size
  }

  get remaining (): number { return this.size - this.pos }

  /** Makes bytes [pos, pos + n) available and returns their offset inside `buf`. */
  private need (n: number, what: string): number {
    if (n > this.size - this.pos) {
      throw new ModelFormatError(this.file, `truncated: ${what} at offset ${this.pos} needs ${n} bytes but the file has ${this.size - this.pos} left`)
    }
    if (this.pos < this.bufStart || this.pos + n > this.bufStart + this.buf.length) {
      const len = Math.min(Math.max(n, READ_CHUNK), this.size - this.pos)
      const buf = Buffer.alloc(len)
      const got = readSync(this.fd, buf, 0, len, this.pos)
      if (got !== len) throw new ModelFormatError(this.file, `short read at offset ${this.pos}: wanted ${len} bytes, got ${got}`)
      this.buf = buf
      this.bufStart = this.pos
    }
    const at = this.pos - this.bufStart
    this.pos += n
    return at
  }

  // need() may replace `buf`, so it runs before `this.buf` is read.
  u8 (what: string): number { const at = this.need(1, what); return this.buf[at] }
  u32 (what: string): number { const at = this.need(4, what); return this.buf.readUInt32LE(at) }
  i32 (what: string): number { const at = this.need(4, what); return this.buf.readInt32LE(at) }
  bytes (n: number, what: string): Buffer { const at = this.need(n, what); return this.buf.subarray(at, at + n) }

  /** A u64 that must fit a JS number (counts, lengths, offsets). */
  count (what: string): number {
    const at = this.need(8, what)
    const v = this.buf.readBigUInt64LE(at)
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new ModelFormatError(this.file, `${what} ${v} is impossibly large`)
    return Number(v)
  }

  string (what: string): string {
    const len = this.count(`${what} length`)
    if (len > this.remaining) throw new ModelFormatError(this.file, `truncated: ${what} length ${len} at offset ${this.pos} runs past the end of the file`)
    return this.bytes(len, what).toString('utf8')
  }
}

/** Reads and validates a GGUF file's header, metadata and tensor infos. */
export async function readGgufFile (file: string, options: { signal?: AbortSignal } = {}): Promise<GgufFile> {
  options.signal?.throwIfAborted()
  let fd: number
  try {
    fd = openSync(file, 'r')
  } catch (err) {
    throw new ModelFormatError(file, `cannot open: ${(err as Error).message}`)
  }
  try {
    return parseGguf(new Cursor(fd, file, fstatSync(fd).size))
  } finally {
    closeSync(fd)
  }
}

function parseGguf (c: Cursor): GgufFile {
  const { file } = c
  if (c.size < 4 || c.u32('magic') !== GGUF_MAGIC) throw new ModelFormatError(file, 'bad magic: not a GGUF file')
  const version = c.u32('version')
  if (version !== 2 && version !== 3) throw new ModelFormatError(file, `unsupported GGUF version ${version} (supported: 2, 3)`)
  const tensorCount = c.count('tensor_count')
  const kvCount = c.count('kv_count')
  // Each kv pair takes at least 12 bytes (8-byte key length + 4-byte type), each tensor info 24.
  if (kvCount * 12 > c.remaining) throw new ModelFormatError(file, `kv_count ${kvCount} cannot fit in the file`)
  if (tensorCount * 24 > c.remaining) throw new ModelFormatError(file, `tensor_count ${tensorCount} cannot fit in the file`)
  const metadata = new Map<string, GgufValue>()
  for (let i = 0; i < kvCount; i++) {
    const key = c.string(`metadata key ${i}`)
    if (metadata.has(key)) throw new ModelFormatError(file, `duplicate metadata key ${key}`)
    metadata.set(key, readValue(c, c.u32(`type of ${key}`), key, 0))
  }
  const alignment = metadata.get('general.alignment') ?? GGUF_DEFAULT_ALIGNMENT
  if (typeof alignment !== 'number' || !Number.isInteger(alignment) || alignment <= 0 || (alignment & (alignment - 1)) !== 0) {
    throw new ModelFormatError(file, `general.alignment ${String(alignment)} is not a power of two`)
  }
  const infos: Array<Omit<GgufTensorInfo, 'offset'> & { rel: number }> = []
  for (let i = 0; i < tensorCount; i++) {
    const name = c.string(`tensor ${i} name`)
    const nDims = c.u32(`tensor ${name} n_dims`)
    if (nDims < 1 || nDims > MAX_DIMS) throw new ModelFormatError(file, `tensor ${name}: n_dims ${nDims} outside 1..${MAX_DIMS}`)
    const ne: number[] = []
    for (let d = 0; d < nDims; d++) ne.push(c.count(`tensor ${name} ne[${d}]`))
    const type = c.u32(`tensor ${name} type`)
    const rel = c.count(`tensor ${name} offset`)
    if (rel % alignment !== 0) throw new ModelFormatError(file, `tensor ${name}: offset ${rel} is not a multiple of the alignment ${alignment}`)
    infos.push({ name, ne, type, rel, byteLength: tensorBytes(file, name, ne, type) })
  }
  const dataStart = Math.ceil(c.pos / alignment) * alignment
  const tensors = new Map<string, GgufTensorInfo>()
  for (const { rel, ...info } of infos) {
    if (tensors.has(info.name)) throw new ModelFormatError(file, `duplicate tensor ${info.name}`)
    const offset = dataStart + rel
    if (info.byteLength >= 0 && offset + info.byteLength > c.size) {
      throw new ModelFormatError(file, `tensor ${info.name}: data [${offset}, ${offset + info.byteLength}) runs past the end of the ${c.size}-byte file`)
    }
    tensors.set(info.name, { ...info, offset })
  }
  checkNoOverlap(file, [...tensors.values()])
  return { file, version, metadata, tensors, alignment, dataStart, fileSize: c.size }
}

function readValue (c: Cursor, type: number, key: string, depth: number): GgufValue {
  switch (type) {
    case GgufType.UINT8: return c.u8(key)
    case GgufType.INT8: return (c.u8(key) << 24) >> 24
    case GgufType.UINT16: { const b = c.bytes(2, key); return b.readUInt16LE(0) }
    case GgufType.INT16: { const b = c.bytes(2, key); return b.readInt16LE(0) }
    case GgufType.UINT32: return c.u32(key)
    case GgufType.INT32: return c.i32(key)
    case GgufType.FLOAT32: return shortestF32(c.bytes(4, key).readFloatLE(0))
    case GgufType.BOOL: return c.u8(key) !== 0
    case GgufType.STRING: return c.string(key)
    case GgufType.UINT64: return c.bytes(8, key).readBigUInt64LE(0)
    case GgufType.INT64: return c.bytes(8, key).readBigInt64LE(0)
    case GgufType.FLOAT64: return c.bytes(8, key).readDoubleLE(0)
    case GgufType.ARRAY: return readArray(c, key, depth)
    default: throw new ModelFormatError(c.file, `metadata ${key} has unknown value type ${type}`)
  }
}

/** The shortest decimal that rounds to the same f32 (1e-5, not 9.99999974e-6), as it was written. */
function shortestF32 (f: number): number {
  if (!Number.isFinite(f)) return f
  for (let digits = 1; digits < 17; digits++) {
    const v = Number(f.toPrecision(digits))
    if (Math.fround(v) === f) return v
  }
  return f
}

const ELEMENT_MIN_BYTES: Record<number, number> = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 8: 8, 9: 12, 10: 8, 11: 8, 12: 8 }

function readArray (c: Cursor, key: string, depth: number): GgufArray {
  if (depth >= MAX_ARRAY_DEPTH) throw new ModelFormatError(c.file, `metadata ${key}: arrays nested deeper than ${MAX_ARRAY_DEPTH}`)
  const type = c.u32(`${key} element type`)
  const n = c.count(`${key} length`)
  const min = ELEMENT_MIN_BYTES[type]
  if (min === undefined) throw new ModelFormatError(c.file, `metadata ${key}: unknown array element type ${type}`)
  if (n * min > c.remaining) throw new ModelFormatError(c.file, `truncated: metadata ${key} declares ${n} elements, more than the file can hold`)
  // Fixed-size numeric arrays are read in one go into typed arrays (vocab scores, token types).
  if (type === GgufType.FLOAT32 || type === GgufType.INT32 || type === GgufType.UINT32) {
    const bytes = Buffer.from(c.bytes(n * 4, key)) // copy: aligned, owned
    const ab = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength)
    return type === GgufType.FLOAT32 ? new Float32Array(ab) : type === GgufType.INT32 ? new Int32Array(ab) : new Uint32Array(ab)
  }
  const out: GgufValue[] = []
  for (let i = 0; i < n; i++) out.push(readValue(c, type, key, depth + 1))
  return out as GgufArray
}

function tensorBytes (file: string, name: string, ne: number[], type: number): number {
  const t = GGML_TYPES[type]
  if (t === undefined) return -1
  if (ne[0] % t.block !== 0) throw new ModelFormatError(file, `tensor ${name}: ne[0] = ${ne[0]} is not a multiple of the ${t.name} block size ${t.block}`)
  const elements = ne.reduce((a, b) => a * b, 1)
  const bytes = (elements / t.block) * t.bytes
  if (!Number.isSafeInteger(bytes)) throw new ModelFormatError(file, `tensor ${name}: size overflows`)
  return bytes
}

function checkNoOverlap (file: string, tensors: GgufTensorInfo[]): void {
  const sorted = tensors.filter((t) => t.byteLength > 0).sort((a, b) => a.offset - b.offset)
  for (let i = 1; i < sorted.length; i++) {
    const prev = sorted[i - 1]
    if (sorted[i].offset < prev.offset + prev.byteLength) {
      throw new ModelFormatError(file, `tensor ${sorted[i].name} overlaps tensor ${prev.name}`)
    }
  }
}

/** ggml type name for messages. */
export function ggmlTypeName (type: number): string {
  return GGML_TYPES[type]?.name ?? `#${type}`
}

// ---- GGUF → ModelSource ----

const LAYER_TENSORS: Record<string, string> = {
  attn_norm: 'attention_norm', attn_q: 'wq', attn_k: 'wk', attn_v: 'wv', attn_output: 'wo',
  ffn_norm: 'ffn_norm', ffn_gate: 'w1', ffn_down: 'w2', ffn_up: 'w3'
}
const BIASES: Record<string, string> = { attn_q: 'bq', attn_k: 'bk', attn_v: 'bv' }

/** GGUF tensor name → canonical name, or undefined for tensors the engine does not use. */
export function ggufCanonicalName (name: string): string | undefined {
  if (name === 'token_embd.weight') return 'tok_embeddings'
  if (name === 'output_norm.weight') return 'norm'
  if (name === 'output.weight') return 'output'
  const m = /^blk\.(\d+)\.([a-z_]+)\.(weight|bias)$/.exec(name)
  if (m === null) return undefined
  const canon = m[3] === 'weight' ? LAYER_TENSORS[m[2]] : BIASES[m[2]]
  return canon === undefined ? undefined : `layers.${Number(m[1])}.${canon}`
}

/** Canonical name → GGUF tensor name (the inverse of ggufCanonicalName). */
export function ggufTensorName (canonical: string): string {
  if (canonical === 'tok_embeddings') return 'token_embd.weight'
  if (canonical === 'norm') return 'output_norm.weight'
  if (canonical === 'output') return 'output.weight'
  const m = /^layers\.(\d+)\.(\w+)$/.exec(canonical)
  if (m !== null) {
    for (const [g, c] of Object.entries(LAYER_TENSORS)) if (c === m[2]) return `blk.${m[1]}.${g}.weight`
    for (const [g, c] of Object.entries(BIASES)) if (c === m[2]) return `blk.${m[1]}.${g}.bias`
  }
  throw new ModelFormatError(canonical, 'no GGUF name for this canonical tensor')
}

/** Opens a GGUF model (general.architecture llama or qwen2) without reading tensor data. */
export async function openGguf (file: string, options: { signal?: AbortSignal } = {}): Promise<ModelSource> {
  const g = await readGgufFile(file, options)
  const config = ggufConfig(g)
  const factors = readRopeFactors(g, config.headSize)
  if (factors !== undefined) config.ropeScaling = { type: 'factors', factors }
  const tensors = new Map<string, TensorRef>()
  // qwen2 GGUFs keep Hugging Face's rotate-half q/k rows (llama.cpp runs them with NEOX RoPE);
  // llama-arch GGUFs were permuted to adjacent pairs by the converter.
  const permute = config.architecture === 'qwen2'
  for (const info of g.tensors.values()) {
    const name = ggufCanonicalName(info.name)
    if (name === undefined) continue
    const dtype = LOADABLE[info.type]
    if (dtype === undefined) {
      throw new ModelFormatError(file, `tensor ${info.name} has ggml type ${ggmlTypeName(info.type)}; supported: F32, F16, BF16, Q8_0, Q4_0`)
    }
    const ref: TensorRef = { name, file, offset: info.offset, byteLength: info.byteLength, dtype, shape: canonicalShape(info.ne) }
    if (permute) {
      if (/\.(wq|bq)$/.test(name)) ref.permuteHeads = config.nHeads
      if (/\.(wk|bk)$/.test(name)) ref.permuteHeads = config.nKvHeads
    }
    tensors.set(name, ref)
  }
  checkModelTensors(file, config, tensors, ggufTensorName)
  const source: ModelSource = { path: file, format: 'gguf', config, tensors }
  if (g.metadata.has('tokenizer.ggml.model')) source.tokenizer = { kind: 'gguf', path: file }
  return source
}

/** Llama 3 RoPE scaling as llama.cpp stores it: `rope_freqs.weight`, one f32 divisor per pair. */
function readRopeFactors (g: GgufFile, headSize: number): number[] | undefined {
  const info = g.tensors.get('rope_freqs.weight')
  if (info === undefined) return undefined
  const n = headSize / 2
  if (info.type !== 0 || info.ne.reduce((a, b) => a * b, 1) !== n) {
    throw new ModelFormatError(g.file, `rope_freqs.weight must be ${n} f32 values (one per RoPE pair)`)
  }
  const fd = openSync(g.file, 'r')
  try {
    const buf = Buffer.alloc(n * 4)
    const bytesRead = readSync(fd, buf, 0, buf.length, info.offset)
    if (bytesRead !== buf.length) throw new ModelFormatError(g.file, 'truncated: rope_freqs.weight ends past the end of the file')
    const factors = Array.from({ length: n }, (_, j) => buf.readFloatLE(j * 4))
    if (!factors.every((f) => Number.isFinite(f) && f > 0)) throw new ModelFormatError(g.file, 'rope_freqs.weight holds a value that is not a positive number')
    return factors
  } finally {
    closeSync(fd)
  }
}

/** ne (columns first) → [rows, cols] or [n]; extra leading 1s of higher dims are dropped. */
function canonicalShape (ne: number[]): number[] {
  const shape = [...ne].reverse()
  while (shape.length > 2 && shape[0] === 1) shape.shift()
  return shape
}

function ggufConfig (g: GgufFile): ModelConfig {
  const { file, metadata } = g
  const arch = getString(g, 'general.architecture')
  if (arch !== 'llama' && arch !== 'qwen2') throw new ModelFormatError(file, `general.architecture '${arch}' is not supported (supported: llama, qwen2)`)
  const int = (key: string, fallback?: number): number => getInt(g, `${arch}.${key}`, fallback)
  const dim = int('embedding_length')
  const nHeads = int('attention.head_count')
  const nKvHeads = int('attention.head_count_kv', nHeads)
  if (dim % nHeads !== 0) throw new ModelFormatError(file, `embedding_length ${dim} is not a multiple of head_count ${nHeads}`)
  if (nHeads % nKvHeads !== 0) throw new ModelFormatError(file, `head_count ${nHeads} is not a multiple of head_count_kv ${nKvHeads}`)
  const headSize = dim / nHeads
  for (const key of ['rope.dimension_count', 'attention.key_length', 'attention.value_length']) {
    const v = int(key, headSize)
    if (v !== headSize) throw new ModelFormatError(file, `${arch}.${key} ${v} differs from the head size ${headSize} (partial RoPE / odd head sizes are not supported)`)
  }
  const scaling = metadata.get(`${arch}.rope.scaling.type`)
  if (scaling !== undefined && scaling !== 'none') throw new ModelFormatError(file, `RoPE scaling '${String(scaling)}' is not supported`)
  const embd = g.tensors.get('token_embd.weight')
  if (embd === undefined) throw new ModelFormatError(file, 'missing tensor token_embd.weight')
  const tokens = metadata.get('tokenizer.ggml.tokens')
  const vocabSize = int('vocab_size', Array.isArray(tokens) ? tokens.length : embd.ne[1])
  const spm = metadata.get('tokenizer.ggml.model') === 'llama'
  return {
    architecture: arch,
    dim,
    hiddenDim: int('feed_forward_length'),
    nLayers: int('block_count'),
    nHeads,
    nKvHeads,
    headSize,
    vocabSize,
    seqLen: int('context_length'),
    ropeTheta: getNumber(g, `${arch}.rope.freq_base`, 10000),
    normEps: getNumber(g, `${arch}.attention.layer_norm_rms_epsilon`, 1e-5),
    tiedEmbeddings: !g.tensors.has('output.weight'),
    qkvBias: arch === 'qwen2' || g.tensors.has('blk.0.attn_q.bias'),
    bosId: getInt(g, 'tokenizer.ggml.bos_token_id', spm ? 1 : -1),
    eosId: getInt(g, 'tokenizer.ggml.eos_token_id', spm ? 2 : -1)
  }
}

function getString (g: GgufFile, key: string): string {
  const v = g.metadata.get(key)
  if (typeof v !== 'string') throw new ModelFormatError(g.file, v === undefined ? `missing metadata ${key}` : `metadata ${key} is not a string`)
  return v
}

function getNumber (g: GgufFile, key: string, fallback?: number): number {
  const v = g.metadata.get(key)
  if (v === undefined && fallback !== undefined) return fallback
  if (typeof v === 'bigint' && v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= -BigInt(Number.MAX_SAFE_INTEGER)) return Number(v)
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new ModelFormatError(g.file, v === undefined ? `missing metadata ${key}` : `metadata ${key} is not a number`)
  return v
}

/** A non-negative integer metadata value (or -1 for token ids written as -1). */
export function getInt (g: GgufFile, key: string, fallback?: number): number {
  const v = getNumber(g, key, fallback)
  if (!Number.isInteger(v) || v < -1) throw new ModelFormatError(g.file, `metadata ${key} = ${v} is not a non-negative integer`)
  return v
}
