// Named errors of client/; callers (and the HTTP API) match `err.name` or use instanceof.
export { InferenceFailedError } from '../protocols/index.ts'

/** No chain of live nodes covers the model's layers (nobody serves some layer now). */
export class NoRouteError extends Error {
  override name = 'NoRouteError'
}

/** The model id is not offered in the swarm (or is ambiguous when none was named). */
export class ModelNotFoundError extends Error {
  override name = 'ModelNotFoundError'
  readonly model: string | undefined
  constructor (model: string | undefined, message: string, options?: ErrorOptions) {
    super(message, options)
    this.model = model
  }
}

/** A request the client refuses before touching the network: bad types, ranges, or a prompt too long for the model. */
export class InvalidRequestError extends Error {
  override name = 'InvalidRequestError'
  /** The offending field (`maxTokens`, `prompt`, …). */
  readonly param: string | undefined
  /** 'context_length_exceeded' when prompt + maxTokens passes the model's context. */
  readonly code: string | undefined
  constructor (message: string, param?: string, code?: string, options?: ErrorOptions) {
    super(message, options)
    this.param = param
    this.code = code
  }
}

/** The client has no tokenizer for this model (pass `tokenizer` to connect). */
export class TokenizerUnavailableError extends Error {
  override name = 'TokenizerUnavailableError'
}

/** The request was cancelled through its AbortSignal (or the client was closed). */
export class AbortError extends Error {
  override name = 'AbortError'
}

/** `consensus` was asked for: verified generation is issue 7 and does not exist yet. */
export class ConsensusNotImplementedError extends Error {
  override name = 'ConsensusNotImplementedError'
}

/** `connect` could not reach any bootstrap peer. */
export class ConnectFailedError extends Error {
  override name = 'ConnectFailedError'
}
