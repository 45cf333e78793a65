// Entry points: open a model by path (any supported format) and load a shard of it, with its
// tokenizer when the shard is a first or last stage.
import type { Shard, ShardOptions, Tokenizer } from './index.ts'
import { openModel, openTokenizer } from './formats/open-model.ts'
import { loadShard } from './shard.ts'

export { loadShard }

export interface LoadModelOptions extends ShardOptions {
  /** Tokenizer file for formats that do not carry one (llama2.c). */
  tokenizer?: string
}

export interface LoadedModel {
  shard: Shard
  tokenizer: Tokenizer
}

/** Opens `path`, loads layers [start, end) (default all) and the model's tokenizer. */
export async function loadModel (path: string, options: LoadModelOptions = {}): Promise<LoadedModel> {
  const source = await openModel(path, { ...(options.tokenizer !== undefined ? { tokenizer: options.tokenizer } : {}), ...(options.signal !== undefined ? { signal: options.signal } : {}) })
  const tokenizer = await openTokenizer(source, options.tokenizer, options.signal !== undefined ? { signal: options.signal } : {})
  const shard = await loadShard(source, options)
  return { shard, tokenizer }
}
