// Writes llama2.c "legacy" v0 checkpoints (float32, little-endian), the layout run.c reads:
// 7 int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len; vocab_size is
// negative when the classifier is not shared with the token embedding), then token_embedding,
// rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3 (each [L, ...]), rms_final, freq_cis_real and
// freq_cis_imag (seq_len × head_size/2 each; run.c skips them) and, unshared, wcls.
// The format fixes rope_theta 10000, RMSNorm eps 1e-5 and no biases; other configs are refused.
import { ModelFormatError } from '../errors.ts'
import type { ModelConfig } from '../index.ts'
import type { SpmVocab } from '../tokenizer-gguf.ts'
import { encodeFloats, streamTensor, writeAll, writeAtomically } from './safetensors-writer.ts'
import type { WritableModel, WritableTensor } from './safetensors-writer.ts'

const LLAMA2C_THETA = 10000
const LLAMA2C_EPS = 1e-5

/** Why `config` cannot be written as llama2.c v0, or undefined when it can. */
export function llama2cUnsupported (config: ModelConfig): string | undefined {
  if (config.qkvBias) return 'llama2.c has no q/k/v biases'
  if (config.ropeScaling !== undefined) return 'llama2.c has no RoPE scaling'
  if (config.ropeTheta !== LLAMA2C_THETA) return `llama2.c fixes rope_theta at ${LLAMA2C_THETA}, model has ${config.ropeTheta}`
  if (Math.fround(config.normEps) !== Math.fround(LLAMA2C_EPS)) return `llama2.c fixes the RMSNorm eps at ${LLAMA2C_EPS}, model has ${config.normEps}`
  if (config.dim !== config.nHeads * config.headSize) return 'llama2.c needs head_size = dim / n_heads'
  return undefined
}

/** Writes `model` as a llama2.c v0 float32 checkpoint. */
export async function writeLlama2c (file: string, model: WritableModel, options: { signal?: AbortSignal } = {}): Promise<void> {
  const c = model.config
  const why = llama2cUnsupported(c)
  if (why !== undefined) throw new ModelFormatError(file, `cannot write this model as llama2.c: ${why}`)
  const kvDim = c.nKvHeads * c.headSize
  const header = Buffer.alloc(28)
  const fields = [c.dim, c.hiddenDim, c.nLayers, c.nHeads, c.nKvHeads, c.tiedEmbeddings ? c.vocabSize : -c.vocabSize, c.seqLen]
  fields.forEach((v, i) => header.writeInt32LE(v, 4 * i))

  const tensor = (name: string, shape: number[]): WritableTensor => ({ name, shape, dtype: 'f32', rows: (s, n) => model.rows(name, s, n) })
  const perLayer = (suffix: string, shape: number[]): WritableTensor[] =>
    Array.from({ length: c.nLayers }, (_, l) => tensor(`layers.${l}.${suffix}`, shape))
  const tensors: WritableTensor[] = [
    tensor('tok_embeddings', [c.vocabSize, c.dim]),
    ...perLayer('attention_norm', [c.dim]),
    ...perLayer('wq', [c.dim, c.dim]),
    ...perLayer('wk', [kvDim, c.dim]),
    ...perLayer('wv', [kvDim, c.dim]),
    ...perLayer('wo', [c.dim, c.dim]),
    ...perLayer('ffn_norm', [c.dim]),
    ...perLayer('w1', [c.hiddenDim, c.dim]),
    ...perLayer('w2', [c.dim, c.hiddenDim]),
    ...perLayer('w3', [c.hiddenDim, c.dim]),
    tensor('norm', [c.dim]),
    freqCis(c, 'cos'),
    freqCis(c, 'sin')
  ]
  if (!c.tiedEmbeddings) tensors.push(tensor('output', [c.vocabSize, c.dim]))
  await writeAtomically(file, async (fh) => {
    await writeAll(fh, header, 0)
    let position = header.length
    for (const t of tensors) position += await streamTensor(fh, position, t, (v) => encodeFloats('f32', v), options.signal)
  })
}

/** freq_cis_real / _imag as llama2.c's export wrote them: cos / sin(pos × 10000^(-2i/head_size)). */
function freqCis (c: ModelConfig, fn: 'cos' | 'sin'): WritableTensor {
  const half = c.headSize / 2
  return {
    name: `freq_cis_${fn}`,
    shape: [c.seqLen, half],
    dtype: 'f32',
    rows: (start, count) => {
      const out = new Float32Array(count * half)
      for (let p = 0; p < count; p++) {
        for (let i = 0; i < half; i++) {
          const angle = (start + p) / Math.pow(LLAMA2C_THETA, (2 * i) / c.headSize)
          out[p * half + i] = fn === 'cos' ? Math.cos(angle) : Math.sin(angle)
        }
      }
      return out
    }
  }
}

/**
 * Writes a llama2.c tokenizer.bin for an SPM vocabulary: int32 max_token_length, then per piece
 * f32 score, int32 byte length and UTF-8 bytes; BOS and EOS are written "\n<s>\n" / "\n</s>\n"
 * as llama2.c's export does.
 */
export async function writeLlama2cTokenizer (file: string, vocab: SpmVocab): Promise<void> {
  const pieces = vocab.pieces.map((p, i) => Buffer.from(i === vocab.bosId || i === vocab.eosId ? `\n${p}\n` : p, 'utf8'))
  const maxLen = pieces.reduce((m, p) => Math.max(m, p.length), 1)
  const out = Buffer.alloc(4 + pieces.reduce((n, p) => n + 8 + p.length, 0))
  out.writeInt32LE(maxLen, 0)
  let at = 4
  pieces.forEach((p, i) => {
    out.writeFloatLE(vocab.scores[i], at)
    out.writeInt32LE(p.length, at + 4)
    p.copy(out, at + 8)
    at += 8 + p.length
  })
  await writeAtomically(file, async (fh) => { await writeAll(fh, out, 0) })
}
