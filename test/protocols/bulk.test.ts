// The bulk protocol over in-memory stream pairs: exact transfers, refusals before any payload is
// read, garbage, short and over-long payloads, deadlines — every case ends in a status.
import { streamPair } from '@libp2p/utils'
import { describe, expect, it } from 'vitest'
import { BulkRequest, BulkResponse, receiveBulk, sendBulk } from '../../protocols/index.ts'
import { pbStream } from '@libp2p/utils'
import { seededRandom, testSeed } from '../seed.ts'

const seed = testSeed()

/** Writes raw bytes, closes, and returns the receiver's verdict. */
async function rawExchange (bytes: Uint8Array[], options: { maxTransferBytes?: number, timeoutMs?: number } = {}): Promise<{ status: string, received: number }> {
  const [a, b] = await streamPair()
  const verdict = receiveBulk(b, options)
  for (const chunk of bytes) if (!a.send(chunk)) await a.onDrain()
  await a.close()
  return await verdict
}

function header (size: number): Uint8Array {
  const body = BulkRequest.encode({ size })
  return Uint8Array.from([body.byteLength, ...body])
}

describe(`bulk protocol (TEST_SEED=${seed})`, () => {
  it('moves an exact number of bytes and acknowledges them', async () => {
    const [a, b] = await streamPair()
    const verdict = receiveBulk(b)
    const sent = await sendBulk(a, 3_000_001)
    expect(sent.bytes).toBe(3_000_001)
    expect(await verdict).toEqual({ status: BulkResponse.Status.OK, received: 3_000_001 })
  })

  it('refuses an oversize transfer before reading any payload, and the sender gets a named error', async () => {
    const [a, b] = await streamPair()
    const verdict = receiveBulk(b, { maxTransferBytes: 1000 })
    await expect(sendBulk(a, 5000)).rejects.toMatchObject({ name: 'TransferFailedError' })
    expect(await verdict).toEqual({ status: BulkResponse.Status.TOO_LARGE, received: 0 })
  })

  it('answers MALFORMED to garbage and to an oversize header frame, SHORT to a truncated payload', async () => {
    expect((await rawExchange([Uint8Array.from([0xff, 0xff, 0xff, 0xff, 0x0f])])).status).toBe(BulkResponse.Status.MALFORMED)
    expect((await rawExchange([Uint8Array.from([60, ...new Uint8Array(60).fill(0xff)])])).status).toBe(BulkResponse.Status.MALFORMED)
    expect((await rawExchange([header(100), new Uint8Array(40)]))).toEqual({ status: BulkResponse.Status.SHORT, received: 40 })
    expect((await rawExchange([header(10), new Uint8Array(40)])).status).toBe(BulkResponse.Status.MALFORMED)
  })

  it('times out a stalled sender', async () => {
    const [a, b] = await streamPair()
    const verdict = receiveBulk(b, { timeoutMs: 50 })
    a.send(header(1000))
    const reply = await pbStream(a).read(BulkResponse)
    expect(reply.status).toBe(BulkResponse.Status.TIMEOUT)
    expect((await verdict).status).toBe(BulkResponse.Status.TIMEOUT)
  })

  it('seeded garbage always ends in a status, never an exception', async () => {
    const rand = seededRandom(seed)
    for (let i = 0; i < 50; i++) {
      const len = Math.floor(rand() * 300)
      const bytes = Uint8Array.from({ length: len }, () => Math.floor(rand() * 256))
      const result = await rawExchange([bytes], { timeoutMs: 2000 })
      expect(Object.values(BulkResponse.Status)).toContain(result.status)
    }
  })
})
