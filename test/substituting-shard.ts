// A last shard that substitutes the token of every third step (test helper for the spot-check
// tests): its logits row is shifted by 7, so it samples — and signs — another token.
import type { Shard, StageOutput } from '../engine/index.ts'
import { mapBatchOutputs } from '../node/spot-check-corrupt.ts'

export function substituting (shard: Shard): Shard {
  let steps = 0
  const V = shard.config.vocabSize
  return mapBatchOutputs(shard, (out: StageOutput): StageOutput => {
    if (out.logits === undefined || steps++ % 3 !== 1) return out
    const logits = Float32Array.from(out.logits)
    const row = out.logits.subarray(out.logits.length - V)
    for (let i = 0; i < V; i++) logits[logits.length - V + i] = row[(i + V - 7) % V]
    return { ...out, logits }
  })
}
