// Safetensors: an 8-byte little-endian header length N, N bytes of JSON, then the data section.
// The JSON maps each tensor name to { dtype, shape, data_offsets: [begin, end] } (offsets relative
// to the data section) plus an optional "__metadata__" object of strings. Only the header is read
// here; tensor bytes are left for ranged reads at TensorRef.offset. Everything is validated the
// way the reference implementation does (bounds, sizes, no overlap, no holes), so a file that
// parses is one whose every tensor can be read.
import { open, readFile } from 'node:fs/promises'
import type { FileHandle } from 'node:fs/promises'
import { basename, isAbsolute, join } from 'node:path'
import { ModelFormatError } from '../errors.ts'
import type { SourceDType, TensorRef } from '../index.ts'

/** Same bound as the reference implementation (safetensors' MAX_HEADER_SIZE). */
const MAX_HEADER_BYTES = 100_000_000
const LENGTH_BYTES = 8

/** Bytes per element of every dtype the safetensors spec names (so offsets can be checked). */
const DTYPE_BYTES: Record<string, number> = {
  BOOL: 1, U8: 1, I8: 1, F8_E5M2: 1, F8_E4M3: 1, I16: 2, U16: 2, F16: 2, BF16: 2,
  I32: 4, U32: 4, F32: 4, I64: 8, U64: 8, F64: 8
}

/** The dtypes the engine can load. */
const SUPPORTED: Record<string, SourceDType> = { F32: 'f32', F16: 'f16', BF16: 'bf16' }

/** One tensor as the header declares it; `offset` is absolute in the file. */
export interface SafetensorsEntry {
  name: string
  dtype: string // as written in the file: 'F32', 'F16', 'BF16', 'I64', ...
  shape: number[]
  offset: number
  byteLength: number
}

export interface SafetensorsHeader {
  file: string
  metadata: Record<string, string>
  tensors: Map<string, SafetensorsEntry>
  dataStart: number // absolute offset of the data section
  fileSize: number
}

/** Reads and validates the header of one .safetensors file. */
export async function readSafetensorsHeader (file: string, options: { signal?: AbortSignal } = {}): Promise<SafetensorsHeader> {
  options.signal?.throwIfAborted()
  const fh = await openFile(file)
  try {
    const fileSize = (await fh.stat()).size
    if (fileSize < LENGTH_BYTES) throw new ModelFormatError(file, `file is ${fileSize} bytes, shorter than the 8-byte safetensors header length`)
    const lenBuf = await readExactly(fh, file, 0, LENGTH_BYTES)
    const headerLength = lenBuf.readBigUInt64LE(0)
    if (headerLength < 2n) throw new ModelFormatError(file, `header length ${headerLength} is too small for a JSON object`)
    if (headerLength > BigInt(MAX_HEADER_BYTES)) throw new ModelFormatError(file, `header length ${headerLength} exceeds the ${MAX_HEADER_BYTES}-byte limit (not a safetensors file?)`)
    const n = Number(headerLength)
    if (LENGTH_BYTES + n > fileSize) throw new ModelFormatError(file, `header length ${n} runs past the end of the ${fileSize}-byte file`)
    options.signal?.throwIfAborted()
    const json = (await readExactly(fh, file, LENGTH_BYTES, n)).toString('utf8')
    return parseHeaderJson(file, json, LENGTH_BYTES + n, fileSize)
  } finally {
    await fh.close()
  }
}

function parseHeaderJson (file: string, json: string, dataStart: number, fileSize: number): SafetensorsHeader {
  if (!json.startsWith('{')) throw new ModelFormatError(file, 'header is not a JSON object (does not start with "{")')
  let parsed: unknown
  try {
    parsed = JSON.parse(json)
  } catch (err) {
    throw new ModelFormatError(file, `header is not valid JSON: ${(err as Error).message}`)
  }
  if (!isObject(parsed)) throw new ModelFormatError(file, 'header is not a JSON object')
  const metadata: Record<string, string> = {}
  const tensors = new Map<string, SafetensorsEntry>()
  const dataBytes = fileSize - dataStart
  for (const [name, value] of Object.entries(parsed)) {
    if (name === '__metadata__') {
      if (!isObject(value)) throw new ModelFormatError(file, '__metadata__ is not an object')
      for (const [k, v] of Object.entries(value)) {
        if (typeof v !== 'string') throw new ModelFormatError(file, `__metadata__.${k} is not a string`)
        metadata[k] = v
      }
      continue
    }
    tensors.set(name, parseEntry(file, name, value, dataStart, dataBytes))
  }
  checkLayout(file, [...tensors.values()], dataStart, dataBytes)
  return { file, metadata, tensors, dataStart, fileSize }
}

function parseEntry (file: string, name: string, value: unknown, dataStart: number, dataBytes: number): SafetensorsEntry {
  if (!isObject(value)) throw new ModelFormatError(file, `tensor ${name}: entry is not an object`)
  const { dtype, shape, data_offsets: offsets } = value
  if (typeof dtype !== 'string' || DTYPE_BYTES[dtype] === undefined) {
    throw new ModelFormatError(file, `tensor ${name}: unknown dtype ${JSON.stringify(dtype)}`)
  }
  if (!Array.isArray(shape) || !shape.every(isCount)) {
    throw new ModelFormatError(file, `tensor ${name}: shape ${JSON.stringify(shape)} is not a list of non-negative integers`)
  }
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isCount)) {
    throw new ModelFormatError(file, `tensor ${name}: data_offsets ${JSON.stringify(offsets)} is not [begin, end]`)
  }
  const [begin, end] = offsets as number[]
  if (end < begin) throw new ModelFormatError(file, `tensor ${name}: data_offsets end ${end} is before begin ${begin}`)
  if (end > dataBytes) {
    throw new ModelFormatError(file, `tensor ${name}: data_offsets [${begin}, ${end}) run past the end of the file (data section is ${dataBytes} bytes)`)
  }
  const elements = (shape as number[]).reduce((a, b) => a * b, 1)
  const expected = elements * DTYPE_BYTES[dtype]
  if (!Number.isSafeInteger(expected) || expected !== end - begin) {
    throw new ModelFormatError(file, `tensor ${name}: shape [${shape.join(', ')}] × ${dtype} needs ${expected} bytes but data_offsets span ${end - begin}`)
  }
  return { name, dtype, shape: shape as number[], offset: dataStart + begin, byteLength: end - begin }
}

/** Tensors must tile the data section exactly: sorted by offset, no overlap, no hole, no tail. */
function checkLayout (file: string, entries: SafetensorsEntry[], dataStart: number, dataBytes: number): void {
  const sorted = [...entries].sort((a, b) => a.offset - b.offset || a.byteLength - b.byteLength)
  let at = dataStart
  let prev = '(start of data)'
  for (const e of sorted) {
    if (e.offset < at) throw new ModelFormatError(file, `tensor ${e.name} overlaps ${prev}`)
    if (e.offset > at) throw new ModelFormatError(file, `${e.offset - at} unused bytes between ${prev} and tensor ${e.name}`)
    at = e.offset + e.byteLength
    prev = `tensor ${e.name}`
  }
  if (at !== dataStart + dataBytes) {
    throw new ModelFormatError(file, `${dataStart + dataBytes - at} bytes after the last tensor: the header does not describe the whole file`)
  }
}

/** A TensorRef for one header entry; only F32/F16/BF16 can be loaded. */
export function safetensorsRef (header: SafetensorsHeader, tensorName: string, canonicalName: string): TensorRef {
  const e = header.tensors.get(tensorName)
  if (e === undefined) throw new ModelFormatError(header.file, `missing tensor ${tensorName}`)
  const dtype = SUPPORTED[e.dtype]
  if (dtype === undefined) throw new ModelFormatError(header.file, `tensor ${tensorName} has dtype ${e.dtype}; supported: F32, F16, BF16`)
  return { name: canonicalName, file: header.file, offset: e.offset, byteLength: e.byteLength, dtype, shape: e.shape }
}

/** All tensors of a model: one file, or the shards named by model.safetensors.index.json. */
export interface SafetensorsSet {
  /** model.safetensors, or the index file of a sharded model (for messages) */
  file: string
  /** tensor name → the header of the file that holds it */
  files: Map<string, SafetensorsHeader>
}

/**
 * Opens `dir/model.safetensors.index.json` (sharded) when it exists, else `dir/model.safetensors`.
 * Every shard's header is validated; a weight_map entry that its shard lacks is an error.
 */
export async function openSafetensorsDir (dir: string, options: { signal?: AbortSignal } = {}): Promise<SafetensorsSet> {
  const indexFile = join(dir, 'model.safetensors.index.json')
  const indexText = await readOptional(indexFile)
  if (indexText === undefined) {
    const header = await readSafetensorsHeader(join(dir, 'model.safetensors'), options)
    return { file: header.file, files: new Map([...header.tensors.keys()].map((name) => [name, header])) }
  }
  const weightMap = parseIndex(indexFile, indexText)
  const headers = new Map<string, SafetensorsHeader>()
  for (const shard of new Set(weightMap.values())) {
    headers.set(shard, await readSafetensorsHeader(join(dir, shard), options))
  }
  const files = new Map<string, SafetensorsHeader>()
  for (const [name, shard] of weightMap) {
    const header = headers.get(shard) as SafetensorsHeader
    if (!header.tensors.has(name)) throw new ModelFormatError(indexFile, `weight_map puts ${name} in ${shard}, which does not contain it`)
    files.set(name, header)
  }
  return { file: indexFile, files }
}

function parseIndex (file: string, text: string): Map<string, string> {
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch (err) {
    throw new ModelFormatError(file, `not valid JSON: ${(err as Error).message}`)
  }
  if (!isObject(parsed) || !isObject(parsed.weight_map)) throw new ModelFormatError(file, 'has no weight_map object')
  const map = new Map<string, string>()
  for (const [name, shard] of Object.entries(parsed.weight_map)) {
    if (typeof shard !== 'string' || shard === '' || isAbsolute(shard) || basename(shard) !== shard || shard === '..' || shard === '.') {
      throw new ModelFormatError(file, `weight_map entry ${name} names ${JSON.stringify(shard)}, not a file beside the index`)
    }
    map.set(name, shard)
  }
  return map
}

/** The text of `file`, or undefined when it does not exist. */
export async function readOptional (file: string): Promise<string | undefined> {
  try {
    return await readFile(file, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw new ModelFormatError(file, `cannot read: ${(err as Error).message}`)
  }
}

async function openFile (file: string): Promise<FileHandle> {
  try {
    return await open(file, 'r')
  } catch (err) {
    throw new ModelFormatError(file, `cannot open: ${(err as Error).message}`)
  }
}

async function readExactly (fh: FileHandle, file: string, position: number, length: number): Promise<Buffer> {
  const buf = Buffer.alloc(length)
  const { bytesRead } = await fh.read(buf, 0, length, position)
  if (bytesRead !== length) throw new ModelFormatError(file, `truncated: wanted ${length} bytes at offset ${position}, got ${bytesRead}`)
  return buf
}

function isObject (v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function isCount (v: unknown): boolean {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0
}
