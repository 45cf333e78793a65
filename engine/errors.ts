// Errors of engine/. Tests match `err.name`.

/** A model or tokenizer file is missing, truncated, corrupt or inconsistent with its config. */
export class ModelFormatError extends Error {
  override name = 'ModelFormatError'
  readonly file: string
  constructor (file: string, message: string, options?: ErrorOptions) {
    super(`${file}: ${message}`, options)
    this.file = file
  }
}

/** A request the loaded shard cannot serve: wrong layer range, wrong stage input, bad dtype. */
export class ShardConfigError extends Error {
  override name = 'ShardConfigError'
}

/** A session was asked to go past its maximum length, or to an impossible position. */
export class SessionLimitError extends Error {
  override name = 'SessionLimitError'
}

/** Input to a codec or kernel that does not have the declared size or shape. */
export class ShapeError extends Error {
  override name = 'ShapeError'
}
