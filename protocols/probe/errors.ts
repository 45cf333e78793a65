// Named errors of the probe protocol; tests match `err.name`.

/** The listener answered with a non-OK status, or its reply did not match the request. */
export class ProbeFailedError extends Error {
  override name = 'ProbeFailedError'
}
