// Named errors of protocols/. Each issue's protocols add their classes here; tests match `err.name`.

/** A swarm name that cannot be used in protocol ids, DHT prefixes or topic names. */
export class InvalidSwarmNameError extends Error {
  override name = 'InvalidSwarmNameError'
}

/** A peer sent bytes that do not decode as the message the protocol expects at that point. */
export class MalformedMessageError extends Error {
  override name = 'MalformedMessageError'
}

/** A bulk transfer was refused or ended before every byte was acknowledged. */
export class TransferFailedError extends Error {
  override name = 'TransferFailedError'
}
