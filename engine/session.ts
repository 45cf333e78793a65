// The forward pass of one shard for one session, read top to bottom like llama2.c's `forward`:
// embed (first stage) → for each local layer: attention block, feed-forward block → final norm and
// LM head (last stage). Activations live in per-shard scratch in engine memory (the kernels read
// them there); each session owns only its KV cache, also in engine memory (the attention kernel
// reads it there), grown as positions are added and freed on close.
import { SessionLimitError, ShapeError, ShardConfigError } from './errors.ts'
import type { ComputeBackend, EngineMemory, ModelConfig, Session, StageInput, StageOutput, StepOptions } from './index.ts'
import { accumulate, addBias, rmsnorm, rope, ropeFrequencies } from './ops.ts'
import type { ShardWeights } from './shard.ts'

const INITIAL_KV_POSITIONS = 256

/** Activation buffers shared by all sessions of a shard (steps run one at a time). */
export interface Scratch {
  T: number // rows each buffer holds (the prefill chunk)
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

export interface SessionInit {
  config: ModelConfig
  weights: ShardWeights
  backend: ComputeBackend
  scratch: Scratch
  start: number
  end: number
  maxLength: number
}

export function createSession (init: SessionInit): Session {
  const { config: c, weights, backend, scratch: s, start, end } = init
  const kvDim = c.nKvHeads * c.headSize
  const nLocal = end - start
  const isFirst = start === 0
  const isLast = end === c.nLayers
  if (!Number.isInteger(init.maxLength) || init.maxLength < 1 || init.maxLength > c.seqLen) {
    throw new SessionLimitError(`maxLength ${init.maxLength} is not in [1, ${c.seqLen}]`)
  }
  const maxLength = init.maxLength
  const mem = backend.mem
  const freqs = ropeFrequencies(c.headSize, c.ropeTheta, c.ropeScaling) // (headSize / 2)
  // KV cache in engine memory (the attention kernel reads it there), one block for all local
  // layers: layer i's keys at kvPtr + 2i × layerBytes, its values right after. (positions, kvDim)
  let capacity = Math.min(maxLength, INITIAL_KV_POSITIONS)
  let layerBytes = capacity * kvDim * 4
  let kvPtr = mem.alloc(2 * nLocal * layerBytes)
  const keysPtr = (i: number) => kvPtr + 2 * i * layerBytes
  const valuesPtr = (i: number) => kvPtr + (2 * i + 1) * layerBytes
  let position = 0
  let closed = false

  function ensureCapacity (positions: number): void {
    if (positions <= capacity) return
    let next = capacity
    while (next < positions) next *= 2
    next = Math.min(next, maxLength)
    const nextLayerBytes = next * kvDim * 4
    const nextPtr = mem.alloc(2 * nLocal * nextLayerBytes)
    for (let j = 0; j < 2 * nLocal; j++) {
      mem.f32(nextPtr + j * nextLayerBytes, position * kvDim).set(mem.f32(kvPtr + j * layerBytes, position * kvDim))
    }
    mem.free(kvPtr)
    kvPtr = nextPtr
    capacity = next
    layerBytes = nextLayerBytes
  }

  /** Runs T ≤ scratch.T positions starting at `position`; the chunk's input is already in s.x. */
  function forwardChunk (T: number): void {
    const pos0 = position
    const mm = (outPtr: number, w: Parameters<ComputeBackend['matmul']>[1], xPtr: number) => backend.matmul(outPtr, w, xPtr, T)
    const qkvWidth = c.dim + 2 * kvDim
    const h = c.hiddenDim
    for (let i = 0; i < nLocal; i++) {
      const w = weights.layers[i]
      // Attention block: xb = rmsnorm(x); [q k v] = wqkv · xb (+ biases); rotate q, k; cache k, v.
      rmsnorm(s.xb, s.x, w.attentionNorm, T, c.dim, c.normEps)
      mm(s.ptr.qkv, w.wqkv, s.ptr.xb)
      if (w.bqkv !== undefined) addBias(s.qkv, w.bqkv, T)
      for (let t = 0; t < T; t++) {
        const row = t * qkvWidth
        s.q.set(s.qkv.subarray(row, row + c.dim), t * c.dim)
        s.k.set(s.qkv.subarray(row + c.dim, row + c.dim + kvDim), t * kvDim)
        s.v.set(s.qkv.subarray(row + c.dim + kvDim, row + qkvWidth), t * kvDim)
      }
      rope(s.q, T, c.dim, pos0, c.headSize, freqs)
      rope(s.k, T, kvDim, pos0, c.headSize, freqs)
      mem.f32(keysPtr(i) + pos0 * kvDim * 4, T * kvDim).set(s.k.subarray(0, T * kvDim))
      mem.f32(valuesPtr(i) + pos0 * kvDim * 4, T * kvDim).set(s.v.subarray(0, T * kvDim))
      // xb = softmax(q kᵀ / √headSize) v over positions ≤ each row's own; x += wo · xb.
      backend.attention(s.ptr.xb, s.ptr.q, keysPtr(i), valuesPtr(i), T, pos0, c)
      mm(s.ptr.out, w.wo, s.ptr.xb)
      accumulate(s.x, s.out, T * c.dim)
      // Feed-forward block: xb = rmsnorm(x); [gate up] = w13 · xb; x += w2 · (silu(gate) ⊙ up).
      rmsnorm(s.xb, s.x, w.ffnNorm, T, c.dim, c.normEps)
      mm(s.ptr.h13, w.w13, s.ptr.xb)
      for (let t = 0; t < T; t++) {
        const gate = s.ptr.h13 + t * 2 * h * 4
        backend.swiglu(gate, gate + h * 4, h)
        s.hb.set(s.h13.subarray(t * 2 * h, t * 2 * h + h), t * h)
      }
      mm(s.ptr.out, w.w2, s.ptr.hb)
      accumulate(s.x, s.out, T * c.dim)
    }
    position += T
  }

  /** Last stage: logits of `rows` rows of s.x starting at `first`, via final norm + LM head. */
  function logitsOf (first: number, rows: number): Float32Array {
    const finalNorm = weights.finalNorm as Float32Array
    const output = weights.output as NonNullable<ShardWeights['output']>
    rmsnorm(s.xb, s.x.subarray(first * c.dim), finalNorm, rows, c.dim, c.normEps)
    backend.matmul(s.ptr.out, output, s.ptr.xb, rows)
    return s.out.slice(0, rows * c.vocabSize)
  }

  function loadInput (input: StageInput, from: number, T: number): void {
    if ('tokens' in input) {
      const embedding = weights.embedding as NonNullable<ShardWeights['embedding']>
      for (let t = 0; t < T; t++) embedding.lookup(input.tokens[from + t], s.x.subarray(t * c.dim, (t + 1) * c.dim))
    } else {
      s.x.set(input.hidden.subarray(from * c.dim, (from + T) * c.dim))
    }
  }

  function validate (input: StageInput): number {
    let T: number
    if ('tokens' in input) {
      if (!isFirst) throw new ShardConfigError(`stage [${start}, ${end}) takes hidden states, not token ids`)
      T = input.tokens.length
      for (let i = 0; i < T; i++) {
        const id = input.tokens[i]
        if (!Number.isInteger(id) || id < 0 || id >= c.vocabSize) throw new ShapeError(`token id ${id} is outside [0, ${c.vocabSize})`)
      }
    } else {
      if (isFirst) throw new ShardConfigError(`stage [${start}, ${end}) is the first stage and takes token ids`)
      const h = input.hidden
      if (h.length === 0 || h.length % c.dim !== 0) throw new ShapeError(`hidden states of length ${h.length} are not [T, ${c.dim}]`)
      T = h.length / c.dim
      for (let i = 0; i < h.length; i++) if (!Number.isFinite(h[i])) throw new ShapeError(`hidden state ${i} is not finite`)
    }
    if (T < 1) throw new ShapeError('a step needs at least one position')
    if (position + T > maxLength) throw new SessionLimitError(`positions [${position}, ${position + T}) exceed the session's maximum length ${maxLength}`)
    return T
  }

  return {
    get position () { return position },
    maxLength,
    get kvBytes () { return 2 * nLocal * capacity * kvDim * 4 },
    step (input: StageInput, options: StepOptions = {}): StageOutput {
      if (closed) throw new SessionLimitError('session is closed')
      const T = validate(input)
      ensureCapacity(position + T)
      const allLogits = isLast && options.logits === 'all'
      const hidden = isLast ? undefined : new Float32Array(T * c.dim)
      const logits = allLogits ? new Float32Array(T * c.vocabSize) : undefined
      let last: Float32Array | undefined
      for (let from = 0; from < T; from += s.T) {
        const n = Math.min(s.T, T - from)
        loadInput(input, from, n)
        forwardChunk(n)
        if (hidden !== undefined) hidden.set(s.x.subarray(0, n * c.dim), from * c.dim)
        if (logits !== undefined) logits.set(logitsOf(0, n), from * c.vocabSize)
        else if (isLast && from + n === T) last = logitsOf(n - 1, 1)
      }
      return isLast ? { logits: logits ?? last } : { hidden }
    },
    truncate (to: number): void {
      if (!Number.isInteger(to) || to < 0 || to > position) throw new SessionLimitError(`cannot truncate to ${to}: session is at ${position}`)
      position = to
    },
    close (): void {
      if (closed) return
      closed = true
      mem.free(kvPtr)
    }
  }
}
