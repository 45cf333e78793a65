// Continuous batching on a shard: steps of several sessions in one pass, so each layer's weights
// are read once per pass instead of once per session. A decode step is one row, a prefill chunk T
// rows (T ≤ maxBatch); items are packed in order into passes of at most maxBatch rows. The matmuls
// take all the pass's rows; RoPE and attention run per item at that session's own positions on its
// own KV cache. Each item's floats equal what `session.step` gives for it alone (the kernels
// compute a row in one fixed order whatever the row count or its place in a tile:
// engine/wasm/kernels.c, reference-backend.ts). Every item is checked before anything runs, so a
// bad batch changes no session.
import { SessionLimitError, ShapeError, ShardConfigError } from './errors.ts'
import type { BatchItem, Session, StageOutput } from './index.ts'
import type { ShardPass, Span } from './forward.ts'
import type { SessionState } from './session.ts'

interface Checked { state: SessionState, item: BatchItem, T: number }

export function stepBatch (pass: ShardPass, states: WeakMap<Session, SessionState>, items: readonly BatchItem[]): StageOutput[] {
  if (!Array.isArray(items)) throw new ShapeError('a batch is an array of { session, input }')
  const batch = items.map((item, b) => checkItem(pass, states, item, b))
  const seen = new Set<SessionState>()
  for (const [b, { state }] of batch.entries()) {
    if (seen.has(state)) throw new SessionLimitError(`batch item ${b}: the session is already in this batch (one step per session per batch)`)
    seen.add(state)
  }
  for (const { state, T } of batch) state.kv.ensure(state.position + T, state.position)
  const outputs: StageOutput[] = []
  let part: Checked[] = []
  let rows = 0
  for (const c of batch) {
    if (rows + c.T > pass.scratch.T) {
      outputs.push(...runPass(pass, part, rows))
      part = []
      rows = 0
    }
    part.push(c)
    rows += c.T
  }
  if (part.length > 0) outputs.push(...runPass(pass, part, rows))
  return outputs
}

/** One pass over `part` (R rows in all): hidden states [T, dim] per item, or the logits of its last position. */
function runPass (pass: ShardPass, part: Checked[], R: number): StageOutput[] {
  const { dim, vocabSize } = pass.config
  const spans: Span[] = []
  let row = 0
  for (const { state, item, T } of part) {
    pass.load(item.input, 0, T, row)
    spans.push({ kv: state.kv, pos0: state.position, T, row })
    row += T
  }
  pass.forward(spans, R)
  for (const { state, T } of part) state.position += T
  if (pass.isLast) {
    const logits = pass.logitsOfRows(spans.map((sp) => sp.row + sp.T - 1))
    // views of one fresh array (not scratch): each item's logits, without a second copy
    return spans.map((_, b) => ({ logits: logits.subarray(b * vocabSize, (b + 1) * vocabSize) }))
  }
  return spans.map((sp) => ({ hidden: pass.scratch.x.slice(sp.row * dim, (sp.row + sp.T) * dim) }))
}

function checkItem (pass: ShardPass, states: WeakMap<Session, SessionState>, item: BatchItem, b: number): Checked {
  const state = typeof item === 'object' && item !== null ? states.get(item.session) : undefined
  if (state === undefined) throw new ShardConfigError(`batch item ${b}: not a session of this shard`)
  if (state.closed) throw new SessionLimitError(`batch item ${b}: session is closed`)
  const T = pass.check(item.input, `batch item ${b}: `)
  if (T > pass.scratch.T) throw new ShapeError(`batch item ${b}: ${T} positions do not fit one pass of ${pass.scratch.T} rows (maxBatch)`)
  if (item.position !== undefined && item.position !== state.position) {
    throw new SessionLimitError(`batch item ${b}: step at position ${item.position}, but the session is at ${state.position}`)
  }
  if (state.position + T > state.maxLength) throw new SessionLimitError(`batch item ${b}: positions [${state.position}, ${state.position + T}) pass the session's maximum length ${state.maxLength}`)
  return { state, item, T }
}
