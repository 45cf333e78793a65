// Continuous batching on a stage: every engine step of every session goes through one scheduler.
// A step is queued and run on a later turn of the event loop (setImmediate), so the decode steps
// (T = 1) that arrive meanwhile — frames read while the engine was busy, tokens just sampled —
// run together in one `shard.stepBatch` (each layer's weights read once per pass). A batch is
// whatever is ready: sessions join at their next step and leave when they end; a ring's first
// stage caps it into microbatches (see `run`). Prefill steps (T > 1) run in chunks of at most
// `shard.maxBatch` positions in the same `stepBatch` as the decode steps: about one pass's worth
// of positions per turn (round-robin among prompts, each at most one chunk per turn), so a long
// prompt cannot starve the decoders nor they it, and many short prompts start together. The
// queue is bounded; cancelling a session drops its queued step. A batch the engine refuses (a
// session's bad input) is re-run one session at a time, so one session's error never fails the
// others.
import type { Session, Shard, StageInput, StageOutput } from '../../engine/index.ts'
import { INFERENCE_MAX_QUEUED_STEPS } from './constants.ts'
import { SchedulerFullError, StepCancelledError } from './errors.ts'

/** Batching counters (reported with the service's stats). */
export interface SchedulerStats {
  /** Decode passes run (`stepBatch` calls) and the decode steps they held. */
  batches: number
  batchedSteps: number
  /** Largest decode batch so far, and how many batches had each size. */
  maxBatchSize: number
  batchSizes: Record<number, number>
  /** Prefill chunks run (in the same passes as the decode steps of their turn). */
  prefillChunks: number
}

export interface StageSchedulerInit {
  /** Steps queued at once (default INFERENCE_MAX_QUEUED_STEPS); more are refused. */
  maxQueued?: number
}

interface Job {
  shard: Shard
  session: Session
  input: StageInput
  /** Positions in the step, and how many are done (prefill runs in chunks). */
  T: number
  /** Most decode steps to run in one pass with this one (microbatches: see `run`). */
  cap: number
  done: number
  parts: StageOutput[]
  resolve: (out: StageOutput) => void
  reject: (err: Error) => void
}

export class StageScheduler {
  readonly stats: SchedulerStats = { batches: 0, batchedSteps: 0, maxBatchSize: 0, batchSizes: {}, prefillChunks: 0 }
  private readonly maxQueued: number
  private decode: Job[] = []
  private prefill: Job[] = []
  private scheduled = false

  constructor (init: StageSchedulerInit = {}) {
    this.maxQueued = init.maxQueued ?? INFERENCE_MAX_QUEUED_STEPS
  }

  /** Steps waiting now. */
  get queued (): number { return this.decode.length + this.prefill.length }

  /**
   * Queues one step of `session` (T positions of `input`, T ≥ 1, already checked); resolves with
   * its output. `microbatch` caps how many decode steps run in one pass with this one: the first
   * stage of a ring of n stages splits its sessions into n microbatches, so that while it runs one
   * the next stages run the others (a single batch would leave every other stage idle meanwhile).
   */
  async run (shard: Shard, session: Session, input: StageInput, T: number, microbatch = Number.POSITIVE_INFINITY): Promise<StageOutput> {
    if (this.queued >= this.maxQueued) throw new SchedulerFullError(`${this.queued} steps already queued`)
    return await new Promise<StageOutput>((resolve, reject) => {
      const job: Job = { shard, session, input, T, cap: Math.max(1, microbatch), done: 0, parts: [], resolve, reject }
      if (T === 1) this.decode.push(job)
      else this.prefill.push(job)
      this.wake()
    })
  }

  /** Drops the queued step of `session`, if any (its promise rejects with StepCancelledError). */
  cancel (session: Session): void {
    for (const queue of [this.decode, this.prefill]) {
      const i = queue.findIndex((j) => j.session === session)
      if (i >= 0) queue.splice(i, 1)[0].reject(new StepCancelledError('session ended'))
    }
  }

  private wake (): void {
    if (this.scheduled) return
    this.scheduled = true
    setImmediate(() => {
      this.scheduled = false
      this.turn()
      if (this.queued > 0) this.wake()
    })
  }

  /**
   * One turn: the ready decode steps (per shard, oldest first, up to the microbatch) and prefill
   * chunks of the waiting prompts (round-robin, each at most one chunk, until one pass's worth of
   * positions, maxBatch) run together: one `stepBatch` per shard.
   */
  private turn (): void {
    const work = new Map<Shard, Work[]>()
    const add = (job: Job, n: number): void => { work.set(job.shard, [...(work.get(job.shard) ?? []), { job, n }]) }
    const ready = this.decode
    this.decode = []
    const byShard = new Map<Shard, Job[]>()
    for (const job of ready) byShard.set(job.shard, [...(byShard.get(job.shard) ?? []), job])
    for (const jobs of byShard.values()) {
      let n = 0
      let cap = Number.POSITIVE_INFINITY
      while (n < jobs.length && n < Math.min(cap, jobs[n].cap)) cap = Math.min(cap, jobs[n++].cap)
      for (const job of jobs.slice(0, n)) add(job, 1)
      this.decode.push(...jobs.slice(n)) // the rest wait a turn, at the front
    }
    const waiting = this.prefill
    this.prefill = []
    let budget = waiting[0]?.shard.maxBatch ?? 0
    while (waiting.length > 0 && budget > 0) {
      const job = waiting.shift() as Job
      const n = Math.min(job.shard.maxBatch, job.T - job.done)
      add(job, n)
      budget -= n
    }
    for (const [shard, items] of work) this.runTogether(shard, items)
    this.prefill = [...waiting, ...this.prefill] // the prompts that got no turn go first next time
  }

  private runTogether (shard: Shard, items: Work[]): void {
    const decodes = items.filter((w) => w.job.T === 1).length
    if (decodes > 0) {
      this.stats.batches++
      this.stats.batchedSteps += decodes
      this.stats.maxBatchSize = Math.max(this.stats.maxBatchSize, decodes)
      this.stats.batchSizes[decodes] = (this.stats.batchSizes[decodes] ?? 0) + 1
    }
    this.stats.prefillChunks += items.length - decodes
    const inputs = items.map(chunkInput)
    let outs: Array<StageOutput | Error>
    try {
      outs = shard.stepBatch(items.map((w, i) => ({ session: w.job.session, input: inputs[i] })))
    } catch {
      // a refused batch changed no session: step each alone, so only the bad one fails
      outs = items.map((w, i) => {
        try {
          return w.job.session.step(inputs[i])
        } catch (err) {
          return err as Error
        }
      })
    }
    items.forEach((w, i) => { this.settle(w, outs[i]) })
  }

  /** Resolves a step, or files a prefill chunk's output and requeues the prompt (at the back) until its last chunk. */
  private settle ({ job, n }: Work, out: StageOutput | Error): void {
    if (out instanceof Error) { job.reject(out); return }
    job.done += n
    job.parts.push(out)
    if (job.done < job.T) { this.prefill.push(job); return }
    if (job.parts.length === 1 || job.shard.isLast) { job.resolve(out); return } // the last position's logits
    const hidden = new Float32Array(job.T * job.shard.config.dim)
    let at = 0
    for (const p of job.parts) { hidden.set(p.hidden as Float32Array, at); at += (p.hidden as Float32Array).length }
    job.resolve({ hidden })
  }
}

/** A job's part in one turn: its next n positions. */
interface Work {
  job: Job
  n: number
}

/** The input of a job's next n positions (all of it for a decode step). */
function chunkInput ({ job, n }: Work): StageInput {
  if (n === job.T) return job.input
  const { input, done } = job
  const dim = job.shard.config.dim
  return 'tokens' in input
    ? { tokens: Array.from({ length: n }, (_, t) => input.tokens[done + t]) }
    : { hidden: input.hidden.subarray(done * dim, (done + n) * dim) }
}
