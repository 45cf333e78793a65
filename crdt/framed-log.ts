// An append-only file of checksummed records: magic, then [u32 length][u32 crc32][body] records.
// Appends are batched on the next macrotask and written in order; parse() is all or nothing.
import { existsSync } from 'node:fs'
import { mkdir, open, readFile, rename, type FileHandle } from 'node:fs/promises'
import { dirname } from 'node:path'
import { crc32 } from 'node:zlib'
import { MAX_STORE_RECORD_BYTES } from './constants.ts'
import { CorruptStoreError } from './errors.ts'

export const LOG_MAGIC = Buffer.from('MYCENV1\n')

export function frameRecord (body: Uint8Array): Buffer {
  const header = Buffer.alloc(8)
  header.writeUInt32BE(body.length, 0)
  header.writeUInt32BE(crc32(body), 4)
  return Buffer.concat([header, body])
}

/** Record bodies of a whole log; throws CorruptStoreError on the first damaged byte. */
export function parseRecords (bytes: Buffer): Buffer[] {
  if (bytes.length === 0) return []
  if (bytes.length < LOG_MAGIC.length || !bytes.subarray(0, LOG_MAGIC.length).equals(LOG_MAGIC)) throw new CorruptStoreError('log has no valid header')
  const out: Buffer[] = []
  let at = LOG_MAGIC.length
  while (at < bytes.length) {
    if (at + 8 > bytes.length) throw new CorruptStoreError(`truncated record header at byte ${at}`)
    const length = bytes.readUInt32BE(at)
    const sum = bytes.readUInt32BE(at + 4)
    if (length > MAX_STORE_RECORD_BYTES || at + 8 + length > bytes.length) throw new CorruptStoreError(`record at byte ${at} runs past the end (length ${length})`)
    const body = bytes.subarray(at + 8, at + 8 + length)
    if (crc32(body) !== sum) throw new CorruptStoreError(`checksum mismatch in record at byte ${at}`)
    out.push(body)
    at += 8 + length
  }
  return out
}

export class FramedLog {
  readonly path: string
  private handle: FileHandle | undefined
  private queued: Buffer[] = []
  private writing: Promise<void> = Promise.resolve()
  private scheduled = false

  constructor (path: string) {
    this.path = path
  }

  async read (): Promise<Buffer[]> {
    if (!existsSync(this.path)) return []
    return parseRecords(await readFile(this.path))
  }

  append (body: Uint8Array): void {
    this.queued.push(frameRecord(body))
    if (this.scheduled) return
    this.scheduled = true
    setImmediate(() => { this.flush().catch(() => { /* surfaced by the next flush() */ }) })
  }

  flush (): Promise<void> {
    this.scheduled = false
    if (this.queued.length === 0) return this.writing
    const batch = Buffer.concat(this.queued)
    this.queued = []
    this.writing = this.writing.then(async () => {
      const handle = await this.ensureOpen()
      await handle.appendFile(batch)
    })
    return this.writing
  }

  /** Renames the file to `<path>.corrupt-N`; returns the new name (undefined if there was none). */
  async setAside (): Promise<string | undefined> {
    await this.close()
    if (!existsSync(this.path)) return undefined
    let n = 1
    while (existsSync(`${this.path}.corrupt-${n}`)) n++
    const movedTo = `${this.path}.corrupt-${n}`
    await rename(this.path, movedTo)
    return movedTo
  }

  async close (): Promise<void> {
    await this.flush()
    await this.handle?.close()
    this.handle = undefined
  }

  private async ensureOpen (): Promise<FileHandle> {
    if (this.handle !== undefined) return this.handle
    await mkdir(dirname(this.path), { recursive: true })
    const fresh = !existsSync(this.path)
    this.handle = await open(this.path, 'a')
    if (fresh || (await this.handle.stat()).size === 0) await this.handle.appendFile(LOG_MAGIC)
    return this.handle
  }
}
