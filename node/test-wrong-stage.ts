// TEST ONLY — `node start --test-wrong-stage SCALE` (issue 7's refused newcomer): this node's
// stage computes wrong outputs EVERYWHERE, including the calibration CHALLENGE that
// `--test-corrupt-output` deliberately answers honestly (that flag models an adversary who behaves
// while calibrated; this one a broken or lying node that calibration must refuse). Every session
// step and every batched step of the served shard gets SCALE × RMS Gaussian noise on its hidden
// states and, on a last stage, on its logits (so the greedy tokens change too). The engine is not
// touched: the wrapper sits outermost on the stage service's serve() (node/daemon.ts), so the
// spot-check service's copy of "the stage served now" is the wrong one.
import type { Session, Shard, StageOutput } from '../engine/index.ts'
import { createRng } from '../sharding/sim/random.ts'
import { corruptHidden, stagesWrappedBy } from './spot-check-corrupt.ts'
import type { StageWrapper } from './spot-check-corrupt.ts'

/** The shard with noise on every output of `stepBatch` and of its sessions' `step`. */
export function wrongShard (shard: Shard, scale: number, seed = 1): Shard {
  const random = createRng(seed)
  const wrong = (out: StageOutput): StageOutput => {
    if (out.hidden !== undefined) corruptHidden(out.hidden, shard.config.dim, scale, random)
    if (out.logits !== undefined) corruptHidden(out.logits, shard.config.vocabSize, scale, random)
    return out
  }
  // the engine keys its per-session state by the real session: stepBatch gets the real ones back
  const real = new WeakMap<Session, Session>()
  const wrongSession = (session: Session): Session => {
    const p = new Proxy(session, {
      get (target, prop) {
        if (prop === 'step') return (...a: Parameters<Session['step']>) => wrong(target.step(...a))
        const v = Reflect.get(target, prop, target) as unknown
        return typeof v === 'function' ? (v as (...x: unknown[]) => unknown).bind(target) : v
      }
    })
    real.set(p, session)
    return p
  }
  return new Proxy(shard, {
    get (target, prop) {
      if (prop === 'stepBatch') return (items: Parameters<Shard['stepBatch']>[0]) => target.stepBatch(items.map((i) => ({ ...i, session: real.get(i.session) ?? i.session }))).map(wrong)
      if (prop === 'openSession') return (...a: Parameters<Shard['openSession']>) => wrongSession(target.openSession(...a))
      const v = Reflect.get(target, prop, target) as unknown
      return typeof v === 'function' ? (v as (...x: unknown[]) => unknown).bind(target) : v
    }
  })
}

/** Wraps a stage before `serve()` with `wrongShard`. */
export function wrongStages (scale: number): StageWrapper {
  return stagesWrappedBy((shard) => wrongShard(shard, scale))
}
