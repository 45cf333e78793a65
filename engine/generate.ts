// Text generation over anything that maps token ids to next-token logits: one whole-model
// session, or a chain of stage sessions (see local-pipeline.ts). The loop follows llama2.c's
// `generate`: `steps` counts positions (prompt included), the prompt is forced, and generation
// stops early when the model produces BOS. The prompt runs as one batched prefill.
import type { Session } from './index.ts'
import type { Sampler } from './sampler.ts'

/** Runs token ids at the next positions and returns the logits of the last one. */
export interface LogitStepper {
  readonly position: number
  step(tokens: number[]): Float32Array
}

export type GenerateEvent =
  | { type: 'prefill', tokens: number, ms: number }
  | { type: 'token', id: number, prev: number, position: number, forced: boolean }
  | { type: 'done', reason: 'steps' | 'bos', decodeTokens: number, decodeMs: number }

export interface GenerateOptions {
  /** Prompt token ids, BOS first. */
  prompt: number[]
  /** Positions to run, prompt included (llama2.c's `-n steps`). */
  steps: number
  sampler: Sampler
  bosId: number
  signal?: AbortSignal
  now?: () => number
}

/** Adapts a whole-model session (first and last stage) to a LogitStepper. */
export function sessionStepper (session: Session): LogitStepper {
  return {
    get position () { return session.position },
    step: (tokens) => session.step({ tokens }).logits as Float32Array
  }
}

export async function * generate (stepper: LogitStepper, options: GenerateOptions): AsyncGenerator<GenerateEvent> {
  const { prompt, steps, sampler, bosId, signal } = options
  const now = options.now ?? (() => performance.now())
  if (prompt.length === 0) throw new RangeError('the prompt needs at least one token (BOS)')
  // Forced prompt tokens: llama2.c emits prompt[1..] as the "next" of positions 0 … n-2.
  const forced = Math.min(prompt.length - 1, steps)
  for (let i = 1; i <= forced; i++) yield { type: 'token', id: prompt[i], prev: prompt[i - 1], position: i - 1, forced: true }
  if (steps < prompt.length) {
    yield { type: 'done', reason: 'steps', decodeTokens: 0, decodeMs: 0 }
    return
  }
  signal?.throwIfAborted()
  const t0 = now()
  let logits = stepper.step(prompt)
  yield { type: 'prefill', tokens: prompt.length, ms: now() - t0 }
  let token = prompt[prompt.length - 1]
  let decodeTokens = 0
  const t1 = now()
  for (let pos = prompt.length - 1; pos < steps; pos++) {
    signal?.throwIfAborted()
    const next = sampler.sample(logits)
    if (next === bosId) {
      yield { type: 'done', reason: 'bos', decodeTokens, decodeMs: now() - t1 }
      return
    }
    yield { type: 'token', id: next, prev: token, position: pos, forced: false }
    token = next
    if (pos + 1 < steps) {
      logits = stepper.step([next])
      decodeTokens++
    }
  }
  yield { type: 'done', reason: 'steps', decodeTokens, decodeMs: now() - t1 }
}
