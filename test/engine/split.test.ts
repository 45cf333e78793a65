// Any split of the layers across stages gives the same greedy tokens as one process when hidden
// states cross the boundary through the f32 codec; for f16 and int8 we report token agreement.
import { readFileSync } from 'node:fs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { HiddenCodec } from '../../engine/codecs.ts'
import { openLlama2c } from '../../engine/formats/llama2c.ts'
import { generate } from '../../engine/generate.ts'
import type { ModelSource, Shard } from '../../engine/index.ts'
import { createLocalPipeline } from '../../engine/local-pipeline.ts'
import { createSampler } from '../../engine/sampler.ts'
import { loadShard } from '../../engine/shard.ts'
import { MODELS, STORIES260K } from '../models.ts'

const refs = JSON.parse(readFileSync(`${MODELS}/stories260K/reference-greedy.json`, 'utf8')) as Array<{ prompt_token_ids: number[], token_ids: number[], steps: number }>
const cases = refs

async function pipelineTokens (shards: Shard[], codec: HiddenCodec, prompt: number[], steps: number): Promise<number[]> {
  const sessions = shards.map((s) => s.openSession({ maxLength: steps }))
  const tokens = [prompt[0]]
  for await (const ev of generate(createLocalPipeline(sessions, codec), { prompt, steps, sampler: createSampler(), bosId: 1 })) {
    if (ev.type === 'token') tokens.push(ev.id)
  }
  for (const s of sessions) s.close()
  return tokens
}

describe('stories260K split across stages', () => {
  let source: ModelSource
  const shards = new Map<string, Shard>()
  const shard = async (start: number, end: number): Promise<Shard> => {
    const key = `${start}:${end}`
    let s = shards.get(key)
    if (s === undefined) {
      s = await loadShard(source, { start, end })
      shards.set(key, s)
    }
    return s
  }
  beforeAll(async () => { source = await openLlama2c(STORIES260K) })
  afterAll(async () => { for (const s of shards.values()) await s.close() })

  const L = 5
  const twoWay = Array.from({ length: L - 1 }, (_, i) => [0, i + 1, L])
  const threeWay = [[0, 1, 2, L], [0, 2, 4, L], [0, 1, 4, L], [0, 3, 4, L]]
  it.each([...twoWay, ...threeWay].map((b) => ({ bounds: b, name: b.join('|') })))('split $name matches the whole model with the f32 codec', async ({ bounds }) => {
    const stages = await Promise.all(bounds.slice(1).map((end, i) => shard(bounds[i], end)))
    for (const ref of cases) {
      expect(await pipelineTokens(stages, 'f32', ref.prompt_token_ids, ref.steps)).toEqual(ref.token_ids)
    }
  })

  it.each(['f16', 'int8'] as const)('reports token agreement for the %s codec', async (codec) => {
    const stages = [await shard(0, 2), await shard(2, L)]
    let agree = 0
    let total = 0
    for (const ref of cases) {
      const got = await pipelineTokens(stages, codec, ref.prompt_token_ids, ref.steps)
      // Agreement = length of the common prefix of generated tokens (one divergence changes the rest).
      let n = ref.prompt_token_ids.length
      while (n < ref.token_ids.length && got[n] === ref.token_ids[n]) n++
      agree += n - ref.prompt_token_ids.length
      total += ref.token_ids.length - ref.prompt_token_ids.length
    }
    const rate = agree / total
    console.log(`codec ${codec}: ${agree}/${total} generated tokens agree with f32 before the first divergence (${(100 * rate).toFixed(1)}%)`)
    expect(rate).toBeGreaterThan(codec === 'f16' ? 0.9 : 0.3)
  })
})
