// Writes .safetensors files, and the streaming machinery every writer shares: a tensor is
// described by its shape, stored dtype and a function that yields f32 rows on demand, and it is
// encoded and written a few MiB at a time, so a multi-GB model never sits in memory.
// Files are written to `<file>.partial` and renamed into place when complete.
import { mkdir, open, rename, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { FileHandle } from 'node:fs/promises'
import { ShapeError } from '../errors.ts'
import type { ModelConfig, SourceDType } from '../index.ts'
import { f32ToF16 } from '../quantize.ts'
import { expectedShapes, hfTensorName } from './hf.ts'

/** Rows are pulled in chunks of about this many f32 values (4 MiB). */
const CHUNK_VALUES = 1 << 20

/** A tensor to write: `rows(start, count)` returns rows [start, start + count) as f32. */
export interface WritableTensor {
  name: string // name inside the written file
  shape: number[] // [rows, cols] (= [out, in]) or [n]
  dtype: SourceDType // how it is stored
  rows: (start: number, count: number) => Float32Array | Promise<Float32Array>
}

/**
 * A model to write: its config and the f32 rows of each canonical tensor, in the engine's order
 * (q/k rows for adjacent-pair RoPE). Writers permute for their format where it needs it.
 */
export interface WritableModel {
  config: ModelConfig
  rows: (name: string, start: number, count: number) => Float32Array | Promise<Float32Array>
}

/** [rows, cols] of a shape; a vector is one row. */
export function rowsCols (shape: number[]): [number, number] {
  if (shape.length === 1) return [1, shape[0]]
  if (shape.length === 2) return [shape[0], shape[1]]
  throw new ShapeError(`writers handle 1-D and 2-D tensors, got [${shape.join(', ')}]`)
}

/** Encodes f32 values as f32, f16 or bf16 little-endian bytes. */
export function encodeFloats (dtype: 'f32' | 'f16' | 'bf16', values: Float32Array): Uint8Array {
  if (dtype === 'f32') return new Uint8Array(values.buffer, values.byteOffset, values.byteLength)
  const out = new Uint16Array(values.length)
  if (dtype === 'f16') {
    for (let i = 0; i < values.length; i++) out[i] = f32ToF16(values[i])
  } else {
    const bits = new Uint32Array(values.buffer, values.byteOffset, values.length)
    for (let i = 0; i < values.length; i++) out[i] = f32ToBf16Bits(bits[i])
  }
  return new Uint8Array(out.buffer)
}

/** bf16 from f32 bits, rounding to nearest even; NaN stays a (quiet) NaN. */
function f32ToBf16Bits (u: number): number {
  if ((u & 0x7fffffff) > 0x7f800000) return ((u >>> 16) | 0x0040) & 0xffff
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff
}

/**
 * Streams one tensor to `fh` at `position`: pulls rows in chunks, encodes each chunk with
 * `encode` and writes it. Returns the number of bytes written.
 */
export async function streamTensor (
  fh: FileHandle,
  position: number,
  t: WritableTensor,
  encode: (values: Float32Array, cols: number) => Uint8Array,
  signal?: AbortSignal
): Promise<number> {
  const [rows, cols] = rowsCols(t.shape)
  const step = Math.max(1, Math.floor(CHUNK_VALUES / cols))
  let written = 0
  for (let r = 0; r < rows; r += step) {
    signal?.throwIfAborted()
    const count = Math.min(step, rows - r)
    const values = await t.rows(r, count)
    if (values.length !== count * cols) {
      throw new ShapeError(`${t.name}: rows(${r}, ${count}) returned ${values.length} values, expected ${count * cols}`)
    }
    const bytes = encode(values, cols)
    await writeAll(fh, bytes, position + written)
    written += bytes.length
  }
  return written
}

export async function writeAll (fh: FileHandle, bytes: Uint8Array, position: number): Promise<void> {
  let done = 0
  while (done < bytes.length) {
    const { bytesWritten } = await fh.write(bytes, done, bytes.length - done, position + done)
    done += bytesWritten
  }
}

/** Opens `<file>.partial`, runs `body`, and renames it to `file` on success (removes it on failure). */
export async function writeAtomically (file: string, body: (fh: FileHandle) => Promise<void>): Promise<void> {
  const partial = `${file}.partial`
  const fh = await open(partial, 'w')
  try {
    await body(fh)
    await fh.close()
  } catch (err) {
    await fh.close()
    await rm(partial, { force: true })
    throw err
  }
  await rename(partial, file)
}

const ST_DTYPE: Partial<Record<SourceDType, string>> = { f32: 'F32', f16: 'F16', bf16: 'BF16' }
const ST_BYTES: Partial<Record<SourceDType, number>> = { f32: 4, f16: 2, bf16: 2 }

/** Writes a .safetensors file (F32/F16/BF16) with an optional `__metadata__` of strings. */
export async function writeSafetensors (
  file: string,
  tensors: WritableTensor[],
  options: { metadata?: Record<string, string>, signal?: AbortSignal } = {}
): Promise<void> {
  const header: Record<string, unknown> = {}
  if (options.metadata !== undefined) header.__metadata__ = options.metadata
  let offset = 0
  for (const t of tensors) {
    const dtype = ST_DTYPE[t.dtype]
    if (dtype === undefined) throw new ShapeError(`${t.name}: safetensors cannot store ${t.dtype}`)
    const [rows, cols] = rowsCols(t.shape)
    const bytes = rows * cols * (ST_BYTES[t.dtype] as number)
    header[t.name] = { dtype, shape: t.shape, data_offsets: [offset, offset + bytes] }
    offset += bytes
  }
  // Pad the JSON with spaces so the data section starts 8-byte aligned, as the reference writer does.
  let json = JSON.stringify(header)
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8)
  const jsonBytes = Buffer.from(json, 'utf8')
  const head = Buffer.alloc(8 + jsonBytes.length)
  head.writeBigUInt64LE(BigInt(jsonBytes.length), 0)
  jsonBytes.copy(head, 8)
  await writeAtomically(file, async (fh) => {
    await writeAll(fh, head, 0)
    let position = head.length
    for (const t of tensors) {
      const dtype = t.dtype as 'f32' | 'f16' | 'bf16'
      position += await streamTensor(fh, position, t, (v) => encodeFloats(dtype, v), options.signal)
    }
  })
}

/** Hugging Face's config.json for a config (architectures / model_type from config.architecture). */
export function hfConfigJson (config: ModelConfig, dtype: SourceDType): Record<string, unknown> {
  const cls = { llama: 'LlamaForCausalLM', mistral: 'MistralForCausalLM', qwen2: 'Qwen2ForCausalLM' }[config.architecture]
  if (config.ropeScaling?.type === 'factors') throw new ShapeError('per-frequency RoPE factors (a GGUF rope_freqs tensor) have no config.json form')
  return {
    architectures: [cls],
    model_type: config.architecture,
    hidden_size: config.dim,
    intermediate_size: config.hiddenDim,
    num_hidden_layers: config.nLayers,
    num_attention_heads: config.nHeads,
    num_key_value_heads: config.nKvHeads,
    head_dim: config.headSize,
    vocab_size: config.vocabSize,
    max_position_embeddings: config.seqLen,
    rope_theta: config.ropeTheta,
    rms_norm_eps: config.normEps,
    tie_word_embeddings: config.tiedEmbeddings,
    hidden_act: 'silu',
    bos_token_id: config.bosId,
    eos_token_id: config.eosId,
    torch_dtype: { f32: 'float32', f16: 'float16', bf16: 'bfloat16', q8_0: 'float32', q4_0: 'float32' }[dtype],
    ...(config.architecture === 'mistral' ? { sliding_window: null } : {}),
    ...(config.architecture === 'qwen2' ? { use_sliding_window: false } : {}),
    ...(config.ropeScaling?.type === 'llama3'
      ? {
          rope_scaling: {
            rope_type: config.ropeScaling.type,
            factor: config.ropeScaling.factor,
            low_freq_factor: config.ropeScaling.lowFreqFactor,
            high_freq_factor: config.ropeScaling.highFreqFactor,
            original_max_position_embeddings: config.ropeScaling.originalMaxPositions
          }
        }
      : {})
  }
}

/**
 * The canonical tensors of `model` as WritableTensors under `fileName` names; q/k rows (and
 * biases) are permuted to rotate-half order when `permuteQk` (Hugging Face's `permute`).
 */
export function modelTensors (model: WritableModel, fileName: (canonical: string) => string, dtypeFor: (shape: number[]) => SourceDType, permuteQk: boolean): WritableTensor[] {
  const { config } = model
  const out: WritableTensor[] = []
  for (const [name, shape] of expectedShapes(config)) {
    let rows = (start: number, count: number): Float32Array | Promise<Float32Array> => model.rows(name, start, count)
    const heads = /\.(wq|bq)$/.test(name) ? config.nHeads : /\.(wk|bk)$/.test(name) ? config.nKvHeads : 0
    if (permuteQk && heads > 0) rows = permutedRows(model, name, shape, config.headSize)
    out.push({ name: fileName(name), shape, dtype: dtypeFor(shape), rows })
  }
  return out
}

/**
 * Rows in rotate-half order (what HF's permute(w, n_heads) produces) from adjacent-pair rows:
 * inside each head of `hd` rows, file row c·hd/2 + j is engine row 2j + c. A vector (bias) is
 * permuted element-wise the same way.
 */
function permutedRows (model: WritableModel, name: string, shape: number[], hd: number): WritableTensor['rows'] {
  const half = hd / 2
  const src = (f: number): number => {
    const h = Math.floor(f / hd)
    const i = f - h * hd
    return h * hd + 2 * (i % half) + Math.floor(i / half)
  }
  if (shape.length === 1) {
    return async () => { // a vector is one row: rows(0, 1)
      const v = await model.rows(name, 0, 1)
      return Float32Array.from({ length: v.length }, (_, f) => v[src(f)])
    }
  }
  const cols = shape[1]
  return async (start, count) => {
    const firstHead = Math.floor(start / hd)
    const lastHead = Math.floor((start + count - 1) / hd)
    const block = await model.rows(name, firstHead * hd, (lastHead - firstHead + 1) * hd)
    const out = new Float32Array(count * cols)
    for (let r = 0; r < count; r++) {
      const from = src(start + r) - firstHead * hd
      out.set(block.subarray(from * cols, (from + 1) * cols), r * cols)
    }
    return out
  }
}

/**
 * Writes a Hugging Face model directory: config.json, model.safetensors (q/k permuted for
 * rotate-half RoPE) and, when given, tokenizer.json / tokenizer_config.json.
 */
export async function writeHfModel (
  dir: string,
  model: WritableModel,
  options: { dtype?: 'f32' | 'f16' | 'bf16', tokenizerJson?: unknown, tokenizerConfig?: unknown, signal?: AbortSignal } = {}
): Promise<void> {
  const dtype = options.dtype ?? 'f32'
  await mkdir(dir, { recursive: true })
  const tensors = modelTensors(model, hfTensorName, (shape) => shape.length === 1 ? 'f32' : dtype, true)
  await writeSafetensors(join(dir, 'model.safetensors'), tensors, { metadata: { format: 'pt' }, signal: options.signal })
  await writeFile(join(dir, 'config.json'), JSON.stringify(hfConfigJson(model.config, dtype), null, 2) + '\n')
  if (options.tokenizerJson !== undefined) await writeFile(join(dir, 'tokenizer.json'), JSON.stringify(options.tokenizerJson))
  if (options.tokenizerConfig !== undefined) await writeFile(join(dir, 'tokenizer_config.json'), JSON.stringify(options.tokenizerConfig, null, 2) + '\n')
}
