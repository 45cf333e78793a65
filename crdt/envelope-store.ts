// Persistence of accepted envelopes in the node's data directory: one append-only log,
// `<dir>/envelopes.log` = magic, then records of [u32 length][u32 crc32][Envelope protobuf].
// Loading is all or nothing: a bad magic, length, checksum or envelope makes load() throw
// CorruptStoreError, and the caller sets the file aside (reset) and rebuilds from peers.
import { existsSync } from 'node:fs'
import { mkdir, open, readFile, rename, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import { crc32 } from 'node:zlib'
import { MAX_STORE_RECORD_BYTES, STORE_FILE } from './constants.ts'
import { decodeEnvelope, encodeEnvelope } from './envelope.ts'
import { CorruptStoreError } from './errors.ts'
import type { Envelope, EnvelopeStore } from './index.ts'

const MAGIC = Buffer.from('MYCENV1\n')

function frame (envelope: Envelope): Buffer {
  const body = encodeEnvelope(envelope)
  const header = Buffer.alloc(8)
  header.writeUInt32BE(body.length, 0)
  header.writeUInt32BE(crc32(body), 4)
  return Buffer.concat([header, body])
}

/** Parses a whole log; throws CorruptStoreError on the first damaged byte. */
export function parseLog (bytes: Buffer): Envelope[] {
  if (bytes.length === 0) return []
  if (bytes.length < MAGIC.length || !bytes.subarray(0, MAGIC.length).equals(MAGIC)) throw new CorruptStoreError('envelope log has no valid header')
  const out: Envelope[] = []
  let at = MAGIC.length
  while (at < bytes.length) {
    if (at + 8 > bytes.length) throw new CorruptStoreError(`truncated record header at byte ${at}`)
    const length = bytes.readUInt32BE(at)
    const sum = bytes.readUInt32BE(at + 4)
    if (length > MAX_STORE_RECORD_BYTES || at + 8 + length > bytes.length) throw new CorruptStoreError(`record at byte ${at} runs past the end (length ${length})`)
    const body = bytes.subarray(at + 8, at + 8 + length)
    if (crc32(body) !== sum) throw new CorruptStoreError(`checksum mismatch in record at byte ${at}`)
    try {
      out.push(decodeEnvelope(body))
    } catch (err) {
      throw new CorruptStoreError(`record at byte ${at} is not an envelope`, { cause: err })
    }
    at += 8 + length
  }
  return out
}

/** The envelope log in `dir` (created if missing). Appends are batched and written in order. */
export function fileEnvelopeStore (dir: string): EnvelopeStore {
  const path = join(dir, STORE_FILE)
  let handle: FileHandle | undefined
  let queued: Buffer[] = []
  let writing: Promise<void> = Promise.resolve()
  let scheduled = false

  const ensureOpen = async (): Promise<FileHandle> => {
    if (handle !== undefined) return handle
    await mkdir(dir, { recursive: true })
    const fresh = !existsSync(path)
    handle = await open(path, 'a')
    if (fresh || (await handle.stat()).size === 0) await handle.appendFile(MAGIC)
    return handle
  }

  const flush = (): Promise<void> => {
    scheduled = false
    if (queued.length === 0) return writing
    const batch = Buffer.concat(queued)
    queued = []
    writing = writing.then(async () => {
      const h = await ensureOpen()
      await h.appendFile(batch)
    })
    return writing
  }

  return {
    async load () {
      if (!existsSync(path)) return []
      return parseLog(await readFile(path))
    },
    append (envelopes) {
      for (const e of envelopes) queued.push(frame(e))
      if (!scheduled) {
        scheduled = true
        setImmediate(() => { flush().catch(() => { /* surfaced by the next flush() */ }) })
      }
    },
    flush,
    async reset () {
      await flush()
      await handle?.close()
      handle = undefined
      if (!existsSync(path)) return undefined
      let n = 1
      while (existsSync(`${path}.corrupt-${n}`)) n++
      const movedTo = `${path}.corrupt-${n}`
      await rename(path, movedTo)
      return movedTo
    },
    async close () {
      await flush()
      await handle?.close()
      handle = undefined
    }
  }
}

/** An in-memory store (tests, and nodes run without a data directory). */
export function memoryEnvelopeStore (): EnvelopeStore & { bytes: () => Buffer } {
  let records: Buffer[] = [MAGIC]
  return {
    async load () { return parseLog(Buffer.concat(records)) },
    append (envelopes) { for (const e of envelopes) records.push(frame(e)) },
    async flush () {},
    async reset () { records = [MAGIC]; return undefined },
    async close () {},
    bytes: () => Buffer.concat(records)
  }
}
