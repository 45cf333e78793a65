// Hugging Face model directories: config.json (model_type llama, mistral or qwen2) plus
// model.safetensors or sharded model-0000x-of-0000y.safetensors with model.safetensors.index.json,
// and tokenizer.json when present. HF stores q/k projection rows permuted for rotate-half RoPE;
// the engine uses adjacent pairs, so those refs carry `permuteHeads` and the reader undoes it.
// Also holds the format-independent check that a model has every tensor its config needs, with
// the right shape (GGUF uses it too).
import { access } from 'node:fs/promises'
import { join } from 'node:path'
import { ModelFormatError } from '../errors.ts'
import type { ModelConfig, ModelSource, RopeScaling, TensorRef } from '../index.ts'
import { openSafetensorsDir, readOptional, safetensorsRef } from './safetensors.ts'

const ARCHITECTURES = ['llama', 'mistral', 'qwen2'] as const

const LAYER_TENSORS: Record<string, string> = {
  'self_attn.q_proj.weight': 'wq',
  'self_attn.k_proj.weight': 'wk',
  'self_attn.v_proj.weight': 'wv',
  'self_attn.o_proj.weight': 'wo',
  'self_attn.q_proj.bias': 'bq',
  'self_attn.k_proj.bias': 'bk',
  'self_attn.v_proj.bias': 'bv',
  'mlp.gate_proj.weight': 'w1',
  'mlp.down_proj.weight': 'w2',
  'mlp.up_proj.weight': 'w3',
  'input_layernorm.weight': 'attention_norm',
  'post_attention_layernorm.weight': 'ffn_norm'
}

/** Canonical name → Hugging Face tensor name. */
export function hfTensorName (canonical: string): string {
  if (canonical === 'tok_embeddings') return 'model.embed_tokens.weight'
  if (canonical === 'norm') return 'model.norm.weight'
  if (canonical === 'output') return 'lm_head.weight'
  const m = /^layers\.(\d+)\.(\w+)$/.exec(canonical)
  if (m !== null) {
    for (const [hf, c] of Object.entries(LAYER_TENSORS)) if (c === m[2]) return `model.layers.${m[1]}.${hf}`
  }
  throw new ModelFormatError(canonical, 'no Hugging Face name for this canonical tensor')
}

/** The shape every tensor a config needs must have: canonical name → [rows, cols] or [n]. */
export function expectedShapes (config: ModelConfig): Map<string, number[]> {
  const { dim, hiddenDim, nLayers, nHeads, nKvHeads, headSize, vocabSize } = config
  const qDim = nHeads * headSize
  const kvDim = nKvHeads * headSize
  const shapes = new Map<string, number[]>([['tok_embeddings', [vocabSize, dim]], ['norm', [dim]]])
  if (!config.tiedEmbeddings) shapes.set('output', [vocabSize, dim])
  for (let l = 0; l < nLayers; l++) {
    const p = `layers.${l}.`
    shapes.set(`${p}attention_norm`, [dim])
    shapes.set(`${p}wq`, [qDim, dim])
    shapes.set(`${p}wk`, [kvDim, dim])
    shapes.set(`${p}wv`, [kvDim, dim])
    shapes.set(`${p}wo`, [dim, qDim])
    if (config.qkvBias) {
      shapes.set(`${p}bq`, [qDim])
      shapes.set(`${p}bk`, [kvDim])
      shapes.set(`${p}bv`, [kvDim])
    }
    shapes.set(`${p}ffn_norm`, [dim])
    shapes.set(`${p}w1`, [hiddenDim, dim])
    shapes.set(`${p}w2`, [dim, hiddenDim])
    shapes.set(`${p}w3`, [hiddenDim, dim])
  }
  return shapes
}

/**
 * Every tensor the config needs is present with its expected shape; tensors the config does not
 * need (an lm_head beside tied embeddings, layers past n_layers) are dropped from `tensors`.
 * `fileName` gives the name a tensor has in the file, for messages.
 */
export function checkModelTensors (file: string, config: ModelConfig, tensors: Map<string, TensorRef>, fileName: (canonical: string) => string): void {
  const shapes = expectedShapes(config)
  for (const [name, shape] of shapes) {
    const ref = tensors.get(name)
    if (ref === undefined) throw new ModelFormatError(file, `missing tensor ${fileName(name)}`)
    if (ref.shape.length !== shape.length || ref.shape.some((d, i) => d !== shape[i])) {
      throw new ModelFormatError(ref.file, `tensor ${fileName(name)} has shape [${ref.shape.join(', ')}], config needs [${shape.join(', ')}]`)
    }
  }
  for (const name of [...tensors.keys()]) if (!shapes.has(name)) tensors.delete(name)
}

/** Opens a Hugging Face model directory (config.json + safetensors) without reading tensor data. */
export async function openHfModel (dir: string, options: { signal?: AbortSignal } = {}): Promise<ModelSource> {
  const configFile = join(dir, 'config.json')
  const text = await readOptional(configFile)
  if (text === undefined) throw new ModelFormatError(configFile, 'not found: a Hugging Face model directory needs config.json')
  const config = parseHfConfig(configFile, text, await readOptional(join(dir, 'tokenizer_config.json')), await readOptional(join(dir, 'tokenizer.json')))
  const set = await openSafetensorsDir(dir, options)
  const tensors = new Map<string, TensorRef>()
  for (const [hfName, header] of set.files) {
    const name = hfCanonicalName(hfName)
    if (name === undefined) continue
    const ref = safetensorsRef(header, hfName, name)
    if (/\.(wq|bq)$/.test(name)) ref.permuteHeads = config.nHeads
    if (/\.(wk|bk)$/.test(name)) ref.permuteHeads = config.nKvHeads
    tensors.set(name, ref)
  }
  if (config.tiedEmbeddings) tensors.delete('output')
  checkModelTensors(set.file, config, tensors, hfTensorName)
  const source: ModelSource = { path: dir, format: 'hf', config, tensors }
  const tokenizerFile = join(dir, 'tokenizer.json')
  if (await exists(tokenizerFile)) source.tokenizer = { kind: 'hf', path: tokenizerFile }
  return source
}

/** Hugging Face tensor name → canonical name, or undefined for tensors the engine does not use. */
export function hfCanonicalName (name: string): string | undefined {
  if (name === 'model.embed_tokens.weight') return 'tok_embeddings'
  if (name === 'model.norm.weight') return 'norm'
  if (name === 'lm_head.weight') return 'output'
  const m = /^model\.layers\.(\d+)\.(.+)$/.exec(name)
  if (m === null) return undefined
  const canon = LAYER_TENSORS[m[2]]
  return canon === undefined ? undefined : `layers.${Number(m[1])}.${canon}`
}

/** Parses config.json into a ModelConfig; bos/eos fall back to tokenizer_config.json + tokenizer.json. */
export function parseHfConfig (file: string, text: string, tokenizerConfig?: string, tokenizerJson?: string): ModelConfig {
  const c = parseJsonObject(file, text)
  const arch = c.model_type
  if (typeof arch !== 'string' || !(ARCHITECTURES as readonly string[]).includes(arch)) {
    throw new ModelFormatError(file, `model_type ${JSON.stringify(arch)} is not supported (supported: ${ARCHITECTURES.join(', ')})`)
  }
  const int = (key: string, fallback?: number): number => {
    const v = c[key] ?? fallback
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) {
      throw new ModelFormatError(file, v === undefined ? `missing ${key}` : `${key} ${JSON.stringify(v)} is not a positive integer`)
    }
    return v
  }
  const num = (key: string, fallback: number): number => {
    const v = c[key] ?? fallback
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw new ModelFormatError(file, `${key} ${JSON.stringify(v)} is not a positive number`)
    return v
  }
  const dim = int('hidden_size')
  const nHeads = int('num_attention_heads')
  const nKvHeads = int('num_key_value_heads', nHeads)
  if (dim % nHeads !== 0) throw new ModelFormatError(file, `hidden_size ${dim} is not a multiple of num_attention_heads ${nHeads}`)
  if (nHeads % nKvHeads !== 0) throw new ModelFormatError(file, `num_attention_heads ${nHeads} is not a multiple of num_key_value_heads ${nKvHeads}`)
  const headSize = dim / nHeads
  if (c.head_dim !== undefined && c.head_dim !== null && c.head_dim !== headSize) {
    throw new ModelFormatError(file, `head_dim ${JSON.stringify(c.head_dim)} differs from hidden_size / num_attention_heads = ${headSize} (not supported)`)
  }
  if (c.hidden_act !== undefined && c.hidden_act !== 'silu') throw new ModelFormatError(file, `hidden_act ${JSON.stringify(c.hidden_act)} is not supported (only silu)`)
  if (c.attention_bias === true && arch !== 'qwen2') throw new ModelFormatError(file, 'attention_bias (o_proj bias) is not supported')
  if (c.mlp_bias === true) throw new ModelFormatError(file, 'mlp_bias is not supported')
  const ropeScaling = parseRopeScaling(file, c.rope_scaling)
  let seqLen = int('max_position_embeddings')
  // A sliding window as wide as the context is plain attention; within it results are exact.
  const slidingWindow = c.sliding_window
  const useWindow = arch === 'mistral' ? slidingWindow !== null && slidingWindow !== undefined : c.use_sliding_window === true
  if (useWindow) seqLen = Math.min(seqLen, int('sliding_window'))
  const tied = c.tie_word_embeddings ?? false
  if (typeof tied !== 'boolean') throw new ModelFormatError(file, 'tie_word_embeddings is not a boolean')
  const special = specialTokenIds(tokenizerConfig, tokenizerJson)
  return {
    architecture: arch as ModelConfig['architecture'],
    dim,
    hiddenDim: int('intermediate_size'),
    nLayers: int('num_hidden_layers'),
    nHeads,
    nKvHeads,
    headSize,
    vocabSize: int('vocab_size'),
    seqLen,
    ropeTheta: num('rope_theta', 10000),
    normEps: num('rms_norm_eps', 1e-6),
    tiedEmbeddings: tied,
    qkvBias: arch === 'qwen2',
    bosId: tokenId(file, 'bos_token_id', c.bos_token_id, special.bos),
    eosId: tokenId(file, 'eos_token_id', c.eos_token_id, special.eos),
    ...(ropeScaling !== undefined ? { ropeScaling } : {})
  }
}

/** rope_scaling: absent, "default", or Llama 3's ("llama3" with its four numbers). */
function parseRopeScaling (file: string, scaling: unknown): RopeScaling | undefined {
  if (scaling === undefined || scaling === null) return undefined
  const type = isObject(scaling) ? (scaling.rope_type ?? scaling.type) : scaling
  if (type === 'default') return undefined
  if (type !== 'llama3' || !isObject(scaling)) throw new ModelFormatError(file, `rope_scaling ${JSON.stringify(type)} is not supported (supported: default, llama3)`)
  const field = (key: string): number => {
    const v = scaling[key]
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw new ModelFormatError(file, `rope_scaling.${key} ${JSON.stringify(v)} is not a positive number`)
    return v
  }
  const r: RopeScaling = {
    type: 'llama3',
    factor: field('factor'),
    lowFreqFactor: field('low_freq_factor'),
    highFreqFactor: field('high_freq_factor'),
    originalMaxPositions: field('original_max_position_embeddings')
  }
  if (r.highFreqFactor <= r.lowFreqFactor) throw new ModelFormatError(file, 'rope_scaling.high_freq_factor must exceed low_freq_factor')
  return r
}

/** A token id from config.json (a list means several stop tokens: the first is kept), else the fallback, else -1. */
function tokenId (file: string, key: string, v: unknown, fallback: number | undefined): number {
  const id = Array.isArray(v) ? v[0] : v
  if (id === undefined || id === null) return fallback ?? -1
  if (typeof id !== 'number' || !Number.isSafeInteger(id) || id < 0) throw new ModelFormatError(file, `${key} ${JSON.stringify(v)} is not a token id`)
  return id
}

/** bos/eos ids named by tokenizer_config.json (bos_token / eos_token) and resolved in tokenizer.json. */
function specialTokenIds (tokenizerConfig?: string, tokenizerJson?: string): { bos?: number, eos?: number } {
  if (tokenizerConfig === undefined || tokenizerJson === undefined) return {}
  const cfg = safeParse(tokenizerConfig)
  const tok = safeParse(tokenizerJson)
  if (cfg === undefined || tok === undefined) return {}
  const ids = new Map<string, number>()
  if (Array.isArray(tok.added_tokens)) {
    for (const t of tok.added_tokens) if (isObject(t) && typeof t.content === 'string' && typeof t.id === 'number') ids.set(t.content, t.id)
  }
  const content = (v: unknown): string | undefined => typeof v === 'string' ? v : isObject(v) && typeof v.content === 'string' ? v.content : undefined
  const find = (v: unknown): number | undefined => { const s = content(v); return s === undefined ? undefined : ids.get(s) }
  return { bos: find(cfg.bos_token), eos: find(cfg.eos_token) }
}

function safeParse (text: string): Record<string, unknown> | undefined {
  try {
    const v: unknown = JSON.parse(text)
    return isObject(v) ? v : undefined
  } catch (err) {
    // Only a fallback source of bos/eos ids: a broken file here is reported when the tokenizer loads.
    void err
    return undefined
  }
}

export function parseJsonObject (file: string, text: string): Record<string, unknown> {
  let v: unknown
  try {
    v = JSON.parse(text)
  } catch (err) {
    throw new ModelFormatError(file, `not valid JSON: ${(err as Error).message}`)
  }
  if (!isObject(v)) throw new ModelFormatError(file, 'is not a JSON object')
  return v
}

function isObject (v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

async function exists (file: string): Promise<boolean> {
  try {
    await access(file)
    return true
  } catch (err) {
    void err // absence is the answer
    return false
  }
}
