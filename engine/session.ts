// One sequence on a shard: its position and KV cache (kv-cache.ts). A step runs its T positions
// through the shard's pass (forward.ts) in chunks of at most scratch.T rows; the shard's
// `stepBatch` (batch.ts) steps several sessions together through the same pass.
import { SessionLimitError } from './errors.ts'
import type { Session, StageInput, StageOutput, StepOptions } from './index.ts'
import type { ShardPass } from './forward.ts'
import { createKvCache, type KvCache } from './kv-cache.ts'

/** What the shard knows of a session it opened (the batch step reads and advances it). */
export interface SessionState {
  position: number
  closed: boolean
  readonly maxLength: number
  readonly kv: KvCache
}

export function createSession (pass: ShardPass, maxLength: number): { session: Session, state: SessionState } {
  const { dim, vocabSize, seqLen } = pass.config
  if (!Number.isInteger(maxLength) || maxLength < 1 || maxLength > seqLen) {
    throw new SessionLimitError(`maxLength ${maxLength} is not in [1, ${seqLen}]`)
  }
  const s = pass.scratch
  const kv = createKvCache(pass.mem, pass.nLocal, pass.kvDim, maxLength)
  const state: SessionState = { position: 0, closed: false, maxLength, kv }

  const session: Session = {
    get position () { return state.position },
    maxLength,
    get kvBytes () { return kv.bytes },
    step (input: StageInput, options: StepOptions = {}): StageOutput {
      if (state.closed) throw new SessionLimitError('session is closed')
      const T = pass.check(input)
      if (state.position + T > maxLength) throw new SessionLimitError(`positions [${state.position}, ${state.position + T}) exceed the session's maximum length ${maxLength}`)
      kv.ensure(state.position + T, state.position)
      const allLogits = pass.isLast && options.logits === 'all'
      const hidden = pass.isLast ? undefined : new Float32Array(T * dim)
      const logits = allLogits ? new Float32Array(T * vocabSize) : undefined
      let last: Float32Array | undefined
      for (let from = 0; from < T; from += s.T) {
        const n = Math.min(s.T, T - from)
        pass.load(input, from, n, 0)
        pass.forward([{ kv, pos0: state.position, T: n, row: 0 }], n)
        state.position += n
        if (hidden !== undefined) hidden.set(s.x.subarray(0, n * dim), from * dim)
        if (logits !== undefined) logits.set(pass.logits(0, n), from * vocabSize)
        else if (pass.isLast && from + n === T) last = pass.logits(n - 1, 1)
      }
      return pass.isLast ? { logits: logits ?? last } : { hidden }
    },
    truncate (to: number): void {
      if (!Number.isInteger(to) || to < 0 || to > state.position) throw new SessionLimitError(`cannot truncate to ${to}: session is at ${state.position}`)
      state.position = to
    },
    close (): void {
      if (state.closed) return
      state.closed = true
      kv.free()
    }
  }
  return { session, state }
}
