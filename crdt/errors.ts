// Errors of crdt/. Tests match `err.name`.

/** A local write that this node may not make (outside its namespace, too large, not JSON). */
export class InvalidRecordError extends Error {
  override name = 'InvalidRecordError'
}

/** The envelope log on disk is damaged; nothing of it was loaded. */
export class CorruptStoreError extends Error {
  override name = 'CorruptStoreError'
}

/** Bytes that do not decode as an envelope or a run. */
export class MalformedEnvelopeError extends Error {
  override name = 'MalformedEnvelopeError'
}

/** A local write that would take this node's envelopes past its storage quota (MAX_WRITER_BYTES). */
export class WriterQuotaError extends Error {
  override name = 'WriterQuotaError'
}
