// Named errors of the inference protocol; tests match `err.name`.

/**
 * A stage refused or failed a session; `status` is the wire status it answered with, `peer` the
 * stage its Result named as the one that failed (Result.peer), when it named one.
 */
export class InferenceFailedError extends Error {
  override name = 'InferenceFailedError'
  readonly status: string
  readonly peer?: string
  constructor (status: string, message: string, options?: ErrorOptions & { peer?: string }) {
    super(message, options)
    this.status = status
    if (options?.peer !== undefined && options.peer !== '') this.peer = options.peer
  }
}

/** A stage's step queue is full (the stage scheduler refuses more steps). */
export class SchedulerFullError extends Error {
  override name = 'SchedulerFullError'
}

/** A queued step was dropped because its session ended. */
export class StepCancelledError extends Error {
  override name = 'StepCancelledError'
}
