// Real sharded generation with one audited stage that may cheat, for spot-check tests and the
// benchmark: a head stage [0, start), the audited stage [start, end) and a tail [end, n), with
// hidden states crossing a wire codec. The audited stage fingerprints what it sends (a cheater
// must: the next stage can check the fingerprint of what it receives), honest or not:
// - 'lazy': it runs a shard holding fewer layers than it claims (loaded by the caller);
// - 'corrupt': it adds noise of relative size `corruption` × RMS to its output, at every step
//   with probability `corruptRate`.
import { argmax, decodeHidden, encodeHidden, type HiddenCodec, type Shard, type StageInput } from '../../engine/index.ts'
import { fingerprint } from '../fingerprint.ts'
import type { StageTrace } from '../spot-check.ts'
import { normal } from '../../sharding/sim/random.ts'

export interface TracedRunOptions {
  head: Shard
  /** What the audited stage really runs (a lazy stage: a shard with fewer layers). */
  stage: Shard
  tail: Shard
  prompt: number[]
  /** Tokens to generate greedily after the prompt. */
  steps: number
  codec?: HiddenCodec
  corruption?: number
  corruptRate?: number
  rng?: () => number
  topK?: number
}

export interface TracedRun {
  tokens: number[]
  trace: StageTrace
  /** Steps whose output the stage corrupted. */
  corruptedSteps: number
}

function wire (codec: HiddenCodec, x: Float32Array): Float32Array {
  return decodeHidden(codec, encodeHidden(codec, x), x.length)
}

export function tracedRun (options: TracedRunOptions): TracedRun {
  const { head, stage, tail, prompt, steps } = options
  const codec = options.codec ?? 'f32'
  const dim = head.config.dim
  const maxLength = prompt.length + steps
  const sessions = [head.openSession({ maxLength }), stage.openSession({ maxLength }), tail.openSession({ maxLength })]
  const inputs: StageInput[] = []
  const fingerprints: Uint8Array[] = []
  const tokens: number[] = []
  let corruptedSteps = 0
  try {
    let next: number[] = prompt
    for (let s = 0; s <= steps; s++) {
      const h0 = wire(codec, sessions[0].step({ tokens: next }).hidden as Float32Array)
      inputs.push({ hidden: h0 })
      const h1 = sessions[1].step({ hidden: h0 }).hidden as Float32Array
      if (options.corruption !== undefined && options.corruption > 0 && options.rng !== undefined && options.rng() < (options.corruptRate ?? 1)) {
        corruptedSteps++
        for (let off = 0; off < h1.length; off += dim) {
          let ss = 0
          for (let i = 0; i < dim; i++) ss += h1[off + i] * h1[off + i]
          const rms = Math.sqrt(ss / dim)
          for (let i = 0; i < dim; i++) h1[off + i] += options.corruption * rms * normal(options.rng)
        }
      }
      fingerprints.push(fingerprint(h1, dim, options.topK !== undefined ? { topK: options.topK } : {}))
      const logits = sessions[2].step({ hidden: wire(codec, h1) }).logits as Float32Array
      if (s === steps) break
      const token = argmax(logits)
      tokens.push(token)
      next = [token]
    }
  } finally {
    for (const x of sessions) x.close()
  }
  return { tokens, trace: { inputs, fingerprints }, corruptedSteps }
}
