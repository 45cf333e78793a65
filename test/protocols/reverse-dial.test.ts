// Reverse dial: the handler dials only the requesting peer, only addresses its filter accepts,
// at most once per interval, and answers garbage with MALFORMED.
import { generateKeyPairFromSeed } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { Connection, PeerId } from '@libp2p/interface'
import { pbStream, streamPair } from '@libp2p/utils'
import { multiaddr } from '@multiformats/multiaddr'
import type { Multiaddr } from '@multiformats/multiaddr'
import { describe, expect, it } from 'vitest'
import { requestReverseDial, reverseDialHandler, ReverseDialRequest, ReverseDialResponse } from '../../protocols/index.ts'

const peer = peerIdFromPrivateKey(await generateKeyPairFromSeed('Ed25519', new Uint8Array(32).fill(7)))
const connection = { remotePeer: peer } as unknown as Connection

function harness (options: { now?: () => number, accept?: (a: Multiaddr) => boolean } = {}) {
  const dials: Array<{ peer: PeerId, addrs: string[] }> = []
  const handler = reverseDialHandler({
    dial: async (p, addrs) => { dials.push({ peer: p, addrs: addrs.map(String) }); return true },
    acceptAddr: options.accept,
    now: options.now,
    minIntervalMs: 1000
  })
  const ask = async (addrs: Multiaddr[]): Promise<ReverseDialResponse.Status> => {
    const [a, b] = await streamPair()
    const served = handler(b, connection)
    const status = await requestReverseDial(a, addrs)
    await served
    return status
  }
  return { dials, handler, ask }
}

describe('reverse dial', () => {
  it('dials the requesting peer at the listed direct addresses, never relay addresses', async () => {
    const { dials, ask } = harness()
    const status = await ask([multiaddr('/ip4/11.0.0.14/tcp/4001'), multiaddr('/ip4/11.0.0.2/tcp/4001/p2p-circuit')])
    expect(status).toBe(ReverseDialResponse.Status.OK)
    expect(dials).toEqual([{ peer, addrs: ['/ip4/11.0.0.14/tcp/4001'] }])
  })

  it('refuses when no address passes the filter, and rate-limits per peer', async () => {
    let t = 0
    const { dials, ask } = harness({ now: () => t, accept: (a) => !a.toString().startsWith('/ip4/10.') })
    expect(await ask([multiaddr('/ip4/10.0.0.1/tcp/1')])).toBe(ReverseDialResponse.Status.REFUSED)
    expect(await ask([multiaddr('/ip4/11.0.0.1/tcp/1')])).toBe(ReverseDialResponse.Status.OK)
    t = 500
    expect(await ask([multiaddr('/ip4/11.0.0.1/tcp/1')])).toBe(ReverseDialResponse.Status.REFUSED)
    t = 1500
    expect(await ask([multiaddr('/ip4/11.0.0.1/tcp/1')])).toBe(ReverseDialResponse.Status.OK)
    expect(dials).toHaveLength(2)
  })

  it('answers MALFORMED to garbage and to too many addresses', async () => {
    const { dials, handler } = harness()
    for (const bytes of [Uint8Array.from([3, 0xff, 0xff, 0xff]), Uint8Array.from([2, 0x0a, 0x05])]) {
      const [a, b] = await streamPair()
      const served = handler(b, connection)
      a.send(bytes)
      const reply = await pbStream(a).read(ReverseDialResponse)
      expect(reply.status).toBe(ReverseDialResponse.Status.MALFORMED)
      await served
    }
    const [a, b] = await streamPair()
    const served = handler(b, connection)
    const many = Array.from({ length: 9 }, (_, i) => multiaddr(`/ip4/11.0.0.${i + 1}/tcp/1`).bytes)
    await pbStream(a).write({ addrs: many }, ReverseDialRequest)
    expect((await pbStream(a).read(ReverseDialResponse)).status).toBe(ReverseDialResponse.Status.MALFORMED)
    await served
    expect(dials).toHaveLength(0)
  })
})
