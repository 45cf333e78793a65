// Child process: continuous batching on one model file — decode tokens/s of B sessions stepped one
// after the other (`session.step`, the weights read B times per step) against the same B sessions
// in one `shard.stepBatch` pass (read once per pass of up to maxBatch sessions), whole model
// (embedding → layers → LM head), for each B. Sessions first prefill a few tokens each, to mixed
// positions. Each figure is the best of two runs. Prints its result with ./child.ts's marker.
// Usage (by bench-engine.ts): node scripts/bench/measure-batch.ts '<BatchJob JSON>'
import { loadModel, type Session, type WeightDType } from '../../engine/index.ts'
import { emitResult, readChildInput } from './child.ts'

export interface BatchJob {
  model: string
  dtype: WeightDType
  threads: number
  sessions: number[]
  /** Decode tokens per mode and B (at least one step per session). */
  tokens: number
  warmupSteps: number
}

export interface BatchRow {
  sessions: number
  steps: number
  sequentialTokPerS: number
  batchedTokPerS: number
  speedup: number
}

export interface BatchResult {
  dtype: WeightDType
  threads: number
  dim: number
  nLayers: number
  vocabSize: number
  maxBatch: number
  rows: BatchRow[]
}

const PREFILL = [3, 5, 8, 13] // prompt lengths, by session index: mixed positions
const STEPS_PER_ROUND = 32

async function main (): Promise<void> {
  const job = readChildInput<BatchJob>()
  const { shard } = await loadModel(job.model, { dtype: job.dtype, threads: job.threads })
  const { vocabSize } = shard.config
  const rows: BatchRow[] = []
  for (const B of job.sessions) {
    // decode tokens in rounds: prefill again, then the same positions for every B (attention
    // cost grows with the position); rounds until `tokens` per mode
    const room = shard.config.seqLen - Math.max(...PREFILL) - job.warmupSteps
    const steps = Math.max(1, Math.min(room, STEPS_PER_ROUND, Math.ceil(job.tokens / B)))
    const rounds = Math.ceil(job.tokens / (B * steps))
    const maxLength = Math.max(...PREFILL) + job.warmupSteps + steps
    const sessions: Session[] = Array.from({ length: B }, () => shard.openSession({ maxLength }))
    const token = (i: number, t: number): number => (i * 7919 + t * 104729 + 1) % vocabSize
    const prefill = (): void => {
      sessions.forEach((s, i) => {
        s.truncate(0)
        s.step({ tokens: Array.from({ length: PREFILL[i % PREFILL.length] }, (_, t) => token(i, t)) })
      })
    }
    const sequential = (t: number): void => { sessions.forEach((s, i) => { s.step({ tokens: [token(i, t)] }) }) }
    const batched = (t: number): void => { shard.stepBatch(sessions.map((s, i) => ({ session: s, input: { tokens: [token(i, t)] } }))) }
    const time = (run: (t: number) => void): number => {
      let ms = 0
      for (let r = 0; r < rounds; r++) {
        prefill()
        for (let t = 0; t < job.warmupSteps; t++) run(t)
        const t0 = performance.now()
        for (let t = 0; t < steps; t++) run(job.warmupSteps + t)
        ms += performance.now() - t0
      }
      return (B * steps * rounds) / (ms / 1000)
    }
    // best of two runs each, alternating, so JIT warm-up and a busy moment do not pick the winner
    const first = [time(sequential), time(batched)]
    const sequentialTokPerS = Math.max(first[0], time(sequential))
    const batchedTokPerS = Math.max(first[1], time(batched))
    rows.push({ sessions: B, steps: steps * rounds, sequentialTokPerS, batchedTokPerS, speedup: batchedTokPerS / sequentialTokPerS })
    for (const s of sessions) s.close()
  }
  const { dim, nLayers } = shard.config
  const result: BatchResult = { dtype: job.dtype, threads: job.threads, dim, nLayers, vocabSize, maxBatch: shard.maxBatch, rows }
  emitResult(result)
  await shard.close()
}

await main()
