// TEST ONLY — `node start --test-corrupt-output SCALE` (issue 7's corrupting node): the shard
// handed to the stage service is wrapped so every hidden state it outputs gets Gaussian noise of
// SCALE × the row's RMS (as consensus/sim/stage-trace.ts's corrupting stage). The engine is not
// touched: the wrapper sits between the stage service and the shard (node/daemon.ts).
import type { Shard, StageOutput } from '../engine/index.ts'
import type { StageShard } from '../protocols/index.ts'
import { createRng } from '../sharding/sim/random.ts'

/** Adds scale × RMS noise to each row of a [T, dim] hidden state, in place. */
export function corruptHidden (h: Float32Array, dim: number, scale: number, random: () => number): void {
  for (let off = 0; off + dim <= h.length; off += dim) {
    let ss = 0
    for (let i = 0; i < dim; i++) ss += h[off + i] * h[off + i]
    const rms = Math.sqrt(ss / dim)
    for (let i = 0; i < dim; i++) {
      const u = Math.max(random(), 1e-12)
      const v = random()
      h[off + i] += scale * rms * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v)
    }
  }
}

/** The shard, with `map` applied to each output of `stepBatch` (everything else passes through). */
export function mapBatchOutputs (shard: Shard, map: (out: StageOutput) => StageOutput): Shard {
  return new Proxy(shard, {
    get (target, prop) {
      if (prop === 'stepBatch') return (items: Parameters<Shard['stepBatch']>[0]) => target.stepBatch(items).map(map)
      const v = Reflect.get(target, prop, target) as unknown
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v
    }
  })
}

/** The shard, with noise on the hidden states `stepBatch` returns (the last stage's logits are left alone). */
export function corruptingShard (shard: Shard, scale: number, seed = 1): Shard {
  const random = createRng(seed)
  return mapBatchOutputs(shard, (out) => {
    if (out.hidden !== undefined) corruptHidden(out.hidden, shard.config.dim, scale, random)
    return out
  })
}

/** A test flag's stage wrapper, applied before `serve()`. */
export interface StageWrapper { wrap: (stage: StageShard | undefined) => StageShard | undefined, unwrap: (shard: Shard) => Shard }

/** Wraps each stage's shard with `make`; the same shard always gets the same wrapper (sessionsOn compares identities through `unwrap`). */
export function stagesWrappedBy (make: (shard: Shard) => Shard): StageWrapper {
  const wrapped = new WeakMap<Shard, Shard>()
  return {
    wrap: (stage) => {
      if (stage === undefined) return undefined
      let w = wrapped.get(stage.shard)
      if (w === undefined) { w = make(stage.shard); wrapped.set(stage.shard, w) }
      return Object.create(stage, { shard: { value: w, enumerable: true } }) as StageShard
    },
    unwrap: (shard) => wrapped.get(shard) ?? shard
  }
}

/** Wraps a stage before `serve()` with `corruptingShard`. */
export function corruptingStages (scale: number): StageWrapper {
  return stagesWrappedBy((shard) => corruptingShard(shard, scale))
}
