// Errors of the swarm-state replication service. Tests match `err.name`.

/** A sync peer answered with a non-OK status or a reply that does not decode. */
export class SyncFailedError extends Error {
  override name = 'SyncFailedError'
}
