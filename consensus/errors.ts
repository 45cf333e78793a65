// Typed errors of consensus/.

/** A record (ballot, reveal, round, evidence) that does not follow its schema. */
export class InvalidConsensusRecordError extends Error {
  override name = 'InvalidConsensusRecordError'
}

/** Arguments a consensus function cannot work with (an empty round, a negative weight). */
export class ConsensusInputError extends Error {
  override name = 'ConsensusInputError'
}
