// The probe protocol: in-memory stream pairs for the exchange and its refusals, and real
// in-process libp2p nodes on loopback TCP for the service — garbage and oversize input end in a
// status and a named error, and the listener keeps serving afterwards.
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { tcp } from '@libp2p/tcp'
import { pbStream, streamPair } from '@libp2p/utils'
import { createLibp2p, type Libp2p } from 'libp2p'
import { afterEach, describe, expect, it } from 'vitest'
import { PROBE_PROTOCOL, ProbeResponse, probeOver, probeService, serveProbe, type ProbeService } from '../../protocols/index.ts'
import { seededRandom, testSeed } from '../seed.ts'

const seed = testSeed()

function frame (body: Uint8Array): Uint8Array {
  // varint length prefix (bodies here are < 2^14 bytes)
  const n = body.byteLength
  const prefix = n < 128 ? [n] : [(n & 0x7f) | 0x80, n >> 7]
  return Uint8Array.from([...prefix, ...body])
}

/** Sends raw bytes to serveProbe and returns its verdict and the first response, if any. */
async function raw (bytes: Uint8Array, options: { maxPayloadBytes?: number } = {}): Promise<{ status: string, reply?: string }> {
  const [a, b] = await streamPair()
  const verdict = serveProbe(b, { timeoutMs: 2000, ...options })
  a.send(bytes)
  await a.close()
  let reply: string | undefined
  try { reply = (await pbStream(a).read(ProbeResponse)).status } catch (err) { reply = (err as Error).name }
  return { status: (await verdict).status, reply }
}

describe(`probe exchange (TEST_SEED=${seed})`, () => {
  it('measures RTT and bandwidth over a stream', async () => {
    const [a, b] = await streamPair()
    const served = serveProbe(b)
    const m = await probeOver(a, { pings: 3, bulkBytes: 64 * 1024 })
    expect(m.rttMs).toBeGreaterThanOrEqual(0)
    expect(m.bandwidthBytesPerS).toBeGreaterThan(0)
    expect((await served).requests).toBe(4)
  })

  it('answers MALFORMED to garbage and TOO_LARGE to an oversize frame or request', async () => {
    expect(await raw(frame(Uint8Array.from([0xff, 0xff, 0xff])))).toEqual({ status: 'MALFORMED', reply: 'MALFORMED' })
    expect(await raw(Uint8Array.from([0xff, 0xff, 0xff, 0xff, 0x0f])).then((r) => r.status)).toBe('TOO_LARGE') // a 4 GiB length prefix
    expect(await raw(Uint8Array.from([0x80, 0x80, 0x80, 0x01])).then((r) => r.status)).toBe('TOO_LARGE') // a 2 MiB frame
    const tooBig = frame(Uint8Array.from([0x18, 0x80, 0x80, 0x80, 0x01])) // reply_bytes = 2 MiB
    expect(await raw(tooBig)).toEqual({ status: 'TOO_LARGE', reply: 'TOO_LARGE' })
    const small = frame(Uint8Array.from([0x12, 0x40, ...new Uint8Array(64)])) // 64-byte payload
    expect(await raw(small, { maxPayloadBytes: 32 })).toEqual({ status: 'TOO_LARGE', reply: 'TOO_LARGE' })
  })

  it('a prober refused by the listener gets ProbeFailedError', async () => {
    const [a, b] = await streamPair()
    void serveProbe(b, { maxPayloadBytes: 1000 })
    await expect(probeOver(a, { pings: 1, bulkBytes: 5000 })).rejects.toMatchObject({ name: 'ProbeFailedError' })
  })

  it('an aborted probe rejects with ProbeFailedError', async () => {
    const [a, b] = await streamPair()
    void serveProbe(b)
    const c = new AbortController()
    c.abort()
    await expect(probeOver(a, { signal: c.signal })).rejects.toMatchObject({ name: 'ProbeFailedError' })
  })

  it('seeded garbage always ends in a status, never an exception', async () => {
    const rand = seededRandom(seed)
    for (let i = 0; i < 40; i++) {
      const bytes = Uint8Array.from({ length: Math.floor(rand() * 200) }, () => Math.floor(rand() * 256))
      const { status } = await raw(bytes)
      expect(['OK', 'CLOSED', 'MALFORMED', 'TOO_LARGE']).toContain(status)
    }
  })
})

describe('probe service over libp2p (loopback TCP)', () => {
  const nodes: Array<Libp2p<{ probe: ProbeService }>> = []
  afterEach(async () => { await Promise.all(nodes.splice(0).map(async (n) => await n.stop())) })
  const node = async (): Promise<Libp2p<{ probe: ProbeService }>> => {
    const n = await createLibp2p({
      addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
      transports: [tcp()],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()],
      services: { probe: probeService({ intervalMs: 0, probe: { pings: 2, bulkBytes: 128 * 1024 } }) }
    })
    nodes.push(n)
    return n
  }

  it('probes a peer, keeps an estimate (RTT the least of the recent probes), and survives garbage and oversize streams', async () => {
    const a = await node()
    const b = await node()
    await a.dial(b.getMultiaddrs()[0])
    const first = await a.services.probe.probe(b.peerId)
    expect(first.rttMs).toBeGreaterThan(0)
    expect(first.bandwidthBytesPerS).toBeGreaterThan(0)
    await a.services.probe.refresh()
    expect(a.services.probe.result(b.peerId)?.samples).toBe(2)
    expect(a.services.probe.result(b.peerId)?.rttMs).toBeLessThanOrEqual(first.rttMs) // a minimum never rises within the window

    const garbage = await a.dialProtocol(b.peerId, PROBE_PROTOCOL)
    garbage.send(frame(Uint8Array.from([0xff, 0xff, 0xff])))
    expect((await pbStream(garbage).read(ProbeResponse)).status).toBe('MALFORMED')
    await garbage.close()

    const oversize = await a.dialProtocol(b.peerId, PROBE_PROTOCOL)
    oversize.send(Uint8Array.from([0x80, 0x80, 0x80, 0x01])) // announces a 2 MiB frame
    expect((await pbStream(oversize).read(ProbeResponse)).status).toBe('TOO_LARGE')
    await oversize.close()

    expect(b.services.probe.stats.refused).toBe(2)
    expect((await a.services.probe.probe(b.peerId)).samples).toBe(3)
  })

  it('a probe of a peer that does not speak the protocol fails with a named error', async () => {
    const a = await node()
    const b = await node()
    await b.services.probe.stop()
    await a.dial(b.getMultiaddrs()[0])
    await expect(a.services.probe.probe(b.peerId)).rejects.toMatchObject({ name: 'ProbeFailedError' })
  })
})
