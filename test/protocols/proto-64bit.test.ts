// Every 64-bit integer field of our .proto files round-trips over its whole value range.
//
// Why this exists: protons-runtime 7.1.2 (and 8.0.1) writes a bigint `uint64`/`int64` in
// [2^31, 2^32) as a corrupt varint. `LongBits`' constructor stores the low word signed
// (`lo | 0`), so such a value has `hi === 0` and a negative `lo`; `length()` reserves 5 bytes
// (it shifts with `>>>`), but `writeVarint64`'s second loop (`while (val.lo > 127)`) never runs
// for a negative `lo`, so it writes ONE byte and leaves 4 bytes of the writer's pool unwritten:
// the decoder reads the value as its low byte and then parses stale bytes as more fields
// ("invalid wire type 7", "index out of range", or silently wrong fields). Values ≥ 2^32 pass
// through the first loop, whose `>>> 0` re-normalises `lo`, which is why only that range breaks.
// The `[jstype = JS_NUMBER]` variant writes with uint8-varint (`uint64Number`), which is correct
// for every safe integer, and keeps the wire format (a varint). So every 64-bit field we declare
// must be `uint64 … [jstype = JS_NUMBER]` — the guard below fails on any other form, and on a
// field without a round-trip case here.
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { Beacon } from '../../crdt/beacon.pb.js'
import { BulkRequest, BulkResponse } from '../../protocols/bulk.pb.js'
import { Frame, HiddenCodec } from '../../protocols/inference/inference.pb.js'
import { Head, SyncRequest } from '../../protocols/sync/sync.pb.js'
import { SpotRequest } from '../../protocols/consensus/spot-check.pb.js'
import { testSeed } from '../seed.ts'

const seed = testSeed()

/** The boundaries of every varint length and of the broken range, plus the extremes. */
const EDGES = [0, 1, 127, 128, 2 ** 14, 2 ** 21, 2 ** 28, 2 ** 31 - 1, 2 ** 31, 3_000_000_000, 2 ** 32 - 1, 2 ** 32, 2 ** 32 + 2 ** 31, 2 ** 35, 2 ** 49, 2 ** 52, Number.MAX_SAFE_INTEGER]
/** Any safe non-negative integer, with the edges and [2^31, 2^32) drawn often. */
const value = fc.oneof(fc.constantFrom(...EDGES), fc.integer({ min: 2 ** 31, max: 2 ** 32 - 1 }), fc.maxSafeNat())

/** One round-trip per 64-bit field: encode a message holding `v` (next to other fields), decode, read it back. */
const CASES: Record<string, (v: number) => { sent: unknown, back: unknown }> = {
  'inference.proto Sampling.seed': (v) => {
    const open = { sessionId: 's', model: 'm', start: 0, end: 5, maxLength: 64, codec: HiddenCodec.F32, chain: [], origin: '', sampling: { temperature: 0.5, topP: 0.75, topK: 3, seed: v, maxTokens: 7, skipDraws: 2 } }
    return { sent: open, back: Frame.decode(Frame.encode({ open })).open }
  },
  'sync.proto Head.clientId': (v) => {
    const head = { clientId: v, seq: 9, hash: new Uint8Array([1, 2, 3]) }
    return { sent: head, back: Head.decode(Head.encode(head)) }
  },
  'sync.proto SyncRequest.excluded': (v) => {
    const request = { swarm: 's', heads: [{ clientId: v, seq: 1, hash: new Uint8Array(0) }], maxBytes: 5, excluded: [v, 1, v], presence: new Uint8Array([4]) }
    return { sent: request, back: SyncRequest.decode(SyncRequest.encode(request)) }
  },
  'beacon.proto Beacon.at': (v) => {
    const beacon = { writer: new Uint8Array(32).fill(7), at: v, seq: 3, head: new Uint8Array(32).fill(1), signature: new Uint8Array(64).fill(2) }
    return { sent: beacon, back: Beacon.decode(Beacon.encode(beacon)) }
  },
  'spot-check.proto SpotRequest.seed': (v) => {
    const audit = { kind: SpotRequest.Kind.AUDIT, sessionId: 's', side: SpotRequest.Side.INPUTS, subject: 'l', start: 4, end: 5, predecessor: 'p', successor: '', model: 'm', rows: 0, input: new Uint8Array(0), inputTokens: [], tokens: [1, 2, 3], promptLength: 2, greedy: false, promptSignature: new Uint8Array(0), tokenSignatures: [], last: 'l', temperature: 0.5, topP: 0.75, topK: 3, seed: v, skipDraws: 1, receipt: new Uint8Array(64).fill(9), receiptFirst: 1 }
    return { sent: audit, back: SpotRequest.decode(SpotRequest.encode(audit)) }
  },
  'bulk.proto BulkRequest.size': (v) => ({ sent: { size: v }, back: BulkRequest.decode(BulkRequest.encode({ size: v })) }),
  'bulk.proto BulkResponse.received': (v) => {
    const response = { status: BulkResponse.Status.SHORT, received: v }
    return { sent: response, back: BulkResponse.decode(BulkResponse.encode(response)) }
  }
}

function protoFiles (dir: string): string[] {
  const out: string[] = []
  for (const name of readdirSync(dir)) {
    const path = join(dir, name)
    if (statSync(path).isDirectory()) out.push(...protoFiles(path))
    else if (name.endsWith('.proto')) out.push(path)
  }
  return out
}

/** `file Message.field` and the field's declaration, for every 64-bit integer field of our .proto files. */
function fields64 (): Array<{ name: string, line: string }> {
  const out: Array<{ name: string, line: string }> = []
  for (const root of ['protocols', 'crdt', 'consensus', 'sharding']) {
    for (const file of protoFiles(root)) {
      const stack: string[] = []
      for (const raw of readFileSync(file, 'utf8').split('\n')) {
        const line = raw.replace(/\/\/.*$/, '').trim()
        const open = /^(message|enum)\s+(\w+)\s*\{/.exec(line)
        if (open !== null) { stack.push(open[2]); continue }
        if (line.startsWith('}')) { stack.pop(); continue }
        const field = /^(?:repeated\s+|optional\s+)?(u?int64|sint64|s?fixed64)\s+(\w+)\s*=/.exec(line)
        if (field !== null) out.push({ name: `${file.split('/').pop() as string} ${stack[stack.length - 1]}.${field[2]}`, line })
      }
    }
  }
  return out
}

describe(`64-bit protobuf fields (TEST_SEED=${seed})`, () => {
  it('every 64-bit field is uint64 [jstype = JS_NUMBER] and has a round-trip case here', () => {
    const found = fields64()
    expect(found.length).toBeGreaterThan(0)
    for (const f of found) {
      expect(f.line, `${f.name}: protons-runtime's bigint 64-bit varint writer corrupts [2^31, 2^32); use uint64 … [jstype = JS_NUMBER]`).toMatch(/^(repeated\s+)?uint64\s+\w+\s*=\s*\d+\s*\[\s*jstype\s*=\s*JS_NUMBER\s*\]\s*;$/)
      expect(Object.keys(CASES), `${f.name} needs a round-trip case in this file`).toContain(f.name)
    }
    expect(found.map((f) => f.name).sort()).toEqual(Object.keys(CASES).sort())
  })

  for (const [name, roundTrip] of Object.entries(CASES)) {
    it(`${name} round-trips every safe non-negative integer`, () => {
      for (const v of EDGES) {
        const { sent, back } = roundTrip(v)
        expect(back, `value ${v}`).toEqual(sent)
      }
      fc.assert(fc.property(value, (v) => {
        const { sent, back } = roundTrip(v)
        expect(back).toEqual(sent)
      }), { seed, numRuns: 2000 })
    })
  }

  it('a value past 2^53 on the wire is a decode error, never a wrong number', () => {
    // field 1 (varint) of BulkRequest = 2^53 and 2^64 - 1, written by hand
    const varint = (v: bigint): number[] => { const b: number[] = []; while (v > 127n) { b.push(Number(v & 127n) | 128); v >>= 7n } b.push(Number(v)); return b }
    for (const v of [2n ** 53n, 2n ** 56n + 5n, 2n ** 64n - 1n]) {
      expect(() => BulkRequest.decode(new Uint8Array([0x08, ...varint(v)])), `value ${v}`).toThrow(RangeError)
    }
    expect(BulkRequest.decode(new Uint8Array([0x08, ...varint(2n ** 53n - 1n)])).size).toBe(Number.MAX_SAFE_INTEGER)
  })
})
