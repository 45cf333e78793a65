// Public surface of engine/: the types every format, kernel and executor file shares, and the
// factory functions applications call. Implementation files import their types from here.

/** How a weight matrix is held in memory for the kernels. */
export type WeightDType = 'f32' | 'f16' | 'q8_0' | 'q4_0'

/** How a tensor is stored in a model file. */
export type SourceDType = 'f32' | 'f16' | 'bf16' | 'q8_0' | 'q4_0'

/** Architecture hyper-parameters, normalised across llama2.c, Hugging Face and GGUF. */
export interface ModelConfig {
  architecture: 'llama' | 'mistral' | 'qwen2'
  dim: number // model (residual stream) width
  hiddenDim: number // feed-forward inner width
  nLayers: number
  nHeads: number // query heads
  nKvHeads: number // key/value heads (grouped-query attention when < nHeads)
  headSize: number // dim / nHeads
  vocabSize: number
  seqLen: number // maximum context length
  ropeTheta: number
  normEps: number
  tiedEmbeddings: boolean // the LM head reuses the token embedding matrix
  qkvBias: boolean // qwen2: q/k/v projections carry biases
  bosId: number
  eosId: number
  /** Llama 3.1-style RoPE frequency scaling (HF `rope_scaling.rope_type: "llama3"`). */
  ropeScaling?: RopeScaling
}

/**
 * Llama 3's long-context RoPE: low frequencies divided by `factor`, a smooth band in between
 * (as Hugging Face configs state it), or the per-pair divisors llama.cpp stores in a GGUF's
 * `rope_freqs` tensor (`factors[j]` divides pair j's frequency).
 */
export type RopeScaling =
  | { type: 'llama3', factor: number, lowFreqFactor: number, highFreqFactor: number, originalMaxPositions: number }
  | { type: 'factors', factors: number[] }

/**
 * A tensor as stored in a file, not yet read. Canonical names: `tok_embeddings`, `norm`,
 * `output` (absent when tied), and per layer `layers.{i}.{attention_norm,wq,wk,wv,wo,bq,bk,bv,
 * ffn_norm,w1,w2,w3}` (w1 = gate, w2 = down, w3 = up). Matrices are `[rows, cols]` = `[out, in]`,
 * row-major, `y = W x`. RoPE is always applied to adjacent pairs (llama2.c / GGUF convention):
 * a format that stores q/k for rotate-half (Hugging Face) sets `permuteHeads` and the loader
 * undoes that permutation of the rows.
 */
export interface TensorRef {
  name: string
  file: string
  offset: number // byte offset of the first element in `file`
  byteLength: number
  dtype: SourceDType
  shape: number[] // [rows, cols] or [n]
  permuteHeads?: number // rows were permuted for rotate-half RoPE with this many heads
}

export interface TokenizerSource {
  kind: 'llama2c' | 'hf' | 'gguf'
  path: string
}

/** A model found on disk: its config, where each tensor lives, and where its tokenizer is. */
export interface ModelSource {
  path: string
  format: 'llama2c' | 'hf' | 'gguf'
  config: ModelConfig
  tensors: Map<string, TensorRef>
  tokenizer?: TokenizerSource
}

/**
 * Text ↔ token ids. `decodeTokenBytes` follows llama2.c's `decode`: the bytes of `token`'s piece
 * after `prev` (no leading space right after BOS). A piece can be part of a UTF-8 character
 * (byte-fallback and byte-level tokens), so a stream of tokens becomes text through
 * `createTextStream` (text-stream.ts); `decodeToken` is the lossy one-token convenience.
 */
export interface Tokenizer {
  readonly vocabSize: number
  readonly bosId: number
  readonly eosId: number
  encode(text: string, options?: { bos?: boolean, eos?: boolean }): number[]
  decodeTokenBytes(prev: number, token: number): Uint8Array
  decodeToken(prev: number, token: number): string
  decode(ids: number[]): string
}

/**
 * A weight matrix placed in engine memory (an arena inside a WebAssembly.Memory).
 * Layouts (rows = out features, cols = in features):
 * - f32: row-major float32. f16: row-major IEEE half (uint16).
 * - q8_0: rows grouped by 4; for each group g and 32-column block b the 4 rows' int8 quants are
 *   stored back to back ([r0 32B][r1 32B][r2 32B][r3 32B]) at `ptr + (g * nb + b) * 128`;
 *   the f32 scales at `scalesPtr + ((g * nb + b) * 4 + r) * 4`. nb = cols / 32.
 * - q4_0: same grouping; each row's block is 16 bytes: byte j holds element j in its low nibble
 *   and element j + 16 in its high nibble, value = (nibble - 8) * scale; group-block stride 64 B.
 * q8_0 and q4_0 need rows % 4 == 0 and cols % 32 == 0 (`quantizable`); other matrices stay f32.
 */
export interface Matrix {
  dtype: WeightDType
  rows: number
  cols: number
  ptr: number
  scalesPtr: number // 0 unless q8_0 / q4_0
}

/** Memory the kernels can see: an allocator over one (shared) WebAssembly.Memory. */
export interface EngineMemory {
  readonly memory: WebAssembly.Memory
  alloc(bytes: number, align?: number): number
  /** Returns a block from `alloc` (session KV caches; weights are never freed). */
  free(ptr: number): void
  f32(ptr: number, length: number): Float32Array
  u8(ptr: number, length: number): Uint8Array
  /** Bytes in live blocks, and the highest address ever handed out. */
  readonly usedBytes: number
  readonly topBytes: number
}

/** Head counts of grouped-query attention. */
export interface AttentionShape {
  nHeads: number
  nKvHeads: number
  headSize: number
}

/** Kernels over engine memory (all pointers are byte offsets of f32 arrays there). */
export interface ComputeBackend {
  readonly name: 'wasm' | 'reference'
  readonly threads: number
  readonly mem: EngineMemory
  /** out[t, r] = sum_c W[r, c] * x[t, c], t < T. */
  matmul(outPtr: number, w: Matrix, xPtr: number, T: number): void
  /**
   * Causal attention of T query rows at positions pos0 … pos0 + T - 1 over a KV cache that
   * already holds their keys and values: q, out (T, nHeads × headSize); keys, values
   * (≥ pos0 + T, nKvHeads × headSize).
   */
  attention(outPtr: number, qPtr: number, keysPtr: number, valuesPtr: number, T: number, pos0: number, shape: AttentionShape): void
  /** gate[i] = silu(gate[i]) × up[i] for i < n: the SwiGLU activation. */
  swiglu(gatePtr: number, upPtr: number, n: number): void
  close(): Promise<void>
}

export * from './errors.ts'
export { loadModel, loadShard } from './load.ts'
export type { LoadedModel, LoadModelOptions } from './load.ts'

/** Options for `loadShard`. */
export interface ShardOptions {
  /** First layer of the half-open range [start, end); default 0. */
  start?: number
  /** End of the range; default the model's layer count. */
  end?: number
  /** How matrices are held in memory; default 'f32'. Matrices whose shape q8_0/q4_0 cannot
   * tile (rows % 4, cols % 32) stay f32. */
  dtype?: WeightDType
  /** 'wasm' (SIMD kernels, default) or 'reference' (plain TypeScript, slow, the oracle). */
  backend?: 'wasm' | 'reference'
  /** Kernel threads for the wasm backend; default 1. */
  threads?: number
  /** Rows of the shard's activation scratch: positions per internal prefill chunk, and sessions
   * per pass of `stepBatch` (larger batches run in several passes); default DEFAULT_MAX_BATCH. */
  maxBatch?: number
  signal?: AbortSignal
  /**
   * Load progress: called after each layer's weights (and the head) were read, with the bytes of
   * the model file read so far and the total this shard will read (the tensors of its layers,
   * plus the final norm and LM head on the last stage; the embedding table stays on disk), and
   * once more with (total, total) when the weights are loaded. Synchronous; an exception it
   * throws fails the load.
   */
  onProgress?: (bytesRead: number, totalBytes: number) => void
}

/** Input to a stage: token ids for the first stage, hidden states [T, dim] for the others. */
export type StageInput = { tokens: ArrayLike<number> } | { hidden: Float32Array }

export interface StepOptions {
  /** Last stage only: logits of the last position (default) or of every position ([T, vocab]). */
  logits?: 'last' | 'all'
}

/** What a step returns: hidden states [T, dim] from a middle stage, logits from the last. */
export interface StageOutput {
  hidden?: Float32Array
  logits?: Float32Array
}

/** One sequence's state on a shard: its KV cache and position. */
export interface Session {
  /** Number of positions already in the KV cache; the next step starts here. */
  readonly position: number
  readonly maxLength: number
  /** Bytes held by this session's KV cache right now. */
  readonly kvBytes: number
  /** Runs T positions (a prefill chunk, or T = 1 for a decode step) through the shard's layers. */
  step(input: StageInput, options?: StepOptions): StageOutput
  /** Forgets positions ≥ `position` (to replay or rewind). */
  truncate(position: number): void
  close(): void
}

/** A loaded contiguous range of a model's layers. */
export interface Shard {
  readonly config: ModelConfig
  readonly start: number
  readonly end: number
  readonly isFirst: boolean
  readonly isLast: boolean
  readonly dtype: WeightDType
  readonly backend: ComputeBackend
  /** Bytes of weights held in engine memory, and bytes read from the model files to load them. */
  readonly weightBytes: number
  readonly bytesRead: number
  /** Rows one pass runs (scratch size): a prefill chunk, or sessions of one batch pass. */
  readonly maxBatch: number
  openSession(options?: { maxLength?: number }): Session
  /**
   * One step for each of several sessions of this shard, run together: a decode step (T = 1) or a
   * prefill chunk (T ≤ maxBatch); items are packed in order into passes of at most maxBatch rows,
   * and each layer's weights are read once per pass, not once per session. Outputs are in item
   * order, each exactly what `item.session.step(item.input)` would return ([T, dim] hidden, or the
   * last position's logits on the last stage). Every item is checked first (a session of this
   * shard, open, at most once per batch, 1 to maxBatch positions within its maximum length,
   * `position` if given equal to the session's): on a bad item it throws a named error and no
   * session changes.
   */
  stepBatch(items: readonly BatchItem[]): StageOutput[]
  close(): Promise<void>
}

/** One session's decode step in `Shard.stepBatch`. */
export interface BatchItem {
  session: Session
  /** Token ids (first stage) or hidden states [T, dim]; T = 1 for a decode step. */
  input: StageInput
  /** The position this step writes, checked against `session.position` when given. */
  position?: number
}

export { DEFAULT_MAX_BATCH } from './constants.ts'
export { openModel, openTokenizer } from './formats/open-model.ts'
export { createSampler, argmax, createRng } from './sampler.ts'
// the sampler's softmax, for replaying its draws (consensus/spot-check-sampled.ts)
export { softmax } from './ops.ts'
export type { Sampler, SamplerOptions } from './sampler.ts'
export { encodeHidden, decodeHidden, encodedHiddenBytes, HIDDEN_CODECS } from './codecs.ts'
export type { HiddenCodec } from './codecs.ts'
export { generate, sessionStepper } from './generate.ts'
export type { GenerateEvent, GenerateOptions, LogitStepper } from './generate.ts'
export { createLocalPipeline } from './local-pipeline.ts'
export { createTextStream } from './text-stream.ts'
export type { TextStream } from './text-stream.ts'
export { createWasmBackend } from './wasm-backend.ts'
export { createReferenceBackend } from './reference-backend.ts'
