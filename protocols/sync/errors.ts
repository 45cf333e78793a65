// Errors of the swarm-state replication service. Tests match `err.name`.

/** A sync peer answered with a non-OK status or a reply that does not decode. */
export class SyncFailedError extends Error {
  override name = 'SyncFailedError'
}

/** The service was used before libp2p started it (or after it stopped). */
export class SyncNotStartedError extends Error {
  override name = 'SyncNotStartedError'
}
