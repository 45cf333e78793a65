// q8_0 and q4_0 weights against f32: top-1 agreement of next-token predictions along the
// reference sequences (teacher-forced, so one early difference does not hide the rest).
import { readFileSync } from 'node:fs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { openLlama2c } from '../../engine/formats/llama2c.ts'
import type { ModelSource, Shard } from '../../engine/index.ts'
import { argmax } from '../../engine/sampler.ts'
import { loadShard } from '../../engine/shard.ts'
import { MODELS, STORIES260K } from '../models.ts'

const refs = JSON.parse(readFileSync(`${MODELS}/stories260K/reference-greedy.json`, 'utf8')) as Array<{ token_ids: number[] }>

function predictions (shard: Shard, ids: number[]): number[] {
  const session = shard.openSession({ maxLength: ids.length })
  const logits = session.step({ tokens: ids }, { logits: 'all' }).logits as Float32Array
  session.close()
  const vocab = shard.config.vocabSize
  return ids.map((_, t) => argmax(logits.subarray(t * vocab, (t + 1) * vocab)))
}

describe('quantized weights vs f32 (stories260K)', () => {
  let source: ModelSource
  let f32: Shard
  beforeAll(async () => {
    source = await openLlama2c(STORIES260K)
    f32 = await loadShard(source)
  })
  afterAll(async () => { await f32.close() })

  it('all-position logits equal step-by-step decoding', () => {
    const ids = refs[0].token_ids.slice(0, 20)
    const batched = predictions(f32, ids)
    const session = f32.openSession()
    const stepwise = ids.map((id) => argmax(session.step({ tokens: [id] }).logits as Float32Array))
    expect(batched).toEqual(stepwise)
  })

  it.each([['f16', 0.99], ['q8_0', 0.95], ['q4_0', 0.7]] as const)('%s top-1 agreement with f32', async (dtype, floor) => {
    const q = await loadShard(source, { dtype })
    let agree = 0
    let total = 0
    for (const ref of refs) {
      const a = predictions(f32, ref.token_ids)
      const b = predictions(q, ref.token_ids)
      for (let i = 0; i < a.length; i++) if (a[i] === b[i]) agree++
      total += a.length
    }
    await q.close()
    console.log(`${dtype}: top-1 agreement with f32 ${agree}/${total} = ${(100 * agree / total).toFixed(1)}% over the reference sequences`)
    expect(agree / total).toBeGreaterThan(floor)
  })
})
