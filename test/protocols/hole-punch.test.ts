// Hole-punch signalling: endpoints are validated, a refusing or malformed side gets a status,
// and the responder starts its punch only after answering.
import type { Connection } from '@libp2p/interface'
import { pbStream, streamPair } from '@libp2p/utils'
import { describe, expect, it } from 'vitest'
import { holePunchHandler, PunchResponse, requestHolePunch } from '../../protocols/index.ts'
import type { PunchEndpoint } from '../../protocols/index.ts'

const connection = {} as unknown as Connection

describe('hole-punch signalling', () => {
  it('swaps endpoints and starts the responder\'s punch', async () => {
    const punched: Array<[PunchEndpoint, PunchEndpoint]> = []
    const handler = holePunchHandler({ prepare: async () => ({ ip: '11.0.0.12', port: 40002 }), punch: (_c, local, remote) => { punched.push([local, remote]) } })
    const [a, b] = await streamPair()
    const served = handler(b, connection)
    expect(await requestHolePunch(a, { ip: '11.0.0.11', port: 40001 })).toEqual({ ip: '11.0.0.12', port: 40002 })
    await served
    expect(punched).toEqual([[{ ip: '11.0.0.12', port: 40002 }, { ip: '11.0.0.11', port: 40001 }]])
  })

  it('answers REFUSED when the responder cannot punch, MALFORMED to bad endpoints and garbage', async () => {
    const handler = holePunchHandler({ prepare: async () => undefined, punch: () => { throw new Error('must not punch') } })
    const [a, b] = await streamPair()
    const served = handler(b, connection)
    expect(await requestHolePunch(a, { ip: '11.0.0.11', port: 40001 })).toBeUndefined()
    await served
    for (const bad of [{ ip: '999.0.0.1', port: 40001 }, { ip: '11.0.0.11', port: 80 }, { ip: 'example.com', port: 40001 }]) {
      const [c, d] = await streamPair()
      const s = handler(d, connection)
      expect(await requestHolePunch(c, bad)).toBeUndefined()
      await s
    }
    const [e, f] = await streamPair()
    const s = handler(f, connection)
    e.send(Uint8Array.from([200, 1, 2, 3]))
    expect((await pbStream(e).read(PunchResponse)).status).toBe(PunchResponse.Status.MALFORMED)
    await s
  })
})
