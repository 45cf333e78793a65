// TCP simultaneous open from a fixed, non-listening local port — what our hole punch relies on —
// and the reason libp2p's DCUtR cannot punch: Node refuses to connect from its listening port.
import { connect, createServer } from 'node:net'
import { describe, expect, it } from 'vitest'
import { freeLocalPort, simultaneousOpen } from '../../node/tcp-punch.ts'

describe('TCP simultaneous open', () => {
  // The punch itself needs two NATs that drop (not reset) unsolicited SYNs: loopback answers an
  // early SYN with RST at once, so the crossing is tested in the NAT lab (netlab test 5).
  it('gives up after its window with an error naming the endpoint', async () => {
    const local = await freeLocalPort()
    const closed = await freeLocalPort()
    const started = Date.now()
    await expect(simultaneousOpen(local, '127.0.0.1', closed, { windowMs: 300 })).rejects.toThrow(new RegExp(`hole punch to 127.0.0.1:${closed} from port ${local} failed`))
    expect(Date.now() - started).toBeLessThan(2_000)
  })

  it('cannot connect from the port a server listens on (why DCUtR fails in Node)', async () => {
    const server = createServer()
    await new Promise<void>((resolve) => server.listen(0, '0.0.0.0', resolve))
    const target = createServer()
    await new Promise<void>((resolve) => target.listen(0, '127.0.0.1', resolve))
    try {
      const code = await new Promise<string>((resolve) => {
        const s = connect({ host: '127.0.0.1', port: (target.address() as { port: number }).port, localPort: (server.address() as { port: number }).port })
        s.once('connect', () => { s.destroy(); resolve('connected') })
        s.once('error', (err: NodeJS.ErrnoException) => { resolve(err.code ?? err.message) })
      })
      expect(code).toBe('EADDRINUSE')
    } finally {
      server.close()
      target.close()
    }
  })
})
