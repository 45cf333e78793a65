// The same model from three formats: stories260K as the llama2.c file, converted to a Hugging Face
// directory (safetensors + config.json + tokenizer.json, q/k rows in rotate-half order) and to an
// f32 GGUF. All three must give identical greedy tokens, through their own tokenizers.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { generate, sessionStepper } from '../../engine/generate.ts'
import { loadModel, type LoadedModel } from '../../engine/index.ts'
import { createSampler } from '../../engine/sampler.ts'
import { convertModel } from '../../scripts/convert-model.ts'
import { MODELS, STORIES260K, TOK512 } from '../models.ts'

const refs = JSON.parse(readFileSync(`${MODELS}/stories260K/reference-greedy.json`, 'utf8')) as Array<{ prompt: string, steps: number, token_ids: number[] }>
const dir = mkdtempSync(join(tmpdir(), 'mycelium-cross-'))

async function greedy (m: LoadedModel, prompt: string, steps: number): Promise<number[]> {
  const ids = m.tokenizer.encode(prompt, { bos: true })
  const session = m.shard.openSession({ maxLength: steps })
  const out = [ids[0]]
  for await (const ev of generate(sessionStepper(session), { prompt: ids, steps, sampler: createSampler(), bosId: m.tokenizer.bosId })) {
    if (ev.type === 'token') out.push(ev.id)
  }
  return out
}

describe('stories260K across formats', () => {
  const models: Record<string, LoadedModel> = {}
  beforeAll(async () => {
    await convertModel({ model: STORIES260K, tokenizer: TOK512, to: 'hf', out: join(dir, 'hf') })
    await convertModel({ model: STORIES260K, tokenizer: TOK512, to: 'gguf', out: join(dir, 'model.gguf') })
    models.llama2c = await loadModel(STORIES260K, { tokenizer: TOK512 })
    models.hf = await loadModel(join(dir, 'hf'))
    models.gguf = await loadModel(join(dir, 'model.gguf'))
    // Any model format with a tokenizer.json given explicitly (how byte-level BPE GGUFs are run).
    models.ggufJson = await loadModel(join(dir, 'model.gguf'), { tokenizer: join(dir, 'hf', 'tokenizer.json') })
  })
  afterAll(async () => {
    for (const m of Object.values(models)) await m.shard.close()
    rmSync(dir, { recursive: true, force: true })
  })

  it.each(['hf', 'gguf'])('%s conversion has the same config', (name) => {
    expect(models[name].shard.config).toMatchObject({ ...models.llama2c.shard.config, architecture: 'llama' })
  })

  it.each(refs.map((r, i) => ({ ...r, i })))('reference $i gives identical tokens from llama2.c, HF and GGUF', async (ref) => {
    const expected = await greedy(models.llama2c, ref.prompt, ref.steps)
    expect(expected).toEqual(ref.token_ids)
    expect(await greedy(models.hf, ref.prompt, ref.steps)).toEqual(expected)
    expect(await greedy(models.gguf, ref.prompt, ref.steps)).toEqual(expected)
    expect(await greedy(models.ggufJson, ref.prompt, ref.steps)).toEqual(expected)
  })
})
