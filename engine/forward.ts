// The forward pass of one shard, read top to bottom like llama2.c's `forward`: embed (first stage)
// → for each local layer: attention block, feed-forward block → final norm and LM head (last
// stage). It runs R rows of the shard's scratch at once, grouped into spans: a span is T
// consecutive positions of one session (its KV cache, starting at pos0). A prefill chunk is one
// span of T rows; a decode batch is B spans of one row each, every one at its own position on its
// own cache. Rows share every matmul (each weight matrix is read once per pass, whatever R);
// RoPE and attention run per span. The kernels compute each row in one fixed order whatever R
// (engine/wasm/kernels.c), so a row's output does not depend on what else is in the pass.
import { ShapeError, ShardConfigError } from './errors.ts'
import type { ComputeBackend, EngineMemory, ModelConfig, StageInput } from './index.ts'
import type { KvCache } from './kv-cache.ts'
import { accumulate, addBias, rmsnorm, rope, ropeFrequencies } from './ops.ts'
import type { ShardWeights } from './shard.ts'

/** Activation buffers shared by all sessions of a shard (passes run one at a time). */
export interface Scratch {
  T: number // rows each buffer holds (a prefill chunk, or a decode batch)
  x: Float32Array // (T, dim) residual stream
  xb: Float32Array // (T, dim) normed input of a block; attention output
  qkv: Float32Array // (T, dim + 2 kvDim) the stacked q, k, v projections
  q: Float32Array // (T, dim)
  k: Float32Array // (T, kvDim)
  v: Float32Array // (T, kvDim)
  h13: Float32Array // (T, 2 hidden) the stacked gate and up projections
  hb: Float32Array // (T, hidden) silu(gate) * up
  out: Float32Array // (T, max(dim, vocab on the last stage)) matmul output
  ptr: { x: number, xb: number, qkv: number, q: number, h13: number, hb: number, out: number }
}

export function createScratch (mem: EngineMemory, c: ModelConfig, T: number, isLast: boolean): Scratch {
  const kvDim = c.nKvHeads * c.headSize
  const outWidth = isLast ? Math.max(c.dim, c.vocabSize) : c.dim
  const ptr = {
    x: mem.alloc(T * c.dim * 4),
    xb: mem.alloc(T * c.dim * 4),
    qkv: mem.alloc(T * (c.dim + 2 * kvDim) * 4),
    q: mem.alloc(T * c.dim * 4),
    k: mem.alloc(T * kvDim * 4),
    v: mem.alloc(T * kvDim * 4),
    h13: mem.alloc(T * 2 * c.hiddenDim * 4),
    hb: mem.alloc(T * c.hiddenDim * 4),
    out: mem.alloc(T * outWidth * 4)
  }
  return {
    T,
    x: mem.f32(ptr.x, T * c.dim),
    xb: mem.f32(ptr.xb, T * c.dim),
    qkv: mem.f32(ptr.qkv, T * (c.dim + 2 * kvDim)),
    q: mem.f32(ptr.q, T * c.dim),
    k: mem.f32(ptr.k, T * kvDim),
    v: mem.f32(ptr.v, T * kvDim),
    h13: mem.f32(ptr.h13, T * 2 * c.hiddenDim),
    hb: mem.f32(ptr.hb, T * c.hiddenDim),
    out: mem.f32(ptr.out, T * outWidth),
    ptr: { x: ptr.x, xb: ptr.xb, qkv: ptr.qkv, q: ptr.q, h13: ptr.h13, hb: ptr.hb, out: ptr.out }
  }
}

/** T consecutive positions of one session, pos0 … pos0 + T - 1, in scratch rows row … row + T - 1. */
export interface Span {
  kv: KvCache
  pos0: number
  T: number
  row: number
}

export interface ShardPass {
  readonly config: ModelConfig
  readonly mem: EngineMemory
  readonly nLocal: number
  readonly kvDim: number
  readonly isFirst: boolean
  readonly isLast: boolean
  /** Checks one step's input against this stage; returns its T (positions). Throws a named error
   * whose message starts with `where`. */
  check(input: StageInput, where?: string): number
  /** Puts positions [from, from + T) of `input` into scratch rows row … row + T - 1. */
  load(input: StageInput, from: number, T: number, row: number): void
  /** Runs the local layers over scratch rows [0, rows) grouped into `spans` (KV caches have room). */
  forward(spans: Span[], rows: number): void
  /** Last stage: logits (rows, vocab) of scratch rows [first, first + rows), a fresh array. */
  logits(first: number, rows: number): Float32Array
  /** Last stage: logits (rows.length, vocab) of the listed scratch rows, in that order, a fresh array. */
  logitsOfRows(rows: readonly number[]): Float32Array
  readonly scratch: Scratch
}

export interface ShardPassInit {
  config: ModelConfig
  weights: ShardWeights
  backend: ComputeBackend
  scratch: Scratch
  start: number
  end: number
}

export function createShardPass (init: ShardPassInit): ShardPass {
  const { config: c, weights, backend, scratch: s, start, end } = init
  const kvDim = c.nKvHeads * c.headSize
  const nLocal = end - start
  const isFirst = start === 0
  const isLast = end === c.nLayers
  const mem = backend.mem
  const freqs = ropeFrequencies(c.headSize, c.ropeTheta, c.ropeScaling) // (headSize / 2)

  function forward (spans: Span[], R: number): void {
    const mm = (outPtr: number, w: Parameters<ComputeBackend['matmul']>[1], xPtr: number) => backend.matmul(outPtr, w, xPtr, R)
    const qkvWidth = c.dim + 2 * kvDim
    const h = c.hiddenDim
    for (let i = 0; i < nLocal; i++) {
      const w = weights.layers[i]
      // Attention block: xb = rmsnorm(x); [q k v] = wqkv · xb (+ biases); rotate q, k; cache k, v.
      rmsnorm(s.xb, s.x, w.attentionNorm, R, c.dim, c.normEps)
      mm(s.ptr.qkv, w.wqkv, s.ptr.xb)
      if (w.bqkv !== undefined) addBias(s.qkv, w.bqkv, R)
      for (let t = 0; t < R; t++) {
        const row = t * qkvWidth
        s.q.set(s.qkv.subarray(row, row + c.dim), t * c.dim)
        s.k.set(s.qkv.subarray(row + c.dim, row + c.dim + kvDim), t * kvDim)
        s.v.set(s.qkv.subarray(row + c.dim + kvDim, row + qkvWidth), t * kvDim)
      }
      for (const { kv, pos0, T, row } of spans) {
        rope(s.q.subarray(row * c.dim), T, c.dim, pos0, c.headSize, freqs)
        rope(s.k.subarray(row * kvDim), T, kvDim, pos0, c.headSize, freqs)
        mem.f32(kv.keysPtr(i) + pos0 * kvDim * 4, T * kvDim).set(s.k.subarray(row * kvDim, (row + T) * kvDim))
        mem.f32(kv.valuesPtr(i) + pos0 * kvDim * 4, T * kvDim).set(s.v.subarray(row * kvDim, (row + T) * kvDim))
        // xb = softmax(q kᵀ / √headSize) v over the span's positions ≤ each row's own.
        backend.attention(s.ptr.xb + row * c.dim * 4, s.ptr.q + row * c.dim * 4, kv.keysPtr(i), kv.valuesPtr(i), T, pos0, c)
      }
      // x += wo · xb.
      mm(s.ptr.out, w.wo, s.ptr.xb)
      accumulate(s.x, s.out, R * c.dim)
      // Feed-forward block: xb = rmsnorm(x); [gate up] = w13 · xb; x += w2 · (silu(gate) ⊙ up).
      rmsnorm(s.xb, s.x, w.ffnNorm, R, c.dim, c.normEps)
      mm(s.ptr.h13, w.w13, s.ptr.xb)
      for (let t = 0; t < R; t++) {
        const gate = s.ptr.h13 + t * 2 * h * 4
        backend.swiglu(gate, gate + h * 4, h)
        s.hb.set(s.h13.subarray(t * 2 * h, t * 2 * h + h), t * h)
      }
      mm(s.ptr.out, w.w2, s.ptr.hb)
      accumulate(s.x, s.out, R * c.dim)
    }
  }

  function logits (first: number, rows: number): Float32Array {
    const finalNorm = weights.finalNorm as Float32Array
    const output = weights.output as NonNullable<ShardWeights['output']>
    rmsnorm(s.xb, s.x.subarray(first * c.dim), finalNorm, rows, c.dim, c.normEps)
    backend.matmul(s.ptr.out, output, s.ptr.xb, rows)
    return s.out.slice(0, rows * c.vocabSize)
  }

  function logitsOfRows (rows: readonly number[]): Float32Array {
    const finalNorm = weights.finalNorm as Float32Array
    const output = weights.output as NonNullable<ShardWeights['output']>
    // gather: xb row k = rmsnorm(x row rows[k]), then one LM-head matmul over the k rows
    rows.forEach((r, k) => { rmsnorm(s.xb.subarray(k * c.dim), s.x.subarray(r * c.dim), finalNorm, 1, c.dim, c.normEps) })
    backend.matmul(s.ptr.out, output, s.ptr.xb, rows.length)
    return s.out.slice(0, rows.length * c.vocabSize)
  }

  function load (input: StageInput, from: number, T: number, row: number): void {
    if ('tokens' in input) {
      const embedding = weights.embedding as NonNullable<ShardWeights['embedding']>
      for (let t = 0; t < T; t++) embedding.lookup(input.tokens[from + t], s.x.subarray((row + t) * c.dim, (row + t + 1) * c.dim))
    } else {
      s.x.set(input.hidden.subarray(from * c.dim, (from + T) * c.dim), row * c.dim)
    }
  }

  function check (input: StageInput, where = ''): number {
    let T: number
    if (typeof input !== 'object' || input === null) throw new ShapeError(where + 'a step input is { tokens } or { hidden }')
    if ('tokens' in input) {
      if (!isFirst) throw new ShardConfigError(`${where}stage [${start}, ${end}) takes hidden states, not token ids`)
      T = input.tokens.length
      for (let i = 0; i < T; i++) {
        const id = input.tokens[i]
        if (!Number.isInteger(id) || id < 0 || id >= c.vocabSize) throw new ShapeError(`${where}token id ${id} is outside [0, ${c.vocabSize})`)
      }
    } else {
      if (isFirst) throw new ShardConfigError(`${where}stage [${start}, ${end}) is the first stage and takes token ids`)
      const h = input.hidden
      if (!(h instanceof Float32Array)) throw new ShapeError(where + 'hidden states must be a Float32Array')
      if (h.length === 0 || h.length % c.dim !== 0) throw new ShapeError(`${where}hidden states of length ${h.length} are not [T, ${c.dim}]`)
      T = h.length / c.dim
      for (let i = 0; i < h.length; i++) if (!Number.isFinite(h[i])) throw new ShapeError(`${where}hidden state ${i} is not finite`)
    }
    if (!(T >= 1)) throw new ShapeError(where + 'a step needs at least one position')
    return T
  }

  return { config: c, mem, nLocal, kvDim, isFirst, isLast, check, load, forward, logits, logitsOfRows, scratch: s }
}
