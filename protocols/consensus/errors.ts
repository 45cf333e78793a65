// Typed errors of the consensus judging protocol.

/** The judge refused, failed or broke the exchange. */
export class JudgingFailedError extends Error {
  override name = 'JudgingFailedError'
}
