// Named errors of the inference protocol; tests match `err.name`.

/** A stage refused or failed a session; `status` is the wire status it answered with. */
export class InferenceFailedError extends Error {
  override name = 'InferenceFailedError'
  readonly status: string
  constructor (status: string, message: string, options?: ErrorOptions) {
    super(message, options)
    this.status = status
  }
}
