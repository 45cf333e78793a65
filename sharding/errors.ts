// Named errors of sharding/; tests match `err.name`.

/** A membership or manifest the allocator cannot work with (no layers, bad capability). */
export class AllocationInputError extends Error {
  override name = 'AllocationInputError'
}

/** No chain of live nodes covers every layer. */
export class ShardUnavailableError extends Error {
  override name = 'ShardUnavailableError'
}

/** Capability measurement failed or was given a model it cannot time. */
export class CapabilityError extends Error {
  override name = 'CapabilityError'
}

/** Every route is queued and none can meet the request's latency targets: back off and retry. */
export class SwarmBusyError extends Error {
  override name = 'SwarmBusyError'
}
