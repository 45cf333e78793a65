// The correctness anchor: greedy decoding of the real stories260K model reproduces llama2.c
// token for token (every entry of reference-greedy.json, including the stop at BOS), on both
// kernel backends, and its logits after the prompt match llama2.c's top five.
import { readFileSync } from 'node:fs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { openLlama2c } from '../../engine/formats/llama2c.ts'
import { generate, sessionStepper } from '../../engine/generate.ts'
import type { Shard } from '../../engine/index.ts'
import { createSampler } from '../../engine/sampler.ts'
import { loadShard } from '../../engine/shard.ts'
import { Llama2cTokenizer } from '../../engine/tokenizer-llama2c.ts'
import { MODELS, STORIES260K, TOK512 } from '../models.ts'

interface Reference {
  prompt: string
  steps: number
  output_text: string
  prompt_token_ids: number[]
  token_ids: number[]
  stopped_on_bos: boolean
  top5_logits_after_prompt: Array<[number, number]>
}
const references = JSON.parse(readFileSync(`${MODELS}/stories260K/reference-greedy.json`, 'utf8')) as Reference[]

async function greedyTokens (shard: Shard, prompt: number[], steps: number): Promise<{ tokens: number[], stoppedOnBos: boolean }> {
  const session = shard.openSession({ maxLength: steps })
  const tokens = [prompt[0]]
  let stoppedOnBos = false
  for await (const ev of generate(sessionStepper(session), { prompt, steps, sampler: createSampler(), bosId: 1 })) {
    if (ev.type === 'token') tokens.push(ev.id)
    if (ev.type === 'done') stoppedOnBos = ev.reason === 'bos'
  }
  session.close()
  return { tokens, stoppedOnBos }
}

describe.each(['reference', 'wasm'] as const)('stories260K greedy on the %s backend', (backend) => {
  let shard: Shard
  let tokenizer: Llama2cTokenizer
  beforeAll(async () => {
    const source = await openLlama2c(STORIES260K)
    shard = await loadShard(source, { backend })
    tokenizer = await Llama2cTokenizer.fromFile(TOK512, source.config.vocabSize)
  })
  afterAll(async () => { await shard.close() })

  it.each(references.map((r, i) => ({ ...r, i })))('reproduces reference $i ($prompt, $steps steps)', async (ref) => {
    const prompt = tokenizer.encode(ref.prompt, { bos: true })
    expect(prompt).toEqual(ref.prompt_token_ids)
    const { tokens, stoppedOnBos } = await greedyTokens(shard, prompt, ref.steps)
    expect(tokens).toEqual(ref.token_ids)
    expect(stoppedOnBos).toBe(ref.stopped_on_bos)
    expect(tokenizer.decode(tokens)).toBe(ref.output_text)
  })

  it('matches llama2.c\'s top-5 logits after each prompt', () => {
    for (const ref of references) {
      const session = shard.openSession()
      const logits = session.step({ tokens: ref.prompt_token_ids }).logits as Float32Array
      for (const [id, value] of ref.top5_logits_after_prompt) expect(logits[id]).toBeCloseTo(value, 3)
      session.close()
    }
  })
})
