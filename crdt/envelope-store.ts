// Persistence in the node's data directory: `<dir>/envelopes.log` holds accepted envelopes in
// acceptance order, `<dir>/forks.log` the fork proofs of excluded writers (framed-log.ts).
// Loading is all or nothing: any damaged byte, or an envelope or proof that does not decode,
// makes load() throw CorruptStoreError; the caller sets the files aside (reset) and rebuilds
// from peers.
import { join } from 'node:path'
import { FORKS_FILE, STORE_FILE } from './constants.ts'
import { decodeEnvelope, decodeForkProof, encodeEnvelope, encodeForkProof } from './envelope.ts'
import { CorruptStoreError } from './errors.ts'
import { FramedLog, frameRecord, LOG_MAGIC, parseRecords } from './framed-log.ts'
import type { Envelope, EnvelopeStore, ForkProof } from './index.ts'

function decodeAll<T> (records: Buffer[], decode: (body: Buffer) => T, what: string): T[] {
  return records.map((body, i) => {
    try {
      return decode(body)
    } catch (err) {
      throw new CorruptStoreError(`record ${i} is not ${what}`, { cause: err })
    }
  })
}

/** Parses a whole envelope log; throws CorruptStoreError on the first damaged byte. */
export function parseLog (bytes: Buffer): Envelope[] {
  return decodeAll(parseRecords(bytes), decodeEnvelope, 'an envelope')
}

/** The envelope and fork-proof logs in `dir` (created if missing). */
export function fileEnvelopeStore (dir: string): EnvelopeStore {
  const envelopes = new FramedLog(join(dir, STORE_FILE))
  const forks = new FramedLog(join(dir, FORKS_FILE))
  return {
    async load () { return decodeAll(await envelopes.read(), decodeEnvelope, 'an envelope') },
    async loadForkProofs () { return decodeAll(await forks.read(), decodeForkProof, 'a fork proof') },
    append (list) { for (const e of list) envelopes.append(encodeEnvelope(e)) },
    appendForkProof (proof) { forks.append(encodeForkProof(proof)) },
    async flush () { await Promise.all([envelopes.flush(), forks.flush()]) },
    async reset () {
      const movedTo = await envelopes.setAside()
      await forks.setAside()
      return movedTo
    },
    async close () { await Promise.all([envelopes.close(), forks.close()]) }
  }
}

/** An in-memory store (tests, and nodes run without a data directory). */
export function memoryEnvelopeStore (): EnvelopeStore & { bytes: () => Buffer } {
  let records: Buffer[] = [LOG_MAGIC]
  let proofs: ForkProof[] = []
  return {
    async load () { return parseLog(Buffer.concat(records)) },
    async loadForkProofs () { return proofs },
    append (list) { for (const e of list) records.push(frameRecord(encodeEnvelope(e))) },
    appendForkProof (proof) { proofs.push(proof) },
    async flush () {},
    async reset () { records = [LOG_MAGIC]; proofs = []; return undefined },
    async close () {},
    bytes: () => Buffer.concat(records)
  }
}
