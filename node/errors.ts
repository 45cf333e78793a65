// Named errors of node/. The CLI prints their message as one line (see cli.ts USER_ERRORS).

/** The identity key file exists but cannot be read as a libp2p private key. */
export class IdentityCorruptError extends Error {
  override name = 'IdentityCorruptError'
}

/** The identity key file is readable by other users (it must be 0600). */
export class IdentityPermissionError extends Error {
  override name = 'IdentityPermissionError'
}

/** A command-line flag or config value is invalid. */
export class ConfigError extends Error {
  override name = 'ConfigError'
}

/** The daemon's control socket refused a request or is not there. */
export class ControlError extends Error {
  override name = 'ControlError'
}

/** A relay candidate serves another swarm while a relay of our swarm is known (relay-choice.ts). */
export class NotASwarmRelayError extends Error {
  override name = 'NotASwarmRelayError'
}

/** The node could not hash, measure or publish the model it was started with. */
export class ModelStartupError extends Error {
  override name = 'ModelStartupError'
}

/** A model named by a Hugging Face repo id could not be downloaded (network, missing repo or file). */
export class ModelDownloadError extends Error {
  override name = 'ModelDownloadError'
}
