// One entry point for every model format: a directory with config.json is a Hugging Face model,
// a file starting with "GGUF" a GGUF model, any other file a llama2.c checkpoint (whose tokenizer
// is a separate tokenizer.bin: given explicitly, or found beside the model). Also opens the
// tokenizer a ModelSource points at.
import { open, readdir, stat } from 'node:fs/promises'
import type { Stats } from 'node:fs'
import { basename, dirname, join } from 'node:path'
import { ModelFormatError } from '../errors.ts'
import type { ModelSource, Tokenizer } from '../index.ts'
import { HfTokenizer } from '../tokenizer-hf.ts'
import { loadGgufTokenizer } from '../tokenizer-gguf.ts'
import { Llama2cTokenizer } from '../tokenizer-llama2c.ts'
import { GGUF_MAGIC, openGguf } from './gguf.ts'
import { openHfModel } from './hf.ts'
import { openLlama2c } from './llama2c.ts'

export interface OpenModelOptions {
  /** Tokenizer file for llama2.c checkpoints (default: tokenizer.bin or tok{vocab}.bin beside the model). */
  tokenizer?: string
  signal?: AbortSignal
}

/** Opens a model in any supported format; reads headers only, never tensor data. */
export async function openModel (path: string, options: OpenModelOptions = {}): Promise<ModelSource> {
  options.signal?.throwIfAborted()
  let info: Stats
  try {
    info = await stat(path)
  } catch (err) {
    throw new ModelFormatError(path, `cannot open model: ${(err as Error).message}`)
  }
  if (info.isDirectory()) {
    const entries = await readdir(path)
    if (!entries.includes('config.json')) {
      throw new ModelFormatError(path, 'is a directory without config.json: not a Hugging Face model (expected config.json + model.safetensors)')
    }
    return await openHfModel(path, { signal: options.signal })
  }
  if (await startsWithGgufMagic(path)) return await openGguf(path, { signal: options.signal })
  const source = await openLlama2c(path)
  const tokenizer = options.tokenizer ?? await findLlama2cTokenizer(path, source.config.vocabSize)
  return tokenizer === undefined ? source : { ...source, tokenizer: { kind: 'llama2c', path: tokenizer } }
}

/**
 * The tokenizer of `source`; `path` overrides where it is read from (a tokenizer.bin for llama2.c,
 * tokenizer.json for Hugging Face, a GGUF file).
 */
export async function openTokenizer (source: ModelSource, path?: string, options: { signal?: AbortSignal } = {}): Promise<Tokenizer> {
  // An explicit file decides its own kind: tokenizer.json works with any model format.
  const kind = path !== undefined ? tokenizerKind(path, source) : source.tokenizer?.kind ?? source.format
  const file = path ?? source.tokenizer?.path
  if (file === undefined) {
    throw new ModelFormatError(source.path, kind === 'llama2c'
      ? 'no tokenizer: pass a tokenizer.bin (none was found beside the model)'
      : 'no tokenizer: the model directory has no tokenizer.json')
  }
  const { bosId, eosId, vocabSize } = source.config
  switch (kind) {
    case 'llama2c': return await Llama2cTokenizer.fromFile(file, vocabSize)
    case 'gguf': return await loadGgufTokenizer(file, options)
    case 'hf': return await HfTokenizer.fromFile(file, { ...(bosId >= 0 ? { bosId } : {}), ...(eosId >= 0 ? { eosId } : {}) })
  }
}

function tokenizerKind (path: string, source: ModelSource): 'llama2c' | 'hf' | 'gguf' {
  if (path.endsWith('.json')) return 'hf'
  if (path.endsWith('.gguf')) return 'gguf'
  if (path.endsWith('.bin')) return 'llama2c'
  return source.tokenizer?.kind ?? source.format
}

async function startsWithGgufMagic (path: string): Promise<boolean> {
  const fh = await open(path, 'r').catch((err: Error) => { throw new ModelFormatError(path, `cannot open model: ${err.message}`) })
  try {
    const buf = Buffer.alloc(4)
    const { bytesRead } = await fh.read(buf, 0, 4, 0)
    return bytesRead === 4 && buf.readUInt32LE(0) === GGUF_MAGIC
  } finally {
    await fh.close()
  }
}

/** tokenizer.bin, or tok{vocab}.bin (llama2.c's naming for custom vocabularies), beside the model. */
async function findLlama2cTokenizer (model: string, vocabSize: number): Promise<string | undefined> {
  const dir = dirname(model)
  const entries = new Set(await readdir(dir))
  for (const name of [`tok${vocabSize}.bin`, 'tokenizer.bin']) {
    if (entries.has(name) && name !== basename(model)) return join(dir, name)
  }
  return undefined
}
