// Continuous batching on a shard: one decode step (T = 1) for each of several sessions in one pass,
// so each layer's weights are read once per batch instead of once per session. The matmuls take
// the batch as B rows; RoPE and attention run per row at that session's own position on its own KV
// cache. Each row's floats equal what `session.step` gives for it alone (the kernels compute a row
// in one fixed order whatever the row count: engine/wasm/kernels.c, reference-backend.ts).
// Every item is checked before anything runs, so a bad batch changes no session.
import { SessionLimitError, ShapeError, ShardConfigError } from './errors.ts'
import type { BatchItem, Session, StageOutput } from './index.ts'
import type { ShardPass, Span } from './forward.ts'
import type { SessionState } from './session.ts'

export function stepBatch (pass: ShardPass, states: WeakMap<Session, SessionState>, items: readonly BatchItem[]): StageOutput[] {
  if (!Array.isArray(items)) throw new ShapeError('a batch is an array of { session, input }')
  const batch = items.map((item, b) => checkItem(pass, states, item, b))
  const seen = new Set<SessionState>()
  for (const [b, { state }] of batch.entries()) {
    if (seen.has(state)) throw new SessionLimitError(`batch item ${b}: the session is already in this batch (one step per session per batch)`)
    seen.add(state)
  }
  for (const { state } of batch) state.kv.ensure(state.position + 1, state.position)
  const s = pass.scratch
  const { dim } = pass.config
  const outputs: StageOutput[] = []
  for (let from = 0; from < batch.length; from += s.T) {
    const part = batch.slice(from, from + s.T)
    const spans: Span[] = part.map(({ state, item }, row) => {
      pass.load(item.input, 0, 1, row)
      return { kv: state.kv, pos0: state.position, T: 1, row }
    })
    pass.forward(spans, part.length)
    for (const { state } of part) state.position++
    if (pass.isLast) {
      const logits = pass.logits(0, part.length)
      // views of one fresh array (not scratch): each row's logits, without a second copy
      for (let row = 0; row < part.length; row++) outputs.push({ logits: logits.subarray(row * pass.config.vocabSize, (row + 1) * pass.config.vocabSize) })
    } else {
      for (let row = 0; row < part.length; row++) outputs.push({ hidden: s.x.slice(row * dim, (row + 1) * dim) })
    }
  }
  return outputs
}

function checkItem (pass: ShardPass, states: WeakMap<Session, SessionState>, item: BatchItem, b: number): { state: SessionState, item: BatchItem } {
  const state = typeof item === 'object' && item !== null ? states.get(item.session) : undefined
  if (state === undefined) throw new ShardConfigError(`batch item ${b}: not a session of this shard`)
  if (state.closed) throw new SessionLimitError(`batch item ${b}: session is closed`)
  const T = pass.check(item.input, `batch item ${b}: `)
  if (T !== 1) throw new ShapeError(`batch item ${b}: a batch step is one position per session, got ${T}`)
  if (item.position !== undefined && item.position !== state.position) {
    throw new SessionLimitError(`batch item ${b}: step at position ${item.position}, but the session is at ${state.position}`)
  }
  if (state.position + 1 > state.maxLength) throw new SessionLimitError(`batch item ${b}: position ${state.position} is past the session's maximum length ${state.maxLength}`)
  return { state, item }
}
